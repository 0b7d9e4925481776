"""`newstag search` on the sample corpus with a tiny space and a real SQLite MLflow store; its
bad-input cases; Ctrl-C; and `classifier: auto` at train time."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import yaml

from newstag.cli import main
from newstag.config import load_config

from ..conftest import run_newstag, sample_experiment

TINY_SEARCH = {"space": {"classifier": ["linear_svm", "complement_nb"],
                         "clf__C": {"low": 0.1, "high": 10, "log": True},
                         "vect__ngram_range": [[1, 1], [1, 2]]},
               "n_iter": 5, "folds": 3}


def write_experiment(directory, search: dict, **task_overrides):
    path = sample_experiment(directory)
    config = yaml.safe_load(path.read_text())
    config["tasks"]["topic"].update(search=search, **task_overrides)
    path.write_text(f"{SCHEMA_LINE}\n{AUTHOR_COMMENT}\n" + yaml.safe_dump(config, sort_keys=False))
    return path


SCHEMA_LINE, AUTHOR_COMMENT = "# yaml-language-server: $schema=schema.json", "# the search fixture"


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    work = tmp_path_factory.mktemp("search-project")
    experiment = write_experiment(work, TINY_SEARCH)
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"}
    run_newstag("preprocess", str(experiment), cwd=work, env=env)
    original = experiment.read_text()
    result = run_newstag("search", str(experiment), "--jobs", "2", cwd=work, env=env)
    return {"dir": work, "experiment": experiment, "env": env, "result": result, "original": original}


def test_search_writes_a_best_yaml_that_loads_and_trains(searched):
    work = searched["dir"]
    best = work / "experiments" / "default.best.yaml"
    assert searched["experiment"].read_text() == searched["original"], "the user's file is untouched"
    config = load_config(best)
    topic = {task.name: task for task in config.tasks}["topic"]
    assert topic.search is None and topic.grid == {}
    assert topic.classifier in ("linear_svm", "complement_nb")
    assert "default.best.yaml" in searched["result"].stdout
    assert not list((work / "experiments").glob(".*.tmp"))
    assert best.read_text().startswith(SCHEMA_LINE + "\n")  # the editor schema line stays on top
    assert AUTHOR_COMMENT in best.read_text().splitlines()  # and the author's comments
    run_newstag("preprocess", str(best), cwd=work, env=searched["env"])
    run_newstag("train", str(best), "--no-tracking", cwd=work, env=searched["env"])
    sidecar = json.loads((work / "models/default.best/model.joblib.json").read_text())
    assert sidecar["tasks"]["topic"]["model"]["classifier"] == topic.classifier


def test_search_has_a_parent_run_with_nested_candidate_runs(searched):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=searched["env"]["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("newstag")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs
               if r.data.tags.get("stage") == "search" and "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert 1 <= len(children) <= TINY_SEARCH["n_iter"]
    assert all(child.info.status == "FINISHED" for child in children)
    complete = [c for c in children if c.data.tags["state"] == "complete"]
    assert complete and all({"cv/f1_macro_mean", "cv/f1_macro_sd", "fit_seconds"} <= set(c.data.metrics)
                            for c in complete)
    assert "classifier" in complete[0].data.params
    assert parent.data.params["best.topic.classifier"] in ("linear_svm", "complement_nb")
    artifacts = {a.path for folder in (None, "search", "plots")
                 for a in client.list_artifacts(parent.info.run_id, folder)}
    expected = {"search/topic.csv", "search/topic.json", "plots/search_topic.png", "default.best.yaml"}
    assert expected <= artifacts


BAD_SEARCHES = {
    "unknown parameter": ({**TINY_SEARCH, "space": {"clf__nonsense": [1, 2]}},
                          r"space\.clf__nonsense' is not a parameter of any candidate pipeline"),
    "empty list": ({**TINY_SEARCH, "space": {"clf__C": []}},
                   r"space\.clf__C' is empty; give at least one entry"),
    "range over a non-number": ({**TINY_SEARCH, "space": {"vect__ngram_range": {"low": 1, "high": 3}}},
                                r"space\.vect__ngram_range' is a range, but .* is not a number"),
    "zero budget": ({**TINY_SEARCH, "n_iter": 0}, r"search\.n_iter' should be at least 1"),
    "no budget": ({**TINY_SEARCH, "n_iter": None}, r"search' should set n_iter, timeout or both"),
    "unknown classifier": ({**TINY_SEARCH, "space": {"classifier": ["forest"]}},
                           r"space\.classifier\[0\]' is 'forest'; choose one of"),
    "more folds than the rarest label": ({**TINY_SEARCH, "folds": 500},
                                         r"search\.folds' is 500, but label .* set folds to at most"),
}


@pytest.mark.parametrize("case", BAD_SEARCHES)
def test_bad_search_fails_in_one_line_before_any_work(case, searched, tmp_path, monkeypatch, capsys):
    search, message = BAD_SEARCHES[case]
    experiment = write_experiment(tmp_path, search)
    (tmp_path / "data").symlink_to(searched["dir"] / "data")  # the preprocessed splits
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert main(["search", str(experiment)]) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1, error
    assert __import__("re").search(message, error), error
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "experiments/default.best.yaml").exists()


def test_an_experiment_without_search_sections_says_how_to_add_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["search", str(sample_experiment(tmp_path)), "--no-tracking"]) == 1
    assert "no task has a 'search:' section" in capsys.readouterr().err


def test_ctrl_c_marks_runs_killed_and_writes_no_best_yaml(searched, tmp_path):
    long_search = {**TINY_SEARCH, "n_iter": 10000,
                   "space": {"clf__C": {"low": 0.01, "high": 100, "log": True}}}
    experiment = write_experiment(tmp_path, long_search, classifier="linear_svm")
    (tmp_path / "data").symlink_to(searched["dir"] / "data")
    store = tmp_path / "mlflow.db"
    process = subprocess.Popen([sys.executable, "-m", "newstag", "search", str(experiment)], cwd=tmp_path,
                               env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store}"},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and _finished_children(store) < 2:
        time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    statuses = _statuses(store)
    assert statuses["parent"] == ["KILLED"]
    assert "RUNNING" not in statuses["children"] and "FINISHED" in statuses["children"], statuses
    assert not (tmp_path / "experiments/default.best.yaml").exists()
    assert not list((tmp_path / "experiments").glob(".*.tmp"))


def _finished_children(store) -> int:
    try:
        return len([s for s in _statuses(store)["children"] if s == "FINISHED"])
    except sqlite3.Error:  # not created yet
        return 0


def _statuses(store) -> dict[str, list[str]]:
    """Read-only, and closed at once: a plain connect would create the file before the search
    does, and a connection left open would hold the lock the search needs to write."""
    from contextlib import closing

    with closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=1)) as db:
        rows = db.execute("SELECT r.status, t.value FROM runs r LEFT JOIN tags t "
                          "ON t.run_uuid = r.run_uuid AND t.key = 'mlflow.parentRunId'").fetchall()
    return {"parent": [status for status, parent in rows if parent is None],
            "children": [status for status, parent in rows if parent is not None]}


def test_auto_chooses_at_train_time_and_records_its_choice(searched, tmp_path):
    from newstag.models.auto import MEMBERS

    config = yaml.safe_load(searched["experiment"].read_text())
    config["tasks"] = {"tone": {"labels": ["negative", "neutral", "positive"]}}  # no classifier: auto
    experiment = tmp_path / "experiments" / "default.yaml"
    experiment.parent.mkdir()
    experiment.write_text(yaml.safe_dump(config))
    (tmp_path / "data").symlink_to(searched["dir"] / "data")
    run_newstag("train", str(experiment), "--no-tracking", cwd=tmp_path)
    model = json.loads((tmp_path / "models/default/model.joblib.json").read_text())["tasks"]["tone"]
    assert model["model"]["member"] in [member.name for member in MEMBERS]
    assert model["model"]["chosen_by"].startswith("auto: the baseline unless")
    assert 0.6 <= model["validation"]["f1_macro"] <= 1
