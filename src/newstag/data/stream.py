"""Read a table of articles chunk by chunk: memory bounded by the chunk, whatever the file's size.

CSV/TSV, JSONL and Parquet, each also gzipped, from a local path or any fsspec URL
(`s3://bucket/archive.jsonl.gz`, `gs://...`, `memory://...`; fsspec comes with the `dask`
extra). The raw bytes are hashed as they go past, so the input's sha256 costs no second read.
Every chunk is a DataFrame of strings (None for a missing cell) whose index is the row's number
in the file from 0, so an error names the file's row (CSV, Parquet) or line (JSONL).
"""

import gzip
import hashlib
import io
import json
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from newstag.data.readers import MB, csv_frames, detect_format, not_decodable
from newstag.errors import NewstagError

CHUNK_ROWS = 20000


def is_url(path: str) -> bool:
    """A path with a protocol (s3://, file://, memory://) is read through fsspec."""
    return "://" in str(path)


def file_format(path: str, fmt: str) -> str:
    return detect_format(Path(str(path).split("://", 1)[-1])) if fmt == "auto" else fmt


class HashingReader(io.RawIOBase):
    """The bytes of a stream, unchanged, with their sha256 (and count) kept as they are read."""

    def __init__(self, raw):
        self.raw, self.digest, self.count = raw, hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = self.raw.readinto(buffer) if hasattr(self.raw, "readinto") else self._read_into(buffer)
        self.digest.update(memoryview(buffer)[:count])
        self.count += count
        return count

    def _read_into(self, buffer) -> int:
        data = self.raw.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def hexdigest(self) -> str:
        return self.digest.hexdigest()


@contextmanager
def open_source(path: str):
    """(hashing reader of the raw bytes, decompressed binary stream) for a local path or URL."""
    with _open_raw(path) as raw:
        hashing = HashingReader(raw)
        buffered = io.BufferedReader(hashing, buffer_size=1 << 20)
        stream = gzip.GzipFile(fileobj=buffered, mode="rb") if str(path).endswith(".gz") else buffered
        yield hashing, stream


@contextmanager
def _open_raw(path: str):
    if is_url(path):
        try:
            import fsspec
        except ImportError:
            raise NewstagError(f"{path}: reading a URL needs fsspec: pip install 'newstag[dask]' "
                               f"(or pip install fsspec and the filesystem's package, e.g. s3fs)") from None
        try:
            with fsspec.open(path, "rb") as handle:
                yield handle
        except FileNotFoundError:
            raise NewstagError(f"{path}: not found; check data.path in the experiment") from None
        except (ImportError, ValueError) as exc:  # an unknown protocol, or its package missing
            raise NewstagError(f"{path}: cannot open ({str(exc).splitlines()[0][:200]})") from None
        return
    local = Path(path)
    if not local.exists():
        raise NewstagError(f"{local}: file not found; check data.path in the experiment")
    if not stat.S_ISREG(local.stat().st_mode):
        raise NewstagError(f"{local}: not a regular file; data.path must name a file for streaming")
    with open(local, "rb") as handle:
        yield handle


def read_chunks(stream, path: str, fmt: str, encoding: str, chunk_rows: int = CHUNK_ROWS,
                max_record_mb: int = 64) -> Iterator[pd.DataFrame]:
    """DataFrames of at most `chunk_rows` rows from a decompressed binary stream."""
    readers = {"csv": _csv_chunks, "tsv": _tsv_chunks, "jsonl": _jsonl_chunks, "parquet": _parquet_chunks}
    try:
        yield from readers[fmt](stream, path, encoding, chunk_rows, max_record_mb * MB)
    except UnicodeDecodeError:
        with open_source(path) as (_, again):
            raise not_decodable(path, encoding, again) from None
    except (EOFError, gzip.BadGzipFile) as exc:
        raise NewstagError(f"{path}: cannot read the file ({exc}); is it truncated?") from None


def _csv_chunks(stream, path, encoding, chunk_rows, record_limit, sep=","):
    text = io.TextIOWrapper(stream, encoding=encoding, newline="")
    return csv_frames(text, path, sep, record_limit, chunk_rows)


def _tsv_chunks(stream, path, encoding, chunk_rows, record_limit):
    return _csv_chunks(stream, path, encoding, chunk_rows, record_limit, sep="\t")


def _check_record_sizes(chunk: pd.DataFrame, path: str, limit: int) -> None:
    for column in chunk.columns:
        lengths = chunk[column].map(lambda value: len(value) if isinstance(value, str) else 0)
        if len(lengths) and lengths.max() > limit:
            row = int(lengths.idxmax())
            raise NewstagError(f"{path}: row {row + 1}, column {column!r} is over the limit of "
                               f"{limit // MB} MB per record; split the text or raise data.max_file_mb")


def _jsonl_chunks(stream, path, encoding, chunk_rows, record_limit):
    text = io.TextIOWrapper(stream, encoding=encoding)
    rows, lines, number = [], [], 0
    while line := text.readline(record_limit + 2):
        number += 1
        if len(line.rstrip("\r\n")) > record_limit:
            raise NewstagError(f"{path}: line {number} is over the limit of {record_limit // MB} MB "
                               f"per record; split it or raise data.max_file_mb")
        if not line.strip():
            continue
        rows.append(_json_object(line, path, number))
        lines.append(number - 1)
        if len(rows) >= chunk_rows:
            yield _frame(rows, lines)
            rows, lines = [], []
    if rows:
        yield _frame(rows, lines)


def _json_object(line: str, path: str, number: int) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise NewstagError(f"{path}: line {number} is not valid JSON ({exc.msg}); fix that line") from None
    except (ValueError, RecursionError) as exc:  # huge integers, deep nesting
        raise NewstagError(f"{path}: line {number} is not valid JSON ({str(exc)[:120]})") from None
    if not isinstance(row, dict):
        raise NewstagError(f"{path}: line {number} is not a JSON object; each line must be one")
    return row


def _frame(rows: list[dict], index: list[int]) -> pd.DataFrame:
    """The rows as strings, indexed by line number - 1 (so 'row N' in messages is line N)."""
    from newstag.data.readers import _as_string

    frame = pd.DataFrame(rows, index=index)
    return frame.astype(object).map(_as_string)


def _parquet_chunks(source, path, encoding, chunk_rows, record_limit):
    """Row batches of a Parquet file (it needs random access, so `source` is the seekable file
    itself, never a gzip stream)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from newstag.data.readers import _as_strings

    try:
        parquet = pq.ParquetFile(source)
    except (pa.ArrowInvalid, OSError) as exc:
        raise NewstagError(f"{path}: not a Parquet file ({str(exc)[:160]})") from None
    start = 0
    for batch in parquet.iter_batches(batch_size=chunk_rows):
        frame = _as_strings(batch.to_pandas())
        frame.index = range(start, start + len(frame))
        start += len(frame)
        _check_record_sizes(frame, path, record_limit)
        yield frame


class Source:
    """One input file read in chunks: `chunks()` once, then `sha256` of its bytes as stored."""

    def __init__(self, path: str, fmt: str = "auto", encoding: str = "utf-8",
                 chunk_rows: int = CHUNK_ROWS, max_record_mb: int = 64):
        self.path, self.fmt = str(path), file_format(path, fmt)
        self.encoding, self.chunk_rows, self.max_record_mb = encoding, chunk_rows, max_record_mb
        self.sha256 = None
        self.bytes_read = 0

    def chunks(self) -> Iterator[pd.DataFrame]:
        if self.fmt == "parquet":
            if self.path.endswith(".gz"):
                raise NewstagError(f"{self.path}: a gzipped Parquet file cannot be read in chunks "
                                   f"(Parquet compresses itself); gunzip it first")
            with _open_raw(self.path) as raw:
                yield from read_chunks(raw, self.path, "parquet", self.encoding, self.chunk_rows,
                                       self.max_record_mb)
            self.sha256, self.bytes_read = _sha256_of(self.path), None
            return
        with open_source(self.path) as (hashing, stream):
            yield from read_chunks(stream, self.path, self.fmt, self.encoding, self.chunk_rows,
                                   self.max_record_mb)
            while hashing.readinto(bytearray(1 << 20)):  # bytes after the last row (gzip trailer)
                pass
            self.sha256, self.bytes_read = hashing.hexdigest(), hashing.count


def _sha256_of(path: str) -> str:
    with _open_raw(path) as raw:
        digest = hashlib.sha256()
        while block := raw.read(1 << 20):
            digest.update(block)
        return digest.hexdigest()
