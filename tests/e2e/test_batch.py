"""`newstag predict --input 'archive/*.jsonl' --output-dir out/`: one output per input file, equal
byte for byte to `newstag predict --input FILE`, resumable, the same on a real Dask LocalCluster
(even when a worker is killed mid-batch), and one-line errors that write nothing."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from newstag.batch import MANIFEST, Options, run_batch
from newstag.cli import _load_model
from newstag.config import TaskConfig
from newstag.models.bundle import save_bundle
from newstag.models.pipelines import build_pipeline
from newstag.predict import available_cores

from ..code.conftest import TEXTS
from ..conftest import run_newstag

UTF8 = {"PYTHONIOENCODING": "utf-8"}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A model and an archive of three small JSONL files (with a broken line and an accent)."""
    work = tmp_path_factory.mktemp("batch")
    pipelines = {}
    for name, classifier, labels in (("topic", "logreg", ["sport", "sport", "biz", "biz"]),
                                     ("tone", "linear_svm", ["pos", "pos", "neg", "pos"])):
        task = TaskConfig(name=name, column=name, classifier=classifier)
        pipelines[name] = build_pipeline(task, seed=0).fit(TEXTS, labels)
    save_bundle(work / "model.joblib", pipelines, {"tasks": {"topic": {"min_confidence": 0.9}}})
    write_archive(work / "archive", files=3, rows=40)
    return work


def write_archive(folder: Path, files: int, rows: int) -> None:
    folder.mkdir(exist_ok=True)
    for number in range(files):
        lines = [json.dumps({"text": f"{TEXTS[i % 4]} café {number} {i}"}) for i in range(rows)]
        lines.insert(rows // 2, "{broken")
        (folder / f"day{number}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def batch(work: Path, *args: str, check: bool = True, env: dict | None = None):
    return run_newstag("predict", "--model", "model.joblib", "--input", "archive/*.jsonl", *args,
                       cwd=work, check=check, env={**UTF8, **(env or {})})


def outputs(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())
            if not path.name.startswith(".")}


def reference(work: Path) -> dict[str, bytes]:
    """What `newstag predict --input FILE` prints for each file."""
    expected = {}
    for source in sorted((work / "archive").glob("*.jsonl")):
        result = run_newstag("predict", "--model", "model.joblib", "--input", f"archive/{source.name}",
                             cwd=work, env=UTF8)
        expected[source.name] = result.stdout.encode("utf-8")
    return expected


def test_each_file_equals_its_own_predict_run_and_a_rerun_resumes(project):
    result = batch(project, "--output-dir", "out")
    assert "3 file(s) to tag" in result.stderr and result.stdout == ""
    expected = reference(project)
    assert outputs(project / "out") == expected
    assert b"archive/day1.jsonl: line 21: not valid JSON" in expected["day1.jsonl"]

    (project / "out" / "day1.jsonl").unlink()
    kept = (project / "out" / "day0.jsonl").stat().st_mtime_ns
    again = batch(project, "--output-dir", "out")
    assert "1 file(s) to tag into out, 2 already done (skipped)" in again.stderr
    assert outputs(project / "out") == expected
    assert (project / "out" / "day0.jsonl").stat().st_mtime_ns == kept


def test_a_failing_file_stops_the_batch_and_leaves_no_partial_file(project):
    result = batch(project, "--output-dir", "strict", "--strict", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("newstag: error: archive/day0.jsonl: "
                                                            "line 21: not valid JSON")
    assert outputs(project / "strict") == {}
    assert [p.name for p in (project / "strict").iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("args, message", [
    (["--input", "nowhere/*.jsonl", "--output-dir", "new"], "--input 'nowhere/*.jsonl' matches no file"),
    (["--input", "archive/*.jsonl", "--output-dir", "archive/day0.jsonl"], "is a file, not a folder"),
    (["--input", "archive/*.jsonl", "--output-dir", "archive"], "is inside --output-dir archive"),
    (["--input", "archive/*.jsonl", "--output-dir", "new", "--format", "table"], "drop --format table"),
    (["--input", "archive/*.jsonl", "--backend", "dask"], "add --output-dir DIR"),
    (["--input", "archive/*.jsonl", "--output-dir", "new", "--backend", "dask"], "--scheduler tcp://"),
    (["--input", "archive/*.jsonl", "--output-dir", "foreign"], "holds files newstag did not write"),
])
def test_bad_input_is_one_line_and_writes_nothing(project, args, message, monkeypatch):
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    (project / "foreign").mkdir(exist_ok=True)
    (project / "foreign" / "notes.txt").write_text("mine")
    result = run_newstag("predict", "--model", "model.joblib", *args, cwd=project, check=False)
    assert result.returncode == 1 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (project / "new").exists()
    assert sorted(p.name for p in (project / "foreign").iterdir()) == ["notes.txt"]
    assert sorted(p.name for p in (project / "archive").iterdir()) == [
        "day0.jsonl", "day1.jsonl", "day2.jsonl"]


def test_another_model_or_options_on_a_done_folder_is_refused(project):
    batch(project, "--output-dir", "once")
    result = batch(project, "--output-dir", "once", "--explain", check=False)
    assert result.returncode == 1 and "was written with another model or other options" in result.stderr
    assert (project / "once" / MANIFEST).exists()


def test_without_dask_or_a_scheduler_the_error_says_what_to_do(project, monkeypatch, capsys):
    import sys

    from newstag.cli import main

    monkeypatch.chdir(project)
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if Dask were not installed
    code = main(["predict", "--model", "model.joblib", "--input", "archive/*.jsonl",
                 "--output-dir", "new", "--backend", "dask", "--scheduler", "tcp://127.0.0.1:8786"])
    err = capsys.readouterr().err
    assert code == 1 and "needs Dask, which is not installed: pip install 'newstag[dask]'" in err
    assert not (project / "new").exists()


# ---- on a real Dask cluster ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as local:
        yield local


def test_the_cluster_writes_the_same_files(project, cluster):
    result = batch(project, "--output-dir", "dask-out", "--backend", "dask",
                   env={"DASK_SCHEDULER_ADDRESS": cluster.scheduler_address})
    assert "2 workers" in result.stderr and "3 file(s) to tag" in result.stderr
    assert outputs(project / "dask-out") == reference(project)


def test_a_scheduler_that_does_not_answer_writes_nothing(project):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = batch(project, "--output-dir", "new", "--backend", "dask", "--scheduler",
                   f"tcp://127.0.0.1:{port}", check=False)
    assert result.returncode == 1
    assert f"Dask scheduler tcp://127.0.0.1:{port} does not answer" in result.stderr
    assert not (project / "new").exists()


def kill_a_worker_mid_file(cluster, folder: Path, found: list) -> None:
    """Once a file is being written (its temporary file exists), kill one worker's process."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if folder.is_dir() and any(p.name.endswith(".tmp") for p in folder.iterdir()):
            nanny = next(iter(cluster.workers.values()))
            found.append(nanny.process.process.pid)
            os.kill(found[0], signal.SIGKILL)
            return
        time.sleep(0.005)


def test_a_worker_killed_mid_batch_loses_and_duplicates_no_file(project, cluster, tmp_path):
    import distributed

    work = tmp_path
    (work / "model.joblib").symlink_to(project / "model.joblib")
    for suffix in (".json", ".compact.npz"):
        (work / f"model.joblib{suffix}").symlink_to(project / f"model.joblib{suffix}")
    write_archive(work / "archive", files=10, rows=3000)
    options = Options()
    local = run_batch(str(work / "model.joblib"), [str(work / "archive" / "*.jsonl")],
                      str(work / "local"), options, jobs=1, load_bundle=_load_model)
    killed: list = []
    watcher = threading.Thread(target=kill_a_worker_mid_file, args=(cluster, work / "remote", killed))
    watcher.start()
    with distributed.Client(cluster) as client:
        remote = run_batch(str(work / "model.joblib"), [str(work / "archive" / "*.jsonl")],
                           str(work / "remote"), options, client=client)
    watcher.join()
    assert killed, "no worker was killed: the files were tagged too fast"
    assert (remote.files, remote.rows) == (local.files, local.rows) == (10, 10 * 3001)
    assert outputs(work / "remote") == outputs(work / "local")
    assert [p.name for p in (work / "remote").iterdir() if p.name.endswith(".tmp")] == []


# ---- whole files in local worker processes ------------------------------------------------------

def sample_archive(folder: Path, files: int, rows: int) -> Path:
    """`files` JSONL files of `rows` sample articles each (a different slice per file), each with
    a broken line, beside a link to the trained sample model."""
    from ..conftest import SAMPLE

    articles = SAMPLE.read_text(encoding="utf-8").splitlines()
    (folder / "archive").mkdir(parents=True)
    for number in range(files):
        lines = [articles[(number * 37 + i) % len(articles)] for i in range(rows)]
        lines.insert(rows // 3, "{broken")
        (folder / "archive" / f"day{number:02}.jsonl").write_text("\n".join(lines) + "\n",
                                                                  encoding="utf-8")
    return folder


@pytest.fixture
def sample_work(trained_sample, tmp_path) -> Path:
    model = trained_sample["model"]
    for suffix in ("", ".json", ".compact.npz"):
        if Path(f"{model}{suffix}").exists():
            (tmp_path / f"model.joblib{suffix}").symlink_to(f"{model}{suffix}")
    return sample_archive(tmp_path, files=6, rows=1500)


def test_worker_processes_write_the_bytes_of_one_process(sample_work):
    one = batch(sample_work, "--output-dir", "one", "--jobs", "1")
    assert "worker processes" not in one.stderr
    expected = outputs(sample_work / "one")
    assert len(expected) == 6 and all(b"not valid JSON" in data for data in expected.values())
    two = batch(sample_work, "--output-dir", "two", "--jobs", "2")
    assert "tagging whole files in 2 worker processes" in two.stderr
    assert "tagged 6 file(s), 9006 article(s)" in two.stderr
    assert outputs(sample_work / "two") == expected
    default = batch(sample_work, "--output-dir", "default")  # 9,000 articles: one worker per core
    assert ("worker processes" in default.stderr) == (available_cores() > 1)
    assert outputs(sample_work / "default") == expected


def descendants(pid: int) -> list[int]:
    from .test_predict_workers import children

    found = children(pid)
    return found + [grandchild for child in found for grandchild in descendants(child)]


def writing_into(pid: int, folder: Path) -> list[int]:
    """The processes under `pid` holding a temporary output file in `folder` open."""
    writers = []
    for process in descendants(pid):
        try:
            opened = [os.readlink(fd) for fd in Path(f"/proc/{process}/fd").iterdir()]
        except OSError:  # ended meanwhile
            continue
        if any(name.startswith(f"{folder}/") and name.endswith(".tmp") for name in opened):
            writers.append(process)
    return writers


def batch_writing(work: Path, done: int) -> tuple[subprocess.Popen, list[int], list[int]]:
    """A `--jobs 2` batch into work/out, its own process group, once `done` files are written and
    a worker process is writing another: (the process, those writing, all below it)."""
    out = work / "out"
    process = subprocess.Popen([sys.executable, "-m", "newstag", "predict", "--model", "model.joblib",
                                "--input", "archive/*.jsonl", "--output-dir", "out", "--jobs", "2"],
                               cwd=work, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **UTF8}, start_new_session=True)
    deadline = time.monotonic() + 60
    while not (out.is_dir() and len(outputs(out)) >= done
               and (writers := writing_into(process.pid, out))):
        assert time.monotonic() < deadline and process.poll() is None, "no file was being written"
        time.sleep(0.005)
    return process, writers, descendants(process.pid)


def all_end(pids: list[int]) -> bool:
    from .test_predict_workers import alive

    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(alive(pid) for pid in pids)


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_a_worker_process_killed_mid_file_names_the_files_not_written(sample_work):
    """Killed once a file is done and another is being written: that one and those not started
    are named, none is half there, and a rerun tags exactly them."""
    batch(sample_work, "--output-dir", "one", "--jobs", "1")
    expected = outputs(sample_work / "one")
    process, writers, workers = batch_writing(sample_work, done=1)
    os.kill(writers[0], signal.SIGKILL)
    _, err = process.communicate(timeout=60)

    assert process.returncode == 1, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("newstag: error: a worker process died (killed, or out of memory?); "
                           "not written: archive/day"), last
    out = sample_work / "out"
    written = outputs(out)
    missing = sorted(f"archive/{name}" for name in expected if name not in written)
    assert 0 < len(missing) < len(expected)
    assert last.split("not written: ")[1].split(". Run")[0] == ", ".join(missing)
    assert {name: expected[name] for name in written} == written
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []
    assert all_end(workers)

    again = batch(sample_work, "--output-dir", "out", "--jobs", "2")
    assert f"{len(missing)} file(s) to tag into out, {len(written)} already done" in again.stderr
    assert outputs(out) == expected


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_ctrl_c_stops_the_worker_processes_and_leaves_no_partial_file(sample_work):
    process, _, workers = batch_writing(sample_work, done=0)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole group
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "interrupted; no file was left half-written" in err and "Traceback" not in err
    out = sample_work / "out"
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []
    assert len(outputs(out)) < 6
    assert all_end(workers)
