import json

import pandas as pd
import pytest

from newstag.config import load_config
from newstag.errors import NewstagError
from newstag.preprocess import preprocess

WORDS = ["harbour", "tariff", "senate", "vaccine", "striker", "server", "budget", "clinic"]


def corpus(rows: int = 40) -> pd.DataFrame:
    """Distinct small articles with two balanced labels per task."""
    return pd.DataFrame({
        "headline": [f"Item {i}" for i in range(rows)],
        "body": [f"{WORDS[i % 8]} report number {i} on {WORDS[(i * 3) % 8]}" for i in range(rows)],
        "label": ["a" if i % 2 else "b" for i in range(rows)],
    })


def experiment(tmp_path, frame: pd.DataFrame, name="data.csv", extra="", task_extra="",
               labels="[a, b]"):
    path = tmp_path / name
    if name.endswith(".csv"):
        frame.to_csv(path, index=False)
    elif name.endswith(".jsonl"):
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path)
    yaml_path = tmp_path / "exp.yaml"
    yaml_path.write_text(
        f"data: {{path: {path}, text_columns: [headline, body]{extra}}}\n"
        f"tasks: {{topic: {{column: label, labels: {labels}{task_extra}}}}}\n"
        "split: {validation: 0.2, test: 0.2}\n"
    )
    return load_config(yaml_path)


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("name", ["data.csv", "data.jsonl", "data.parquet"])
def test_each_format_gives_the_same_split(tmp_path, name):
    manifest = preprocess(experiment(tmp_path, corpus(), name))
    assert {k: v["rows"] for k, v in manifest["splits"].items()} == {
        "train": 24, "validation": 8, "test": 8}
    train = pd.read_parquet(tmp_path / "data/processed/exp/train.parquet")
    assert list(train.columns) == ["id", "text", "topic"]
    assert train["text"].iloc[0].startswith("Item ")


def test_split_is_stratified_seeded_and_disjoint(tmp_path):
    config = experiment(tmp_path, corpus())
    first = preprocess(config)
    second = preprocess(config)
    assert first == second
    labels = first["splits"]["test"]["labels"]["topic"]
    assert labels == {"a": 4, "b": 4}
    parts = {n: set(pd.read_parquet(f"data/processed/exp/{n}.parquet")["id"])
             for n in ("train", "validation", "test")}
    assert not parts["train"] & parts["test"] and not parts["validation"] & parts["test"]


def test_manifest_records_hashes_and_make_dependencies(tmp_path):
    manifest = preprocess(experiment(tmp_path, corpus()))
    assert len(manifest["inputs"][0]["sha256"]) == 64
    saved = json.loads((tmp_path / "data/processed/exp/manifest.json").read_text())
    assert saved == manifest
    deps = (tmp_path / "data/processed/exp/deps.mk").read_text()
    assert deps.startswith("data/processed/exp/manifest.json: ") and "data.csv" in deps


def test_duplicates_after_normalisation_are_removed(tmp_path):
    frame = corpus()
    extra = frame.iloc[:5].copy()
    extra["body"] = extra["body"].str.upper().map(lambda t: f"<p>{t}</p>")
    manifest = preprocess(experiment(tmp_path, pd.concat([frame, extra])))
    assert manifest["duplicates_removed"] == 5
    assert sum(s["rows"] for s in manifest["splits"].values()) == 40


def test_missing_column_names_the_columns_present(tmp_path):
    config = experiment(tmp_path, corpus().rename(columns={"body": "content"}))
    with pytest.raises(NewstagError, match=r"missing column\(s\) body; the file has: headline, content"):
        preprocess(config)


def test_unknown_label_names_the_row(tmp_path):
    frame = corpus()
    frame.loc[6, "label"] = "c"
    with pytest.raises(NewstagError, match=r"row 7: unknown label: 'c' .* not one of a, b"):
        preprocess(experiment(tmp_path, frame))


def test_empty_text_can_be_dropped_instead(tmp_path):
    frame = corpus(41)
    frame.loc[3, ["headline", "body"]] = ["  ", "<br>"]
    with pytest.raises(NewstagError, match=r"row 4: empty text"):
        preprocess(experiment(tmp_path, frame))
    manifest = preprocess(experiment(tmp_path, frame, extra=", on_invalid: drop"))
    assert manifest["rows_dropped"] == {"empty text": 1}


@pytest.mark.parametrize("row", [0, 17])  # the first row: pandas took its first column for an index
def test_row_with_more_fields_than_the_header_is_an_invalid_row(tmp_path, row):
    def with_extra_field(config):
        lines = (tmp_path / "data.csv").read_text().splitlines()
        lines[row + 1] += ",extra"
        (tmp_path / "data.csv").write_text("\n".join(lines) + "\n")
        return config

    with pytest.raises(NewstagError, match=rf"data\.csv: row {row + 1}: too many fields: line "
                                           rf"{row + 2} has 4 fields where the header has 3"):
        preprocess(with_extra_field(experiment(tmp_path, corpus(41))))
    manifest = preprocess(with_extra_field(experiment(tmp_path, corpus(41), extra=", on_invalid: drop")))
    assert manifest["rows_read"] == 41 and manifest["rows_dropped"] == {"too many fields": 1}


def test_label_with_one_example_suggests_a_fix(tmp_path):
    frame = corpus()
    frame.loc[0, "label"] = "c"
    config = experiment(tmp_path, frame, labels="[a, b, c]")
    with pytest.raises(NewstagError, match=r"label 'c' .* only 1 article.*needs at least 2"):
        preprocess(config)


def test_only_one_class_is_refused(tmp_path):
    frame = corpus()
    frame["label"] = "a"
    with pytest.raises(NewstagError, match="only one label"):
        preprocess(experiment(tmp_path, frame))


def test_split_column_is_respected(tmp_path):
    frame = corpus()
    frame["part"] = ["test" if i < 10 else "train" for i in range(40)]
    manifest = preprocess(experiment(tmp_path, frame, extra=", split_column: part"))
    assert manifest["splits"]["test"]["rows"] == 10
    assert manifest["splits"]["train"]["rows"] + manifest["splits"]["validation"]["rows"] == 30
