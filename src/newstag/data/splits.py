"""Reading what preprocess wrote: the manifest and the split files, verified against each other.

It sits below the stages that read splits (train, evaluate, bench), so none of them imports
`preprocess`. Every split file is checked against the sha256 its manifest recorded: splits from
an interrupted or concurrent preprocess are refused instead of silently leaking test articles
into training.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from newstag.config import ExperimentConfig, task_source
from newstag.data.files import read_capped, sha256_file
from newstag.errors import NewstagError

MANIFEST_LIMIT = 16 << 20
CHUNK_ROWS = 20000  # test articles scored at a time (evaluate, promote): what bounds their memory


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


def splits_fingerprint(manifest: dict) -> str:
    """One sha256 over every split file's sha256 in the manifest (per task for a composed
    experiment): training stores it in the sidecar, and evaluate refuses a model whose splits are
    not the ones on disk, since a re-split could put its training articles in the test split."""
    import hashlib

    def hashes(node):
        if isinstance(node, dict):
            return {key: hashes(value) for key, value in node.items()
                    if key == "sha256" or isinstance(value, dict)}
        return node

    text = json.dumps(hashes(manifest.get("splits") or {}), sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def trained_on(metadata: dict, manifest: dict) -> bool:
    """Whether a bundle (its metadata) was trained on the splits this manifest describes; a bundle
    from before splits_sha256 is judged by its data's sha256, and one with neither passes."""
    trained, now = metadata.get("splits_sha256"), splits_fingerprint(manifest)
    if trained is None:
        trained, now = metadata.get("data_sha256"), manifest.get("data_sha256")
    return trained is None or trained == now


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


def by_source(config: ExperimentConfig, tasks) -> list[tuple[ExperimentConfig, list[str]]]:
    """The experiments whose splits the tasks read (a transfer task reads another's), each with
    its tasks in the order given: a split read once serves all of them."""
    sources: dict[Path, tuple[ExperimentConfig, list[str]]] = {}
    for task in tasks:
        source = task_source(config, task)
        sources.setdefault(source.processed_dir, (source, []))[1].append(task)
    return list(sources.values())


def split_chunks(config: ExperimentConfig, name: str, chunk_rows: int) -> "SplitChunks":
    """A processed split, checked against its manifest, to be read a chunk at a time."""
    return SplitChunks(_check_split(config, name), None, chunk_rows)


class SplitChunks:
    """A processed split (Parquet) read as chunks of about `chunk_rows` rows."""

    def __init__(self, path, columns: list[str] | None, chunk_rows: int):
        import pyarrow.parquet as pq

        self.file = pq.ParquetFile(path)
        self.path, self.columns = path, columns if columns is not None else self.file.schema_arrow.names
        self.groups = self.file.num_row_groups
        rows_per_group = max(1, self.file.metadata.num_rows // max(1, self.groups))
        self.groups_per_chunk = max(1, round(chunk_rows / rows_per_group))

    def in_order(self):
        """Chunks in file order (IDF pass, scoring)."""
        for start in range(0, self.groups, self.groups_per_chunk):
            yield self._read(list(range(start, min(start + self.groups_per_chunk, self.groups))))

    def shuffled(self, rng: np.random.Generator):
        """Chunks of row groups drawn from across the file in a random order, rows shuffled."""
        order = rng.permutation(self.groups)
        for start in range(0, self.groups, self.groups_per_chunk):
            frame = self._read(sorted(order[start:start + self.groups_per_chunk].tolist()))
            yield frame.iloc[rng.permutation(len(frame))]

    def head(self, rows: int):
        """The first `rows` rows (at most), read group by group."""
        frames, taken = [], 0
        for group in range(self.groups):
            if taken >= rows:
                break
            frame = self.file.read_row_group(group, columns=self.columns).to_pandas()
            frames.append(frame.iloc[:rows - taken])
            taken += len(frames[-1])
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=self.columns)

    def _read(self, groups: list[int]):
        return self.file.read_row_groups(groups, columns=self.columns).to_pandas()
