"""Hard to break, round 2: bundle formats and sidecars, Make and shell quoting, crashes between
renames, splits from two runs, concurrent first trainings, and one-line errors where tracebacks were."""

import json
import os
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import joblib
import pytest

from newstag.data.files import sha256_file
from newstag.errors import NewstagError
from newstag.models.bundle import compact_path, load_bundle, save_bundle, sidecar_path

from ..code.test_bad_input import corpus, fails, write_experiment
from ..conftest import ROOT, copy_project, run_newstag, unavailable

NEEDS_VENV = pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "newstag").exists(),
                                reason="needs the project's .venv (made by `make setup`)")


def make(project: Path, *args: str, timeout: int = 600, **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}", **env}
    # --no-print-directory: under `make test` this make is nested and would print
    # "Entering/Leaving directory" lines among the predictions.
    return subprocess.run(["make", "--no-print-directory", *args], cwd=project, env=environment,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def make_project(tmp_path_factory):
    """A copy of the project whose `make all` has run once, on the shared .venv."""
    project = copy_project(tmp_path_factory.mktemp("make-project"))
    first = make(project, "all")
    assert first.returncode == 0, first.stderr[-2000:]
    return project


# ---- 1. each bundle file has its own sidecar; Make sees a broken model as out of date -----------

@NEEDS_VENV
def test_a_skops_copy_leaves_the_joblib_model_working(make_project):
    model = make_project / "models/default/model.joblib"
    run_newstag("train", "--no-tracking", "--format", "skops", "experiments/default.yaml",
                cwd=make_project)
    assert sidecar_path(model).is_file() and (model.parent / "model.skops.json").is_file()
    load_bundle(model)
    load_bundle(model.with_suffix(".skops"))
    again = make(make_project, "all")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout, again.stdout


@NEEDS_VENV
@pytest.mark.parametrize("damage", ["flip a byte", "drop the sidecar", "drop the model",
                                    "flip a byte of the compact form", "drop the compact form"])
def test_make_retrains_a_broken_or_missing_model(make_project, tmp_path, damage):
    project = tmp_path / "copy"
    shutil.copytree(make_project, project, symlinks=True)
    model = project / "models/default/model.joblib"
    target = compact_path(model) if "compact" in damage else model
    if damage.startswith("flip a byte"):
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0xFF
        target.write_bytes(bytes(data))
    else:
        (sidecar_path(model) if damage == "drop the sidecar" else target).unlink()
    plan = make(project, "-n", "all")
    assert "newstag train" in plan.stdout, plan.stdout


# ---- 2. TEXT and INPUT never reach the shell or Make's expansion --------------------------------

NASTY = ('Shares `touch pwned1` and $(touch pwned2) rose $5bn, "quoted" and it\'s '
         '$(shell touch pwned3)\nsecond line')


@NEEDS_VENV
def test_make_predict_passes_text_verbatim(make_project):
    result = make(make_project, "predict", f"TEXT={NASTY}", "FORMAT=jsonl")
    assert result.returncode == 0, result.stderr[-2000:]
    assert not list(make_project.glob("pwned*"))
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 1 and "topic" in rows[0]
    echoed = make(make_project, "-n", "predict", f"TEXT={NASTY}")
    assert "$5bn" not in echoed.stdout  # the text travels in the environment, not the command


@NEEDS_VENV
def test_make_predict_input_with_dollars_and_spaces(make_project):
    article = make_project / "a $5bn `x` story.txt"
    article.write_text("The central bank raised rates by half a point.")
    result = make(make_project, "predict", f"INPUT={article}", "FORMAT=jsonl")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [row["id"] for row in rows] == [str(article)]


# ---- 3. the loader is chosen from the bytes, never from the name --------------------------------

def small_bundle(path: Path) -> Path:
    from sklearn.dummy import DummyClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import Pipeline

    pipeline = Pipeline([("vect", TfidfVectorizer()), ("clf", DummyClassifier())])
    pipeline.fit(["rain falls", "sun shines"], ["wet", "dry"])
    save_bundle(path, {"weather": pipeline}, {"experiment": "x"})
    return path


class Boom:
    def __reduce__(self):
        return (os.system, ("touch unpickled",))


@pytest.mark.parametrize("name", ["model.SKOPS", "model.Skops", "model.skops"])
def test_a_pickle_named_skops_is_never_unpickled(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / name
    joblib.dump(Boom(), path)
    sidecar_path(path).write_text(json.dumps({"sha256": sha256_file(path)}))
    with pytest.raises(NewstagError, match="not a skops file"):
        load_bundle(path)
    assert not (tmp_path / "unpickled").exists()


def test_a_skops_file_under_any_name_is_loaded_safely(tmp_path):
    skops = small_bundle(tmp_path / "model.skops")
    renamed = tmp_path / "model.joblib"
    shutil.copy(skops, renamed)
    shutil.copy(sidecar_path(skops), sidecar_path(renamed))
    assert zipfile.is_zipfile(renamed)
    assert load_bundle(renamed)["pipelines"]["weather"].predict(["rain"]).shape == (1,)


def test_a_file_that_is_neither_is_refused(tmp_path):
    path = tmp_path / "model.joblib"
    path.write_bytes(b"#!/bin/sh\necho hello\n")
    sidecar_path(path).write_text(json.dumps({"sha256": sha256_file(path)}))
    with pytest.raises(NewstagError, match="neither a joblib nor a skops model file"):
        load_bundle(path)


@pytest.mark.parametrize("fault", ["wrong structure", "unfitted"])
def test_a_malformed_skops_bundle_is_one_line(tmp_path, fault):
    import skops.io
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    from newstag.models.bundle import BUNDLE_FORMAT

    path = tmp_path / "model.skops"
    metadata = {"format": BUNDLE_FORMAT}
    content = ({"metadata": metadata, "pipelines": ["not", "a", "mapping"]} if fault == "wrong structure"
               else {"metadata": metadata, "pipelines": {"topic": Pipeline(
                   [("vect", TfidfVectorizer()), ("clf", LogisticRegression())])}})
    skops.io.dump(content, path)
    sidecar_path(path).write_text(json.dumps({"sha256": sha256_file(path)}))
    with pytest.raises(NewstagError, match="not a newstag model bundle|unfitted model"):
        load_bundle(path)


# ---- 4. the model and its sidecar are replaced together -----------------------------------------

def test_save_removes_the_old_sidecar_before_the_new_model_lands(tmp_path):
    """Replay a crash right after the model's rename: the old sidecar must already be gone, so
    the pair is never 'old checksum, new model' (which would look like tampering)."""
    path = small_bundle(tmp_path / "model.joblib")
    order = []
    real_replace = os.replace

    def crash_after_model(source, target):
        real_replace(source, target)
        order.append((Path(target).name, sidecar_path(path).exists()))
        if Path(target) == path:
            raise KeyboardInterrupt

    os.replace = crash_after_model
    try:
        with pytest.raises(KeyboardInterrupt):
            small_bundle(path)
    finally:
        os.replace = real_replace
    assert order == [("model.joblib", False)]
    with pytest.raises(NewstagError, match="missing; the model cannot be verified"):
        load_bundle(path)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_orphaned_temp_files_are_cleaned_by_the_next_training(tmp_path, monkeypatch):
    from newstag.cli import main

    monkeypatch.chdir(tmp_path)
    corpus().to_csv("data.csv", index=False)
    experiment = write_experiment(tmp_path / "exp.yaml", "data.csv")
    assert main(["preprocess", str(experiment)]) == 0
    orphan = tmp_path / "models/exp/.model.joblib.abc123.tmp"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"half a model")
    assert main(["train", "--no-tracking", str(experiment)]) == 0
    assert not orphan.exists()


def test_written_files_follow_the_umask(tmp_path, monkeypatch):
    from newstag.cli import main

    monkeypatch.chdir(tmp_path)
    corpus().to_csv("data.csv", index=False)
    experiment = write_experiment(tmp_path / "exp.yaml", "data.csv")
    assert main(["preprocess", str(experiment)]) == 0
    assert main(["train", "--no-tracking", str(experiment)]) == 0
    for path in [tmp_path / "models/exp/model.joblib", tmp_path / "data/processed/exp/train.parquet",
                 tmp_path / "data/processed/exp/manifest.json"]:
        assert path.stat().st_mode & 0o777 == 0o644, path  # the test process's umask is 022


# ---- 5. splits from two runs are refused ---------------------------------------------------------

@pytest.fixture
def preprocessed(tmp_path, monkeypatch):
    from newstag.cli import main

    monkeypatch.chdir(tmp_path)
    corpus(60).to_csv("data.csv", index=False)
    experiment = write_experiment(tmp_path / "exp.yaml", "data.csv")
    assert main(["preprocess", str(experiment)]) == 0
    return tmp_path


def test_a_split_from_another_run_is_refused(preprocessed, capsys):
    import pandas as pd

    test = preprocessed / "data/processed/exp/test.parquet"
    train = pd.read_parquet(preprocessed / "data/processed/exp/train.parquet")
    train.head(10).to_parquet(test)  # what an interrupted re-run leaves: a test split of another run
    fails(capsys, preprocessed, "train", "--no-tracking", "exp.yaml",
          match=r"test.parquet|train.parquet|validation.parquet")
    fails(capsys, preprocessed, "evaluate", "--no-tracking", "exp.yaml",
          match=r"does not match .*manifest.json.*run `newstag preprocess` again|model not found")


def test_train_before_preprocess_says_what_to_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    corpus().to_csv("data.csv", index=False)
    write_experiment(tmp_path / "exp.yaml", "data.csv")
    fails(capsys, tmp_path, "train", "--no-tracking", "exp.yaml",
          match=r"manifest.json: not found; run `newstag preprocess exp.yaml`")


def test_an_interrupted_preprocess_leaves_no_manifest(preprocessed, monkeypatch):
    """The manifest goes first and comes back last, so Make and train see an unfinished stage."""
    from newstag import preprocess as stage
    from newstag.config import load_config

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(stage, "write_json", crash)
    with pytest.raises(KeyboardInterrupt):
        stage.preprocess(load_config("exp.yaml"))
    assert not (preprocessed / "data/processed/exp/manifest.json").exists()


# ---- 6. two first trainings on a fresh store ------------------------------------------------------

def test_two_first_trainings_on_a_fresh_store(tmp_path):
    corpus().to_csv(tmp_path / "data.csv", index=False)
    for name in ("one", "two"):
        write_experiment(tmp_path / f"{name}.yaml", "data.csv")
        run_newstag("preprocess", f"{name}.yaml", cwd=tmp_path)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    runs = [subprocess.Popen([sys.executable, "-m", "newstag", "train", f"{name}.yaml"], cwd=tmp_path,
                             env=env, stderr=subprocess.PIPE, text=True) for name in ("one", "two")]
    results = [(run.wait(timeout=300), run.stderr.read()) for run in runs]
    assert all(code == 0 for code, _ in results), results
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        statuses = [row[0] for row in db.execute("select status from runs")]
    assert statuses == ["FINISHED", "FINISHED"]


# ---- 7. one line where tracebacks were ----------------------------------------------------------

@pytest.fixture
def read_only(tmp_path):
    """Make folders immutable (read-only even for root); always undone."""
    frozen = []

    def freeze(folder: Path):
        if shutil.which("chattr") is None:
            unavailable("chattr is not installed (apt-get install -y e2fsprogs)")
        folder.mkdir(parents=True, exist_ok=True)
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
            # the machine, not the data, lacks it (no root, or a file system without the flag):
            # skipped, and -ra names the reason in the summary
            pytest.skip("chattr +i failed: immutable folders need root and a file system that has them")
        frozen.append(folder)

    yield freeze
    for folder in frozen:
        subprocess.run(["chattr", "-i", str(folder)], check=False)


def test_read_only_model_folder_is_one_line(preprocessed, read_only, capsys):
    read_only(preprocessed / "models/exp")
    fails(capsys, preprocessed, "train", "--no-tracking", "exp.yaml",
          match=r"models/exp.*(Operation not permitted|Permission denied|Read-only).*permissions")


def test_read_only_processed_folder_is_one_line(preprocessed, read_only, capsys):
    (preprocessed / "data.csv").write_text(corpus(50).to_csv(index=False))
    read_only(preprocessed / "data/processed/exp")
    fails(capsys, preprocessed, "preprocess", "exp.yaml",
          match=r"data/processed/exp.*(Operation not permitted|Permission denied).*permissions")


def test_read_only_mlflow_store_is_one_line_and_saves_nothing(preprocessed, read_only, capsys):
    from newstag.cli import main

    uri = f"sqlite:///{preprocessed / 'store' / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        assert main(["train", "exp.yaml"]) == 0  # create the store
        capsys.readouterr()
        (preprocessed / "models").rename(preprocessed / "models-before")
        os.chmod(preprocessed / "store" / "mlflow.db", 0o444)
        read_only(preprocessed / "store")
        subprocess.run(["chattr", "+i", str(preprocessed / "store" / "mlflow.db")], check=True)
        try:
            assert main(["train", "exp.yaml"]) == 1
            error = capsys.readouterr().err.strip()
            assert len(error.splitlines()) == 1 and "Traceback" not in error, error
            assert re.search(r"^newstag: error: MLflow store sqlite:.*writable.*--no-tracking", error)
            assert not (preprocessed / "models/exp/model.joblib").exists()
        finally:
            subprocess.run(["chattr", "-i", str(preprocessed / "store" / "mlflow.db")], check=False)
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]


def test_a_full_disk_is_one_line_and_keeps_nothing(preprocessed):
    """RLIMIT_FSIZE makes writes fail as a full disk does (Python ignores SIGXFSZ)."""
    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))

    result = subprocess.run([sys.executable, "-m", "newstag", "train", "--no-tracking", "exp.yaml"],
                            cwd=preprocessed, capture_output=True, text=True, preexec_fn=small_files,
                            timeout=300)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "File too large" in result.stderr
    folder = preprocessed / "models/exp"  # a failed first training removes the folder it made
    assert not folder.exists() or [p.name for p in folder.iterdir() if not p.name.startswith(".train")] == []


@pytest.fixture
def small_disk():
    """Mount a tmpfs of a few kB over a folder: a real full disk (ENOSPC, raised by write, flush
    or a library's writer, which name no file), unlike RLIMIT_FSIZE. Always unmounted."""
    mounted = []

    def mount(folder: Path, kilobytes: int):
        folder.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kilobytes}k", "tmpfs", str(folder)],
                              capture_output=True)
        if done.returncode != 0:  # the machine lacks it (a container without CAP_SYS_ADMIN)
            pytest.skip(f"mounting a small tmpfs failed (it needs root): {done.stderr.decode().strip()}")
        mounted.append(folder)

    yield mount
    for folder in mounted:
        subprocess.run(["umount", str(folder)], check=False)


def test_a_really_full_disk_is_one_line_naming_the_file(preprocessed, small_disk):
    run_newstag("train", "--no-tracking", "exp.yaml", cwd=preprocessed)
    small_disk(preprocessed / "reports/exp", 40)
    result = run_newstag("evaluate", "--no-tracking", "exp.yaml", cwd=preprocessed, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert re.search(r"newstag: error: reports/exp/\S*: No space left on device; check the folder's "
                     r"permissions and free disk space", result.stderr), result.stderr
    assert not (preprocessed / "reports/exp/metrics.json").exists()  # the stage is not done

    small_disk(preprocessed / "out", 20)
    result = run_newstag("predict", "--model", "models/exp/model.joblib", "--input", "-",
                         "--output", "out/tags.jsonl", cwd=preprocessed, check=False,
                         stdin="Shares jumped after record profits.\n" * 3000)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "out/tags.jsonl: No space left on device" in result.stderr
    assert list((preprocessed / "out").iterdir()) == []


def test_a_failed_save_leaves_a_failed_run_and_no_registered_version(preprocessed, read_only):
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{preprocessed / 'mlflow.db'}"}
    run_newstag("train", "exp.yaml", cwd=preprocessed, env=env)  # version 1, and the store exists
    read_only(preprocessed / "models/exp")
    result = run_newstag("train", "exp.yaml", cwd=preprocessed, env=env, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    with sqlite3.connect(preprocessed / "mlflow.db") as db:
        statuses = [row[0] for row in db.execute("select status from runs order by start_time")]
        versions = db.execute("select count(*) from model_versions").fetchone()[0]
    assert statuses == ["FINISHED", "FAILED"]
    assert versions == 1


def test_sigterm_is_handled_like_ctrl_c(preprocessed):
    from ..e2e.test_robustness import slow_experiment

    experiment = slow_experiment(preprocessed)
    run_newstag("preprocess", str(experiment), cwd=preprocessed)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{preprocessed / 'mlflow.db'}"}
    process = subprocess.Popen([sys.executable, "-m", "newstag", "train", str(experiment)],
                               cwd=preprocessed, env=env, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        if "topic: best" in line:
            process.send_signal(signal.SIGTERM)
            break
    rest = process.stderr.read()
    assert process.wait(timeout=120) == 143, rest
    assert "interrupted; no file was left half-written" in rest and "Traceback" not in rest
    assert not (preprocessed / "models/slow/model.joblib").exists()
    with sqlite3.connect(preprocessed / "mlflow.db") as db:
        assert [row[0] for row in db.execute("select status from runs")] == ["KILLED"]


def test_a_fifo_sidecar_does_not_hang(tmp_path):
    path = small_bundle(tmp_path / "model.joblib")
    sidecar_path(path).unlink()
    os.mkfifo(sidecar_path(path))
    with pytest.raises(NewstagError, match="not a regular file"):
        load_bundle(path)
