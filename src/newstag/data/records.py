"""The articles to tag, read from arguments, files and stdin as `Record`s, one per input record.

Input is read as bytes, one line at a time with a length cap, and each line is decoded on its own:
so one bad line is one error row (the stream goes on), byte offsets count from the start of the
input, and no record, however long, is ever held whole beyond the cap.

On the prediction path: imports only the standard library.
"""

import codecs
import csv
import json
import math
import stat
import sys
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from newstag.errors import NewstagError

DEFAULT_MAX_RECORD_MB = 10
MAX_INT_DIGITS = 4300  # Python's own default limit, kept whatever the interpreter is set to
READ_BUFFER = 1 << 20  # large reads: skipping an over-long line of a gigabyte then takes a moment
UTF8_BOM = codecs.BOM_UTF8
INPUT_KINDS = "--input takes .txt, .jsonl or .csv files, or - for stdin"


@dataclass
class Record:
    """One article to tag; `error` is set instead of `text` when the input row was unusable.
    `where` ("in.csv: line 3") starts an error found later (an empty text) as the reader's own do."""

    id: str | int
    text: str | None = None
    error: str | None = None
    where: str | None = None


def read_records(texts: list[str], inputs: list[str], text_column: str = "text",
                 encoding: str = "utf-8",
                 max_record_bytes: int = DEFAULT_MAX_RECORD_MB * 1_000_000,
                 shown: list[str] | None = None) -> Iterator[Record]:
    """Articles from arguments, then each --input file ('-' is stdin, one article per line).

    The encoding and every input are checked before anything is read, so a typo fails up front.
    `shown`: what each input is called in ids and messages, when not its path (a batch on a Dask
    worker reads an absolute path, and writes what the user's relative one would give).
    """
    _check_encoding(encoding, by_line=any(not is_whole_file(name) for name in inputs))
    for name in inputs:
        check_input(name)
    return _stream_records(texts, inputs, text_column, encoding, max_record_bytes, shown or inputs)


def _stream_records(texts, inputs, text_column, encoding, cap, shown) -> Iterator[Record]:
    for number, text in enumerate(texts, start=1):
        yield Record(id=number, text=text)
    for name, label in zip(inputs, shown, strict=True):
        yield from _read_input(name, text_column, encoding, cap, label)


def is_whole_file(name: str) -> bool:
    """A .txt file is one article, read whole; everything else is read line by line."""
    return name != "-" and Path(name).suffix.lower() not in (".jsonl", ".ndjson", ".csv", ".tsv")


def _check_encoding(encoding: str, by_line: bool) -> None:
    """Refuse an unknown encoding, and for line-by-line input one whose newline is not the byte \\n."""
    try:
        "x".encode(encoding)
        encoder = codecs.getincrementalencoder(encoding)()
        encoder.encode("x")  # a byte-order mark, if the encoding writes one, comes out here
        ascii_safe = encoder.encode('\n\r,"') == b'\n\r,"'
    except LookupError:
        raise NewstagError(f"unknown encoding {encoding!r} (--encoding); try utf-8 or latin-1") from None
    except (ValueError, TypeError):  # a codec that cannot even encode these characters
        ascii_safe = False
    if by_line and not ascii_safe:
        raise NewstagError(f"--encoding {encoding} cannot be read line by line; convert the input to "
                           f"utf-8 first (e.g. iconv -f {encoding} -t utf-8)")


def check_input(name: str) -> None:
    """Only regular files: a pipe, device or endless file given by path would hang or fill memory."""
    if name == "-":
        return
    try:
        mode = Path(name).stat().st_mode
    except FileNotFoundError:
        raise NewstagError(f"{name}: not found; {INPUT_KINDS}") from None
    except OSError as exc:
        raise NewstagError(f"{name}: cannot read ({exc.strerror})") from None
    if stat.S_ISDIR(mode):
        raise NewstagError(f"{name}: is a directory; {INPUT_KINDS}")
    if not stat.S_ISREG(mode):
        raise NewstagError(f"{name}: not a regular file (a pipe, device or socket); save the data "
                           f"to a file, or send it to stdin with --input -")


def _read_input(name: str, text_column: str, encoding: str, cap: int,
                label: str) -> Iterator[Record]:
    if name == "-":
        with _stdin() as stdin:
            text_already = isinstance(stdin, _TextAsBytes)
            yield from _read_lines(Lines(stdin, "stdin", "utf-8" if text_already else encoding, cap))
        return
    path, label = Path(name), Path(label)
    suffix = path.suffix.lower()
    with _open(path, label) as handle:
        if suffix in (".jsonl", ".ndjson"):
            yield from _read_jsonl(Lines(handle, str(label), encoding, cap))
        elif suffix in (".csv", ".tsv"):
            delimiter = "\t" if suffix == ".tsv" else ","
            yield from _read_csv(Lines(handle, str(label), encoding, cap), text_column, delimiter)
        else:
            yield _read_text_file(handle, label, encoding, cap)


def _open(path: Path, label: Path):
    try:
        return open(path, "rb", buffering=READ_BUFFER)
    except OSError as exc:
        raise NewstagError(f"{label}: cannot read ({exc.strerror})") from None


def _stdin():
    """Standard input as bytes with a large buffer (or a replaced text stdin, seen as bytes)."""
    if sys.stdin is None:
        raise NewstagError("stdin is closed; pipe the articles in, or use --input FILE")
    try:
        return open(sys.stdin.fileno(), "rb", buffering=READ_BUFFER, closefd=False)
    except (OSError, ValueError, AttributeError):  # a stream without a file descriptor
        buffer = getattr(sys.stdin, "buffer", None)
        return nullcontext(buffer if buffer is not None else _TextAsBytes(sys.stdin))


class _TextAsBytes:
    """A text stream (already decoded, e.g. a replaced sys.stdin) seen as the bytes Lines reads."""

    def __init__(self, handle):
        self.handle = handle

    def readline(self, limit: int) -> bytes:
        return self.handle.readline(limit).encode("utf-8", "surrogatepass")


def _mb(size: int) -> str:
    return f"{size / 1_000_000:g} MB"


class Lines:
    """The lines of a byte stream, each read with a length cap and decoded on its own."""

    def __init__(self, handle, label: str, encoding: str, cap: int):
        self.handle, self.label, self.encoding, self.cap = handle, label, encoding, cap
        self.number = 0  # the number of the last line read
        self.too_long = False  # whether that line was over the cap (and skipped)
        self.offset = 0  # the byte offset of the next line
        self.strip_bom = codecs.lookup(encoding).name == "utf-8"

    def read(self, cap: int | None = None) -> tuple[str | None, str | None]:
        """(text, problem) of the next line; text is None at the end of the input.

        A line longer than `cap` bytes is skipped to its end without being kept; its problem says so.
        A line that does not decode comes back decoded with replacement characters, and a problem.
        """
        cap = self.cap if cap is None else cap
        start = self.offset
        raw = self.handle.readline(cap + 1)
        if not raw:
            return None, None
        self.number += 1
        self.offset += len(raw)
        self.too_long = len(raw) > cap and not raw.endswith(b"\n")
        if self.too_long:
            self._skip_rest_of_line()
            return "", (f"longer than the {_mb(self.cap)} record limit; "
                        f"raise --max-record-mb or split the record")
        if start == 0 and self.strip_bom and raw.startswith(UTF8_BOM):
            raw, start = raw[len(UTF8_BOM):], len(UTF8_BOM)
        try:
            return raw.decode(self.encoding), None
        except UnicodeDecodeError as exc:
            return raw.decode(self.encoding, "replace"), (
                f"not valid {self.encoding} ({exc.reason} at byte {start + exc.start}); "
                f"pass --encoding (e.g. latin-1) or fix the line")

    def __iter__(self) -> Iterator[tuple[int, str, str | None]]:
        while (line := self.read())[0] is not None:
            yield self.number, *line

    def _skip_rest_of_line(self) -> None:
        """Read on to the end of the line, a buffer at a time, keeping nothing."""
        peek = getattr(self.handle, "peek", None)
        while True:
            if peek:
                ahead = peek(READ_BUFFER)
                end = ahead.find(b"\n")
                piece = self.handle.read(len(ahead) if end < 0 else end + 1)
            else:
                piece = self.handle.readline(READ_BUFFER)
            self.offset += len(piece)
            if not piece or piece.endswith(b"\n"):
                return

    def seek(self, offset: int, number: int) -> None:
        """Go back to the line after `number`, which starts at `offset` (regular files only)."""
        self.handle.seek(offset)
        self.offset, self.number = offset, number


def _read_text_file(handle, path: Path, encoding: str, cap: int) -> Record:
    data = handle.read(cap + 1)
    if len(data) > cap:
        return Record(id=str(path), error=f"{path}: longer than the {_mb(cap)} record limit; "
                                          f"raise --max-record-mb or split the file")
    try:
        return Record(id=str(path), text=data.decode(encoding), where=str(path))
    except UnicodeDecodeError as exc:
        raise NewstagError(f"{path}: not valid {encoding} ({exc.reason} at byte {exc.start}); "
                           f"pass --encoding (e.g. latin-1) or convert the file") from None


def _read_lines(lines: Lines) -> Iterator[Record]:
    for number, text, problem in lines:
        if problem:
            yield Record(id=number, error=f"{lines.label}: line {number}: {problem}")
        elif text.strip():
            yield Record(id=number, text=text.rstrip("\r\n"), where=f"{lines.label}: line {number}")


# ---- JSON lines ---------------------------------------------------------------------------------

class _BadValue(ValueError):
    """A value JSON allows but Python cannot hold safely, or that strict JSON does not allow."""


def _reject_constant(name: str):
    raise _BadValue(f"{name} is not allowed")


def _bounded_int(digits: str) -> int:
    if len(digits) > MAX_INT_DIGITS:
        raise _BadValue(f"a number with {len(digits)} digits (at most {MAX_INT_DIGITS})")
    return int(digits)


def _finite_float(number: str) -> float:
    value = float(number)
    if not math.isfinite(value):
        raise _BadValue(f"the number {number[:40]} is too large")
    return value


def parse_json_object(text: str) -> tuple[dict | None, str | None]:
    """(object, None), or (None, problem) for anything json.loads would choke on or let through."""
    try:
        row = json.loads(text, parse_constant=_reject_constant, parse_int=_bounded_int,
                         parse_float=_finite_float)
    except RecursionError:
        return None, "not valid JSON (nested too deeply)"
    except ValueError as exc:
        return None, f"not valid JSON ({getattr(exc, 'msg', exc)})"
    return (row, None) if isinstance(row, dict) else (None, "not a JSON object")


def _json_id(row: dict, number: int) -> tuple[str | int, str | None]:
    """The record's id, or its line number when absent, and a problem when it cannot be an id."""
    ident = row.get("id")
    if ident is None:
        return number, None
    if isinstance(ident, str) or (isinstance(ident, int) and not isinstance(ident, bool)):
        return ident, None
    kind = {bool: "a boolean", float: "a number with a fraction", list: "an array", dict: "an object"}
    return number, f"'id' must be a string or an integer, not {kind.get(type(ident), type(ident).__name__)}"


def _read_jsonl(lines: Lines) -> Iterator[Record]:
    for number, text, problem in lines:
        if not problem and not text.strip():
            continue
        row, problem = (None, problem) if problem else parse_json_object(text)
        ident, id_problem = _json_id(row, number) if row is not None else (number, None)
        problem = problem or id_problem
        if not problem and not isinstance(row.get("text"), str):
            problem = "no string field 'text'"
        if problem:
            yield Record(id=ident, error=f"{lines.label}: line {number}: {problem}")
        else:
            yield Record(id=ident, text=row["text"], where=f"{lines.label}: line {number}")


# ---- CSV ----------------------------------------------------------------------------------------

class _RecordTooLong(Exception):
    pass


class _CsvFeed:
    """Hands the csv reader one decoded line at a time and watches each record it reads.

    It keeps a record under the size cap across all its lines, remembers its first line and any
    line that did not decode, and notices when the input ends inside the record: that is a quote
    that never closed, which would otherwise swallow the rest of the file without a word.
    """

    def __init__(self, lines: Lines):
        self.lines = lines
        self.start_record()

    def start_record(self) -> None:
        self.first = self.lines.number + 1
        self.after_first: tuple[int, int] | None = None
        self.size = 0
        self.problem: str | None = None
        self.ended = False

    def __iter__(self):
        return self

    def __next__(self) -> str:
        start = self.lines.offset
        text, problem = self.lines.read(self.lines.cap - self.size)
        if text is None:
            self.ended = True
            raise StopIteration
        if self.after_first is None:
            self.after_first = (self.lines.offset, self.lines.number)
        if self.lines.too_long:
            raise _RecordTooLong(f"longer than the {_mb(self.lines.cap)} record limit "
                                 f"(lines {self.first}-{self.lines.number}); raise --max-record-mb, "
                                 f"or close the quote if one opened here is never closed")
        self.size += self.lines.offset - start
        if problem and not self.problem:
            self.problem = problem if self.lines.number == self.first else \
                f"the record goes on to line {self.lines.number}, which is {problem}"
        return text

    def resume_after_first_line(self) -> None:
        """After a record that may hold an unclosed quote, read on from its second line."""
        if self.after_first and self.lines.number > self.first:
            self.lines.seek(*self.after_first)


def _read_csv(lines: Lines, text_column: str, delimiter: str) -> Iterator[Record]:
    csv.field_size_limit(max(csv.field_size_limit(), lines.cap + 1))
    feed = _CsvFeed(lines)
    reader = csv.reader(feed, delimiter=delimiter)
    text_at, id_at, width = _csv_header(reader, feed, text_column)
    separators = "tabs" if delimiter == "\t" else "commas"
    number = 0
    while True:
        feed.start_record()
        try:
            fields, problem = next(reader), feed.problem
        except StopIteration:
            return
        except _RecordTooLong as exc:
            fields, problem = [], str(exc)
            feed.resume_after_first_line()
        except csv.Error as exc:
            fields, problem = [], f"cannot parse as csv ({exc})"
        if not fields and not problem:
            continue  # a blank line
        if feed.ended and fields:
            problem = ("a quoted field opened on this line is never closed; fix the quoting "
                       f"(reading went on from line {feed.first + 1})")
            feed.resume_after_first_line()
        number += 1
        if not problem and len(fields) > width:
            problem = (f"{len(fields)} fields where the header has {width}; quote the text if it "
                       f"contains {separators}")
        where = f"{lines.label}: line {feed.first}"
        if problem:
            yield Record(id=number, error=f"{where}: {problem}")
            continue
        ident = fields[id_at] if id_at is not None and id_at < len(fields) else ""
        yield Record(id=ident or number, text=fields[text_at] if text_at < len(fields) else "",
                     where=where)


def _csv_header(reader, feed: _CsvFeed, text_column: str) -> tuple[int, int | None, int]:
    """Positions of the text and id columns, and how many columns; a header that cannot be read
    stops the run."""
    label = feed.lines.label
    try:
        header = next(reader, [])
    except (_RecordTooLong, csv.Error) as exc:
        raise NewstagError(f"{label}: cannot read the header line ({exc})") from None
    if feed.problem:
        raise NewstagError(f"{label}: header line: {feed.problem}")
    if feed.ended and header:
        raise NewstagError(f"{label}: a quoted field in the header line is never closed; fix the quoting")
    if not header:
        raise NewstagError(f"{label}: the file is empty; a CSV needs a header line naming a "
                           f"'{text_column}' column" if feed.ended else
                           f"{label}: the first line is blank; it must be the header, naming a "
                           f"'{text_column}' column")
    if text_column not in header:
        raise NewstagError(f"{label}: no column '{text_column}' (columns: "
                           f"{', '.join(header)}); pick one with --text-column")
    return header.index(text_column), header.index("id") if "id" in header else None, len(header)


# ---- tagging ------------------------------------------------------------------------------------
