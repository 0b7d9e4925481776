"""Tag articles with a saved bundle, streaming: read a chunk, predict it, write it, repeat.

Imports only the standard library, NumPy, joblib and scikit-learn: never MLflow.
"""

import csv
import io
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from newstag.clean import clean_text
from newstag.errors import NewstagError
from newstag.files import iter_jsonl

CHUNK = 2000


@dataclass
class Record:
    """One article to tag; `error` is set instead of `text` when the input row was unusable."""

    id: str | int
    text: str | None = None
    error: str | None = None


def read_records(texts: list[str], inputs: list[str], text_column: str = "text",
                 encoding: str = "utf-8") -> Iterator[Record]:
    """Articles from arguments, then each --input file ('-' is stdin, one article per line)."""
    for number, text in enumerate(texts, start=1):
        yield Record(id=number, text=text)
    for name in inputs:
        yield from _read_input(name, text_column, encoding)


def _read_input(name: str, text_column: str, encoding: str) -> Iterator[Record]:
    if name == "-":
        stdin = io.TextIOWrapper(sys.stdin.buffer, encoding=encoding, errors="strict") \
            if hasattr(sys.stdin, "buffer") else sys.stdin
        yield from _decoding_errors("stdin", encoding, _read_lines(stdin, "stdin"))
        return
    path = Path(name)
    if not path.is_file():
        kind = "is a directory" if path.is_dir() else "not found"
        raise NewstagError(f"{path}: {kind}; --input takes .txt, .jsonl or .csv files, or - for stdin")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        yield from _open_lines(path, encoding, _read_jsonl)
    elif suffix in (".csv", ".tsv"):
        delimiter = "\t" if suffix == ".tsv" else ","
        yield from _open_lines(path, encoding, lambda handle, label: _read_csv(
            handle, label, text_column, delimiter))
    else:
        yield from _decoding_errors(str(path), encoding, _read_text_file(path, encoding))


def _read_text_file(path: Path, encoding: str) -> Iterator[Record]:
    yield Record(id=str(path), text=path.read_text(encoding=encoding))


def _open_lines(path: Path, encoding: str, reader) -> Iterator[Record]:
    with open(path, encoding=encoding, newline="") as handle:
        yield from _decoding_errors(str(path), encoding, reader(handle, str(path)))


def _decoding_errors(label: str, encoding: str, records: Iterator[Record]) -> Iterator[Record]:
    """Turn a decoding failure anywhere in `records` into one clear error."""
    try:
        yield from records
    except UnicodeDecodeError as exc:
        raise NewstagError(f"{label}: not valid {encoding} ({exc.reason} at byte {exc.start}); "
                           f"pass --encoding (e.g. latin-1) or convert the file") from None
    except LookupError:
        raise NewstagError(f"unknown encoding {encoding!r}; try utf-8 or latin-1") from None


def _read_lines(handle, label: str) -> Iterator[Record]:
    for number, line in enumerate(handle, start=1):
        if line.strip():
            yield Record(id=number, text=line.rstrip("\n"))


def _read_jsonl(handle, label: str) -> Iterator[Record]:
    for number, row, problem in iter_jsonl(handle):
        text = row.get("text") if row else None
        if problem:
            yield Record(id=number, error=f"{label}: line {number}: {problem}")
        elif not isinstance(text, str):
            yield Record(id=number, error=f"{label}: line {number}: no string field 'text'")
        else:
            yield Record(id=row.get("id", number), text=text)


def _read_csv(handle, label: str, text_column: str, delimiter: str) -> Iterator[Record]:
    reader = csv.DictReader(handle, delimiter=delimiter)
    if text_column not in (reader.fieldnames or []):
        raise NewstagError(f"{label}: no column '{text_column}' (columns: "
                           f"{', '.join(reader.fieldnames or [])}); pick one with --text-column")
    for number, row in enumerate(reader, start=1):
        yield Record(id=row.get("id") or number, text=row[text_column] or "")


def predict_records(bundle: dict, records: Iterable[Record], strict: bool = False) -> Iterator[dict]:
    """Tag records chunk by chunk; bad records become error rows (or stop, when strict)."""
    records = iter(records)
    while chunk := list(islice(records, CHUNK)):
        yield from _predict_chunk(bundle["pipelines"], chunk, strict)


def _predict_chunk(pipelines: dict, chunk: list[Record], strict: bool) -> Iterator[dict]:
    for record in chunk:
        if record.error is None:
            record.text = clean_text(record.text)
            if not record.text:
                record.error = f"record {record.id}: empty text"
        if record.error and strict:
            raise NewstagError(f"{record.error} (drop --strict to tag the other records)")
    good = [record for record in chunk if record.error is None]
    labels = {task: tag_texts(pipeline, [r.text for r in good]) for task, pipeline in pipelines.items()}
    position = {id(record): i for i, record in enumerate(good)}
    for record in chunk:
        if record.error:
            yield {"id": record.id, "error": record.error}
            continue
        row = {"id": record.id}
        for task, (names, scores) in labels.items():
            row[task] = names[position[id(record)]]
            row[f"{task}_score"] = round(float(scores[position[id(record)]]), 4)
        yield row


def tag_texts(pipeline, texts: list[str]) -> tuple[list[str], np.ndarray]:
    """Labels and scores: class probability where the model has one, else a softmax of margins."""
    if not texts:
        return [], np.array([])
    if hasattr(pipeline, "predict_proba"):
        scores = pipeline.predict_proba(texts)
    else:
        margins = pipeline.decision_function(texts)
        if margins.ndim == 1:
            margins = np.column_stack([-margins, margins])
        scores = np.exp(margins - margins.max(axis=1, keepdims=True))
        scores /= scores.sum(axis=1, keepdims=True)
    best = scores.argmax(axis=1)
    classes = pipeline.classes_
    return [str(classes[i]) for i in best], scores[np.arange(len(best)), best]


def write_jsonl(rows: Iterable[dict], out=None) -> int:
    """Write rows as JSON lines; return how many were errors."""
    out, errors = out or sys.stdout, 0
    for row in rows:
        errors += "error" in row
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return errors


def write_table(rows: Iterable[dict], tasks: list[str], out=None) -> int:
    """Write rows as an aligned table for people; return how many were errors."""
    out, errors = out or sys.stdout, 0
    out.write(f"{'id':<28} " + " ".join(f"{task:<22}" for task in tasks) + "\n")
    for row in rows:
        ident = str(row["id"])[-28:]
        if "error" in row:
            errors += 1
            out.write(f"{ident:<28} error: {row['error']}\n")
            continue
        cells = [f"{row[task]} ({row[f'{task}_score']:.2f})" for task in tasks]
        out.write(f"{ident:<28} " + " ".join(f"{cell:<22}" for cell in cells) + "\n")
    return errors
