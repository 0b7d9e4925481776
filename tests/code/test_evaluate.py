"""evaluate's checks before it scores anything, and what the model card and `info` say about a
model: fast, on the toy corpus, no MLflow."""

import pytest

from newstag.card import _calibration, model_description
from newstag.cli import main
from tests.code.test_bad_input import fails
from tests.code.test_report import toy_project


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_evaluate_refuses_a_model_trained_on_other_splits(project, capsys):
    """A new seed re-splits the same rows: the model's training articles can now be test articles
    (on the sample corpus that scored 1.000 / 1.000 instead of 0.985 / 0.938)."""
    experiment = toy_project(project)
    assert main(["train", str(experiment), "--no-tracking"]) == 0
    assert main(["evaluate", str(experiment), "--no-tracking"]) == 0
    experiment.write_text(experiment.read_text() + "seed: 7\n")
    assert main(["preprocess", str(experiment)]) == 0
    fails(capsys, project, "evaluate", str(experiment), "--no-tracking",
          match=r"models/toy/model\.joblib was trained on other splits than data/processed/toy holds "
                r"now .* retrain it \(make train EXP=\S*toy\.yaml\) before evaluating")
    assert main(["train", str(experiment), "--no-tracking"]) == 0
    assert main(["evaluate", str(experiment), "--no-tracking"]) == 0


def test_evaluate_checks_a_bundle_from_before_the_split_fingerprint_by_its_data(project, capsys):
    from newstag.models.bundle import load_bundle, save_bundle

    experiment = toy_project(project)
    assert main(["train", str(experiment), "--no-tracking"]) == 0
    path = project / "models/toy/model.joblib"
    bundle = load_bundle(path)
    metadata = {key: value for key, value in bundle["metadata"].items() if key != "splits_sha256"}
    save_bundle(path, bundle["pipelines"], metadata)  # as an older newstag saved it
    assert main(["evaluate", str(experiment), "--no-tracking"]) == 0  # same data: scored
    save_bundle(path, bundle["pipelines"], {**metadata, "data_sha256": "0" * 64})
    fails(capsys, project, "evaluate", str(experiment), "--no-tracking", match=r"trained on other splits")


def test_card_names_why_a_task_is_not_calibrated_and_every_kind_of_feature():
    assert _calibration({"method": "none", "reason": "label 'science' has one training example"}) == \
        "none (not calibrated: label 'science' has one training example)"
    assert _calibration({"method": "sigmoid", "validation_log_loss": {"sigmoid": 0.25}}) == \
        "sigmoid (validation log-loss 0.250)"
    sidecar = {"tasks": {"tone": {"model": {"classifier": "logreg", "features": "word"}}},
               "config": {"tasks": {"tone": {"negation": True, "lexicons": ["vader"]}}}}
    assert model_description(sidecar, "tone") == "logreg on word + negation + vader lexicon features"


def test_target_precision_on_an_uncalibrated_task_says_why_it_is_not_calibrated():
    from newstag.errors import NewstagError
    from newstag.evaluate import pick_threshold

    metadata = {"tasks": {"topic": {"calibration": {"method": "none",
                                                    "reason": "label 'science' has one training example"}}}}
    with pytest.raises(NewstagError, match=r"task 'topic': the model is not calibrated \(label 'science' "
                                           r"has one training example\).*add training articles"):
        pick_threshold("topic", metadata, 0.9)


def test_card_limits_name_character_features_and_a_given_test_split():
    from newstag.card import _limits_section

    sidecar = {"tasks": {"topic": {"model": {"features": "word+char"}}},
               "config": {"data": {"split_column": "split"}}}
    notes = "\n".join(_limits_section(sidecar, {}, {}))
    assert "TF-IDF word and character n-grams" in notes
    assert "the data's `split` column gives" in notes and "(a date split)" in notes
    plain = "\n".join(_limits_section({"tasks": {"topic": {"model": {"features": "word"}}}}, {}, {}))
    assert "TF-IDF word n-grams" in plain and "split` column" not in plain


def test_metrics_hold_both_reliability_series_and_the_coverage_curves(project):
    import json

    experiment = toy_project(project)
    assert main(["train", str(experiment), "--no-tracking"]) == 0
    assert main(["evaluate", str(experiment), "--no-tracking"]) == 0
    topic = json.loads((project / "reports/toy/metrics.json").read_text())["tasks"]["topic"]
    assert topic["calibration"]["reliability"] and topic["calibration"]["reliability_uncalibrated"]
    for curve in topic["coverage_curve"].values():
        assert 2 <= len(curve) <= 101 and curve[-1][0] == 1.0
    all_answered = topic["coverage_curve"]["calibrated"][-1][1]
    assert all_answered == pytest.approx(topic["accuracy"], abs=1e-4)
