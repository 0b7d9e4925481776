"""Ctrl-C, determinism, Make's no-op second run, and streaming prediction with bounded memory."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from newstag.bench import load_test

from ..conftest import DEFAULT_EXPERIMENT, ROOT, SAMPLE, copy_project, run_newstag

GOLDEN = Path(__file__).parent / "golden_sample.json"


def slow_experiment(folder: Path) -> Path:
    """The sample corpus with a grid big enough that training takes a few seconds."""
    config = yaml.safe_load(DEFAULT_EXPERIMENT.read_text())
    config["data"]["path"] = str(SAMPLE)
    for task in config["tasks"].values():
        task.update(classifier="logreg", features="word+char", params={},
                    grid={"clf__C": [0.5, 1, 2, 4, 8, 16, 32, 64]})
    path = folder / "experiments" / "slow.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_ctrl_c_during_training_keeps_the_previous_bundle(tmp_path):
    experiment = slow_experiment(tmp_path)
    run_newstag("preprocess", str(experiment), cwd=tmp_path)
    run_newstag("train", "--no-tracking", str(experiment), cwd=tmp_path)
    bundle = tmp_path / "models/slow/model.joblib"
    before = bundle.read_bytes(), bundle.with_name("model.joblib.json").read_bytes()
    process = subprocess.Popen([sys.executable, "-m", "newstag", "train", "--no-tracking",
                                str(experiment)], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:  # interrupt once the first task is done, mid-training
        if "topic: best" in line:
            process.send_signal(signal.SIGINT)
            break
    rest = process.stderr.read()
    assert process.wait(timeout=120) == 130, rest
    assert "interrupted; no file was left half-written" in rest and "Traceback" not in rest
    assert (bundle.read_bytes(), bundle.with_name("model.joblib.json").read_bytes()) == before
    assert sorted(p.name for p in bundle.parent.iterdir()) == [
        ".train.lock", "MODEL_CARD.md", "model.joblib", "model.joblib.compact.npz", "model.joblib.json"]


def test_sample_model_matches_the_golden_results(trained_sample, sample_bundle):
    """A fresh clone reproduces these numbers and labels exactly (same data, YAML and seed)."""
    golden = json.loads(GOLDEN.read_text())
    for task, expected in golden["metrics"].items():
        got = trained_sample["metrics"]["tasks"][task]
        assert round(got["accuracy"], 4) == expected["accuracy"], task
        assert round(got["f1_macro"], 4) == expected["f1_macro"], task
    for task, labels in golden["labels"].items():
        assert sample_bundle["pipelines"][task].predict(golden["texts"]).tolist() == labels


def test_rerun_gives_identical_metrics(trained_sample, tmp_path):
    work = tmp_path / "copy"
    shutil.copytree(trained_sample["dir"], work)
    experiment = str(trained_sample["experiment"])
    run_newstag("train", "--no-tracking", experiment, cwd=work)
    run_newstag("evaluate", "--no-tracking", experiment, cwd=work)
    again = json.loads((work / "reports/default/metrics.json").read_text())
    first = dict(trained_sample["metrics"])
    first.pop("mlflow_run_id")
    assert again == first


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "newstag").exists(),
                    reason="needs the project's .venv (made by `make setup`)")
def test_second_make_all_does_no_work(tmp_path):
    copy_project(tmp_path)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    first = subprocess.run(["make", "all"], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "newstag train" in first.stdout
    second = subprocess.run(["make", "all"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert second.returncode == 0 and "newstag" not in second.stdout, second.stdout
    assert "Nothing to be done" in second.stdout
    (tmp_path / "experiments/default.yaml").touch()
    third = subprocess.run(["make", "-n", "all"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert "newstag preprocess" in third.stdout, "an edited experiment must re-run its stages"


def test_streaming_prediction_keeps_order_with_bounded_memory(trained_sample):
    texts = [json.loads(line)["text"] for line in SAMPLE.read_text().splitlines()]
    model = str(trained_sample["model"])
    small = load_test(model, 20_000, texts)
    large = load_test(model, 200_000, texts)
    # Ten times the input must not mean more memory: prediction streams in chunks.
    assert large["peak_memory_mb"] < small["peak_memory_mb"] + 50, (small, large)
