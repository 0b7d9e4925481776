"""`newstag predict --jobs N`: worker processes write exactly what one process writes, in order;
bad records stay error rows in their place, --strict stops at the same record, Ctrl-C stops every
worker and leaves no output file, and a worker that dies is an error, never lost rows."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from newstag.config import TaskConfig
from newstag.models.bundle import save_bundle
from newstag.models.pipelines import build_pipeline

from ..code.conftest import TEXTS

ROWS = 9000  # five chunks of 2,000: every worker gets several, out of order
SIGNAL_TIMEOUT = 60


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    pipelines = {}
    for name, classifier, labels in (("topic", "logreg", ["sport", "sport", "biz", "biz"]),
                                     ("tone", "linear_svm", ["pos", "pos", "neg", "pos"])):
        task = TaskConfig(name=name, column=name, classifier=classifier)
        pipelines[name] = build_pipeline(task, seed=0).fit(TEXTS, labels)
    path = tmp_path_factory.mktemp("model") / "model.joblib"
    save_bundle(path, pipelines, {"tasks": {"topic": {"min_confidence": 0.9}, "tone": {}}})
    return path


def jsonl(rows: int, bad_every: int = 997) -> str:
    """Articles with a broken line, an empty text and a bad id every so often."""
    lines = []
    for i in range(1, rows + 1):
        if i % bad_every == 0:
            lines.append(["{broken", '{"text": "   "}', '{"id": 1.5, "text": "goal"}'][i // bad_every % 3])
        else:
            lines.append(json.dumps({"id": f"a{i}", "text": f"{TEXTS[i % 4]} number {i} café"}))
    return "\n".join(lines) + "\n"


def predict(model: Path, *args: str, stdin: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "newstag", "predict", "--model", str(model), *args],
                          input=stdin, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("extra", [[], ["--format", "table"], ["--explain"]])
def test_workers_write_the_same_bytes_in_the_same_order(model, tmp_path, extra):
    data = tmp_path / "in.jsonl"
    data.write_text(jsonl(ROWS))
    one = predict(model, "--input", str(data), "--jobs", "1", *extra, stdin="")
    assert one.returncode == 0, one.stderr
    for jobs in (["--jobs", "2"], ["--jobs", "3"], []):  # [] = the default: workers after 4,000
        many = predict(model, "--input", str(data), *jobs, *extra, stdin="")
        assert (many.returncode, many.stdout, many.stderr) == (0, one.stdout, one.stderr), jobs
    if not extra:
        rows = [json.loads(line) for line in one.stdout.splitlines()]
        assert len(rows) == ROWS and sum("error" in row for row in rows) == ROWS // 997
        assert rows[996] == {"id": 997, "error": f"{data}: line 997: empty text"}
        assert "uncertain" in {row.get("topic") for row in rows}


def test_strict_stops_at_the_same_record_with_workers(model, tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_text(jsonl(ROWS, bad_every=7001))
    one = predict(model, "--input", str(data), "--strict", "--jobs", "1", stdin="")
    many = predict(model, "--input", str(data), "--strict", "--jobs", "2", stdin="")
    assert one.returncode == many.returncode == 1
    assert many.stdout == one.stdout and many.stdout.count("\n") == 6000  # the chunks before it
    assert many.stderr == one.stderr
    assert f"{data}: line 7001: empty text (drop --strict" in many.stderr


def test_output_file_matches_stdout(model, tmp_path):
    data = jsonl(5000)
    out = tmp_path / "out.jsonl"
    written = predict(model, "--input", "-", "--jobs", "2", "--output", str(out), stdin=data)
    assert written.returncode == 0 and written.stdout == ""
    assert out.read_text() == predict(model, "--input", "-", "--jobs", "1", stdin=data).stdout


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def started_with_workers(model: Path, out: Path, jobs: int = 2) -> tuple[subprocess.Popen, list[int]]:
    """A predict reading a stdin that stays open, once its workers have started."""
    if not Path("/proc/self/task").exists():
        pytest.skip("needs /proc to find the worker processes")
    process = subprocess.Popen([sys.executable, "-m", "newstag", "predict", "--model", str(model),
                                "--input", "-", "--jobs", str(jobs), "--output", str(out)],
                               stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    process.stdin.write(jsonl(5000))
    process.stdin.flush()
    deadline = time.monotonic() + SIGNAL_TIMEOUT
    while len(workers := children(process.pid)) < jobs:
        assert time.monotonic() < deadline and process.poll() is None, "no workers started"
        time.sleep(0.05)
    return process, workers


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_ctrl_c_stops_every_worker_and_leaves_no_output(model, tmp_path):
    out = tmp_path / "out.jsonl"
    process, workers = started_with_workers(model, out)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole group
    _, err = process.communicate(timeout=SIGNAL_TIMEOUT)
    assert process.returncode == 130, err
    assert "interrupted; no file was left half-written" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no output file, no temporary file
    assert not any(alive(pid) for pid in workers)


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_sigterm_to_the_main_process_stops_its_workers(model, tmp_path):
    out = tmp_path / "out.jsonl"
    process, workers = started_with_workers(model, out)
    process.terminate()
    _, err = process.communicate(timeout=SIGNAL_TIMEOUT)
    assert process.returncode == 143, err
    assert list(tmp_path.iterdir()) == []
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in workers)


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_a_worker_that_dies_is_an_error_not_lost_rows(model, tmp_path):
    out = tmp_path / "out.jsonl"
    process, workers = started_with_workers(model, out)
    os.kill(workers[0], signal.SIGKILL)
    _, err = process.communicate(jsonl(5000), timeout=SIGNAL_TIMEOUT)
    assert process.returncode == 1, err
    assert "a worker process died (killed, or out of memory?)" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
    assert not any(alive(pid) for pid in workers)
