"""Shared fixtures: the project's paths, and one sample model trained once per test session."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample" / "articles.jsonl"
DEFAULT_EXPERIMENT = ROOT / "experiments" / "default.yaml"


def corpora_dir() -> Path:
    """NEWSTAG_DATA_DIR, else the shared datasets folder beside the project."""
    return Path(os.environ.get("NEWSTAG_DATA_DIR") or ROOT.parent / "shared" / "datasets")


def need_corpus(folder: str) -> Path:
    """The corpus folder, or skip (fail when NEWSTAG_REQUIRE_DATA=1, as in CI)."""
    path = corpora_dir() / folder
    if not path.is_dir():
        unavailable(f"corpus folder {path} not found (set NEWSTAG_DATA_DIR)")
    return path


def unavailable(message: str):
    """Skip a test whose data or tool this machine lacks; in CI (NEWSTAG_REQUIRE_DATA=1), which
    provides them all, fail instead, so a test never passes there by not running."""
    if os.environ.get("NEWSTAG_REQUIRE_DATA") == "1":
        pytest.fail(message + "; NEWSTAG_REQUIRE_DATA=1 requires it")
    pytest.skip(message)


def run_newstag(*args: str, cwd: Path, env: dict | None = None, stdin: str | None = None,
                check: bool = True) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess, as a user would."""
    result = subprocess.run([sys.executable, "-m", "newstag", *args], cwd=cwd, input=stdin,
                            capture_output=True, text=True, env={**os.environ, **(env or {})},
                            timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"newstag {' '.join(args)} failed:\n{result.stderr}")
    return result


def copy_project(folder: Path) -> Path:
    """A copy of the project (Makefile, sources, experiments, sample data) that uses the shared
    .venv, so `make` runs there as on a fresh clone whose setup is done."""
    import shutil

    for name in ("Makefile", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, folder)
    for name in ("src", "experiments", "data/sample"):
        shutil.copytree(ROOT / name, folder / name, copy_function=shutil.copy2,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (folder / ".venv").symlink_to(ROOT / ".venv")
    os.utime(folder / "pyproject.toml", (0, 0))  # the shared venv counts as set up
    return folder


def sample_experiment(directory: Path, **overrides) -> Path:
    """A copy of the default experiment whose data path points at the bundled corpus."""
    import yaml

    config = yaml.safe_load(DEFAULT_EXPERIMENT.read_text())
    config["data"]["path"] = str(SAMPLE)
    config.update(overrides)
    path = directory / "experiments" / "default.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def trained_sample(tmp_path_factory):
    """Preprocess, train and evaluate the default experiment once, in its own folder and store."""
    work = tmp_path_factory.mktemp("sample-project")
    experiment = sample_experiment(work)
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"}
    outputs = {stage: run_newstag(stage, str(experiment), cwd=work, env=env)
               for stage in ("preprocess", "train", "evaluate")}
    return {"dir": work, "experiment": experiment, "env": env, "outputs": outputs,
            "model": work / "models" / "default" / "model.joblib",
            "metrics": json.loads((work / "reports" / "default" / "metrics.json").read_text())}


@pytest.fixture(scope="session")
def sample_bundle(trained_sample):
    from newstag.models.bundle import load_bundle

    return load_bundle(trained_sample["model"])
