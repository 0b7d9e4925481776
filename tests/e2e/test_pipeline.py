"""End to end on the sample corpus: preprocess -> train -> evaluate -> predict, with a real MLflow store."""

import json
import shutil
import subprocess
import sys

import pytest

from ..conftest import ROOT, run_newstag, unavailable

SEED_ARTICLE = ROOT.parent / "shared" / "seeds" / "article-000.txt"


@pytest.fixture(scope="module")
def client(trained_sample):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=trained_sample["env"]["MLFLOW_TRACKING_URI"])


@pytest.fixture(scope="module")
def run(client):
    experiment = client.get_experiment_by_name("newstag")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, "train and evaluate should share one run"
    return runs[0]


def test_stage_outputs_exist(trained_sample):
    work = trained_sample["dir"]
    for name in ("train", "validation", "test"):
        assert (work / f"data/processed/default/{name}.parquet").is_file()
    for name in ("model.joblib", "model.joblib.json"):
        assert (work / f"models/default/{name}").is_file()
    for name in ("metrics.json", "confusion_topic.png", "confusion_tone.png", "top_terms.json",
                 "leaks.json", "misclassified.jsonl"):
        assert (work / f"reports/default/{name}").is_file()
    terms = json.loads((work / "reports/default/top_terms.json").read_text())
    assert set(terms["topic"]["sport"][0]) == {"term", "weight", "in_label", "in_others", "leak"}
    assert (work / "reports/default/confusion_topic.png").read_bytes()[:4] == b"\x89PNG"


def test_sample_scores_meet_the_bar(trained_sample):
    tasks = trained_sample["metrics"]["tasks"]
    assert tasks["topic"]["f1_macro"] >= 0.85, tasks["topic"]
    assert tasks["tone"]["f1_macro"] >= 0.70, tasks["tone"]
    assert "topic" in trained_sample["outputs"]["evaluate"].stdout


def test_sidecar_describes_the_bundle(trained_sample):
    sidecar = json.loads((trained_sample["dir"] / "models/default/model.joblib.json").read_text())
    assert set(sidecar["tasks"]) == {"topic", "tone"}
    assert sidecar["tasks"]["tone"]["labels"] == ["negative", "neutral", "positive"]
    assert sidecar["config"]["seed"] == 42
    assert sidecar["mlflow"]["run_id"]


def test_run_has_params_metrics_and_tags(run, trained_sample):
    assert run.info.run_name == "default" and run.info.status == "FINISHED"
    assert run.data.params["tasks.topic.classifier"] == "complement_nb"
    assert json.loads(run.data.params["tasks.topic.grid.clf__alpha"]) == [0.1, 0.3, 1.0]
    metrics = run.data.metrics
    for name in ("test/topic/accuracy", "test/topic/f1_macro", "test/tone/accuracy", "test/tone/f1_macro",
                 "test/topic/f1/sport", "test/tone/f1/negative", "val/topic/f1_macro",
                 "test/topic/ece", "test/topic/uncalibrated/ece", "test/mean/f1_macro"):
        assert name in metrics, name
    expected = trained_sample["metrics"]["tasks"]["topic"]["f1_macro"]
    assert metrics["test/topic/f1_macro"] == pytest.approx(expected)
    assert not any("_" in name.split("/")[0] for name in metrics), "every metric starts with its split"
    manifest = json.loads((trained_sample["dir"] / "data/processed/default/manifest.json").read_text())
    assert run.data.tags["data_sha256"] == manifest["data_sha256"]
    assert "git_commit" in run.data.tags


def test_run_has_plots_reports_config_and_manifest(client, run):
    def paths(folder=None):
        return {item.path for item in client.list_artifacts(run.info.run_id, folder)}

    assert {"config.json", "plots", "evaluation", "data", "grid"} <= paths()
    assert "plots/grid_topic.png" in paths("plots")
    assert {"evaluation/confusion_topic.png", "evaluation/metrics.json",
            "evaluation/top_terms.json", "evaluation/leaks.json"} <= paths("evaluation")
    assert "data/manifest.json" in paths("data")


def test_one_model_is_registered_for_the_experiment(client):
    assert [m.name for m in client.search_registered_models()] == ["newstag-default"]
    versions = client.search_model_versions("name='newstag-default'")
    assert [str(v.version) for v in versions] == ["1"]


def test_predict_tags_the_seed_article(trained_sample):
    """The article this project started from (militant groups' statements on a strike): world
    or politics, and negative."""
    if not SEED_ARTICLE.is_file():
        unavailable(f"seed article not found at {SEED_ARTICLE}")
    result = run_newstag("predict", "--input", str(SEED_ARTICLE), cwd=trained_sample["dir"])
    row = json.loads(result.stdout)
    assert row["topic"] in {"world", "politics"}, row
    assert row["tone"] == "negative", row


def test_predict_table_and_stdin(trained_sample):
    result = run_newstag("predict", "--input", "-", "--format", "table", cwd=trained_sample["dir"],
                         stdin="Shares in the carmaker jumped after record quarterly profits.\n")
    header, row = result.stdout.splitlines()
    assert header.split() == ["id", "topic", "tone"]
    assert row.split()[1] == "business"


def test_predict_does_not_import_mlflow(trained_sample):
    code = ("import sys; from newstag.cli import main; "
            "code = main(['predict', 'Rain delayed the test match']); "
            "print('MLFLOW' if 'mlflow' in sys.modules else 'CLEAN', file=sys.stderr); sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", code], cwd=trained_sample["dir"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().endswith("CLEAN")
    assert json.loads(result.stdout)["id"] == 1


def test_missing_model_says_which_command_makes_it(tmp_path):
    result = run_newstag("predict", "hello", cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("newstag: error: models/default/model.joblib: model not found")
    assert "make train" in result.stderr and "Traceback" not in result.stderr


def test_rerun_gives_identical_splits_and_predictions(trained_sample, tmp_path):
    work = tmp_path / "copy"
    shutil.copytree(trained_sample["dir"], work)
    processed = work / "data/processed/default"
    before = {p.name: p.read_bytes() for p in processed.glob("*.parquet")}
    first = run_newstag("predict", "--input", str(SEED_ARTICLE), "A storm closed the port.",
                        cwd=work).stdout
    run_newstag("preprocess", str(trained_sample["experiment"]), cwd=work)
    run_newstag("train", "--no-tracking", str(trained_sample["experiment"]), cwd=work)
    assert {p.name: p.read_bytes() for p in processed.glob("*.parquet")} == before
    second = run_newstag("predict", "--input", str(SEED_ARTICLE), "A storm closed the port.",
                         cwd=work).stdout
    assert first == second
