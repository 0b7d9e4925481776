"""Batch prediction over many files: `newstag predict --input 'archive/*.jsonl' --output-dir out/`.

Each input file gets one output file in the output folder, `<its name without suffix>.jsonl`,
holding exactly the rows `newstag predict --input FILE` writes for it. Each output is written to a
temporary file and renamed into place, so a file in the folder is either complete or absent: a
batch stopped at any point (Ctrl-C, a crash, a killed Dask worker) is resumed by running the same
command again, which skips the files already there.

A hidden manifest (`.newstag-batch.json`) records the model and the options that change the
output, so a rerun with another model or other options does not mix its rows with older ones,
and a folder holding files newstag did not write is refused rather than taken as done.

Locally, with --jobs N above 1 (or without --jobs, one per core once the files hold more than
predict's inline limit of lines), N worker processes tag whole files, one file per task: a batch
of many small files then uses every core, where predict's own chunk workers would not start.
With one file, or --jobs 1, the files are tagged one after the other in this process (each with
predict's --jobs chunk workers). With `--backend dask` each file is a task on the cluster.
Either way the worker reads the input, loads the bundle itself (verified against its sidecar's
sha256, and against the sha256 the client saw, so every worker tags with the same model) and
writes the output; for Dask the paths must therefore be ones the workers can read and write (a
shared filesystem). A Dask worker lost mid-batch has its task rerun by Dask; a local worker
process that dies stops the batch with the files not written named, and a rerun tags them.
Since the output name is fixed and written by rename, no file is lost or written twice.
"""

import glob
import json
import logging
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from newstag.data.files import atomic_path, exclusive_lock, remove_orphans, sha256_file, write_json
from newstag.errors import NewstagError

log = logging.getLogger("newstag")
MANIFEST = ".newstag-batch.json"
LOCK = ".newstag-batch.lock"
GLOB_CHARS = "*?["


@dataclass(frozen=True)
class Options:
    """What changes the output bytes of a file, besides the model."""

    text_column: str = "text"
    encoding: str = "utf-8"
    strict: bool = False
    explain: bool = False
    max_record_mb: float = 10


@dataclass
class Summary:
    files: int = 0
    skipped: int = 0
    rows: int = 0
    errors: int = 0
    seconds: float = 0.0


# ---- planning, before any work ------------------------------------------------------------------

def expand_inputs(patterns: list[str]) -> list[Path]:
    """Every file the --input patterns name, in sorted order, each once; a pattern that matches
    nothing is an error (a typo would otherwise tag nothing and succeed)."""
    from newstag.data.records import check_input

    found: dict[Path, Path] = {}
    for pattern in patterns:
        if pattern == "-":
            raise NewstagError("--output-dir tags files, not stdin; drop --input - or --output-dir")
        names = sorted(glob.glob(pattern)) if any(c in pattern for c in GLOB_CHARS) else [pattern]
        if not names:
            raise NewstagError(f"--input {pattern!r} matches no file; check the pattern (quote it "
                               f"so newstag, not the shell, expands it)")
        for name in names:
            check_input(name)
            found.setdefault(Path(name).resolve(), Path(name))
    return list(found.values())


def plan(inputs: list[Path], output_dir: str) -> list[tuple[Path, Path]]:
    """(input, output) pairs; refuses an output folder that is a file, an input inside it, and
    two inputs that would write the same output."""
    folder = Path(output_dir)
    if folder.exists() and not folder.is_dir():
        raise NewstagError(f"--output-dir {output_dir}: is a file, not a folder; give a folder "
                           f"(it is created if missing)")
    folder = folder.resolve()
    pairs, taken = [], {}
    for source in inputs:
        if folder in source.resolve().parents:
            raise NewstagError(f"{source}: is inside --output-dir {output_dir}; write the outputs to "
                               f"a folder apart from the inputs")
        target = folder / f"{source.stem}.jsonl"
        if target in taken:
            raise NewstagError(f"{taken[target]} and {source} would both write {target.name}; tag "
                               f"them into different --output-dir folders, or rename one")
        taken[target] = source
        pairs.append((source, target))
    return pairs


def model_identity(model: str) -> str:
    """The sha256 of the bundle's sidecar (which holds the model's and compact form's sha256), or
    the registry URI: what the manifest records and the Dask workers check."""
    if model.startswith("models:/"):
        return model
    from newstag.models.bundle import _verified_sidecar, sidecar_path

    _verified_sidecar(Path(model))  # a missing or altered bundle fails here, before any work
    return sha256_file(sidecar_path(model))


def check_manifest(folder: Path, pairs: list[tuple[Path, Path]], manifest: dict, shown: str) -> None:
    """A folder written by another model or with other options, or holding files newstag did not
    write, is refused: skipping its files as done would mix outputs."""
    path = folder / MANIFEST
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        if old != manifest:
            raise NewstagError(f"--output-dir {shown}: was written with another model or other "
                               f"options ({path.name} differs); use a new folder, or delete it to "
                               f"start over")
        return
    ours = {target.name for _, target in pairs}
    foreign = sorted(p.name for p in folder.iterdir() if p.name not in (LOCK,) and p.name not in ours
                     and not p.name.endswith(".tmp"))
    done = sorted(p.name for p in folder.iterdir() if p.name in ours)
    if foreign or done:
        raise NewstagError(f"--output-dir {shown}: holds files newstag did not write "
                           f"({(foreign or done)[0]}...); give an empty or new folder")


# ---- tagging one file ---------------------------------------------------------------------------

def tag_file(bundle: dict, model: str, source: Path, target: Path, options: Options,
             jobs: int | None, shown: str | None = None) -> tuple[int, int]:
    """Tag one input into `target` atomically, as `newstag predict --input SHOWN --output
    TARGET` does (`shown`: the input's name as the user gave it); return (rows, error rows)."""
    from newstag.data.records import read_records
    from newstag.predict import Job, tag_stream

    explainers = None
    if options.explain:
        from newstag.explain import explainers_for

        explainers = explainers_for(bundle["pipelines"], model, "retrain it, or drop --explain")
    job = Job(bundle, "jsonl", strict=options.strict, explainers=explainers)
    records = read_records([], [str(source)], options.text_column, options.encoding,
                           max_record_bytes=int(options.max_record_mb * 1_000_000),
                           shown=[shown or str(source)])
    with atomic_path(target) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as out:
            errors = tag_stream(job, records, out, jobs)
        rows = _count_lines(tmp)
    return rows, errors


def _count_lines(path: Path, enough: float = float("inf")) -> int:
    """The lines in `path`, or a count above `enough` as soon as one is reached."""
    lines = 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            lines += block.count(b"\n")
            if lines > enough:
                break
    return lines


_WORKER_BUNDLES: dict = {}


def tag_file_on_worker(model: str, identity: str, source: str, shown: str, target: str,
                       options: Options) -> tuple[int, int]:
    """Runs in a worker (Dask's, or a local worker process): load the bundle once per worker
    (verified by the loader, and checked to be the one the client saw), then tag the file."""
    from newstag.models.bundle import load_for_prediction, sidecar_path

    try:
        seen = sha256_file(sidecar_path(model))
    except OSError:
        seen = None
    if identity != seen:
        raise NewstagError(f"{model}: on this worker it is missing or not the model the client has "
                           f"(its sidecar's sha256 differs); give the workers the same bundle")
    key = (model, identity)
    if key not in _WORKER_BUNDLES:  # loaded (and its sha256 checked) once per worker
        _WORKER_BUNDLES.clear()
        _WORKER_BUNDLES[key] = load_for_prediction(model)
    return tag_file(_WORKER_BUNDLES[key], model, Path(source), Path(target), options, jobs=1,
                    shown=shown)


# ---- the batch ----------------------------------------------------------------------------------

def run_batch(model: str, patterns: list[str], output_dir: str, options: Options,
              jobs: int | None = None, client=None, load_bundle=None) -> Summary:
    """Tag every input file into `output_dir`, skipping the outputs already there.

    `load_bundle(model)` loads the model for a local run; with a Dask `client` the workers load it."""
    pairs = plan(expand_inputs(patterns), output_dir)
    if client is not None and model.startswith("models:/"):
        raise NewstagError("--backend dask needs a bundle file the workers can read, not a "
                           "registered model; give --model models/<name>/model.joblib")
    identity = model_identity(model)
    folder = Path(output_dir).resolve()
    manifest = {"model": identity, "options": asdict(options)}
    if folder.is_dir():
        check_manifest(folder, pairs, manifest, output_dir)  # before the lock file is made there
    folder.mkdir(parents=True, exist_ok=True)
    summary = Summary()
    start = time.perf_counter()
    with exclusive_lock(folder / LOCK, what=f"a batch into {output_dir}"):
        check_manifest(folder, pairs, manifest, output_dir)
        write_json(folder / MANIFEST, manifest)
        remove_orphans(folder)  # temporary files of a batch that was killed
        todo = [(source, target) for source, target in pairs if not target.exists()]
        summary.skipped = len(pairs) - len(todo)
        log.info("batch: %d file(s) to tag into %s, %d already done (skipped)", len(todo),
                 output_dir, summary.skipped)
        if client is None:
            results = _tag_here(load_bundle, model, identity, todo, options, jobs)
        else:
            results = _tag_on_cluster(client, model, identity, todo, options)
        try:
            for rows, errors in results:
                summary.files += 1
                summary.rows += rows
                summary.errors += errors
        finally:
            remove_orphans(folder)  # left by a worker killed mid-file, or stopped by Ctrl-C
    summary.seconds = time.perf_counter() - start
    return summary


def _tag_here(load_bundle, model, identity, todo, options, jobs):
    """Files in worker processes when there are several and enough work (see `_file_workers`),
    else one after the other here, each with predict's own --jobs chunk workers."""
    if not todo:
        return
    workers = _file_workers(model, todo, jobs)
    if workers > 1:
        log.info("batch: tagging whole files in %d worker processes", workers)
        yield from _tag_in_processes(model, identity, todo, options, workers)
        return
    bundle = load_bundle(model)
    for source, target in todo:
        yield tag_file(bundle, model, source, target, options, jobs)


def _file_workers(model: str, todo: list, jobs: int | None) -> int:
    """How many processes tag whole files: --jobs N, or as predict decides without --jobs (one
    per core once the inputs hold more than INLINE_CHUNKS chunks of lines), never more than the
    files. A registered model stays in this process: each worker would fetch it again, and the
    alias may move to another version mid-batch."""
    from newstag.data.records import is_whole_file
    from newstag.predict import CHUNK, INLINE_CHUNKS, available_cores

    if len(todo) < 2 or model.startswith("models:/"):
        return 1
    if jobs is not None:
        return min(jobs, len(todo))
    enough, articles = INLINE_CHUNKS * CHUNK, 0
    for source, _ in todo:  # a .txt file is one article; other files, about one a line
        articles += 1 if is_whole_file(str(source)) else _count_lines(source, enough - articles)
        if articles > enough:
            return min(available_cores(), len(todo))
    return 1


def _start_file_worker() -> None:
    """Ctrl-C reaches the whole process group: the main process stops the workers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _tag_in_processes(model, identity, todo, options, workers):
    """One task per file in a process pool; each process loads and checks the bundle once (as a
    Dask worker does). Results in input order, so the first failing file is always the same one.
    A process that dies breaks the pool: the files not yet written are named, and a rerun tags
    them (each output is renamed into place whole, so none is half there or written twice)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from newstag.predict import stop_workers

    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method),
                               initializer=_start_file_worker)
    model = str(Path(model).resolve())
    finished = False
    try:
        futures = [(pool.submit(tag_file_on_worker, model, identity, str(source.resolve()),
                                str(source), str(target), options), source, target)
                   for source, target in todo]
        for future, _, _ in futures:
            try:
                yield future.result()
            except BrokenProcessPool:
                raise _files_lost([source for future, source, target in futures
                                   if future.exception() and not target.exists()]) from None
        finished = True
    finally:
        stop_workers(pool, finished)


def _files_lost(sources: list[Path]) -> NewstagError:
    named = ", ".join(str(source) for source in sources[:5])
    more = f" and {len(sources) - 5} more" if len(sources) > 5 else ""
    return NewstagError(f"a worker process died (killed, or out of memory?); not written: {named}"
                        f"{more}. Run the same command again to tag them (files done are skipped)")


def _tag_on_cluster(client, model, identity, todo, options):
    """One task per file; results as they finish. The first failing file cancels the rest."""
    from distributed import KilledWorker, as_completed

    model = str(Path(model).resolve())
    futures = {client.submit(tag_file_on_worker, model, identity, str(source.resolve()), str(source),
                             str(target), options, pure=False): source for source, target in todo}
    try:
        for future in as_completed(futures, loop=client.loop):
            try:
                yield future.result()
            except KilledWorker:
                raise NewstagError(f"the Dask cluster lost the workers tagging {futures[future]} "
                                   f"several times; the files done so far are kept. Check the "
                                   f"workers' memory and logs, then run again to resume") from None
    finally:
        client.cancel(list(futures))
