"""Tag articles with a saved bundle, streaming: read a chunk, predict it, write it, repeat.

Imports only the standard library and NumPy (newstag.models.compact predicts from a bundle's
compact form); scikit-learn and joblib only for a task that has no compact form; never MLflow.

With several cores, chunks go to worker processes (`tag_stream`): the main process reads and
writes, the workers clean, tag and format, and rows come out in input order with at most two
chunks per worker in flight, so memory stays flat whatever the input's length.

Input is read as bytes, one line at a time with a length cap, and each line is decoded on its own:
so one bad line is one error row (the stream goes on), byte offsets count from the start of the
input, and no record, however long, is ever held whole beyond the cap.
"""

import codecs
import csv
import json
import math
import os
import signal
import stat
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cached_property
from itertools import chain, islice
from pathlib import Path

import numpy as np

from newstag.data.clean import clean_text
from newstag.errors import NewstagError
from newstag.models import compact
from newstag.models.calibrate import class_scores

CHUNK = 2000
CHUNK_CHARS = 50_000_000  # a chunk also ends at this much text, so 2000 long records fit in memory
INLINE_CHUNKS = 2  # without --jobs, inputs up to this many chunks are tagged without workers
IN_FLIGHT = 2  # chunks per worker sent and not yet written: enough to keep every worker busy
DEFAULT_MAX_RECORD_MB = 10
MAX_INT_DIGITS = 4300  # Python's own default limit, kept whatever the interpreter is set to
READ_BUFFER = 1 << 20  # large reads: skipping an over-long line of a gigabyte then takes a moment
UTF8_BOM = codecs.BOM_UTF8
UNCERTAIN = "uncertain"  # the answer when a task's best probability is below its min_confidence
ID_WIDTH = 28  # the table's id column; a longer id shows its end
MAX_COLUMN = 60  # a wider table cell (a multi-label task's list of labels) is cut to this, with ...
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
    _check_encoding(encoding, by_line=any(not _is_whole_file(name) for name in inputs))
    for name in inputs:
        _check_input(name)
    return _stream_records(texts, inputs, text_column, encoding, max_record_bytes, shown or inputs)


def _stream_records(texts, inputs, text_column, encoding, cap, shown) -> Iterator[Record]:
    for number, text in enumerate(texts, start=1):
        yield Record(id=number, text=text)
    for name, label in zip(inputs, shown, strict=True):
        yield from _read_input(name, text_column, encoding, cap, label)


def _is_whole_file(name: str) -> bool:
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


def _check_input(name: str) -> None:
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

def predict_records(bundle: dict, records: Iterable[Record], strict: bool = False,
                    explainers: dict | None = None) -> Iterator[dict]:
    """Tag records chunk by chunk; bad records become error rows (or stop, when strict).
    With `explainers` (explain.explainers_for), each row also gets its tasks' "<task>_terms"."""
    thresholds = min_confidences(bundle)
    for chunk in _chunks(records):
        rows = _predict_chunk(bundle["pipelines"], chunk, strict, thresholds)
        if explainers:
            from newstag.explain import add_terms

            rows = add_terms(list(rows), [record.text for record in chunk], explainers)
        yield from rows


@dataclass
class Job:
    """Everything tagging a chunk needs; each worker process gets it once, when it starts."""

    bundle: dict
    fmt: str = "jsonl"  # or "table"
    encoding: str = "utf-8"  # of the output, so that each line is one it can write
    strict: bool = False
    explainers: dict | None = None

    @cached_property
    def columns(self) -> dict[str, int]:
        """The table's width for each task's column (see column_widths)."""
        return column_widths(self.bundle)

    def run(self, chunk: list[Record]) -> tuple[str, int]:
        """One chunk's output text and how many of its rows are errors."""
        rows = list(predict_records(self.bundle, chunk, self.strict, self.explainers))
        return format_rows(rows, self.fmt, self.encoding, self.columns)


def tag_stream(job: Job, records: Iterable[Record], out, jobs: int | None = None) -> int:
    """Tag `records` and write them to `out` in input order; return how many rows are errors.

    jobs=None: inputs of up to INLINE_CHUNKS chunks are tagged here, longer ones by a worker per
    core; jobs=1: here; jobs=N: by N worker processes. The output bytes are the same either way.
    """
    if job.fmt == "table":
        out.write(table_header(job.columns))
    workers = available_cores() if jobs is None else jobs
    inline = INLINE_CHUNKS if jobs is None else 0
    chunks = _chunks(records)
    errors = 0
    for text, bad in _tagged(job, chunks, inline if workers > 1 else None, workers, out):
        out.write(text)
        errors += bad
    return errors


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _tagged(job: Job, chunks: Iterator[list[Record]], inline: int | None, workers: int,
            out) -> Iterator[tuple[str, int]]:
    """Each chunk's (text, errors), in order: the first `inline` chunks (all, when None) here,
    the rest in worker processes."""
    for chunk in chunks if inline is None else islice(chunks, inline):
        yield job.run(chunk)
    if inline is None:
        return
    first = next(chunks, None)
    if first is not None:
        out.flush()  # a forked worker must not inherit unwritten output (it would write it too)
        yield from _in_workers(job, chain([first], chunks), workers)


_WORKER_JOB: Job | None = None


def _start_worker(job: Job) -> None:
    """In each worker: Ctrl-C reaches the whole process group, and the main process stops the
    workers itself; SIGTERM ends a worker at once."""
    global _WORKER_JOB
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _WORKER_JOB = job


def _run_in_worker(records: list[tuple]) -> tuple[str, int]:
    return _WORKER_JOB.run([Record(*fields) for fields in records])


def _in_workers(job: Job, chunks: Iterable[list[Record]], workers: int) -> Iterator[tuple[str, int]]:
    """Chunks to a pool of worker processes, results in input order; at most IN_FLIGHT chunks per
    worker are out at once. A worker that dies is an error naming the first record not written."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    method = "fork" if sys.platform == "linux" else "spawn"  # fork: the loaded model is shared
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method),
                               initializer=_start_worker, initargs=(job,))
    pending: deque = deque()
    finished = False
    try:
        for chunk in chunks:
            fields = [(record.id, record.text, record.error, record.where) for record in chunk]
            pending.append((_submit(pool, fields, pending), chunk[0].id))
            if len(pending) >= IN_FLIGHT * workers:
                yield _result(*pending.popleft())
        while pending:
            yield _result(*pending.popleft())
        finished = True
    finally:
        _stop(pool, finished)


def _submit(pool, fields: list[tuple], pending: deque):
    from concurrent.futures.process import BrokenProcessPool

    try:
        return pool.submit(_run_in_worker, fields)
    except BrokenProcessPool:
        first_id = pending[0][1] if pending else fields[0][0]
        raise _worker_died(first_id) from None


def _result(future, first_id) -> tuple[str, int]:
    from concurrent.futures.process import BrokenProcessPool

    try:
        return future.result()
    except BrokenProcessPool:
        raise _worker_died(first_id) from None


def _worker_died(first_id) -> NewstagError:
    return NewstagError(f"a worker process died (killed, or out of memory?); the rows from record "
                        f"{first_id} on were not written. Run again, or with --jobs 1")


def _stop(pool, finished: bool) -> None:
    """Shut the pool down; after an error or Ctrl-C, end every worker now rather than let them
    finish chunks nobody will write."""
    if finished:
        pool.shutdown()
        return
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=5)


def min_confidences(bundle: dict) -> dict[str, float]:
    """Each task's `min_confidence` from the bundle's metadata (tasks without one are left out)."""
    tasks = bundle.get("metadata", {}).get("tasks", {})
    found = {task: (tasks.get(task) or {}).get("min_confidence") for task in bundle["pipelines"]}
    return {task: float(value) for task, value in found.items() if value is not None}


def _chunks(records: Iterable[Record]) -> Iterator[list[Record]]:
    """Lists of at most CHUNK records and about CHUNK_CHARS of text, in order."""
    chunk, size = [], 0
    for record in records:
        chunk.append(record)
        size += len(record.text or "")
        if len(chunk) >= CHUNK or size >= CHUNK_CHARS:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _predict_chunk(pipelines: dict, chunk: list[Record], strict: bool,
                   thresholds: dict[str, float]) -> Iterator[dict]:
    for record in chunk:
        if record.error is None:
            record.text = clean_text(record.text)
            if not record.text:
                record.error = f"{record.where or f'record {record.id}'}: empty text"
        if record.error and strict:
            raise NewstagError(f"{record.error} (drop --strict to tag the other records)")
    good = [record for record in chunk if record.error is None]
    labels = tag_tasks(pipelines, [record.text for record in good])
    position = {id(record): i for i, record in enumerate(good)}
    for record in chunk:
        if record.error:
            yield {"id": record.id, "error": record.error}
            continue
        row = {"id": record.id}
        for task, tagged in labels.items():
            if isinstance(tagged, list):  # multi-label: newstag.models.multilabel
                scores = tagged[position[id(record)]]
                row.update({task: list(scores), f"{task}_scores": scores})
                continue
            names, scores = tagged
            label, score = names[position[id(record)]], float(scores[position[id(record)]])
            row.update(_answer(task, label, score, thresholds.get(task)))
        yield row


def _answer(task: str, label: str, score: float, threshold: float | None) -> dict:
    """The task's fields of a row: the label, or "uncertain" with the best label as candidate
    when its probability is below the task's min_confidence."""
    if threshold is None or score >= threshold or not math.isfinite(score):
        return {task: label, f"{task}_score": round(score, 4)}
    return {task: UNCERTAIN, f"{task}_score": round(score, 4), f"{task}_candidate": label,
            f"{task}_candidate_score": round(score, 4)}


def tag_tasks(pipelines: dict, texts: list[str]) -> dict:
    """Per task (in the bundle's order): (labels, scores), or for a multi-label task a list of
    {label: probability} per text. Compact tasks share one analysis of each text."""
    fast = {task: model for task, model in pipelines.items() if isinstance(model, compact.Task)}
    tagged = compact.tag_texts(fast, texts)
    for task, pipeline in pipelines.items():
        if task not in fast:
            from newstag.models import multilabel  # a scikit-learn pipeline: sklearn is loaded

            tagged[task] = multilabel.tag_texts(pipeline, texts) if multilabel.is_multilabel(pipeline) \
                else tag_texts(pipeline, texts)
    return {task: tagged[task] for task in pipelines}


def tag_texts(pipeline, texts: list[str]) -> tuple[list[str], np.ndarray]:
    """Labels and scores: the calibrated probability (a bundle saved before calibration: the
    class probability where the model has one, else a softmax of margins)."""
    if not texts:
        return [], np.array([])
    scores = class_scores(pipeline, texts)
    best = scores.argmax(axis=1)
    classes = pipeline.classes_
    return [str(classes[i]) for i in best], scores[np.arange(len(best)), best]


# ---- output -------------------------------------------------------------------------------------

def write_jsonl(rows: Iterable[dict], out=None) -> int:
    """Write rows as JSON lines; return how many were errors."""
    out, errors = out or sys.stdout, 0
    encoding = getattr(out, "encoding", None) or "utf-8"
    for row in rows:
        text, bad = format_rows([row], "jsonl", encoding, {})
        out.write(text)
        errors += bad
    return errors


def format_rows(rows: list[dict], fmt: str, encoding: str,
                columns: dict[str, int]) -> tuple[str, int]:
    """The rows as output text (JSON lines, or table lines without the header, `columns` the
    width of each task's column), and how many are errors. Workers run this, so the main process
    only writes."""
    if fmt == "table":
        return "".join(table_row(row, columns) for row in rows), sum("error" in row for row in rows)
    rows = [_finite(row) for row in rows]
    return "".join(json_line(row, encoding) + "\n" for row in rows), sum("error" in row for row in rows)


def _finite(row: dict) -> dict:
    """The row, or an error row in its place if a score is NaN or infinite (not valid JSON)."""
    if all(math.isfinite(value) for value in row.values() if isinstance(value, float)):
        return row
    return {"id": row["id"], "error": f"record {row['id']}: the model gave a score that is not a number"}


def json_line(row: dict, encoding: str = "utf-8") -> str:
    """One row as strict JSON that `encoding` can write: \\u escapes only where it cannot
    (a lone surrogate from a JSON id, say, or a non-UTF-8 terminal)."""
    line = json.dumps(row, ensure_ascii=False, allow_nan=False)
    if not line.isascii():
        try:
            line.encode(encoding)
        except UnicodeEncodeError:
            line = json.dumps(row, allow_nan=False)
    return line


def write_table(rows: Iterable[dict], tasks: list[str], out=None) -> int:
    """Write rows as an aligned table for people, each column as wide as its widest cell;
    return how many were errors."""
    out, rows = out or sys.stdout, list(rows)
    tagged = [row for row in rows if "error" not in row]
    columns = {task: min(max([len(visible(task)), *(len(_cell(row, task)) for row in tagged)]),
                         MAX_COLUMN) for task in tasks}
    out.write(table_header(columns))
    text, errors = format_rows(rows, "table", "utf-8", columns)
    out.write(text)
    return errors


def column_widths(bundle: dict) -> dict[str, int]:
    """Each task's table column as wide as its widest cell can be, from the bundle's labels: the
    longest with its score, and the uncertain answer naming it for a task with a min_confidence.
    A table written chunk by chunk then stays aligned without holding its rows first."""
    thresholds = min_confidences(bundle)
    return {task: _column_width(task, model, task in thresholds)
            for task, model in bundle["pipelines"].items()}


def _column_width(task: str, model, uncertain: bool) -> int:
    classes = model.classes if isinstance(model, compact.Task) else model.classes_
    labels = [len(visible(str(label))) for label in classes]
    widths = [len(visible(task)), max(labels, default=0) + len(" (0.00)")]
    if uncertain:
        widths.append(len(f"{UNCERTAIN} (best:  0.00)") + max(labels, default=0))
    if _is_multilabel(model):  # every label could be chosen
        widths.append(sum(labels) + len(" (0.00), ") * len(labels) - len(", "))
    return min(max(widths), MAX_COLUMN)


def _is_multilabel(model) -> bool:
    if isinstance(model, compact.Task):
        return model.multilabel
    from newstag.models import multilabel  # a scikit-learn pipeline: sklearn is loaded

    return multilabel.is_multilabel(model)


def table_header(columns: dict[str, int]) -> str:
    return _table_line("id", [visible(task) for task in columns], columns.values())


def table_row(row: dict, columns: dict[str, int]) -> str:
    """A row's table line, and a line of its terms when it has them."""
    ident = visible(str(row["id"]))[-ID_WIDTH:]
    if "error" in row:
        return f"{ident:<{ID_WIDTH}} error: {visible(row['error'])}\n"
    line = _table_line(ident, [_cell(row, task) for task in columns], columns.values())
    if any(f"{task}_terms" in row for task in columns):
        line += f"{'':<{ID_WIDTH}} {_terms_cell(row, list(columns))}\n"
    return line


def _table_line(ident: str, cells: list[str], widths: Iterable[int]) -> str:
    return f"{ident:<{ID_WIDTH}} " + " ".join(map(_fit, cells, widths)) + "\n"


def _fit(cell: str, width: int) -> str:
    """The cell padded to the column's width, or cut to it ending in ...: the columns line up."""
    return f"{cell:<{width}}" if len(cell) <= width else cell[:width - 3] + "..."


def _cell(row: dict, task: str) -> str:
    if f"{task}_scores" in row:  # multi-label: every label with its probability
        return ", ".join(f"{visible(label)} ({score:.2f})" for label, score in row[f"{task}_scores"].items())
    if f"{task}_candidate" in row:
        return f"{UNCERTAIN} (best: {visible(row[f'{task}_candidate'])} {row[f'{task}_candidate_score']:.2f})"
    return f"{visible(row[task])} ({row[f'{task}_score']:.2f})"


def _terms_cell(row: dict, tasks: list[str], count: int = 3) -> str:
    """'topic: gaza 0.41, ceasefire 0.33, ...; tone: ...': the strongest terms behind each label."""
    return "; ".join(f"{visible(task)}: " + (", ".join(f"{visible(term)} {weight:.2f}" for term, weight
                                                     in row.get(f"{task}_terms", [])[:count]) or "-")
                     for task in tasks)


def visible(text: str) -> str:
    """`text` with control, format and escape characters shown as \\x1b, \\r, \\u202e... escapes.

    A terminal would otherwise run an id's ANSI escape, or let \\r overwrite the line before it.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
