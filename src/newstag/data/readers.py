"""Read a table of articles (CSV, TSV, JSONL, Parquet) into a DataFrame, with clear errors."""

import codecs
import csv
import gzip
import io
import json
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from newstag.data.files import iter_jsonl
from newstag.errors import NewstagError

MB = 1 << 20
MAX_RECORD_MB = 64
MAX_TOTAL_MB = 8192
SUFFIX_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
                  ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


def detect_format(path: Path) -> str:
    """Guess the format from the suffix, looking through a trailing .gz."""
    suffixes = [s for s in path.suffixes if s != ".gz"]
    fmt = SUFFIX_FORMATS.get(suffixes[-1].lower()) if suffixes else None
    if fmt is None:
        raise NewstagError(
            f"{path}: cannot tell the format from the file name; "
            f"set data.format to one of csv, tsv, jsonl, parquet"
        )
    return fmt


def read_table(path: str | Path, fmt: str = "auto", encoding: str = "utf-8",
               max_record_mb: int = MAX_RECORD_MB, max_total_mb: int = MAX_TOTAL_MB) -> pd.DataFrame:
    """Read every row as strings (labels and ids are never re-typed).

    Only a regular file is read: a pipe or a device (/dev/zero) could block or never end. No record
    (a JSONL line, a CSV field) may exceed `max_record_mb`, and the file, once decompressed, not
    `max_total_mb`: a small .gz may inflate to more than memory holds.
    """
    path = Path(path)
    if not path.exists():
        raise NewstagError(f"{path}: file not found; check data.path in the experiment")
    if path.is_dir():
        raise NewstagError(f"{path}: is a directory; data.path must name a file")
    if not stat.S_ISREG(path.stat().st_mode):
        raise NewstagError(f"{path}: not a regular file (a pipe or a device?); data.path must "
                           f"name a file")
    if path.stat().st_size == 0:
        raise NewstagError(f"{path}: file is empty")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt != "parquet" and _looks_binary(path):
        raise NewstagError(f"{path}: looks like a binary file, not {fmt} text; check data.path "
                           f"and data.format")
    try:
        frame = _READERS[fmt](path, encoding, Limits(max_record_mb * MB, max_total_mb * MB))
    except UnicodeDecodeError:
        with _open_capped(path, max_total_mb * MB) as stream:
            raise not_decodable(path, encoding, stream) from None
    except (EOFError, OSError) as exc:
        raise NewstagError(f"{path}: cannot read the file ({exc}); is it truncated?") from None
    except (pd.errors.ParserError, ValueError, OverflowError) as exc:
        raise NewstagError(f"{path}: cannot parse as {fmt}: {str(exc).strip()[:200]}") from None
    except MemoryError:
        raise NewstagError(f"{path}: too large to read into memory; use a smaller file") from None
    if frame.empty:
        raise NewstagError(f"{path}: holds no rows")
    _check_field_sizes(frame, path, max_record_mb)
    return frame


def not_decodable(path, encoding: str, stream) -> NewstagError:
    """The error for a file that does not decode, naming the line and byte where it first fails.

    The decoder's own error counts from the start of the block it was handed, not of the file
    (it said "byte 3" of a row at byte 256,766), so `stream`, the file's bytes from the start,
    is read again: only on this error path, a block at a time."""
    where = _first_undecodable(stream, encoding)
    what = f"line {where[0]} is not valid {encoding} ({where[2]} at byte {where[1]})" if where \
        else f"not valid {encoding}"
    return NewstagError(f"{path}: {what}; set data.encoding in the experiment to the file's "
                        f"encoding (e.g. encoding: latin-1), or convert the file to {encoding}")


def _first_undecodable(stream, encoding: str) -> tuple[int, int, str] | None:
    """(line, byte offset, reason) of the first bytes that do not decode; None if all do."""
    decoder = codecs.getincrementaldecoder(encoding)()
    line, offset = 1, 0
    while True:
        block = stream.read(MB)
        pending = len(getattr(decoder, "buffer", b""))  # a character cut at the last block's end
        try:
            decoder.decode(block, final=not block)
        except UnicodeDecodeError as exc:
            return line + exc.object[pending:exc.start].count(b"\n"), offset - pending + exc.start, exc.reason
        if not block:
            return None
        line, offset = line + block.count(b"\n"), offset + len(block)


def _check_field_sizes(frame: pd.DataFrame, path: Path, max_record_mb: int) -> None:
    """No single field over the record limit (JSONL lines are capped as they are read)."""
    if path.suffix != ".gz" and path.stat().st_size <= max_record_mb * MB:
        return  # no field can be larger than the file
    for column in frame.columns:
        lengths = frame[column].map(lambda value: len(value) if isinstance(value, str) else 0)
        if lengths.max() > max_record_mb * MB:
            row = int(lengths.to_numpy().argmax())
            raise NewstagError(f"{path}: row {row + 1}, column {column!r} is over the limit of "
                               f"{max_record_mb} MB per record; split the text or raise data.max_file_mb")


def _looks_binary(path: Path) -> bool:
    """NUL bytes in the first 8 KiB (after gunzip) mean this is no text file."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            return b"\x00" in handle.read(8192)
    except (OSError, EOFError):
        return False  # the reader below reports unreadable files


@dataclass(frozen=True)
class Limits:
    """Bytes allowed per record and for the whole (decompressed) file."""

    record: int
    total: int


def _read_csv(path: Path, encoding: str, limits: Limits, sep: str = ",") -> pd.DataFrame:
    with io.TextIOWrapper(_open_capped(path, limits.total), encoding=encoding, newline="") as text:
        return next(csv_frames(text, path, sep, limits.record))


def csv_frames(text, path, sep: str = ",", record_limit: int = MAX_RECORD_MB * MB,
               chunk_rows: int | None = None) -> Iterator[pd.DataFrame]:
    """Frames of at most `chunk_rows` rows (one frame of all, when None) of a CSV text stream
    opened with newline="": each cell a string or None (an empty field), rows indexed from 0
    over the whole file.

    The csv module reads it rather than pandas, which stops at a row with more fields than the
    header ("Expected 3 fields"), or when that row is the first, silently takes the first column
    for an index and shifts every other. Such a row is kept here, empty, with its reason in the
    frame's attrs["row_problems"] by index, so preprocess drops or reports it as an invalid row.
    """
    csv.field_size_limit(record_limit)
    feed = _CsvFeed(text, path, record_limit)
    reader = csv.reader(feed, delimiter=sep)
    header = _csv_header(reader, feed)
    start = 0
    while True:
        frame = _csv_frame(reader, feed, header, start, chunk_rows)
        if frame.empty and start:
            return
        yield frame
        start += len(frame)
        if chunk_rows is None or len(frame) < chunk_rows:
            return


class _CsvFeed:
    """The lines of a text stream for csv.reader, each read with a cap and ending in a newline,
    noting when the stream ended: a record the csv reader completes only then has a quote that
    never closed (it would swallow the rest of the file)."""

    def __init__(self, text, path, limit: int):
        self.text, self.path, self.limit, self.ended = text, path, limit, False
        self.number = 0  # of the last line read

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = self.text.readline(self.limit + 1)
        if not line:
            self.ended = True
            raise StopIteration
        self.number += 1
        if len(line) > self.limit:
            raise NewstagError(f"{self.path}: line {self.number} is over the limit of "
                               f"{self.limit // MB} MB per record; split the text or raise "
                               f"data.max_file_mb")
        return line if line.endswith("\n") else line + "\n"


def _csv_header(reader, feed: _CsvFeed) -> list[str]:
    """The column names (an empty one named as pandas does); a byte-order mark is not part of them."""
    header = _csv_record(reader, feed, 1)
    while header == []:  # blank lines before the header
        header = _csv_record(reader, feed, reader.line_num + 1)
    if header is None:
        raise NewstagError(f"{feed.path}: no header line; the first line must name the columns")
    header[0] = header[0].removeprefix("\ufeff")
    names = [name or f"Unnamed: {number}" for number, name in enumerate(header)]
    twice = [name for name in names if names.count(name) > 1]
    if twice:
        raise NewstagError(f"{feed.path}: the header names column {twice[0]!r} twice; rename one")
    return names


def _csv_frame(reader, feed: _CsvFeed, header: list[str], start: int,
               chunk_rows: int | None) -> pd.DataFrame:
    """The next rows, a short one padded with None and a long one kept empty (see csv_frames)."""
    width, rows, problems = len(header), [], {}
    separator = "a tab" if reader.dialect.delimiter == "\t" else "a comma"
    while chunk_rows is None or len(rows) < chunk_rows:
        first = reader.line_num + 1
        fields = _csv_record(reader, feed, first)
        if fields is None:
            break
        if not fields:
            continue  # a blank line
        if len(fields) > width:
            problems[start + len(rows)] = (f"too many fields: line {first} has {len(fields)} fields "
                                           f"where the header has {width}; quote a field that "
                                           f"contains {separator}")
            fields = []
        rows.append([field or None for field in fields] + [None] * (width - len(fields)))
    frame = pd.DataFrame(rows, columns=header, index=range(start, start + len(rows)), dtype=object)
    frame.attrs["row_problems"] = problems
    return frame


def _csv_record(reader, feed: _CsvFeed, first: int) -> list[str] | None:
    """The next record's fields ([] for a blank line), None at the end of the file."""
    try:
        fields = next(reader, None)
    except csv.Error as exc:
        if "field limit" in str(exc):
            raise NewstagError(f"{feed.path}: line {first}: a field is over the limit of "
                               f"{feed.limit // MB} MB per record (or a quote opened there never "
                               f"closes); split the text or raise data.max_file_mb") from None
        raise NewstagError(f"{feed.path}: line {reader.line_num}: cannot parse as csv ({exc})") from None
    if fields and feed.ended:
        raise NewstagError(f"{feed.path}: line {first}: a quoted field opened on this line is "
                           f"never closed; fix the quoting")
    return fields


def _read_tsv(path: Path, encoding: str, limits: Limits) -> pd.DataFrame:
    return _read_csv(path, encoding, limits, sep="\t")


def _read_jsonl(path: Path, encoding: str, limits: Limits) -> pd.DataFrame:
    rows, lines = [], _Lines(path, limits.record)
    with io.TextIOWrapper(_open_capped(path, limits.total), encoding=encoding) as handle:
        try:
            for number, row, problem in iter_jsonl(lines.read(handle)):
                if problem:
                    raise NewstagError(f"{path}: line {number} is {problem}")
                rows.append(row)
        except UnicodeDecodeError:
            raise  # read_table names the encoding option
        except RecursionError:
            raise NewstagError(f"{path}: line {lines.number} is nested too deeply") from None
        except ValueError as exc:  # e.g. an integer of more digits than Python converts
            raise NewstagError(f"{path}: line {lines.number} is not valid JSON "
                               f"({str(exc).strip()[:120]})") from None
    return _as_strings(pd.DataFrame(rows))


class _Lines:
    """Lines of a text file, each read with a cap, remembering which line was read last."""

    def __init__(self, path: Path, limit: int):
        self.path, self.limit, self.number = path, limit, 0

    def read(self, handle):
        while line := handle.readline(self.limit + 2):
            self.number += 1
            if len(line.rstrip("\r\n")) > self.limit:
                raise NewstagError(f"{self.path}: line {self.number} is over the limit of "
                                   f"{self.limit // MB} MB per record; split it or raise "
                                   f"data.max_file_mb")
            yield line


def _open_capped(path: Path, limit: int) -> io.BufferedReader:
    """The file's bytes, gunzipped for .gz, refusing to deliver more than `limit` of them."""
    raw = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115
    return io.BufferedReader(_Capped(raw, limit, path))


class _Capped(io.RawIOBase):
    """A byte stream that stops with a clear error once more than `limit` bytes came through."""

    def __init__(self, raw, limit: int, path: Path):
        self.raw, self.limit, self.path, self.delivered = raw, limit, path, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = self.raw.readinto(buffer)
        self.delivered += count
        if self.delivered > self.limit:
            raise NewstagError(f"{self.path}: more than {self.limit // MB} MB of data (after "
                               f"decompressing); use a smaller file or raise data.max_total_mb")
        return count

    def close(self) -> None:
        self.raw.close()
        super().close()


def _read_parquet(path: Path, encoding: str, limits: Limits) -> pd.DataFrame:
    if path.stat().st_size > limits.total:
        raise NewstagError(f"{path}: more than {limits.total // MB} MB; use a smaller file or "
                           f"raise data.max_total_mb")
    return _as_strings(pd.read_parquet(path))


def _as_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """Make every non-missing cell a string and every missing one None, as the CSV reader does."""
    return frame.astype(object).map(_as_string)


def _as_string(value) -> str | None:
    """A cell as text; a list (JSON array, Parquet list) or a mapping (JSON object, Parquet
    struct) as JSON text, which multi-label tasks read back as a list of labels, or refuse."""
    if _is_missing(value):
        return None
    if isinstance(value, list | tuple | np.ndarray):
        return json.dumps(np.asarray(value, dtype=object).tolist(), ensure_ascii=False, default=str)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    return value if isinstance(value, str) else str(value)


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


_READERS = {"csv": _read_csv, "tsv": _read_tsv, "jsonl": _read_jsonl, "parquet": _read_parquet}
