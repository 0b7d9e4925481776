"""Reading what preprocess wrote: the manifest and the split files, verified against each other.

It sits below the stages that read splits (train, evaluate, bench), so none of them imports
`preprocess`. Every split file is checked against the sha256 its manifest recorded: splits from
an interrupted or concurrent preprocess are refused instead of silently leaking test articles
into training.
"""

import json
from pathlib import Path

import pandas as pd

from newstag.config import ExperimentConfig, task_source
from newstag.data.files import read_capped, sha256_file
from newstag.errors import NewstagError

MANIFEST_LIMIT = 16 << 20


def read_manifest(config: ExperimentConfig) -> dict:
    """The experiment's manifest.json, or say which command makes it."""
    path = config.processed_dir / "manifest.json"
    try:
        manifest = json.loads(read_capped(path, MANIFEST_LIMIT, "manifest").decode("utf-8"))
    except FileNotFoundError:
        raise NewstagError(f"{path}: not found; run `newstag preprocess {config.path or config.name}` "
                           f"(or `make preprocess`) first") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise NewstagError(f"{path}: not valid JSON; run `newstag preprocess` again") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("splits"), dict):
        raise NewstagError(f"{path}: not a newstag manifest; run `newstag preprocess` again")
    return manifest


def load_task_splits(config: ExperimentConfig, name: str) -> dict[str, pd.DataFrame]:
    """Split `name` for every task, reading each source experiment's file once."""
    frames: dict[Path, pd.DataFrame] = {}
    splits = {}
    for task in config.task_names:
        source = task_source(config, task)
        if source.processed_dir not in frames:
            frames[source.processed_dir] = load_split(source, name)
        splits[task] = frames[source.processed_dir]
    return splits


def verify_splits(config: ExperimentConfig) -> None:
    """Check every split file of every source against its manifest, test split included: training
    on a split from one run and scoring on a split from another is how test articles leak."""
    for source in {task_source(config, task).processed_dir: task_source(config, task)
                   for task in config.task_names}.values():
        for name in read_manifest(source)["splits"]:
            _check_split(source, name)


def load_split(config: ExperimentConfig, name: str) -> pd.DataFrame:
    """Read one processed split after checking it is the file its manifest describes."""
    return pd.read_parquet(_check_split(config, name))


def _check_split(config: ExperimentConfig, name: str) -> Path:
    path = config.processed_dir / f"{name}.parquet"
    expected = read_manifest(config)["splits"].get(name, {}).get("sha256")
    if not path.is_file():
        raise NewstagError(f"{path}: not found; run `newstag preprocess` (or `make preprocess`) first")
    if sha256_file(path) != expected:
        raise NewstagError(f"{path}: does not match {config.processed_dir / 'manifest.json'} (an "
                           f"interrupted or concurrent preprocess?); run `newstag preprocess` again")
    return path
