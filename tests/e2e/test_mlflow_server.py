"""Train against a real `mlflow server` on 127.0.0.1 and read the run back over its REST API."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ..conftest import run_newstag, sample_experiment


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    port = free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 (closed in the finally below)
    process = subprocess.Popen(
        [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts")],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=log,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process, tmp_path / "server.log")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()


def wait_until_healthy(url: str, process, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"mlflow server exited:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"mlflow server did not start in {timeout}s:\n{log.read_text()[-2000:]}")


def rest(url: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{url}/api/2.0/mlflow/{path}", data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_train_logs_to_a_real_tracking_server(mlflow_server, tmp_path):
    work = tmp_path / "project"
    experiment = sample_experiment(work)
    env = {"MLFLOW_TRACKING_URI": mlflow_server}
    run_newstag("preprocess", str(experiment), cwd=work, env=env)
    run_newstag("train", str(experiment), cwd=work, env=env)
    assert not (work / "mlflow.db").exists(), "the server, not a local store, should hold the run"

    found = rest(mlflow_server, "experiments/get-by-name?experiment_name=newstag")
    runs = rest(mlflow_server, "runs/search",
                {"experiment_ids": [found["experiment"]["experiment_id"]]})["runs"]
    assert len(runs) == 1
    run = runs[0]
    assert run["info"]["run_name"] == "default" and run["info"]["status"] == "FINISHED"
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert 0 < metrics["val/topic/f1_macro"] <= 1
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params["tasks.tone.classifier"] == "logreg"
    sidecar = json.loads((work / "models/default/model.joblib.json").read_text())
    assert sidecar["mlflow"]["run_id"] == run["info"]["run_id"]
    models = rest(mlflow_server, "registered-models/search?max_results=100")["registered_models"]
    assert {m["name"] for m in models} == {"newstag-default"}


def test_unreachable_server_fails_before_training(tmp_path):
    work = tmp_path / "project"
    experiment = sample_experiment(work)
    run_newstag("preprocess", str(experiment), cwd=work)
    url = f"http://127.0.0.1:{free_port()}"
    result = run_newstag("train", str(experiment), cwd=work, check=False,
                         env={"MLFLOW_TRACKING_URI": url})
    assert result.returncode == 1
    assert f"MLflow tracking server {url} is unreachable" in result.stderr
    assert "--no-tracking" in result.stderr and "Traceback" not in result.stderr
    assert not (work / "models").exists()
