"""The wider zoo: ridge and NB-SVM fit, predict, explain themselves and survive a save and load."""

import numpy as np
import pytest
from scipy import sparse

from newstag.config import TaskConfig
from newstag.explain import top_terms
from newstag.models.bundle import SKOPS_TRUSTED, load_bundle, save_bundle
from newstag.models.pipelines import NBSVMClassifier, build_pipeline, log_count_ratio

TEXTS = ["goal scored in the final", "the striker scored twice", "shares fell on the market",
         "the market rallied as shares rose", "the minister called a vote", "parliament passed the vote"]
LABELS = ["sport", "sport", "business", "business", "politics", "politics"]


def test_log_count_ratio_matches_a_hand_computation():
    # three documents, two features: counts [[2, 0], [1, 1], [0, 3]]; the first two are positive
    X = sparse.csr_matrix([[2.0, 0.0], [1.0, 1.0], [0.0, 3.0]])
    positive = np.array([True, True, False])
    # alpha = 1: p = 1 + [3, 1] = [4, 2], |p| = 6; q = 1 + [0, 3] = [1, 4], |q| = 5
    expected = [np.log((4 / 6) / (1 / 5)), np.log((2 / 6) / (4 / 5))]
    assert log_count_ratio(X, positive, alpha=1.0) == pytest.approx(expected)


def test_nbsvm_keeps_one_ratio_row_per_class_one_vs_rest():
    X = sparse.csr_matrix([[2.0, 0.0], [1.0, 1.0], [0.0, 3.0], [0.0, 1.0]])
    y = np.array(["a", "a", "b", "c"])
    model = NBSVMClassifier(alpha=0.5).fit(X, y)
    assert model.ratios_.shape == (3, 2)
    assert model.ratios_[1] == pytest.approx(log_count_ratio(X, y == "b", 0.5))
    assert model.predict(X).tolist() == ["a", "a", "b", "c"]


def test_nbsvm_binary_uses_the_second_class_as_positive():
    X = sparse.csr_matrix([[2.0, 0.0], [1.0, 0.2], [0.0, 3.0], [0.1, 2.0]])
    y = np.array(["neg", "neg", "pos", "pos"])
    model = NBSVMClassifier().fit(X, y)
    assert model.ratios_.shape == (1, 2) and model.ratios_[0, 1] > 0 > model.ratios_[0, 0]
    assert model.decision_function(X).shape == (4,)
    assert model.predict(X).tolist() == y.tolist()


@pytest.mark.parametrize("classifier", ["ridge", "nbsvm"])
def test_new_classifiers_fit_predict_and_explain(classifier):
    task = TaskConfig(name="topic", column="topic", classifier=classifier,
                      params={"vect__ngram_range": [1, 1], "clf__class_weight": "balanced"})
    pipeline = build_pipeline(task, seed=0).fit(TEXTS, LABELS)
    assert pipeline.named_steps["clf"].class_weight == "balanced"
    assert pipeline.predict(["a late goal by the striker"]).tolist() == ["sport"]
    assert set(top_terms(pipeline, count=2)) == {"sport", "business", "politics"}


@pytest.mark.parametrize("fmt", ["joblib", "skops"])
def test_nbsvm_bundle_saves_and_loads(tmp_path, fmt):
    task = TaskConfig(name="topic", column="topic", classifier="nbsvm", features="word+char")
    pipeline = build_pipeline(task, seed=0).fit(TEXTS, LABELS)
    path = tmp_path / f"model.{fmt}"
    save_bundle(path, {"topic": pipeline}, {"experiment": "zoo"})
    assert NBSVM_TYPES <= SKOPS_TRUSTED  # the types NB-SVM adds to a bundle: skops must trust them
    loaded = load_bundle(path)["pipelines"]["topic"]
    assert loaded.predict(TEXTS).tolist() == pipeline.predict(TEXTS).tolist()
    assert np.allclose(loaded.decision_function(TEXTS), pipeline.decision_function(TEXTS))


NBSVM_TYPES = {"newstag.models.pipelines.NBSVMClassifier"}


def test_bench_checks_the_extra_only_for_the_methods_asked_for(monkeypatch):
    from newstag import bench
    from newstag.errors import NewstagError

    monkeypatch.setitem(__import__("sys").modules, "fasttext", None)  # as if not installed
    bench.require_bench_extras(["newstag", "newstag-auto", "baseline"])
    with pytest.raises(NewstagError, match="`fasttext` is not installed"):
        bench.require_bench_extras(["newstag", "fasttext"])
    with pytest.raises(NewstagError, match="unknown bench method forest"):
        bench.require_bench_extras(["forest"])
