"""evaluate's chunked tally gives the numbers the whole test split at once gives."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import classification_report

from newstag.config import TaskConfig
from newstag.explain import TermShares, top_terms
from newstag.models.calibrate import (
    ScoreSums,
    _log_loss,
    base_scores,
    brier_score,
    calibrated,
    class_scores,
    coverage_accuracy,
    coverage_curve,
    expected_calibration_error,
    reliability_table,
    top_label,
)
from newstag.models.pipelines import build_pipeline
from newstag.models.tally import CONFIDENT_MISTAKES, MISCLASSIFIED_SAMPLE, TaskTally
from tests.code.test_report import toy_corpus


@pytest.fixture(scope="module")
def fitted():
    """A calibrated linear SVM on the toy corpus's first 60 rows; the other 60 are its test."""
    corpus = toy_corpus()
    train, test = corpus.iloc[:60], corpus.iloc[60:].reset_index(drop=True)
    task = TaskConfig(name="label", column="label", classifier="linear_svm")
    pipeline = calibrated(build_pipeline(task, seed=0), "sigmoid", 3)
    pipeline.fit(train["text"].tolist(), train["label"].tolist())
    return pipeline, test


def tallied(pipeline, test: pd.DataFrame, chunk: int, thresholds=()) -> TaskTally:
    tally = TaskTally("label", pipeline, thresholds, TermShares(pipeline, 5), mistakes=4)
    for start in range(0, len(test), chunk):
        tally.add(test.iloc[start:start + chunk])
    return tally


def test_chunks_give_the_whole_split_numbers(fitted):
    pipeline, test = fitted
    texts, y_true = test["text"].tolist(), test["label"].tolist()
    y_pred = pipeline.predict(texts)
    proba, base = class_scores(pipeline, texts), base_scores(pipeline, texts)
    classes = list(pipeline.classes_)
    tally = tallied(pipeline, test, chunk=7, thresholds=[0.6])

    labels = sorted(set(classes) | set(y_true))
    whole = classification_report(y_true, y_pred, labels=labels, output_dict=True, zero_division=0)
    mine = tally.classification()
    assert mine.keys() == whole.keys()
    for key, values in whole.items():
        assert mine[key] == pytest.approx(values), key
    assert tally.rows == len(test)
    for name, scores in (("calibrated", proba), ("uncalibrated", base)):
        metrics = tally.scores[name].metrics()
        assert metrics["log_loss"] == pytest.approx(_log_loss(y_true, scores, classes))
        assert metrics["brier"] == pytest.approx(brier_score(y_true, classes, scores))
        assert metrics["ece"] == pytest.approx(expected_calibration_error(y_true, classes, scores))
        for mine, theirs in zip(tally.scores[name].reliability(), reliability_table(y_true, classes, scores),
                                strict=True):
            assert mine == pytest.approx(theirs)
    confidence, correct = top_label(y_true, classes, proba)
    exact = coverage_accuracy(confidence, correct, 0.6)
    assert tally.scores["calibrated"].answered(0.6) == pytest.approx(exact)
    assert top_terms(pipeline, 5, texts, y_true) == tally.shares.report()


def test_mistakes_and_misclassified_are_those_of_the_whole_split(fitted):
    pipeline, test = fitted
    texts, y_true = test["text"].tolist(), test["label"].tolist()
    proba = class_scores(pipeline, texts)
    best = proba.argmax(axis=1)
    confidence = proba[np.arange(len(best)), best]
    wrong = [i for i in np.argsort(-confidence, kind="stable") if pipeline.classes_[best[i]] != y_true[i]]
    tally = tallied(pipeline, test, chunk=5)
    assert [row["id"] for row in tally.most_confident_mistakes()] == [test["id"][i] for i in wrong[:4]]
    predicted = pipeline.predict(texts)
    first = [test["id"][i] for i in range(len(test)) if predicted[i] != y_true[i]][:MISCLASSIFIED_SAMPLE]
    assert [row["id"] for row in tally.misclassified] == first
    assert wrong, "the toy test split has mistakes to keep"


def test_coverage_curve_at_0_001_resolution_follows_the_exact_curve():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.5, 1, 5000)  # column a wins every row
    correct = rng.uniform(size=5000) < confidence
    classes = ["a", "b"]
    proba = np.column_stack([confidence, 1 - confidence])
    y_true = np.where(correct, "a", "b")
    sums = ScoreSums().add(y_true, classes, proba)
    coverage, accuracy = sums.curve()
    exact_coverage, exact_accuracy = coverage_curve(confidence, correct)
    assert coverage[-1] == 1 and accuracy[-1] == pytest.approx(correct.mean())
    # each binned point is on the exact curve at the same coverage
    at = np.searchsorted(exact_coverage, coverage - 1e-12)
    assert np.abs(exact_accuracy[at] - accuracy).max() < 1e-9
    assert len(coverage) <= 1000


def test_evaluate_and_promote_read_a_split_of_many_chunks_as_one(tmp_path, monkeypatch):
    """The toy project evaluated on its test split as one chunk, then again with the split
    rewritten as row groups of 7 articles read one at a time: the same files, the same figures;
    promotion's predictions likewise."""
    import json

    import pyarrow.parquet as pq

    import newstag.data.splits as splits
    import newstag.evaluate as evaluate_module
    from newstag.cli import main
    from newstag.config import load_config
    from newstag.data.files import sha256_file
    from newstag.models.bundle import load_bundle
    from newstag.registry import task_predictions
    from tests.code.test_report import toy_project

    monkeypatch.chdir(tmp_path)
    experiment = toy_project(tmp_path)
    config = load_config(experiment)
    assert main(["train", "--no-tracking", str(experiment)]) == 0
    bundle = load_bundle(next(tmp_path.glob("models/toy/model.*")))

    def scored() -> tuple[dict, dict]:
        assert main(["evaluate", "--no-tracking", str(experiment)]) == 0
        out = tmp_path / "reports/toy"
        files = {name: (out / name).read_text() for name in ("mistakes.json", "top_terms.json",
                                                               "misclassified.jsonl")}
        metrics = json.loads((out / "metrics.json").read_text())
        return metrics, files, task_predictions(config, {"m": bundle})

    whole = scored()
    test = tmp_path / "data/processed/toy/test.parquet"
    pq.write_table(pq.read_table(test), test, row_group_size=7)
    manifest = tmp_path / "data/processed/toy/manifest.json"
    data = json.loads(manifest.read_text())
    data["splits"]["test"]["sha256"] = sha256_file(test)
    manifest.write_text(json.dumps(data))
    assert main(["train", "--no-tracking", str(experiment)]) == 0  # the same rows: the same model,
    bundle = load_bundle(next(tmp_path.glob("models/toy/model.*")))  # now of the rewritten file
    monkeypatch.setattr(evaluate_module, "CHUNK_ROWS", 7)
    monkeypatch.setattr(splits, "CHUNK_ROWS", 7)
    assert pq.ParquetFile(test).num_row_groups > 2
    chunked = scored()
    assert_close(chunked[0], whole[0])
    assert chunked[1] == whole[1]
    for task, (_, _, truth, predicted) in whole[2]["m"].items():
        assert chunked[2]["m"][task][2:] == (truth, predicted)


def assert_close(mine, theirs, where: str = "") -> None:
    """Equal, floats to 1e-9, however nested."""
    if isinstance(theirs, dict):
        assert mine.keys() == theirs.keys(), where
        for key in theirs:
            assert_close(mine[key], theirs[key], f"{where}/{key}")
    elif isinstance(theirs, list):
        assert len(mine) == len(theirs), where
        for n, (a, b) in enumerate(zip(mine, theirs, strict=True)):
            assert_close(a, b, f"{where}[{n}]")
    elif isinstance(theirs, float):
        assert mine == pytest.approx(theirs, abs=1e-9), where
    else:
        assert mine == theirs, where


def test_multi_label_chunks_give_the_whole_split_numbers(tmp_path):
    """LabelSetTally over chunks of 7 gives multilabel_scores and per-label P/R/F1 of the whole
    split, with a label never predicted and one no test article has (F1 0, as scikit-learn)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics import precision_recall_fscore_support
    from sklearn.pipeline import Pipeline
    from sklearn.svm import LinearSVC

    from newstag.models.multilabel import MultiLabelLinear, multilabel_scores
    from newstag.models.tally import LabelSetTally

    corpus = toy_corpus()
    labels = [[label] + (["tone:" + tone] if i % 3 == 0 else []) for i, (label, tone)
              in enumerate(zip(corpus["label"], corpus["tone"], strict=True))]
    corpus["labels"] = labels
    names = sorted({label for row in labels for label in row}) + ["never"]
    train, test = corpus.iloc[:60], corpus.iloc[60:].reset_index(drop=True)
    pipeline = Pipeline([("vect", TfidfVectorizer()),
                         ("clf", MultiLabelLinear(LinearSVC(), labels=tuple(names),
                                                  thresholds=(-0.3,) * (len(names) - 1) + (1.0,)))])
    pipeline.fit(train["text"].tolist(), train["labels"].tolist())
    tally = LabelSetTally("labels", pipeline, TermShares(pipeline, 5))
    for start in range(0, len(test), 7):
        tally.add(test.iloc[start:start + 7])

    clf = pipeline.named_steps["clf"]
    truth, predicted = clf.binarize(test["labels"].tolist()), pipeline.predict(test["text"].tolist())
    assert 0 < (truth != predicted).any(axis=1).sum() < len(test)  # some right, some wrong
    assert tally.scores() == pytest.approx(multilabel_scores(truth, predicted))
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, zero_division=0)
    per_label = tally.per_label()
    assert list(per_label) == names and per_label["never"]["support"] == 0
    for i, name in enumerate(names):
        assert [per_label[name][key] for key in ("precision", "recall", "f1-score", "support")] == \
            pytest.approx([precision[i], recall[i], f1[i], support[i]]), name
    wrong = np.flatnonzero((truth != predicted).any(axis=1))[:MISCLASSIFIED_SAMPLE]
    assert [row["id"] for row in tally.misclassified] == test["id"].iloc[wrong].tolist()
    proba = clf.predict_proba(pipeline.named_steps["vect"].transform(test["text"].tolist()))
    wrong_given = np.where((predicted == 1) & (truth == 0), proba, -1.0)  # labels given wrongly
    ranked = sorted(np.flatnonzero(wrong_given.max(axis=1) >= 0), key=lambda i: (-wrong_given[i].max(), i))
    expected = [(test["id"].iloc[i], names[wrong_given[i].argmax()]) for i in ranked[:CONFIDENT_MISTAKES]]
    assert [(m["id"], m["label"]) for m in tally.most_confident_mistakes()] == expected and expected
    result = tally.result(tmp_path)
    assert result["rows"] == len(test) and (tmp_path / "label_f1_labels.png").stat().st_size > 0


def test_a_test_label_the_model_never_learnt_counts_as_missed():
    """Articles carrying a label no training article had are misses of that label, scored as
    scikit-learn scores the whole label set; before, the label vanished from the scores."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import MultiLabelBinarizer
    from sklearn.svm import LinearSVC

    from newstag.models.multilabel import MultiLabelLinear, multilabel_scores
    from newstag.models.tally import LabelSetTally

    corpus = toy_corpus()
    corpus["labels"] = [[label] for label in corpus["label"]]
    train, test = corpus.iloc[:60], corpus.iloc[60:].reset_index(drop=True)
    test["labels"] = [row + (["late"] if i % 4 == 0 else []) for i, row in enumerate(test["labels"])]
    names = sorted(set(train["label"]))
    pipeline = Pipeline([("vect", TfidfVectorizer()), ("clf", MultiLabelLinear(LinearSVC(), tuple(names)))])
    pipeline.fit(train["text"].tolist(), train["labels"].tolist())
    tally = LabelSetTally("labels", pipeline)
    for start in range(0, len(test), 7):
        tally.add(test.iloc[start:start + 7])

    binarizer = MultiLabelBinarizer(classes=names + ["late"])
    truth = binarizer.fit_transform(test["labels"])
    predicted = np.pad(pipeline.predict(test["text"].tolist()), ((0, 0), (0, 1)))
    assert tally.scores() == pytest.approx(multilabel_scores(truth, predicted))
    assert tally.per_label()["late"] == {"precision": 0.0, "recall": 0.0, "f1-score": 0.0,
                                         "support": int(truth[:, -1].sum())}
