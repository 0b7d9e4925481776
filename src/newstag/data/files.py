"""Small file helpers shared by every stage: hashing, atomic writes, locks and capped reads."""

import hashlib
import json
import os
import shutil
import stat
import tempfile
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from newstag.errors import NewstagError


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Return the hex sha256 of a file, read in chunks so large files stay cheap."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_path(path: str | Path) -> str:
    """sha256 of a file, or of a folder as the hash of its files' relative paths and hashes."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path).as_posix()}\0{sha256_file(file)}\n".encode())
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds.

    Readers never see a half-written file, and an error or Ctrl-C leaves the old file intact.
    """
    with temporary_path(path) as tmp:
        yield tmp
        publish(tmp, path)


@contextmanager
def temporary_path(path: str | Path):
    """Yield an empty temporary file beside `path`, removed on exit unless `publish` moved it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp_name)
    except OSError as exc:
        if exc.filename is not None:
            raise
        # a full disk fails in write(), flush() or a library's writer, which name no file: name
        # the one being written, so the message says where space is needed
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


def publish(tmp: str | Path, path: str | Path) -> None:
    """Rename a finished temporary file over `path`, with the permissions the user's umask gives
    (mkstemp makes 0600 files)."""
    os.chmod(tmp, 0o666 & ~current_umask())
    os.replace(tmp, path)


@contextmanager
def signals_deferred():
    """Hold Ctrl-C and SIGTERM until the block is done: for the few renames that must happen
    together, and for a database write that an interrupt must not cut in two (an SQLite store left
    mid-transaction stays locked, and the KILLED marks after it fail).

    Blocking the signals in this thread is not enough when other threads run (a search's folds):
    one of them takes the signal and Python raises it here anyway. So on the main thread the
    Python handlers are swapped for ones that only note the signal, which is raised again once
    the block is done."""
    import signal
    import threading

    held = (signal.SIGINT, signal.SIGTERM)
    caught: list[int] = []
    swapped = {}
    if threading.current_thread() is threading.main_thread():
        swapped = {number: signal.signal(number, lambda number, frame: caught.append(number))
                   for number in held}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        for number, handler in swapped.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)
        for number in dict.fromkeys(caught):
            signal.raise_signal(number)


TEMP_SUFFIX = ".tmp"


@cache
def current_umask() -> int:
    """The process umask (reading it means setting it, so set it straight back, once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def restored_on_failure(paths):
    """The files as they were if the block fails (an error or Ctrl-C): each existing one is
    hard-linked aside first (no copy; a copy where links are not supported, so the block must
    replace the files, as every atomic save here does, not write into them), put back on failure,
    and a file the block created is removed; on success the links are dropped. A killed process
    leaves them as temporary files, which remove_orphans deletes."""
    paths, aside = [Path(path) for path in paths], {}
    for path in paths:
        if path.is_file():
            aside[path] = path.with_name(f".{path.name}.previous{TEMP_SUFFIX}")
            aside[path].unlink(missing_ok=True)
            try:
                os.link(path, aside[path])
            except OSError:
                shutil.copy2(path, aside[path])
    try:
        yield
    except BaseException:
        for path in paths:
            if path in aside:
                os.replace(aside[path], path)
            else:
                path.unlink(missing_ok=True)
        raise
    finally:
        for kept in aside.values():
            kept.unlink(missing_ok=True)


def remove_orphans(folder: str | Path) -> int:
    """Delete temporary files a killed writer left in `folder`; call it while holding the lock
    that keeps other writers out. Returns how many were removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    orphans = [p for p in folder.glob(f".*{TEMP_SUFFIX}") if p.is_file()]
    for orphan in orphans:
        orphan.unlink(missing_ok=True)
    return len(orphans)


def read_capped(path: str | Path, limit: int, what: str = "file", advice: str = "") -> bytes:
    """The bytes of a regular file of at most `limit` bytes.

    Opened without blocking and checked on the open descriptor, so a FIFO, a device or an endless
    file such as /dev/zero is refused before any read (even if the path is swapped after a check),
    and a file that grows past the limit while being read is refused too: memory stays bounded.
    `advice` ends the too-large message (what to do instead).
    """
    path = Path(path)
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise NewstagError(f"{path}: not a regular file; a {what} must be an ordinary file")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise NewstagError(f"{path}: larger than {_size(limit)}, too large for a {what}{advice}")
    return data


def _size(count: int) -> str:
    return f"{count // 1024} KiB" if count % 1024 == 0 else f"{count:,} bytes"


@contextmanager
def exclusive_lock(path: str | Path, wait: bool = False, what: str = "this"):
    """Hold an exclusive lock on `path` (released when the process ends, even if killed).

    A holder may delete the lock file (and its folder) before letting go, as a failed first
    training does; a waiter then holds a file no longer at `path`, so it locks the new one."""
    import fcntl

    path = Path(path)
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT, 0o666)
        except FileNotFoundError:  # the folder was removed between the two lines: make it again
            continue
        with os.fdopen(descriptor, "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                raise NewstagError(f"{what} is already running (lock {path}); wait for it to "
                                   f"finish, or pass --wait to queue behind it") from None
            if _still_at(handle, path):
                yield
                return


def _still_at(handle, path: Path) -> bool:
    """Whether the open lock file is still the one at `path` (its holder may have deleted it)."""
    try:
        return os.path.samestat(os.fstat(handle.fileno()), path.stat())
    except FileNotFoundError:
        return False


def iter_jsonl(handle):
    """Yield (line number, object, problem) for each non-blank line; problem is None when valid."""
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, None, f"not valid JSON ({exc.msg})"
            continue
        yield number, row, None if isinstance(row, dict) else "not a JSON object"


SCHEMA_MODELINE = "# yaml-language-server:"  # the line that gives editors the experiment schema


def write_edited_yaml(source: str | Path, path: str | Path, edit, header: str = "") -> None:
    """Write `source` (an experiment file already loaded and checked by safe_yaml) to `path`,
    atomically, with `edit(document)` applied and `header` (comment lines) on top, below the
    editor schema line if the file starts with one: the experiment files newstag derives
    (`<name>.best.yaml`, `<name>.threshold.yaml`). ruamel.yaml's round trip keeps the author's
    comments, key order and flow style, which a load and dump with PyYAML loses."""
    import io

    from ruamel.yaml import YAML

    yaml = YAML()  # round trip
    yaml.width = 100
    document = yaml.load(Path(source).read_text(encoding="utf-8"))
    edit(document)
    out = io.StringIO()
    yaml.dump(document, out)
    first, newline, rest = out.getvalue().partition("\n")
    text = first + newline + header + rest if first.startswith(SCHEMA_MODELINE) else header + out.getvalue()
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 text atomically: a reader sees the old file or the new one, whole."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, data) -> None:
    """Write `data` as indented, key-sorted JSON, atomically (stable bytes for stable inputs)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
