"""Calibrated scores, their metrics, and abstention: on toy data, in seconds."""

import io

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import CalibratedClassifierCV

from newstag.config import TaskConfig, load_config
from newstag.data.records import Record
from newstag.errors import NewstagError
from newstag.evaluate import parse_target_precision, pick_threshold, task_targets
from newstag.explain import top_terms
from newstag.models.bundle import load_bundle, save_bundle
from newstag.models.calibrate import (
    base_classifier,
    brier_score,
    calibrated,
    confidence_table,
    expected_calibration_error,
    reliability_table,
    softmax_margins,
    threshold_for_precision,
    top_label_map,
)
from newstag.models.pipelines import CLASSIFIER_NAMES, build_pipeline
from newstag.predict import predict_records, write_table
from newstag.train import fit_task

from ..conftest import SAMPLE

TEXTS = ["goal scored in the final", "the striker scored twice", "the keeper saved a penalty",
         "shares fell on the market", "the market rallied as shares rose", "profits beat forecasts",
         "parliament passed the bill", "the minister resigned today", "voters went to the polls"] * 2
LABELS = ["sport"] * 3 + ["business"] * 3 + ["politics"] * 3
LABELS = LABELS * 2


@pytest.mark.parametrize("method", ["sigmoid", "top-label"])
@pytest.mark.parametrize("classifier", CLASSIFIER_NAMES)
def test_every_classifier_calibrates_and_saves_in_both_formats(tmp_path, classifier, method):
    task = TaskConfig(name="topic", column="topic", classifier=classifier)
    pipeline = calibrated(build_pipeline(task, seed=0), method, 2).fit(TEXTS, LABELS)
    assert list(pipeline.named_steps) == ["vect", "clf"]
    assert isinstance(pipeline.named_steps["clf"], CalibratedClassifierCV)
    assert len(pipeline.named_steps["clf"].calibrated_classifiers_) == 1  # ensemble=False
    assert base_classifier(pipeline) is pipeline.named_steps["clf"].calibrated_classifiers_[0].estimator
    assert set(top_terms(pipeline, count=2)) == {"sport", "business", "politics"}
    for fmt in ("joblib", "skops"):
        path = tmp_path / f"model.{fmt}"
        save_bundle(path, {"topic": pipeline}, {"experiment": "x"})
        loaded = load_bundle(path)["pipelines"]["topic"]
        proba = loaded.predict_proba(["the striker scored", "shares rose"])
        np.testing.assert_allclose(proba.sum(axis=1), 1.0)
        np.testing.assert_allclose(proba, pipeline.predict_proba(["the striker scored", "shares rose"]))


def test_ece_on_a_hand_example():
    # Two bins are used (15 bins: 0.9 falls in (0.8667, 0.9333], 0.6 in (0.5333, 0.6]).
    # Bin of 0.9: 2 articles, 1 right -> |0.5 - 0.9| = 0.4; bin of 0.6: 2 articles, 2 right -> 0.4.
    classes = ["a", "b"]
    proba = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    y_true = ["a", "b", "a", "b"]
    assert expected_calibration_error(y_true, classes, proba) == pytest.approx(0.4)
    table = reliability_table(y_true, classes, proba)
    assert [row["count"] for row in table if row["count"]] == [2, 2]
    assert table[0] == {"low": 0.0, "high": 1 / 15, "count": 0, "confidence": None, "accuracy": None}
    # Confidence 1.0 belongs to the last bin, not past it; a perfect model has ECE 0.
    assert expected_calibration_error(["a", "b"], classes, np.array([[1.0, 0], [0, 1.0]])) == 0


def test_brier_is_the_multiclass_sum_over_classes():
    proba = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3]])
    expected = ((0.3 ** 2 + 0.2 ** 2 + 0.1 ** 2) + (0.2 ** 2 + 0.5 ** 2 + 0.7 ** 2)) / 2
    assert brier_score(["a", "c"], ["a", "b", "c"], proba) == pytest.approx(expected)


def test_fit_task_chooses_a_method_on_validation_and_records_it():
    task = TaskConfig(name="topic", column="topic", classifier="linear_svm")
    import pandas as pd

    train = pd.DataFrame({"text": TEXTS, "topic": LABELS})
    validation = pd.DataFrame({"text": TEXTS[:9], "topic": LABELS[:9]})
    result = fit_task(task, train, validation, seed=0)
    assert result.calibration["method"] in ("sigmoid", "isotonic")
    assert set(result.calibration["validation_log_loss"]) == {"sigmoid", "isotonic", "temperature",
                                                              "top-label"}
    assert sum(row[1] for row in result.calibration["validation_confidence"]) == 9
    assert isinstance(result.pipeline.named_steps["clf"], CalibratedClassifierCV)
    opted_out = fit_task(TaskConfig(name="topic", column="topic", classifier="linear_svm",
                                    calibration="none"), train, validation, seed=0)
    assert opted_out.calibration == {"method": "none"}
    assert not hasattr(opted_out.pipeline, "predict_proba")


def test_a_model_with_probabilities_competes_uncalibrated():
    """Logistic regression's own probabilities are a candidate ("none"); a margin model's
    softmax is not, since that is what calibration is there to fix."""
    import pandas as pd

    train = pd.DataFrame({"text": TEXTS, "topic": LABELS})
    validation = pd.DataFrame({"text": TEXTS[:9], "topic": LABELS[:9]})
    logreg = fit_task(TaskConfig(name="topic", column="topic", classifier="logreg"), train,
                      validation, seed=0)
    assert set(logreg.calibration["validation_log_loss"]) == {"sigmoid", "isotonic", "temperature",
                                                              "top-label", "none"}
    svm = fit_task(TaskConfig(name="topic", column="topic", classifier="linear_svm"), train,
                   validation, seed=0)
    assert set(svm.calibration["validation_log_loss"]) == {"sigmoid", "isotonic", "temperature", "top-label"}


def test_classifier_auto_is_calibrated_without_changing_a_decision():
    """auto was chosen by comparing its decisions with the baseline's; its calibration may only
    rescale them (temperature, or none), so every calibrated top label is the base model's."""
    import pandas as pd

    from newstag.models.calibrate import KEEPING

    rows = pd.read_json(SAMPLE, lines=True)
    train, validation = rows.iloc[::2], rows.iloc[1::2]
    for name in ("topic", "tone"):
        result = fit_task(TaskConfig(name=name, column=name, classifier="auto"), train, validation, seed=0)
        assert set(result.calibration["validation_log_loss"]) <= set(KEEPING)
        texts = rows["text"].tolist()
        base = base_classifier(result.pipeline)
        codes = base.predict(result.pipeline.named_steps["vect"].transform(texts))  # label codes
        assert result.pipeline.predict(texts).tolist() == result.pipeline.classes_[codes].tolist()


def test_lowest_threshold_reaching_the_target():
    # [bin (0.001 steps), articles, correct]: 0.95+ all right, 0.80 half right, 0.60 all wrong.
    table = [[950, 4, 4], [800, 4, 2], [600, 2, 0]]
    assert threshold_for_precision(table, 1.0)["threshold"] == 0.95
    chosen = threshold_for_precision(table, 0.75)
    assert chosen == {"threshold": 0.8, "validation_precision": 0.75, "validation_coverage": 0.8}
    everything = threshold_for_precision(table, 0.6)  # every validation article: nothing held back
    assert everything == {"threshold": 0.001, "validation_precision": 0.6, "validation_coverage": 1.0}
    with pytest.raises(NewstagError, match="not reachable.*best reachable is 1.0000"):
        threshold_for_precision([[900, 1, 0], [950, 1, 1]], 1.01)
    with pytest.raises(NewstagError, match="best reachable is 0.5000"):
        threshold_for_precision([[900, 2, 1]], 0.9)


def test_threshold_is_picked_from_the_validation_confidences_in_the_bundle():
    proba = np.array([[0.99, 0.01], [0.7, 0.3], [0.7, 0.3], [0.55, 0.45]])
    table = confidence_table(["a", "a", "b", "b"], ["a", "b"], proba)
    metadata = {"tasks": {"topic": {"calibration": {"validation_confidence": table}}}}
    assert pick_threshold("topic", metadata, 0.99)["threshold"] == 0.99
    with pytest.raises(NewstagError, match="task 'topic': target precision 1.01 .* best reachable is 1.0000"):
        pick_threshold("topic", metadata, 1.01)
    with pytest.raises(NewstagError, match="no validation confidences.*retrain"):
        pick_threshold("topic", {"tasks": {"topic": {}}}, 0.9)


@pytest.mark.parametrize("text", ["1.5", "0", "x", "topic=", "topic=2"])
def test_bad_target_precision_is_one_line(text):
    with pytest.raises(NewstagError, match="--target-precision: .* is not a precision in"):
        parse_target_precision(text)


def test_target_precision_per_task_and_for_all():
    assert parse_target_precision("0.9") == {"*": 0.9}
    assert task_targets({"*": 0.9, "tone": 0.8}, ["topic", "tone"]) == {"topic": 0.9, "tone": 0.8}
    with pytest.raises(NewstagError, match=r"names task\(s\) genre .*\(it has: topic\)"):
        task_targets({"genre": 0.9}, ["topic"])
    assert task_targets({"*": 0.9}, ["topic", "labels"], multi_label=["labels"]) == {"topic": 0.9}
    with pytest.raises(NewstagError, match=r"task\(s\) labels are multi-label; each of their labels"):
        task_targets({"labels": 0.9}, ["topic", "labels"], multi_label=["labels"])
    with pytest.raises(NewstagError, match=r"no single-label task"):
        task_targets({"*": 0.9}, ["labels"], multi_label=["labels"])


def _bundle(min_confidence):
    task = TaskConfig(name="topic", column="topic", classifier="logreg")
    pipeline = calibrated(build_pipeline(task, seed=0), "sigmoid", 2).fit(TEXTS, LABELS)
    return {"pipelines": {"topic": pipeline},
            "metadata": {"tasks": {"topic": {"min_confidence": min_confidence}}}}


def test_below_min_confidence_the_answer_is_uncertain():
    records = [Record(id=1, text="the striker scored a goal in the final")]
    confident = next(predict_records(_bundle(None), records))
    assert confident["topic"] == "sport" and "topic_candidate" not in confident
    records = [Record(id=1, text="the striker scored a goal in the final")]
    row = next(predict_records(_bundle(0.99), records))
    assert row == {"id": 1, "topic": "uncertain", "topic_score": confident["topic_score"],
                   "topic_candidate": "sport", "topic_candidate_score": confident["topic_score"]}
    out = io.StringIO()
    write_table([row], ["topic"], out)
    assert f"uncertain (best: sport {row['topic_score']:.2f})" in out.getvalue()


def test_a_probability_equal_to_min_confidence_is_answered():
    """Uncertain only when the probability is lower than min_confidence, as documented."""
    text = "the striker scored a goal in the final"
    exact = float(_bundle(None)["pipelines"]["topic"].predict_proba([text]).max())
    at = next(predict_records(_bundle(exact), [Record(id=1, text=text)]))
    above = next(predict_records(_bundle(float(np.nextafter(exact, 1))), [Record(id=1, text=text)]))
    assert at["topic"] == "sport" and above["topic"] == "uncertain"


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.2"])
def test_min_confidence_outside_0_1_is_one_line(tmp_path, value):
    path = tmp_path / "exp.yaml"
    path.write_text(f"data: {{path: x.csv}}\ntasks:\n  topic: {{min_confidence: {value}}}\n")
    expected = r"'tasks.topic.min_confidence' should be (greater|less) than"
    with pytest.raises(NewstagError, match=expected) as err:
        load_config(path)
    assert "\n" not in str(err.value)


def test_unknown_calibration_lists_the_choices(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("data: {path: x.csv}\ntasks:\n  topic: {calibration: platt}\n")
    with pytest.raises(NewstagError, match="'tasks.topic.calibration' is 'platt'; choose one of: auto, "
                                           "sigmoid, isotonic, temperature, top-label, none"):
        load_config(path)


def test_temperature_scaling_keeps_the_classifiers_own_top_label():
    """One temperature divides every margin: probabilities change, the argmax does not."""
    task = TaskConfig(name="topic", column="topic", classifier="linear_svm")
    pipeline = calibrated(build_pipeline(task, seed=0), "temperature", 2).fit(TEXTS, LABELS)
    base = pipeline.named_steps["clf"].calibrated_classifiers_[0].estimator
    margins = base.decision_function(pipeline.named_steps["vect"].transform(TEXTS))
    assert pipeline.predict(TEXTS).tolist() == pipeline.classes_[margins.argmax(axis=1)].tolist()
    proba = pipeline.predict_proba(TEXTS)
    assert np.allclose(proba.sum(axis=1), 1) and not np.allclose(proba, softmax_margins(margins))
    assert set(top_terms(pipeline)) == set(LABELS)  # its base model is fitted on label codes


def test_top_label_map_on_a_hand_example():
    """The winner's probability goes through the map; the others keep their proportions; a map
    that would push the winner under the runner-up is stopped just above it."""
    x, y = np.array([0.5, 0.9]), np.array([0.6, 0.8])  # 0.7 -> 0.7, 0.5 -> 0.6, >= 0.9 -> 0.8
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.5, 0.4], [0.0, 0.0, 1.0]])
    mapped = top_label_map(proba, x, y)
    np.testing.assert_allclose(mapped[0], [0.7, 0.2, 0.1])
    np.testing.assert_allclose(mapped[1], [0.1 * 0.8, 0.6, 0.4 * 0.8])
    np.testing.assert_allclose(mapped[2], [0.1, 0.1, 0.8])  # nothing to share by: equal shares
    low = top_label_map(np.array([[0.45, 0.44, 0.11]]), np.array([0.0, 1.0]), np.array([0.34, 0.34]))
    assert low.argmax() == 0 and low[0, 0] > low[0, 1] == pytest.approx(low[0, 0], rel=1e-6)
    np.testing.assert_allclose(low.sum(), 1.0)
    tiny = top_label_map(np.array([[1.0, 1e-310, 3e-310]]), x, y)  # (1 - top) / rest would overflow
    assert np.all(np.isfinite(tiny)) and tiny[0, 0] == pytest.approx(0.8)
    np.testing.assert_allclose(tiny[0, 1:], [0.05, 0.15])


def test_top_label_calibration_keeps_decisions_and_is_fitted_on_held_out_articles():
    """Top-label: temperature, then an isotonic map learnt from the base model's cross-validated
    predictions. Decisions are the base model's; rows sum to 1."""
    from newstag.models.toplabel import TopLabelCalibratedClassifierCV

    rows = pd.read_json(SAMPLE, lines=True)
    texts, labels = rows["text"].tolist(), rows["topic"].tolist()
    task = TaskConfig(name="topic", column="topic", classifier="linear_svm")
    pipeline = calibrated(build_pipeline(task, seed=0), "top-label", 3).fit(texts, labels)
    clf = pipeline.named_steps["clf"]
    assert isinstance(clf, TopLabelCalibratedClassifierCV) and clf.method == "temperature"
    base = base_classifier(pipeline)
    codes = base.decision_function(pipeline.named_steps["vect"].transform(texts)).argmax(axis=1)
    assert pipeline.predict(texts).tolist() == pipeline.classes_[codes].tolist()
    proba = pipeline.predict_proba(texts)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    # in-sample, the base model is nearly always right; the map was learnt on held-out folds,
    # where it was not, so it holds the training articles' confidence below temperature's
    temperature = calibrated(build_pipeline(task, seed=0), "temperature", 3).fit(texts, labels)
    assert proba.max(axis=1).mean() < temperature.predict_proba(texts).max(axis=1).mean()
    assert np.all(np.diff(clf.top_label_y_) >= 0) and clf.top_label_y_.max() < 1
