"""`newstag review`'s rows and refusals, on hand-made probabilities: fast, no model fitted."""

import numpy as np
import pytest

from newstag import review
from newstag.config import TaskConfig
from newstag.errors import NewstagError

NAMES = ["alt.atheism", "sci.space", "soc.religion.christian"]


def multi_label_rows(monkeypatch, given, proba, flags) -> list[dict]:
    """review_label_sets' rows for these articles, with the out-of-fold scores and flags given."""
    truth = np.array([[name in row for name in NAMES] for row in given])
    monkeypatch.setattr(review, "out_of_fold_label_scores",
                        lambda task, texts, labels, seed: (NAMES, truth, np.asarray(proba)))
    monkeypatch.setattr(review, "find_label_set_issues", lambda truth, proba: (np.asarray(flags), "rule"))
    task = TaskConfig(name="topics", column="topics", multi_label=True)
    frames = [{"topics": given}]
    rows, _ = review.review_label_sets(task, [f"p{i}" for i in range(len(given))],
                                       [f"post {i}" for i in range(len(given))], frames, 0, 10)
    return rows


def test_a_suggestion_keeps_at_least_one_label(monkeypatch):
    """Its only label doubtful and none missing: the most probable label out of fold, not []."""
    given = [["alt.atheism"], ["alt.atheism"], ["sci.space"]]
    proba = [[0.2, 0.1, 0.45],  # another label is likelier, though not flagged as missing
             [0.3, 0.1, 0.2],  # no label is likelier: the doubtful one stays
             [0.1, 0.35, 0.9]]  # a missing label flagged: the plain switch
    flags = [[True, False, False], [True, False, False], [False, False, True]]
    rows = {row["id"]: row for row in multi_label_rows(monkeypatch, given, proba, flags)}
    assert rows["p0"]["suggested"] == ["soc.religion.christian"]
    assert rows["p1"]["suggested"] == ["alt.atheism"]
    assert rows["p2"]["suggested"] == ["sci.space", "soc.religion.christian"]


def test_a_multi_label_row_says_which_label_each_probability_is_of(monkeypatch):
    """No label_probability beside a list of labels (it was 1 - p of some flagged label)."""
    given = [["alt.atheism", "sci.space"]]
    rows = multi_label_rows(monkeypatch, given, [[0.15, 0.8, 0.7]], [[True, False, True]])
    assert set(rows[0]) == {"task", "id", "label", "suggested", "confidence", "doubtful", "missing",
                            "text"}
    assert rows[0]["doubtful"] == {"alt.atheism": 0.15} and rows[0]["missing"] == {
        "soc.religion.christian": 0.7}
    assert rows[0]["confidence"] == 0.85  # the surest change: alt.atheism out, at 1 - 0.15


def test_a_label_with_one_article_says_what_to_do():
    task = TaskConfig(name="topic", column="topic")
    labels = ["sport"] * 5 + ["business"] * 5 + ["science"]
    with pytest.raises(NewstagError, match=r"^task 'topic': label 'science' has only 1 article in train "
                                           r"\+ validation; review needs at least 2 per label: add "
                                           r"articles for it or drop it$"):
        review.out_of_fold_scores(task, [f"text {i}" for i in range(len(labels))], labels, 0)
