"""Tag articles with a saved bundle, streaming: read a chunk, predict it, write it, repeat.

Imports only the standard library and NumPy (newstag.models.compact predicts from a bundle's
compact form); scikit-learn and joblib only for a task that has no compact form; never MLflow.

With several cores, chunks go to worker processes (`tag_stream`): the main process reads and
writes, the workers clean, tag and format, and rows come out in input order with at most two
chunks per worker in flight, so memory stays flat whatever the input's length. The records come
from `newstag.data.records`.
"""

import json
import math
import os
import signal
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from itertools import chain, islice

import numpy as np

from newstag.data.clean import clean_text
from newstag.data.records import Record
from newstag.errors import NewstagError
from newstag.models import compact
from newstag.models.calibrate import class_scores

CHUNK = 2000
CHUNK_CHARS = 50_000_000  # a chunk also ends at this much text, so 2000 long records fit in memory
INLINE_CHUNKS = 2  # without --jobs, inputs up to this many chunks are tagged without workers
IN_FLIGHT = 2  # chunks per worker sent and not yet written: enough to keep every worker busy
UNCERTAIN = "uncertain"  # the answer when a task's best probability is below its min_confidence
ID_WIDTH = 28  # the table's id column; a longer id shows its end
MAX_COLUMN = 60  # a wider table cell (a multi-label task's list of labels) is cut to this, with ...


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
        stop_workers(pool, finished)


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


def stop_workers(pool, finished: bool) -> None:
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
    rows = [finite(row) for row in rows]
    return "".join(json_line(row, encoding) + "\n" for row in rows), sum("error" in row for row in rows)


def finite(row: dict) -> dict:
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
    ident = _id_cell(visible(str(row["id"])))
    if "error" in row:
        return f"{ident:<{ID_WIDTH}} error: {visible(row['error'])}\n"
    line = _table_line(ident, [_cell(row, task) for task in columns], columns.values())
    if any(f"{task}_terms" in row for task in columns):
        line += f"{'':<{ID_WIDTH}} {_terms_cell(row, list(columns))}\n"
    return line


def _table_line(ident: str, cells: list[str], widths: Iterable[int]) -> str:
    return f"{ident:<{ID_WIDTH}} " + " ".join(map(_fit, cells, widths)) + "\n"


def _id_cell(ident: str) -> str:
    """A long id keeps its end (a file name's distinctive part) behind "...", so a cut path does
    not read as another, shorter one."""
    return ident if len(ident) <= ID_WIDTH else "..." + ident[-(ID_WIDTH - 3):]


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
