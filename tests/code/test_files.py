"""The file helpers every stage writes through: a failed step leaves the files as they were."""

import pytest

from newstag.data.files import remove_orphans, restored_on_failure


def test_a_failed_block_puts_the_previous_files_back_and_removes_new_ones(tmp_path):
    bundle, card, fresh = tmp_path / "model.joblib", tmp_path / "MODEL_CARD.md", tmp_path / "new.json"
    bundle.write_text("old model")
    card.write_text("old card")
    with pytest.raises(RuntimeError), restored_on_failure([bundle, card, fresh]):
        bundle.unlink()  # replaced, as an atomic save does
        bundle.write_text("new model")
        card.with_name("card.tmp").write_text("new card")
        card.with_name("card.tmp").replace(card)  # as atomic_path does
        fresh.write_text("{}")
        raise RuntimeError("registration failed")
    assert bundle.read_text() == "old model" and card.read_text() == "old card"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["MODEL_CARD.md", "model.joblib"]


def test_a_block_that_succeeds_keeps_the_new_files_and_no_copy(tmp_path):
    bundle = tmp_path / "model.joblib"
    bundle.write_text("old")
    with restored_on_failure([bundle]):
        bundle.unlink()
        bundle.write_text("new")
    assert bundle.read_text() == "new" and [path.name for path in tmp_path.iterdir()] == ["model.joblib"]


def test_what_a_killed_block_leaves_aside_is_an_orphan(tmp_path):
    bundle = tmp_path / "model.joblib"
    bundle.write_text("old")
    guard = restored_on_failure([bundle])
    guard.__enter__()  # inside the block: what a process killed there leaves
    assert remove_orphans(tmp_path) == 1 and [path.name for path in tmp_path.iterdir()] == ["model.joblib"]
    guard.__exit__(None, None, None)
