"""Out-of-core preprocessing and training (`streaming: true`): one pass by hashing, chunks, SGD."""

import gzip
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from newstag.config import load_config
from newstag.data.hashsplit import digest, near_exact_key, split_of
from newstag.data.stream import Source
from newstag.errors import NewstagError
from newstag.preprocess import preprocess

TOPICS = {"sport": ["striker", "goal", "league", "coach", "match"],
          "business": ["shares", "profit", "market", "bank", "tariff"],
          "health": ["clinic", "vaccine", "doctors", "patients", "hospital"]}


def corpus(rows: int = 600, seed: int = 0) -> pd.DataFrame:
    """Distinct articles whose words give their topic away, labels in a shuffled order."""
    rng = np.random.default_rng(seed)
    labels = [list(TOPICS)[i % 3] for i in range(rows)]
    texts = [" ".join(rng.choice(TOPICS[label], 4)) + f" report {i} from desk {rng.integers(1000)}"
             for i, label in enumerate(labels)]
    return pd.DataFrame({"body": texts, "label": labels})


def write(frame: pd.DataFrame, path: Path) -> Path:
    if path.name.endswith(".parquet"):
        frame.to_parquet(path)
    elif ".jsonl" in path.name:
        text = "".join(json.dumps(row) + "\n" for row in frame.to_dict("records"))
        path.write_bytes(gzip.compress(text.encode()) if path.suffix == ".gz" else text.encode())
    else:
        frame.to_csv(path, index=False)
    return path


def experiment(folder: Path, data: str, chunk_rows: int = 100, extra: str = "", name="exp"):
    path = folder / f"{name}.yaml"
    path.write_text(
        f"data: {{path: '{data}', text_columns: [body]{extra}}}\n"
        f"tasks:\n  topic:\n    column: label\n    streaming: true\n"
        f"    stream: {{epochs: 3, chunk_rows: {chunk_rows}, calibration_rows: 100}}\n"
        "split: {validation: 0.2, test: 0.2}\n")
    return load_config(path)


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def split_texts(config) -> dict[str, list[str]]:
    return {name: pd.read_parquet(config.processed_dir / f"{name}.parquet")["text"].tolist()
            for name in ("train", "validation", "test")}


@pytest.mark.parametrize("name", ["data.csv", "data.jsonl.gz", "data.parquet"])
def test_every_format_and_chunk_size_gives_the_same_splits(tmp_path, name):
    frame = corpus()
    write(frame, tmp_path / "data.csv")
    reference = preprocess(experiment(tmp_path, "data.csv", chunk_rows=1000, name="ref"))
    config = experiment(tmp_path, str(write(frame, tmp_path / name)), chunk_rows=100)
    manifest = preprocess(config)
    assert {k: v["labels"] for k, v in manifest["splits"].items()} == \
        {k: v["labels"] for k, v in reference["splits"].items()}
    assert manifest["rows_read"] == 600 and manifest["duplicates_removed"] == 0
    assert sum(v["rows"] for v in manifest["splits"].values()) == 600
    assert 60 < manifest["splits"]["test"]["rows"] < 180  # about 20%, by hash
    assert manifest["inputs"][0]["sha256"] == __import__("hashlib").sha256(
        (tmp_path / name).read_bytes()).hexdigest()


def test_twins_are_dropped_and_never_straddle_splits(tmp_path):
    frame = corpus(300)
    twins = frame.iloc[:100].copy()
    twins["body"] = twins["body"].str.upper().str.replace(" ", "  ,") + "!"  # near-exact copies
    write(pd.concat([frame, twins, frame.iloc[100:150]]), tmp_path / "data.csv")
    manifest = preprocess(experiment(tmp_path, "data.csv"))
    assert manifest["duplicates_removed"] == 150
    assert sum(v["rows"] for v in manifest["splits"].values()) == 300
    keys = {name: {near_exact_key(t) for t in texts}
            for name, texts in split_texts(load_config(tmp_path / "exp.yaml")).items()}
    assert not keys["test"] & keys["train"] and not keys["validation"] & keys["train"]
    assert manifest["streaming"]["seen_set_disk_mb_per_million"] > 0


def test_the_split_follows_the_keyed_hash_of_the_text():
    key = near_exact_key("Shares  jumped, after RECORD profits!")
    assert key == "shares jumped after record profits"
    assert digest(key, 1) != digest(key, 2)
    shares = pd.Series([split_of(digest(str(i), 7), 0.15, 0.15) for i in range(20000)]).value_counts(
        normalize=True)
    assert abs(shares["test"] - 0.15) < 0.01 and abs(shares["train"] - 0.7) < 0.01


def test_chunks_are_bounded_and_rows_numbered_over_the_file(tmp_path):
    write(corpus(250), tmp_path / "data.jsonl")
    chunks = list(Source(tmp_path / "data.jsonl", chunk_rows=100).chunks())
    assert [len(c) for c in chunks] == [100, 100, 50]
    assert chunks[2].index[0] == 200


def test_an_fsspec_url_is_read_in_chunks(tmp_path):
    fsspec = pytest.importorskip("fsspec")
    with fsspec.open("memory://newstag-test/data.csv", "wb") as handle:
        handle.write(corpus().to_csv(index=False).encode())
    manifest = preprocess(experiment(tmp_path, "memory://newstag-test/data.csv"))
    assert sum(v["rows"] for v in manifest["splits"].values()) == 600


def test_a_bad_line_names_the_file_and_line_and_leaves_nothing_behind(tmp_path):
    lines = [json.dumps(row) for row in corpus(250).to_dict("records")]
    lines[230] = '{"body": "broken'
    (tmp_path / "data.jsonl").write_text("\n".join(lines) + "\n")
    config = experiment(tmp_path, "data.jsonl")
    with pytest.raises(NewstagError, match=r"data.jsonl: line 231 is not valid JSON"):
        preprocess(config)
    assert sorted(p.name for p in config.processed_dir.iterdir()) == [".preprocess.lock"]


def test_an_empty_text_in_a_later_chunk_names_its_row(tmp_path):
    frame = corpus(250)
    frame.loc[180, "body"] = "  "
    write(frame, tmp_path / "data.csv")
    with pytest.raises(NewstagError, match=r"data.csv: row 181: empty text"):
        preprocess(experiment(tmp_path, "data.csv"))
    manifest = preprocess(experiment(tmp_path, "data.csv", extra=", on_invalid: drop"))
    assert manifest["rows_dropped"] == {"empty text": 1}


def test_a_row_with_more_fields_than_the_header_is_an_invalid_row(tmp_path):
    lines = corpus(250).to_csv(index=False).splitlines()
    lines[181] += ",extra"
    (tmp_path / "data.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(NewstagError, match=r"data.csv: row 181: too many fields: line 182 has 3 "
                                           r"fields where the header has 2"):
        preprocess(experiment(tmp_path, "data.csv"))
    manifest = preprocess(experiment(tmp_path, "data.csv", extra=", on_invalid: drop"))
    assert manifest["rows_read"] == 250 and manifest["rows_dropped"] == {"too many fields": 1}


def test_a_declared_label_without_training_article_is_refused_before_publishing(tmp_path):
    write(corpus(250), tmp_path / "data.csv")
    config = experiment(tmp_path, "data.csv")
    config = replace(config, tasks=(replace(config.tasks[0], labels=("sport", "business", "health",
                                                                     "weather")),))
    with pytest.raises(NewstagError, match=r"data\.csv: task 'topic': label 'weather' is declared in "
                                           r"labels but has no article in train \+ validation"):
        preprocess(config)
    assert sorted(p.name for p in config.processed_dir.iterdir()) == [".preprocess.lock"]


def test_a_missing_column_and_a_missing_file_are_one_line(tmp_path):
    write(corpus(), tmp_path / "data.csv")
    config = experiment(tmp_path, "data.csv", extra=", id_column: ident")
    with pytest.raises(NewstagError, match="missing column.*ident"):
        preprocess(config)
    with pytest.raises(NewstagError, match="nothere.csv: file not found"):
        preprocess(experiment(tmp_path, "nothere.csv"))


def test_streaming_refuses_what_it_cannot_train(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data: {path: d.csv}\ntasks: {topic: {streaming: true, classifier: logreg}}\n")
    with pytest.raises(NewstagError, match="tasks.topic.classifier' is 'logreg', but a streaming task"):
        load_config(path)
    path.write_text("data: {path: d.csv}\ntasks: {topic: {streaming: true, negation: true}}\n")
    with pytest.raises(NewstagError, match="tasks.topic.negation' is set, but a streaming task"):
        load_config(path)


def test_hashed_columns_are_named_from_the_term_sample():
    from sklearn.feature_extraction.text import HashingVectorizer

    from newstag.models.streaming import HashedFeatures, term_column

    hasher = HashingVectorizer(n_features=2**18, ngram_range=(1, 2), alternate_sign=False, norm=None)
    for term in ("shares", "record profits", "clinic"):
        assert term_column(term, 2**18) in hasher.transform([term]).indices
    vect = HashedFeatures(n_features=2**18, max_terms=3).fit(["shares rose", "shares fell", "shares"])
    assert vect.feature_name(term_column("shares", 2**18)) == "shares"
    assert vect.feature_name(5).startswith("#")
    assert vect.transform(["shares rose"]).shape == (1, 2**18)


def test_streaming_training_saves_an_ordinary_bundle(tmp_path):
    from newstag.explain import explain_texts
    from newstag.models.bundle import load_bundle
    from newstag.train import train

    write(corpus(), tmp_path / "data.csv")
    config = experiment(tmp_path, "data.csv")
    preprocess(config)
    sidecar = train(config, tracking=False)
    info = sidecar["tasks"]["topic"]
    assert info["model"]["streaming"] and info["validation"]["f1_macro"] > 0.9
    assert info["calibration"]["method"] in ("sigmoid", "isotonic", "temperature", "none")
    pipeline = load_bundle("models/exp/model.joblib")["pipelines"]["topic"]
    assert list(pipeline.named_steps) == ["vect", "clf"]
    assert pipeline.predict(["the striker scored a goal in the league match"])[0] == "sport"
    assert np.allclose(pipeline.predict_proba(["shares and profit at the bank"]).sum(), 1)
    terms = explain_texts(pipeline, ["shares and profit at the bank"])[0]
    assert {term for term, _ in terms} & {"shares", "profit", "bank"}


def test_streaming_training_logs_a_metric_per_epoch(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from newstag.train import train

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    write(corpus(), tmp_path / "data.csv")
    config = experiment(tmp_path, "data.csv")
    preprocess(config)
    run_id = train(config)["mlflow"]["run_id"]
    history = MlflowClient(uri).get_metric_history(run_id, "epoch/topic/f1_macro")
    assert sorted(metric.step for metric in history) == [1, 2, 3]
    assert MlflowClient(uri).get_metric_history(run_id, "epoch/topic/mb_per_second")


def test_deduplicate_false_keeps_twins_but_in_one_split(tmp_path):
    frame = corpus(300)
    write(pd.concat([frame, frame.iloc[:50]]), tmp_path / "data.csv")
    manifest = preprocess(experiment(tmp_path, "data.csv", extra=", deduplicate: false"))
    assert manifest["duplicates_removed"] == 0
    assert sum(v["rows"] for v in manifest["splits"].values()) == 350
    texts = split_texts(load_config(tmp_path / "exp.yaml"))
    assert not set(texts["test"]) & set(texts["train"])
