"""The bench on a multi-label task: which methods run, and the figures its row holds."""

import pandas as pd
import pytest

from newstag.bench import Fold, markdown_table, methods_for, run_isolated, score
from newstag.config import TaskConfig
from newstag.preprocess import preprocess

from .test_multilabel import experiment, rows

TAGS = TaskConfig(name="tags", column="tags", multi_label=True)


def test_multi_label_tasks_get_newstag_and_the_one_vs_rest_baseline():
    assert methods_for({"a", "b"}, TAGS) == ["newstag", "baseline"]


def test_multi_label_scores_by_hand():
    # truth {a} {a,b} {c}, predicted {a} {b} {a}: TP 2 (a in row 1, b in row 2), FP 1, FN 2.
    test = pd.DataFrame({"text": ["x", "y", "z"], "tags": [["a"], ["a", "b"], ["c"]]})
    fold = Fold(test.iloc[:0], test.iloc[:0], test)
    scores = score(TAGS, fold, [["a"], ["b"], ["a"]])
    assert scores["f1_micro"] == pytest.approx(4 / 7)  # 2TP / (2TP + FP + FN)
    assert scores["f1_macro"] == pytest.approx(0.5)  # a 0.5, b 1.0, c 0.0
    assert scores["f1_samples"] == pytest.approx(5 / 9)  # rows 1.0, 2/3, 0.0
    assert scores["hamming_loss"] == pytest.approx(3 / 9)  # 3 wrong cells of 3 rows x 3 labels
    assert scores["accuracy"] == pytest.approx(1 / 3)  # the exact label set, row 1 only


def test_a_label_only_in_training_counts_in_macro_f1():
    train = pd.DataFrame({"text": ["w"], "tags": [["d"]]})
    test = pd.DataFrame({"text": ["x"], "tags": [["a"]]})
    scores = score(TAGS, Fold(train, train.iloc[:0], test), [["a"]])
    assert scores["f1_macro"] == pytest.approx(0.5)  # a 1.0, d never predicted nor true: 0.0


def test_the_bench_row_of_a_multi_label_task(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = experiment(tmp_path, rows(90))
    (tmp_path / "ml.yaml").write_text((tmp_path / "ml.yaml").read_text() + "bench: {protocol: split}\n")
    preprocess(config)
    # in a fresh process, as the bench runs it (run_method silences logging for its process)
    result = {method: run_isolated(str(tmp_path / "ml.yaml"), "tags", method, False)
              for method in ("newstag", "baseline")}
    for row in result.values():
        assert set(row) >= {"f1_micro", "f1_macro", "f1_samples", "hamming_loss", "accuracy"}
        assert 0 <= row["hamming_loss"] <= 1 and 0 <= row["accuracy"] <= row["f1_samples"] <= 1
    table = markdown_table(list(result.values()))
    assert "| micro-F1 | macro-F1 | samples-F1 | Hamming loss | subset accuracy |" in table
