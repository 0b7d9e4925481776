"""Multi-label tasks: reading label lists, iterative stratification, thresholds, bad input."""

import json
import re
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from newstag.config import load_config
from newstag.errors import NewstagError
from newstag.models.multilabel import BadLabels, best_threshold, f1_at, iterative_split, parse_labels
from newstag.preprocess import preprocess

WORDS = ["harbour", "tariff", "senate", "vaccine", "striker", "server", "budget", "clinic"]


def rows(count: int = 60) -> list[dict]:
    """Distinct small articles; every third is both a and b, every tenth also c (rare)."""
    out = []
    for i in range(count):
        labels = ["a"] if i % 2 else ["b"]
        if i % 3 == 0:
            labels = ["a", "b"]
        if i % 10 == 0:
            labels.append("c")
        out.append({"id": f"r{i}", "text": f"{WORDS[i % 8]} report {i} on {WORDS[(i * 3) % 8]}",
                    "tags": labels})
    return out


def experiment(tmp_path, data: list[dict], name: str = "data.jsonl", task_extra: str = "",
               extra: str = "", labels: str | None = "[a, b, c]"):
    """The experiment on `data` written to `name`; labels None: no declared labels."""
    path = tmp_path / name
    if name.endswith(".jsonl"):
        path.write_text("".join(json.dumps(row) + "\n" for row in data))
    else:
        frame = pd.DataFrame(data)
        frame["tags"] = frame["tags"].map(lambda tags: tags if isinstance(tags, str) else "|".join(tags))
        frame.to_csv(path, index=False)
    exp = tmp_path / "ml.yaml"
    exp.write_text(f"data: {{path: {path}, id_column: id{extra}}}\n"
                   f"tasks:\n  tags: {{multi_label: true{f', labels: {labels}' if labels else ''}"
                   f"{task_extra}}}\n")
    return load_config(exp)


@pytest.mark.parametrize("value, expected", [
    ("sport;business", ["sport", "business"]),
    (" sport ; business ;", ["sport", "business"]),
    ('["sport", "business"]', ["sport", "business"]),
    (["sport", "sport"], ["sport"]),
    ("", []),
    (None, None),
    ("[1, 2.5]", ["1", "2.5"]),  # numbers read as JSON wrote them, as in a single-label column
    ('["a", " b ", ""]', ["a", "b"]),
    ("[sport", ["[sport"]),  # no JSON: text
])
def test_labels_are_read_from_lists_and_separated_text(value, expected):
    assert parse_labels(value, ";") == expected


@pytest.mark.parametrize("value, reason", [
    ("[true]", "holds a list with a non-text item (true); labels must be text or numbers"),
    ('[null, "sport"]', "holds a list with a non-text item (null)"),
    ('[["sport"], "business"]', 'holds a list with a non-text item (["sport"])'),
    ("[NaN]", "holds a list with a non-text item (NaN)"),
    (["sport", None], "holds a list with a non-text item (null)"),
    ('{"sport": 1}', 'holds a mapping ({"sport": 1}); give a list of labels'),
    ('["sport;business"]', "holds the label 'sport;business', which contains the label_separator ';'"),
])
def test_a_cell_that_is_no_list_of_labels_says_why(value, reason):
    found = parse_labels(value, ";")
    assert isinstance(found, BadLabels) and found.reason.startswith(reason)


def test_iterative_split_spreads_rare_labels_and_keeps_shares():
    data = [r["tags"] for r in rows(600)]
    subset = iterative_split(data, [0.7, 0.15, 0.15], seed=3)
    assert Counter(subset.tolist()) == pytest.approx({0: 420, 1: 90, 2: 90}, abs=9)  # about
    for label in "abc":
        having = [s for s, tags in zip(subset, data, strict=True) if label in tags]
        shares = np.bincount(having, minlength=3) / len(having)
        assert shares == pytest.approx([0.7, 0.15, 0.15], abs=0.03)
    assert (iterative_split(data, [0.7, 0.15, 0.15], seed=3) == subset).all()  # seeded


def test_threshold_maximises_f1_and_prefers_zero_on_ties():
    margins = np.array([-0.9, -0.6, -0.5, -0.4, -0.3, 0.2])
    truth = np.array([0, 0, 1, 1, 0, 1])
    threshold = best_threshold(margins, truth)
    assert -0.6 < threshold < -0.5  # keeps the three positives, one negative
    assert f1_at(margins, truth, threshold) > f1_at(margins, truth, 0.0)
    assert best_threshold(np.array([-1.0, 1.0]), np.array([0, 1])) == 0.0
    assert best_threshold(np.array([-1.0, 1.0]), np.array([0, 0])) == 0.0


def test_a_threshold_catching_one_article_among_many_falls_back_to_zero():
    margins = np.array([-0.3, -0.4, -0.5, -0.9, -0.95])
    truth = np.array([0, 0, 0, 1, 0])  # the best threshold takes 3 wrong with the 1 right: F1 0.4
    assert f1_at(margins, truth, best_threshold(margins, truth, min_f1=0.0)) == pytest.approx(0.4)
    assert best_threshold(margins, truth) == 0.0
    assert -0.95 < best_threshold(margins[3:], truth[3:]) < -0.9  # alone with one other: F1 1


def test_multi_label_features_are_single_words_unless_params_say_otherwise():
    from newstag.config import TaskConfig
    from newstag.models.multilabel import build

    task = TaskConfig(name="tags", column="tags", multi_label=True)
    assert build(task, 0, ("a", "b")).get_params()["vect__ngram_range"] == (1, 1)
    pairs = TaskConfig(name="tags", column="tags", multi_label=True, params={"vect__ngram_range": [1, 2]})
    assert build(pairs, 0, ("a", "b")).get_params()["vect__ngram_range"] == (1, 2)


def test_preprocess_keeps_label_lists_and_counts_each_label(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    manifest = preprocess(experiment(tmp_path, rows()))
    train = pd.read_parquet(tmp_path / "data/processed/ml/train.parquet")
    assert all(len(tags) >= 1 for tags in train["tags"])
    assert sum(split["labels"]["tags"]["c"] for split in manifest["splits"].values()) == 6
    assert all(split["labels"]["tags"].get("c") for split in manifest["splits"].values())


def test_csv_column_is_split_at_the_label_separator(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    preprocess(experiment(tmp_path, rows(), name="data.csv", task_extra=", label_separator: '|'"))
    frames = [pd.read_parquet(tmp_path / f"data/processed/ml/{s}.parquet") for s in ("train", "test")]
    assert max(len(tags) for frame in frames for tags in frame["tags"]) == 3


@pytest.mark.parametrize("bad, message", [
    ([], "row 5: missing label: column 'tags' holds an empty label list"),
    (["a", "z"], "row 5: unknown label: 'z' in column 'tags' is not one of a, b, c"),
])
def test_bad_label_lists_name_the_row_and_write_nothing(tmp_path, monkeypatch, bad, message):
    monkeypatch.chdir(tmp_path)
    data = rows()
    data[4]["tags"] = bad
    with pytest.raises(NewstagError, match=message.replace("(", r"\(")):
        preprocess(experiment(tmp_path, data))
    assert not (tmp_path / "data/processed").exists()


@pytest.mark.parametrize("labels", ["[a, b, c]", None])
@pytest.mark.parametrize("bad, reason", [
    ([None, "a"], "holds a list with a non-text item (null); labels must be text or numbers"),
    ([1, True], "holds a list with a non-text item (true)"),
    ([["a"], "b"], 'holds a list with a non-text item (["a"])'),
    ({"a": 1}, 'holds a mapping ({"a": 1}); give a list of labels'),
])
def test_a_jsonl_cell_that_is_no_list_of_labels_is_an_invalid_row(tmp_path, monkeypatch, labels, bad,
                                                                  reason):
    """Declared labels or not: before, such a cell became a label of its own (one '[null, "a"]'),
    or, declared, an unknown label quoting that text."""
    monkeypatch.chdir(tmp_path)
    data = rows()
    data[4]["tags"] = bad
    message = f"data.jsonl: row 5: invalid label: column 'tags' {reason}"
    with pytest.raises(NewstagError, match=re.escape(message)):
        preprocess(experiment(tmp_path, data, labels=labels))
    assert not (tmp_path / "data/processed").exists()


def test_a_declared_label_no_article_has_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    """It used to train a constant model for it: every article tagged 'cooking' at 0.4261."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NewstagError) as caught:
        preprocess(experiment(tmp_path, rows(), labels="[a, b, c, cooking]"))
    assert str(caught.value) == (f"{tmp_path / 'data.jsonl'}: task 'tags': label 'cooking' is declared "
                                 f"in labels but has no article in train + validation; add articles "
                                 f"or remove it from labels")
    assert not (tmp_path / "data/processed").exists()


def test_a_model_knows_only_the_labels_its_articles_have():
    """Splits written before preprocess refused a declared label without article: no constant
    model tagging every article with it, as for a single-label task's classes."""
    from newstag.config import TaskConfig
    from newstag.models.multilabel import fit_task, tag_texts

    frame = pd.DataFrame(rows(60))
    task = TaskConfig(name="tags", column="tags", multi_label=True, labels=("a", "b", "c", "cooking"))
    result = fit_task(task, frame.iloc[:45], frame.iloc[45:], seed=0)
    assert result.labels == ["a", "b", "c"]
    assert not any("cooking" in found for found in tag_texts(result.pipeline, frame["text"].tolist()))


def test_one_label_left_names_the_data_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = [{**row, "tags": ["a"]} for row in rows()]
    with pytest.raises(NewstagError, match=re.escape(
            f"{tmp_path / 'data.jsonl'}: task 'tags' has only one label ('a') after cleaning; a "
            f"classifier needs at least two: add articles of another label")):
        preprocess(experiment(tmp_path, data))


def test_numbers_in_a_list_are_labels_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = [{**row, "tags": [{"a": 1, "b": 2, "c": 3}[tag] for tag in row["tags"]]} for row in rows()]
    manifest = preprocess(experiment(tmp_path, data, labels=None))
    assert set(manifest["splits"]["train"]["labels"]["tags"]) == {"1", "2", "3"}


def test_bad_rows_can_be_dropped(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = rows()
    data[4]["tags"], data[7]["tags"], data[9]["tags"] = [], ["z"], ["a", None]
    manifest = preprocess(experiment(tmp_path, data, extra=", on_invalid: drop"))
    assert manifest["rows_dropped"] == {"missing label": 1, "unknown label": 1, "invalid label": 1}


@pytest.mark.parametrize("task_extra, message", [
    (", label_separator: ''", "'tasks.tags.label_separator' is empty"),
    (", min_confidence: 0.5", "'tasks.tags.min_confidence' is set, but a multi_label task cannot use it"),
    (", ordinal: {labels: [a, b], cuts: [1]}, classifier: ridge", "'tasks.tags.ordinal' is set"),
])
def test_bad_multi_label_settings_are_one_line_errors(tmp_path, task_extra, message):
    with pytest.raises(NewstagError, match=message) as caught:
        experiment(tmp_path, rows(), task_extra=task_extra)
    assert "\n" not in str(caught.value)


def test_card_and_info_describe_a_multi_label_task_by_its_per_label_thresholds(tmp_path, monkeypatch,
                                                                               capsys):
    """A bundle with a multi-label task and a single-label one: min_confidence and `uncertain`
    are described for the single-label task only."""
    from newstag.cli import main

    monkeypatch.chdir(tmp_path)
    data = [{**row, "kind": "x" if i % 2 else "y"} for i, row in enumerate(rows(80))]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(row) + "\n" for row in data))
    (tmp_path / "ml.yaml").write_text("data: {path: data.jsonl, id_column: id}\n"
                                      "tasks:\n  tags: {multi_label: true, labels: [a, b, c]}\n"
                                      "  kind: {min_confidence: 0.6}\n")
    assert main(["preprocess", "ml.yaml"]) == 0 and main(["train", "--no-tracking", "ml.yaml"]) == 0
    capsys.readouterr()
    card = (tmp_path / "models/ml/MODEL_CARD.md").read_text()
    assert "tags is multi-label: an article gets every label whose score reaches that label's own " \
           "threshold (tuned on the validation split), and at least one label" in card
    assert "Each tag of kind comes with a probability; below a task's `min_confidence`" in card
    assert "`min_confidence` per task: kind 0.6." in card  # tags has none
    assert "Multi-label task tags: one linear model per label" in card
    assert "`min_confidence` and `uncertain` do not apply to this task." in card
    assert "| label | threshold (margin) | validation F1 at it | at 0 | validation articles |" in card
    assert card.count("min_confidence") == 4  # the two sentences above, the kind list, the tags note
    assert main(["info", str(tmp_path / "models/ml/model.joblib")]) == 0
    summary = capsys.readouterr().out.split("## Bundle metadata")[1]
    assert "task tags: labels a, b, c; params defaults; calibration platt on validation margins; " \
           "multi-label: labels by per-label thresholds tuned on validation (no min_confidence)" in summary
    assert "min_confidence 0.6" in summary and summary.count("min_confidence") == 2
