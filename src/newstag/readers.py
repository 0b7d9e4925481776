"""Read a table of articles (CSV, TSV, JSONL, Parquet) into a DataFrame, with clear errors."""

from pathlib import Path

import pandas as pd

from newstag.errors import NewstagError
from newstag.files import iter_jsonl

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


def read_table(path: str | Path, fmt: str = "auto", encoding: str = "utf-8") -> pd.DataFrame:
    """Read every row as strings (labels and ids are never re-typed)."""
    path = Path(path)
    if not path.exists():
        raise NewstagError(f"{path}: file not found; check data.path in the experiment")
    if path.is_dir():
        raise NewstagError(f"{path}: is a directory; data.path must name a file")
    if path.stat().st_size == 0:
        raise NewstagError(f"{path}: file is empty")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt != "parquet" and _looks_binary(path):
        raise NewstagError(f"{path}: looks like a binary file, not {fmt} text; check data.path "
                           f"and data.format")
    try:
        frame = _READERS[fmt](path, encoding)
    except UnicodeDecodeError as exc:
        raise NewstagError(
            f"{path}: not valid {encoding} (byte {exc.start}); set data.encoding, e.g. latin-1"
        ) from None
    except (EOFError, OSError) as exc:
        raise NewstagError(f"{path}: cannot read the file ({exc}); is it truncated?") from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise NewstagError(f"{path}: cannot parse as {fmt}: {str(exc).strip()[:200]}") from None
    if frame.empty:
        raise NewstagError(f"{path}: holds no rows")
    return frame


def _looks_binary(path: Path) -> bool:
    """NUL bytes in the first 8 KiB (after gunzip) mean this is no text file."""
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            return b"\x00" in handle.read(8192)
    except (OSError, EOFError):
        return False  # the reader below reports unreadable files


def _read_csv(path: Path, encoding: str, sep: str = ",") -> pd.DataFrame:
    return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""],
                       encoding=encoding)


def _read_tsv(path: Path, encoding: str) -> pd.DataFrame:
    return _read_csv(path, encoding, sep="\t")


def _read_jsonl(path: Path, encoding: str) -> pd.DataFrame:
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    with opener(path, "rt", encoding=encoding) as handle:
        for number, row, problem in iter_jsonl(handle):
            if problem:
                raise NewstagError(f"{path}: line {number} is {problem}")
            rows.append(row)
    return _as_strings(pd.DataFrame(rows))


def _read_parquet(path: Path, encoding: str) -> pd.DataFrame:
    return _as_strings(pd.read_parquet(path))


def _as_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """Make every non-missing cell a string and every missing one None, as the CSV reader does."""
    return frame.astype(object).map(
        lambda value: None if _is_missing(value) else value if isinstance(value, str) else str(value)
    )


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


_READERS = {"csv": _read_csv, "tsv": _read_tsv, "jsonl": _read_jsonl, "parquet": _read_parquet}
