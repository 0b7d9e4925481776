"""`classifier: auto`: the incumbent rule, and the shared tokenisation behind its inner folds."""

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from newstag.config import TaskConfig
from newstag.errors import NewstagError
from newstag.models.auto import (
    MEMBERS,
    choose,
    incumbent_rule,
    member_task,
    paired_standard_error,
    score_fold,
)
from newstag.models.pipelines import build_pipeline

from .conftest import TEXTS

TASK = TaskConfig(name="topic", column="topic")


def scores(**by_member):
    table = {member.name: {"accuracy": 0.70, "f1_macro": 0.60} for member in MEMBERS}
    table["baseline"] = {"accuracy": 0.80, "f1_macro": 0.70}
    for name, (accuracy, f1) in by_member.items():
        table[name.replace("_", "-")] = {"accuracy": accuracy, "f1_macro": f1}
    return table


def test_the_baseline_stays_unless_a_challenger_wins_on_both_metrics():
    assert incumbent_rule(scores(sublinear_svm=(0.85, 0.69))).name == "baseline"  # better acc only
    assert incumbent_rule(scores(sublinear_cnb=(0.79, 0.90))).name == "baseline"  # better F1 only
    assert incumbent_rule(scores(sublinear_cnb=(0.80, 0.70))).name == "sublinear-cnb"  # ties count
    chosen = incumbent_rule(scores(sublinear_svm=(0.81, 0.71), bigram_sgd=(0.84, 0.72)))
    assert chosen.name == "bigram-sgd"  # the best accuracy + macro-F1 among the eligible


def test_a_gain_under_two_standard_errors_is_noise_and_keeps_the_baseline():
    table = scores(sublinear_svm=(0.81, 0.71))
    table["sublinear-svm"]["gain_se"] = 0.02  # a 0.01 gain with a 0.02 standard error
    assert incumbent_rule(table).name == "baseline"
    table["sublinear-svm"]["gain_se"] = 0.007  # 1.4 standard errors: Breiman's rule would switch
    assert incumbent_rule(table).name == "baseline"
    table["sublinear-svm"]["gain_se"] = 0.004  # 2.5 standard errors
    assert incumbent_rule(table).name == "sublinear-svm"


def test_the_paired_standard_error_counts_only_the_articles_the_two_disagree_on():
    baseline = np.array([True] * 90 + [False] * 10)
    same = baseline.copy()
    assert paired_standard_error(same, baseline) == 0.0
    better = baseline.copy()
    better[90:95] = True  # right on 5 more, wrong on none: gain 0.05
    expected = np.std(better.astype(float) - baseline, ddof=1) / 10
    assert paired_standard_error(better, baseline) == pytest.approx(expected)
    assert 0.02 < expected < 0.05


def test_the_baseline_member_is_the_plain_scikit_learn_baseline():
    pipeline = build_pipeline(member_task(TASK, MEMBERS[0]), seed=0)
    vect, clf = pipeline.named_steps["vect"], pipeline.named_steps["clf"]
    default = TfidfVectorizer()
    for key in ("ngram_range", "sublinear_tf", "min_df", "max_df", "lowercase", "token_pattern", "norm"):
        assert getattr(vect, key) == getattr(default, key), key
    assert type(clf).__name__ == "LinearSVC" and clf.C == 1.0


def test_shared_tokenisation_scores_as_each_members_own_pipeline():
    """Deriving every member's TF-IDF from one count matrix must equal fitting each pipeline."""
    texts = [f"{text} number {i} {'extra words' if i % 3 else ''}" for i, text in enumerate(TEXTS * 6)]
    y = np.array(["sport", "sport", "biz", "biz"] * 6, dtype=object)
    train, test = np.arange(0, 24, 2), np.arange(1, 24, 2)
    shared = score_fold(TASK, texts, y, train, test, seed=0)
    for member in MEMBERS:
        pipeline = build_pipeline(member_task(TASK, member), seed=0)
        pipeline.fit([texts[i] for i in train], y[train])
        own = np.mean(pipeline.predict([texts[i] for i in test]) == y[test])
        assert shared[member.name]["accuracy"] == pytest.approx(own), member.name


def test_members_fitted_in_threads_score_as_one_after_another(monkeypatch):
    from newstag.models import auto

    rng = np.random.default_rng(0)
    words = np.array(["goal", "match", "shares", "profit", "vote", "minister", "rain", "the", "a"])
    texts = [" ".join(rng.choice(words, size=12)) for _ in range(90)]
    y = np.array(["sport", "biz", "politics"] * 30, dtype=object)
    train, test = np.arange(0, 90, 3).tolist() + np.arange(1, 90, 3).tolist(), np.arange(2, 90, 3)
    monkeypatch.setattr(auto, "THREADS", 1)
    alone = score_fold(TASK, texts, y, np.array(train), test, seed=0)
    monkeypatch.setattr(auto, "THREADS", 4)
    threaded = score_fold(TASK, texts, y, np.array(train), test, seed=0)
    for member in MEMBERS:
        np.testing.assert_array_equal(alone[member.name].pop("correct"), threaded[member.name].pop("correct"))
    assert alone == threaded


def test_a_rare_label_keeps_the_baseline():
    texts, labels = TEXTS * 3 + ["one odd article"], ["sport", "sport", "biz", "biz"] * 3 + ["odd"]
    assert choose(TASK, texts, labels, seed=0).member.name == "baseline"


def test_an_unknown_param_for_every_member_is_one_line():
    from newstag.models.auto import check_params

    with pytest.raises(NewstagError, match=r"'tasks\.topic\.params\.clf__depth' is not a parameter"):
        check_params(TaskConfig(name="topic", column="topic", params={"clf__depth": 3}))
    check_params(TaskConfig(name="topic", column="topic", params={"clf__class_weight": "balanced"}))
