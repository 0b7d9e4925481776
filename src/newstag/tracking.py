"""Everything about runs: one per training (resumed by evaluation) with its description, inputs,
params, metrics named split/task/metric and the bundle logged as one pyfunc model; the lean UI.

`train`, `evaluate`, `search`, `ui` and the registry import this module; prediction from a file
never does. MLflow itself is imported inside the functions so that `--no-tracking` runs and
error paths stay fast.
"""

import json
import logging
import os
import re
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from newstag.data.files import exclusive_lock
from newstag.errors import NewstagError

log = logging.getLogger(__name__)


def quiet_downloads() -> None:
    """No progress bars on stderr when MLflow copies a model's files (newstag logs what it does)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, else a SQLite store `mlflow.db` in the current directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def check_reachable(uri: str) -> None:
    """Fail before any work when a tracking server is named but does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5):
            return
    except OSError as exc:
        reason = getattr(exc, "reason", exc)
        raise NewstagError(
            f"MLflow tracking server {uri} is unreachable ({reason}); start it with `make ui` "
            f"or `mlflow server --host 127.0.0.1`, unset MLFLOW_TRACKING_URI, or pass --no-tracking"
        ) from None


def lean_server_env() -> dict:
    """The environment for an MLflow server process: the venv's bin first on PATH (MLflow starts
    uvicorn by name), and no job-execution runner (the UI needs none, and it triples the memory)."""
    import sys

    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "PATH": path, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def runs_link(uri: str, experiment: str, base: str) -> str:
    """The UI's address of an experiment's training runs (the page it opens on may be another)."""
    found = _experiment_id(uri, experiment)
    if found is None:
        return f"{base}/ (no experiment {experiment!r} yet: train one first)"
    return f"{base}/#/experiments/{found}/runs"


def _experiment_id(uri: str, name: str) -> str | None:
    """Read from a SQLite store directly (importing MLflow would add seconds to the UI's start)."""
    if not uri.startswith("sqlite:///"):
        from mlflow.tracking import MlflowClient

        with mlflow_errors(uri):
            found = MlflowClient(uri).get_experiment_by_name(name)
        return found and found.experiment_id
    import sqlite3
    from contextlib import closing

    database = Path(uri.removeprefix("sqlite:///")).resolve()
    if not database.is_file():
        return None
    try:
        with closing(sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)) as db:
            row = db.execute("select experiment_id from experiments where name = ? "
                             "and lifecycle_stage = 'active'", (name,)).fetchone()
    except sqlite3.Error:
        return None
    return str(row[0]) if row else None


def start_ui(experiment: str, host: str, port: int) -> int:
    """Print the link to the runs, then become a one-worker MLflow server over the same store."""
    import sys

    uri = tracking_uri()
    link = runs_link(uri, experiment, f"http://{host}:{port}")
    print(f"MLflow UI, training runs of {experiment!r}: {link}", flush=True)
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    os.execve(mlflow, [mlflow, "server", "--backend-store-uri", uri, "--host", host, "--port", str(port),
                       "--workers", "1"], lean_server_env())
    return 0  # not reached


def prepare_store(uri: str) -> None:
    """Create or upgrade a SQLite store once, under a lock, before any run touches it.

    MLflow creates its tables on first use; two processes doing that at once on a fresh
    mlflow.db crash (duplicate column), as `make -j2` over two experiments did.
    """
    if not uri.startswith("sqlite:///"):
        return
    database = Path(uri.removeprefix("sqlite:///"))
    with mlflow_errors(uri), exclusive_lock(database.with_name(f".{database.name}.lock"), wait=True):
        from mlflow.tracking import MlflowClient

        MlflowClient(uri).search_experiments(max_results=1)


@contextmanager
def mlflow_errors(uri: str):
    """Turn a failing store (read-only, full disk, corrupt) into one line saying what to do."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except (MlflowException, SQLAlchemyError, OSError) as exc:
        if isinstance(exc, OSError) and exc.filename is None:
            raise
        raise NewstagError(f"MLflow store {uri}: {_database_reason(exc)}; check that it is writable "
                           f"and the disk has space, or pass --no-tracking") from None


def _database_reason(exc: BaseException) -> str:
    """The driver's own words (e.g. 'attempt to write a readonly database'), not the SQL around them."""
    seen = exc
    while seen is not None:
        if getattr(seen, "orig", None) is not None:
            return str(seen.orig)[:200]
        seen = seen.__cause__ or seen.__context__
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    driver = [line for line in lines if line.startswith("(sqlite3.")]
    return (driver or lines or [type(exc).__name__])[0][:200]


def flatten(data: dict, prefix: str = "") -> dict[str, str]:
    """{'a': {'b': 1}} -> {'a.b': '1'}; lists as JSON, so params read back as they were written."""
    flat = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, list | dict) else str(value)
    return flat


# Config keys that are not training settings: the description is the run's note and bench
# settings belong to `make bench`. The whole config is logged as config.json.
NOT_PARAMS = ("description", "bench", "path")
_DROP = object()


def run_params(config) -> dict[str, str]:
    """The config as MLflow params: the settings an experiment file chose, without empty values
    ({}, [], null) and without settings left at their default (config.json holds them all)."""
    chosen = {key: value for key, value in config.to_dict().items() if key not in NOT_PARAMS}
    pruned = _pruned(chosen, setting_defaults(config))
    return flatten(pruned if pruned is not _DROP else {})


def setting_defaults(config) -> dict:
    """What each setting is when an experiment file leaves it out."""
    from dataclasses import asdict

    from newstag.config import DataConfig, MlflowConfig, SplitConfig, TaskSettings

    data = asdict(DataConfig(path="-"))
    data.pop("path")
    return {"data": data, "split": asdict(SplitConfig()), "mlflow": asdict(MlflowConfig()),
            "tasks": dict.fromkeys(config.task_names, asdict(TaskSettings()))}


def _pruned(value, default):
    if isinstance(value, dict):
        kept = {}
        for key, item in value.items():
            item = _pruned(item, default.get(key, _DROP) if isinstance(default, dict) else _DROP)
            if item is not _DROP:
                kept[key] = item
        return kept or _DROP
    if value in (None, "", [], ()) or (default is not _DROP and _same(value, default)):
        return _DROP
    return value


def _same(value, default) -> bool:
    return json.dumps(value, default=str) == json.dumps(default, default=str)


def metric_name(*parts: str) -> str:
    """Join parts with '/' (MLflow's UI groups metrics by these prefixes, e.g. test/topic/accuracy),
    keeping only characters MLflow accepts in a metric name."""
    raw = "/".join(parts)
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in raw)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_status(exc_type) -> str:
    """How a run ends: FINISHED, KILLED on Ctrl-C or SIGTERM (both KeyboardInterrupt), else FAILED."""
    if exc_type is None:
        return "FINISHED"
    return "KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED"


def start_training(config, manifest: dict) -> "TrainingRun":
    """Open the run a training logs into (a context manager)."""
    return TrainingRun(config, manifest)


class TrainingRun:
    """An MLflow run holding a training's params, inputs, validation scores, plots and the model."""

    def __init__(self, config, manifest: dict):
        import mlflow

        self.mlflow, self.config, self.manifest = mlflow, config, manifest
        quiet_downloads()
        self.uri = tracking_uri()
        check_reachable(self.uri)
        prepare_store(self.uri)
        mlflow.set_tracking_uri(self.uri)
        with mlflow_errors(self.uri):
            experiment = mlflow.set_experiment(config.mlflow.experiment)
            describe_experiment(mlflow.MlflowClient(self.uri), experiment, config)
            self.run = mlflow.start_run(run_name=config.name, experiment_id=experiment.experiment_id,
                                        description=config.description or None,
                                        tags={"git_commit": git_commit(),
                                              "data_sha256": manifest["data_sha256"],
                                              "config_sha256": config_sha256(config),
                                              "experiment_file": config.name, "stage": "train"})
            mlflow.log_params(run_params(config))
            mlflow.log_dict(config.to_dict(), "config.json")
            mlflow.log_dict(manifest, "data/manifest.json")
            log_split_inputs(mlflow.MlflowClient(self.uri), self.run.info.run_id, config)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        status = run_status(exc_type)
        with mlflow_errors(self.uri):
            self.mlflow.end_run(status)
        return False

    def log_training(self, results: dict, bundle: Path, sidecar: dict, example_texts: list[str]) -> None:
        with mlflow_errors(self.uri):
            self._log_training(results, bundle, sidecar, example_texts)

    def _log_training(self, results: dict, bundle: Path, sidecar: dict, example_texts: list[str]) -> None:
        from newstag.plots import grid_figure

        pipelines = {task: result.pipeline for task, result in results.items()}
        model = self._log_model(bundle, sidecar, pipelines, example_texts)
        self.mlflow.set_tag(MODEL_ID_TAG, model.model_id)
        for task, result in results.items():
            self.mlflow.log_params({f"best.{task}.{k}": v for k, v in result.best_params.items()})
            self.mlflow.log_metrics({metric_name("val", task, key): value  # numbers; the rest are params
                                     for key, value in result.validation.items()
                                     if isinstance(value, int | float) and not isinstance(value, bool)},
                                    model_id=model.model_id)
            self.mlflow.log_params({f"val.{task}.{key}": value for key, value in result.validation.items()
                                    if isinstance(value, str)})
            for row in getattr(result, "history", []):  # streaming: one point per epoch
                self.mlflow.log_metrics({metric_name("epoch", task, key): row[key]
                                         for key in ("f1_macro", "accuracy", "mb_per_second", "seconds")},
                                        step=row["epoch"])
            self.mlflow.log_figure(grid_figure(task, result.candidates), f"plots/grid_{task}.png")
            self.mlflow.log_dict(result.candidates, f"grid/{task}.json")
        if self.config.mlflow.register:
            from newstag.registry import register

            register(self.mlflow.MlflowClient(self.uri), self.config, model, self.run.info.run_id,
                     sidecar)

    def _log_model(self, bundle: Path, sidecar: dict, pipelines: dict, example_texts: list[str]):
        """The bundle itself as one pyfunc model: every task, with scores, like `newstag predict`."""
        import tempfile

        from newstag import serving

        loaded = {"pipelines": pipelines, "metadata": sidecar}
        with tempfile.TemporaryDirectory(prefix="newstag-model-") as folder:
            files = serving.bundle_folder(bundle, Path(folder) / "bundle")
            return self.mlflow.pyfunc.log_model(
                name=logged_model_name(self.config.name), python_model=serving.MODEL_CODE,
                artifacts={serving.BUNDLE_ARTIFACT: str(files)},
                signature=serving.signature(loaded),
                input_example=serving.input_example(example_texts),
                pip_requirements=serving.requirements(sidecar.get("versions") or {}),
                tags={"data_sha256": sidecar["data_sha256"], "bundle_sha256": sidecar["sha256"]},
            )

    def reference(self) -> dict:
        return {"tracking_uri": self.uri, "run_id": self.run.info.run_id,
                "experiment_id": self.run.info.experiment_id}


def logged_model_name(experiment: str) -> str:
    """The run's model's name: newstag-<experiment> with the characters MLflow refuses in a logged
    model's name ("/", ":", ".", "%" and quotes) made "-", so that `default.threshold.yaml` or
    `news.best.yaml` (what evaluate and search write) train like any other experiment."""
    return "newstag-" + re.sub(r"[/:.%\"']", "-", experiment)


MAIN_METRIC = "test/mean/f1_macro"  # the mean over tasks of the test macro-F1: what promote compares
MODEL_ID_TAG = "newstag.model_id"  # the run's logged model, which evaluate logs its metrics with
CLASSIC_ML = "custom_model_development"  # mlflow.experimentKind: the UI opens on runs, not traces
NOTE = "mlflow.note.content"  # the description the UI shows (and edits) for experiments and runs
NOTE_HEADER = "newstag runs: one per training of an experiment file (`experiments/<name>.yaml`)."


def config_sha256(config) -> str:
    """The identity of a configuration: the same settings give the same hash."""
    import hashlib

    text = json.dumps(config.to_dict(), sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def describe_experiment(client, experiment, config) -> None:
    """Mark the MLflow experiment as classic ML and keep, in its description, one line per
    experiment file trained into it with that file's description (several files share one)."""
    tags = experiment.tags or {}
    if tags.get("mlflow.experimentKind") != CLASSIC_ML:
        client.set_experiment_tag(experiment.experiment_id, "mlflow.experimentKind", CLASSIC_ML)
    note = experiment_note(tags.get(NOTE, ""), config.name, config.description)
    if note != tags.get(NOTE):
        client.set_experiment_tag(experiment.experiment_id, NOTE, note)


def experiment_note(note: str, name: str, description: str) -> str:
    """The note with `- **name**: description` added or replaced; other lines are kept."""
    kept = [line for line in (note or "").splitlines()
            if line.strip() and line != NOTE_HEADER and not line.startswith(f"- **{name}**:")]
    return "\n".join([NOTE_HEADER, "", *kept, f"- **{name}**: {description or '(no description)'}"]) + "\n"


SPLIT_CONTEXT = {"train": "training", "validation": "validation", "test": "test"}


def log_split_inputs(client, run_id: str, config) -> None:
    """One MLflow dataset per split the run trains or is tested on (name, file, sha256, rows),
    from the manifests preprocess wrote; nothing is read but the manifests."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    from newstag.config import task_source
    from newstag.data.splits import read_manifest

    sources = {task_source(config, task).name: task_source(config, task) for task in config.task_names}
    inputs = []
    for source in sources.values():
        for split, entry in read_manifest(source)["splits"].items():
            dataset = Dataset(name=f"{source.name}-{split}", digest=entry["sha256"][:32],
                              source_type="local", source=json.dumps({"uri": entry.get("path", "")}),
                              profile=json.dumps({"num_rows": entry.get("rows")}))
            inputs.append(DatasetInput(dataset, tags=[
                InputTag("mlflow.data.context", SPLIT_CONTEXT.get(split, split)),
                InputTag("sha256", entry["sha256"]), InputTag("rows", str(entry.get("rows")))]))
    client.log_inputs(run_id, datasets=inputs)


class NoTracking:
    """Stands in for MLflow under --no-tracking: same calls, nothing logged."""

    def start_training(self, config, manifest):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def log_training(self, results, bundle, sidecar, example_texts):
        return None

    def reference(self) -> dict:
        return {}


def log_evaluation(config, sidecar: dict, metrics: dict[str, float], report_dir: Path):
    """Add test metrics and report files to the training's run (or a new run if it is gone), the
    metrics with the run's logged model, and the scores to the version it registered."""
    import mlflow

    uri = tracking_uri()
    check_reachable(uri)
    prepare_store(uri)
    mlflow.set_tracking_uri(uri)
    with mlflow_errors(uri):
        return _log_evaluation(config, sidecar, metrics, report_dir, uri)


def _log_evaluation(config, sidecar: dict, metrics: dict, report_dir: Path, uri: str) -> str:
    import mlflow
    from mlflow.exceptions import MlflowException

    reference = sidecar.get("mlflow") or {}
    run_id = reference.get("run_id") if reference.get("tracking_uri") == uri else None
    model_id = None
    if run_id:
        try:
            model_id = mlflow.get_run(run_id).data.tags.get(MODEL_ID_TAG)
        except MlflowException:
            run_id = None
    experiment = mlflow.set_experiment(config.mlflow.experiment)
    with mlflow.start_run(run_id=run_id, run_name=config.name,
                          experiment_id=experiment.experiment_id) as run:
        mlflow.set_tag("evaluated", "true")
        mlflow.log_metrics(metrics, model_id=model_id)
        mlflow.log_artifacts(str(report_dir), artifact_path="evaluation")
        if run_id and config.mlflow.register:
            from newstag.registry import record_test_metrics

            record_test_metrics(mlflow.MlflowClient(uri), config, sidecar, run_id, metrics)
        return run.info.run_id


def log_review(config) -> str | None:
    """Add review's list, and report.html rebuilt with it, to the run evaluate logged the report
    to (metrics.json names it), so the report in MLflow is the one on disk. Nothing when the
    experiment was evaluated without tracking, or against another store."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from newstag.report import ISSUES_NAME, REVIEWED_NAME

    folder = Path(config.report_dir)
    try:
        run_id = json.loads((folder / "metrics.json").read_text(encoding="utf-8")).get("mlflow_run_id")
    except (OSError, ValueError, AttributeError):
        run_id = None
    if not isinstance(run_id, str):
        return None
    uri = tracking_uri()
    check_reachable(uri)
    prepare_store(uri)
    mlflow.set_tracking_uri(uri)
    with mlflow_errors(uri):
        try:
            mlflow.get_run(run_id)
        except MlflowException:
            log.warning("evaluation run %s is not in %s; the review was not logged", run_id, uri)
            return None
        client = mlflow.MlflowClient(uri)
        for name in (ISSUES_NAME, REVIEWED_NAME, "report.html"):
            if (folder / name).is_file():
                client.log_artifact(run_id, str(folder / name), artifact_path="evaluation")
    log.info("added the review and the rebuilt report to MLflow run %s", run_id)
    return run_id


class SearchRun:
    """One parent MLflow run per `newstag search`, each candidate a nested child run.

    Children are opened when a candidate starts and closed when it ends; on Ctrl-C the parent and
    every child still open are marked KILLED, so none stays RUNNING forever.
    """

    def __init__(self, config):
        import mlflow
        from mlflow.tracking import MlflowClient

        self.mlflow, self.config = mlflow, config
        self.uri = uri = tracking_uri()
        check_reachable(uri)
        prepare_store(uri)
        mlflow.set_tracking_uri(uri)
        with mlflow_errors(uri):
            experiment = mlflow.set_experiment(config.mlflow.experiment)
            self.client = MlflowClient(uri)
            self.run = mlflow.start_run(run_name=f"{config.name}-search",
                                        experiment_id=experiment.experiment_id,
                                        tags={"git_commit": git_commit(), "experiment_file": config.name,
                                              "stage": "search"})
            mlflow.log_dict(config.to_dict(), "config.json")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        status = run_status(exc_type)
        with mlflow_errors(self.uri):
            if exc_type is not None:  # a Ctrl-C can land between opening a child and noting it
                self._end_open_children(status)
            self.mlflow.end_run(status)
        return False

    def _end_open_children(self, status: str) -> None:
        still_open = (f"tags.mlflow.parentRunId = '{self.run.info.run_id}' "
                      f"AND attributes.status = 'RUNNING'")
        open_children = self.client.search_runs([self.run.info.experiment_id], filter_string=still_open)
        for child in open_children:
            self.client.set_terminated(child.info.run_id, status)

    def candidate_log(self, task: str) -> "CandidateRuns":
        return CandidateRuns(self.client, self.run.info, task)

    def log_results(self, results: dict, best_file: Path) -> None:
        """The parent's summary: best settings and scores per task, the table, the plot, the file."""
        import pandas as pd

        from newstag.plots import search_figure

        for task, result in results.items():
            best, scoring = result.best, result.scoring
            self.mlflow.log_params({f"best.{task}.{key}": value for key, value in best.settings().items()})
            self.mlflow.log_metrics({metric_name("cv", task, f"{scoring}_mean"): best.mean(scoring),
                                     metric_name("cv", task, f"{scoring}_sd"): best.sd(scoring),
                                     metric_name("search", task, "seconds"): result.seconds,
                                     metric_name("search", task, "candidates"): len(result.candidates)})
            rows = [c.row(result.scoring) for c in sorted(result.candidates, key=lambda c: c.number)]
            self.mlflow.log_text(pd.DataFrame(rows).to_csv(index=False), f"search/{task}.csv")
            self.mlflow.log_dict(rows, f"search/{task}.json")
            self.mlflow.log_figure(search_figure(task, rows, result.scoring, best.number),
                                   f"plots/search_{task}.png")
        self.mlflow.log_artifact(str(best_file))


class CandidateRuns:
    """Child runs of a search's parent run, one per candidate (logged from one thread)."""

    def __init__(self, client, parent, task: str):
        self.client, self.parent, self.task = client, parent, task

    def started(self, candidate) -> str:
        from newstag.data.files import signals_deferred

        with signals_deferred():  # a Ctrl-C waits for the write (see signals_deferred)
            run = self.client.create_run(
                self.parent.experiment_id, run_name=f"{self.task}-{candidate.number}",
                tags={"mlflow.parentRunId": self.parent.run_id, "task": self.task, "stage": "search"})
        return run.info.run_id

    def finished(self, run_id: str, candidate, scoring: str) -> None:
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        params = [Param(key, str(value)[:6000]) for key, value in candidate.settings().items()]
        metrics = [Metric(name, value, now, 0) for name, value in (
            (f"cv/{scoring}_mean", candidate.mean(scoring)), (f"cv/{scoring}_sd", candidate.sd(scoring)),
            ("fit_seconds", candidate.mean_fit_seconds), ("folds_done", len(candidate.scores[scoring])))
            if value == value]  # NaN (no fold done) is left out
        metrics += [Metric(f"cv/{scoring}_fold", score, now, step)
                    for step, score in enumerate(candidate.scores[scoring])]
        from newstag.data.files import signals_deferred

        with signals_deferred():
            self.client.log_batch(run_id, metrics=metrics, params=params)
            self.client.set_tag(run_id, "state", candidate.state)
            if candidate.error:
                self.client.set_tag(run_id, "error", candidate.error[:500])
            self.client.set_terminated(run_id, "FINISHED")


class NoSearchRun:
    """Stands in for SearchRun under --no-tracking."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def candidate_log(self, task: str):
        from newstag.search import NoCandidateLog

        return NoCandidateLog()

    def log_results(self, results, best_file) -> None:
        return None
