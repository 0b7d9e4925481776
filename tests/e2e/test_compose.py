"""A composed experiment: each task trained on its own experiment's data, saved as one bundle."""

import json

import pytest
import yaml

from newstag.config import load_config
from newstag.errors import NewstagError

from ..conftest import DEFAULT_EXPERIMENT, SAMPLE, run_newstag


def write_experiments(folder):
    base = yaml.safe_load(DEFAULT_EXPERIMENT.read_text())
    base["data"]["path"] = str(SAMPLE)
    for name, task in (("topics", "topic"), ("tones", "tone")):
        config = {**base, "tasks": {task: base["tasks"][task]}}
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (folder / "both.yaml").write_text("compose: {topic: topics, tone: tones}\nseed: 3\n")
    return folder / "both.yaml"


def test_composed_experiment_trains_evaluates_and_predicts(tmp_path):
    (tmp_path / "experiments").mkdir()
    experiment = write_experiments(tmp_path / "experiments")
    for stage in ("preprocess", "train", "evaluate"):
        run_newstag(stage, *(["--no-tracking"] if stage != "preprocess" else []), str(experiment),
                    cwd=tmp_path)
    for name in ("topics", "tones", "both"):
        assert (tmp_path / f"data/processed/{name}/manifest.json").is_file()
    sidecar = json.loads((tmp_path / "models/both/model.joblib.json").read_text())
    assert set(sidecar["tasks"]) == {"topic", "tone"} and sidecar["config"]["compose"]
    metrics = json.loads((tmp_path / "reports/both/metrics.json").read_text())["tasks"]
    test_rows = {json.loads((tmp_path / f"data/processed/{name}/manifest.json").read_text())
                 ["splits"]["test"]["rows"] for name in ("topics", "tones")}
    assert test_rows == {metrics["topic"]["test_rows"]} == {metrics["tone"]["test_rows"]}
    row = json.loads(run_newstag("predict", "--model", "models/both/model.joblib",
                                 "The striker scored a late winner.", cwd=tmp_path).stdout)
    assert row["topic"] == "sport" and row["tone"] in {"negative", "neutral", "positive"}


def test_compose_names_a_missing_task(tmp_path):
    write_experiments(tmp_path)
    (tmp_path / "bad.yaml").write_text("compose: {sentiment: tones}\n")
    with pytest.raises(NewstagError, match="compose.sentiment: experiment tones has no task 'sentiment'"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "bad.yaml").write_text("compose: {tone: tones}\ndata: {path: x}\n")
    with pytest.raises(NewstagError, match="unknown key 'data' beside 'compose'"):
        load_config(tmp_path / "bad.yaml")
