"""The bench's calibration figures: ECE pooled over every scored row, and a paired bootstrap
interval that tells a real difference from binning noise."""

import numpy as np
import pytest

from newstag.bench import calibration_errors
from newstag.models.calibrate import binned_ece, reliability_table


def test_binned_ece_is_the_count_weighted_gap_of_the_reliability_table():
    rng = np.random.default_rng(1)
    proba = rng.dirichlet(np.ones(4), size=500)
    y_true = rng.choice(list("abcd"), size=500)
    table = reliability_table(y_true, list("abcd"), proba)
    by_table = sum(row["count"] / 500 * abs(row["accuracy"] - row["confidence"])
                   for row in table if row["count"])
    best = proba.argmax(axis=1)
    assert binned_ece(proba.max(axis=1), np.array(list("abcd"))[best] == y_true) == pytest.approx(by_table)


def test_pooled_ece_is_not_the_mean_of_small_folds():
    # Two folds of 30 perfectly calibrated rows at confidence 0.7: each fold's ECE is the binning
    # noise of its 30 rows; pooled over 60 rows the right answers come to exactly 70%.
    confidence = np.full(60, 0.7)
    correct = np.array(([True] * 18 + [False] * 12) + ([True] * 24 + [False] * 6))
    per_fold = np.mean([binned_ece(confidence[:30], correct[:30]), binned_ece(confidence[30:], correct[30:])])
    figures = calibration_errors(confidence, correct, confidence, correct, rounds=50)
    assert per_fold == pytest.approx(0.1)
    assert figures["ece"] == pytest.approx(0.0)


def test_the_interval_excludes_zero_only_for_a_real_difference():
    rng = np.random.default_rng(2)
    confidence = rng.uniform(0.5, 1.0, size=2000)
    correct = rng.uniform(size=2000) < confidence  # calibrated by construction
    overconfident = np.minimum(confidence + 0.2, 1.0)
    real = calibration_errors(confidence, correct, overconfident, correct, rounds=200)
    assert real["ece"] < real["ece_uncalibrated"]
    assert real["ece_difference_low"] < real["ece_difference_high"] < 0
    noise = calibration_errors(confidence, correct, np.minimum(confidence + 0.005, 1.0), correct, rounds=200)
    assert noise["ece_difference_low"] < 0 < noise["ece_difference_high"]
    again = calibration_errors(confidence, correct, overconfident, correct, rounds=200)
    assert again == real  # a fixed seed: the same rows give the same interval
