"""De-duplicate and split a corpus larger than memory, in one pass, by hashing.

Every article's key is its near-exact form: the cleaned, case-folded text with everything but
letters and digits collapsed to single spaces (what preprocess's near-exact check compares).
The key is hashed with BLAKE2b (16 bytes) keyed by the experiment's seed, and that one digest
decides two things:

- the split: the digest's first 8 bytes as a fraction u in [0, 1): test when u < split.test,
  validation when u < split.test + split.validation, else train. Twins share the key, so they
  always land in the same split: no test article has a twin in training, by construction, with
  no lookup across splits. (The split is not stratified; over many articles each label's
  shares come out close to the configured ones, and the manifest records the counts.)
- duplicates: the first article with a digest is kept, later ones are dropped. The digests seen
  live in a disk-backed set, a SQLite table of 16-byte keys in a temporary file beside the
  splits, with a fixed page cache: its memory stays at most SEEN_CACHE_MB whatever the corpus
  size; on disk it takes about 23 MB per million distinct articles (measured by
  `make bench-scale`; every manifest reports its own figure). A 16-byte digest makes
  a false duplicate among 10^9 articles a ~10^-21 event.

Splits are written to Parquet row group by row group (ROW_GROUP rows each), to temporary files
that are renamed into place only when the whole input has been read.
"""

import hashlib
import re
import sqlite3
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from newstag.data.clean import dedup_key
from newstag.data.files import temporary_path

SPLITS = ("train", "validation", "test")
ROW_GROUP = 4096  # rows per Parquet row group: the unit streaming training shuffles
SEEN_CACHE_MB = 64
_NOT_ALNUM = re.compile(r"[^0-9a-z]+")


def near_exact_key(text: str, cleaned: bool = False) -> str:
    """Letters and digits of the cleaned, case-folded text, single-spaced (`cleaned`: the text
    has been through clean_text already, as preprocess's articles have)."""
    return _NOT_ALNUM.sub(" ", text.casefold() if cleaned else dedup_key(text)).strip()


def digest(key: str, seed: int) -> bytes:
    return hashlib.blake2b(key.encode("utf-8"), digest_size=16,
                           key=f"newstag-split-{seed}".encode()).digest()


def split_of(digest_bytes: bytes, validation: float, test: float) -> str:
    """The split a digest falls in (u uniform in [0, 1) over digests)."""
    u = int.from_bytes(digest_bytes[:8], "big") / 2**64
    return "test" if u < test else "validation" if u < test + validation else "train"


class SeenSet:
    """A set of digests on disk (SQLite, WITHOUT ROWID, a bounded page cache)."""

    def __init__(self, path: Path):
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "temp_store=FILE",
                       f"cache_size=-{SEEN_CACHE_MB * 1024}"):
            self.db.execute(f"PRAGMA {pragma}")
        self.db.execute("CREATE TABLE IF NOT EXISTS seen (k BLOB PRIMARY KEY) WITHOUT ROWID")

    def add_new(self, digests: list[bytes]) -> list[bool]:
        """For each digest, True when it was not in the set (it is now)."""
        insert = self.db.cursor()
        new = []
        self.db.execute("BEGIN")
        for item in digests:
            insert.execute("INSERT OR IGNORE INTO seen VALUES (?)", (item,))
            new.append(insert.rowcount == 1)
        self.db.execute("COMMIT")
        return new

    def disk_bytes(self) -> int:
        return self.path.stat().st_size

    def close(self) -> None:
        self.db.close()


@contextmanager
def seen_set(folder: Path):
    """A fresh SeenSet in `folder`, deleted afterwards (it is rebuilt on every run)."""
    with temporary_path(folder / "dedup.sqlite") as path:
        path.unlink()
        seen = SeenSet(path)
        try:
            yield seen
        finally:
            seen.close()
            for suffix in ("-journal", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)


class SplitWriters:
    """One Parquet writer per split, each to a temporary file; `publish` renames them all."""

    def __init__(self, folder: Path, columns: list[str], stack):
        import pyarrow as pa

        self.folder = folder
        self.schema = pa.schema([(column, pa.string()) for column in columns])
        self.columns = columns
        self.paths = {name: stack.enter_context(temporary_path(folder / f"{name}.parquet"))
                      for name in SPLITS}
        self.writers = {}
        self.rows = Counter()
        self.pending = {name: [] for name in SPLITS}
        self.stack = stack

    def add(self, name: str, frame: pd.DataFrame) -> None:
        """Buffer rows; a full row group is written as soon as there is one."""
        self.pending[name].append(frame[self.columns])
        if sum(len(part) for part in self.pending[name]) >= ROW_GROUP:
            self._flush(name, final=False)

    def _flush(self, name: str, final: bool) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self.pending[name]:
            return
        rows = pd.concat(self.pending[name], ignore_index=True)
        whole = len(rows) if final else len(rows) - len(rows) % ROW_GROUP
        if name not in self.writers:
            self.writers[name] = self.stack.enter_context(
                pq.ParquetWriter(self.paths[name], self.schema, compression="zstd"))
        if whole:
            table = pa.Table.from_pandas(rows.iloc[:whole], schema=self.schema, preserve_index=False)
            self.writers[name].write_table(table, row_group_size=ROW_GROUP)
            self.rows[name] += whole
        self.pending[name] = [rows.iloc[whole:]] if whole < len(rows) else []

    def close(self) -> dict[str, Path]:
        """Write what is left and close every file (an empty split gets an empty file)."""
        import pyarrow.parquet as pq

        for name in SPLITS:
            self._flush(name, final=True)
            if name not in self.writers:
                self.writers[name] = self.stack.enter_context(
                    pq.ParquetWriter(self.paths[name], self.schema, compression="zstd"))
            self.writers[name].close()
        return self.paths


def disk_per_million(disk_bytes: int, keys: int) -> float | None:
    """MB the seen-set takes on disk per million distinct articles."""
    return round(disk_bytes / keys, 1) if keys else None
