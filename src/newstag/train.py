"""Stage 2: pick each task's hyperparameters on the validation split, refit, save one bundle."""

import logging
from contextlib import suppress
from dataclasses import dataclass, field

import pandas as pd
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import ParameterGrid
from tqdm.auto import tqdm

from newstag.card import card_path, write_model_card
from newstag.config import ExperimentConfig, TaskConfig, task_source
from newstag.data.files import exclusive_lock, remove_orphans, restored_on_failure
from newstag.data.splits import load_task_splits, read_manifest, splits_fingerprint, verify_splits
from newstag.errors import NewstagError
from newstag.models import auto
from newstag.models.bundle import compact_path, save_bundle, sidecar_path
from newstag.models.calibrate import calibrated, calibration_folds, choose_method
from newstag.models.pipelines import build_pipeline, task_truth
from newstag.search import auto_folds, check_auto, run_search

log = logging.getLogger(__name__)


@dataclass
class TaskResult:
    """What training one task produced: the refitted pipeline and how it was chosen."""

    pipeline: object
    labels: list[str]
    best_params: dict
    validation: dict
    candidates: list[dict]
    model: dict = field(default_factory=dict)  # the classifier, features and params it was fitted with
    calibration: dict = field(default_factory=dict)  # method, folds, validation log-loss and confidences
    history: list[dict] = field(default_factory=list)  # streaming: one entry per epoch


def bundle_path(config: ExperimentConfig, fmt: str = "joblib"):
    return config.model_dir / f"model.{fmt}"


def train(config: ExperimentConfig, tracking: bool = True, fmt: str = "joblib",
          wait: bool = False) -> dict:
    """Train every task, log the run to MLflow (unless tracking is off), save the bundle.

    A lock per experiment keeps two trainings from racing to write the same bundle.
    """
    for task in config.tasks:  # a config mistake should stop us before anything is created
        try:
            check_task(task, config.seed)
        except NewstagError as exc:  # it names the key; name the file that holds it too
            raise NewstagError(f"{task_source(config, task.name).path}: {exc}") from None
    verify_splits(config)  # and splits that are missing or from two different runs
    if tracking:  # and so should a tracking server that does not answer
        from newstag.tracking import check_reachable, tracking_uri

        check_reachable(tracking_uri())
    lock, first = config.model_dir / ".train.lock", not config.model_dir.exists()
    with exclusive_lock(lock, wait, f"a training of {config.name}"):
        try:
            remove_orphans(config.model_dir)  # temp files of a training that was killed
            return _train(config, tracking, fmt)
        except BaseException:  # a failed first training leaves no models/<name>/ holding a lock
            if first:
                lock.unlink(missing_ok=True)  # while still held: a waiter then locks a new file
                with suppress(OSError):  # not empty: keep what is there
                    config.model_dir.rmdir()
            raise


def _train(config: ExperimentConfig, tracking: bool, fmt: str) -> dict:
    """Fit, save, then log: the bundle is saved inside the run, before any model is registered,
    so a failed save leaves a FAILED run and no new registered version; and a failed log (or
    registration) puts the previous bundle back, so Make trains again rather than taking a bundle
    without its run for done."""
    manifest = read_manifest(config)
    in_memory = any(not task.streaming for task in config.tasks)  # streaming tasks read chunks
    train_splits = load_task_splits(config, "train") if in_memory else {}  # verified already
    validation_splits = load_task_splits(config, "validation") if in_memory else {}
    run = _tracker(tracking).start_training(config, manifest)
    with run:
        results = {task.name: fit_streaming_task(task, config, manifest) if task.streaming else
                   fit_task(task, train_splits[task.name], validation_splits[task.name], config.seed)
                   for task in tqdm(config.tasks, desc="tasks", unit="task", leave=False, disable=None)}
        metadata = {
            "experiment": config.name,
            "config": config.to_dict(),
            "tasks": {task.name: _task_metadata(task, results[task.name]) for task in config.tasks},
            "data_sha256": manifest["data_sha256"],
            "splits_sha256": splits_fingerprint(manifest),
            "mlflow": run.reference(),
        }
        pipelines = {name: result.pipeline for name, result in results.items()}
        path = bundle_path(config, fmt)
        with restored_on_failure([path, compact_path(path), sidecar_path(path), card_path(path)]):
            sidecar = save_bundle(path, pipelines, metadata)
            write_model_card(config, sidecar, pipelines, path)
            run.log_training(results, path, sidecar, example_texts=_example_texts(config, validation_splits))
    return sidecar


def _example_texts(config: ExperimentConfig, validation_splits: dict) -> list[str]:
    """Three validation texts for the logged model's input example (read from the file when
    every task streams, so the split is never loaded whole)."""
    if validation_splits:
        return next(iter(validation_splits.values()))["text"].head(3).tolist()
    from newstag.data.splits import SplitChunks

    return SplitChunks(config.processed_dir / "validation.parquet", ["text"], 3).head(3)["text"].tolist()


def fit_streaming_task(task: TaskConfig, config: ExperimentConfig, manifest: dict) -> TaskResult:
    """Out of core (newstag.models.streaming): hashed features, SGD by partial_fit over shuffled
    chunks of the training split, scored per epoch on a validation sample and at the end on the
    whole validation split, calibrated on the sample."""
    from newstag.data.splits import SplitChunks
    from newstag.models.streaming import score_split, streaming_pipeline, train_stream

    settings, folder = task.stream, config.processed_dir
    columns = ["text", task.name]
    train_chunks = SplitChunks(folder / "train.parquet", columns, settings.chunk_rows)
    validation_chunks = SplitChunks(folder / "validation.parquet", columns, settings.chunk_rows)
    sample = validation_chunks.head(settings.calibration_rows)
    labels = sorted(manifest["splits"]["train"]["labels"][task.name])
    _require_two_labels(labels, task)
    pipeline = streaming_pipeline(task, config.seed)
    stream = train_stream(task, train_chunks, sample, labels, pipeline.named_steps["vect"],
                          pipeline.named_steps["clf"], config.seed)
    pipeline, calibration = _calibrate_stream(task, pipeline, sample)
    validation = score_split(pipeline, validation_chunks, task.name, stream.classes)
    log.info("%s: validation macro-F1 %.4f over %d articles", task.name, validation["f1_macro"],
             validation["articles"])
    return TaskResult(
        pipeline=pipeline, labels=[str(label) for label in pipeline.classes_],
        best_params={"epochs": settings.epochs, **task.params},
        validation={"f1_macro": validation["f1_macro"], "accuracy": validation["accuracy"],
                    "articles": validation["articles"], "idf_seconds": stream.idf_seconds},
        candidates=[{"params": {"epoch": row["epoch"]}, "f1_macro": row["f1_macro"],
                     "accuracy": row["accuracy"], "chosen": row["epoch"] == settings.epochs}
                    for row in stream.history],
        model={**_model_choice(task), "classifier": "sgd", "streaming": True,
               "stream": {"epochs": settings.epochs, "chunk_rows": settings.chunk_rows,
                          "idf": settings.idf, "calibration_rows": len(sample)}},
        calibration=calibration, history=stream.history)


def _calibrate_stream(task: TaskConfig, pipeline, sample) -> tuple:
    """The learner frozen, a calibrator fitted on the validation sample (method chosen there by
    held-out log-loss when `auto`). The pipeline keeps its vect -> clf shape."""
    from sklearn.frozen import FrozenEstimator
    from sklearn.pipeline import Pipeline

    from newstag.models.calibrate import calibrator, choose_on_validation

    if task.calibration == "none":
        return pipeline, {"method": "none"}
    texts, labels = sample["text"].tolist(), sample[task.name].astype(str).tolist()
    if len(set(labels)) < len(pipeline.classes_):
        log.warning("%s: the validation sample lacks some labels; scores stay uncalibrated", task.name)
        return pipeline, {"method": "none", "reason": "the validation sample lacks some labels"}
    calibration = choose_on_validation(pipeline, task.calibration, texts, labels)
    if calibration["method"] == "none":  # the learner's own probabilities won on log-loss
        return pipeline, {**calibration, "fitted_on": len(texts)}
    vect, clf = pipeline.named_steps["vect"], pipeline.named_steps["clf"]
    frozen = calibrator(FrozenEstimator(clf), calibration["method"]).fit(vect.transform(texts), labels)
    log.info("%s: calibrated by %s on %d validation articles", task.name, calibration["method"],
             len(texts))
    return Pipeline([("vect", vect), ("clf", frozen)]), {**calibration, "fitted_on": len(texts)}


def _task_metadata(task: TaskConfig, result: TaskResult) -> dict:
    """What the bundle records per task; predict reads `min_confidence` from here."""
    metadata = {"labels": result.labels, "best_params": result.best_params,
                "validation": result.validation, "model": result.model,
                "calibration": result.calibration, "min_confidence": task.min_confidence}
    return {**metadata, "history": result.history} if result.history else metadata


def _tracker(enabled: bool):
    from newstag import tracking  # MLflow itself is imported only when a run starts

    return tracking if enabled else tracking.NoTracking()


def check_task(task: TaskConfig, seed: int) -> None:
    """Raise on a task the config cannot train: a bad param or grid key, or a bad search for `auto`."""
    if task.streaming:  # hashed features + SGD: newstag.models.streaming
        from newstag.models.streaming import streaming_pipeline

        streaming_pipeline(task, seed)
    elif task.multi_label:  # one-vs-rest with thresholds: newstag.models.multilabel
        from newstag.models.multilabel import build

        build(task, seed, overrides=_first_candidate(task))
    elif task.classifier == "auto" and task.search is not None:
        check_auto(task)
    elif task.classifier == "auto":
        auto.check_params(task)
    else:
        build_pipeline(task, seed, _first_candidate(task))


def _first_candidate(task: TaskConfig) -> dict:
    """One grid candidate: it has every grid key, so building it checks their names."""
    return next(iter(ParameterGrid(task.grid)))


def fit_task(task: TaskConfig, train_df: pd.DataFrame, validation_df: pd.DataFrame,
             seed: int) -> TaskResult:
    """Score each grid candidate on validation, then refit the best on train + validation.
    With `classifier: auto`, search the built-in space by CV on train + validation instead."""
    if task.multi_label:  # one-vs-rest with per-label thresholds: newstag.models.multilabel
        from newstag.models.multilabel import fit_task as fit_multilabel

        return fit_multilabel(task, train_df, validation_df, seed)
    X_train, y_train = train_df["text"].tolist(), train_df[task.name].tolist()
    X_val, y_val = validation_df["text"].tolist(), validation_df[task.name].tolist()
    if task.classifier == "auto":
        result, chosen = fit_auto(task, X_train + X_val, y_train + y_val, seed)
        return calibrate_task(chosen, result, (X_train, y_train), (X_val, y_val), seed,
                              keep_decisions=True)
    grid = list(ParameterGrid(task.grid)) or [{}]
    candidates = score_candidates(task, grid, (X_train, y_train), (X_val, y_val), seed)
    best = max(candidates, key=lambda c: c["f1_macro"])  # first of equals: grid order decides
    log.info("%s: best %s (validation macro-F1 %.3f)", task.name, best["params"], best["f1_macro"])
    result = TaskResult(
        pipeline=build_pipeline(task, seed, best["params"]),
        labels=[],
        best_params=best["params"],
        validation={"f1_macro": best["f1_macro"], "accuracy": best["accuracy"]},
        candidates=candidates,
        model=_model_choice(task),
    )
    return calibrate_task(task, result, (X_train, y_train), (X_val, y_val), seed)


def calibrate_task(task: TaskConfig, result: TaskResult, train, validation, seed: int,
                   keep_decisions: bool = False) -> TaskResult:
    """Choose the calibration method on validation (fit on train), then refit the chosen pipeline,
    calibrated, on train + validation. `result.pipeline` comes in unfitted and leaves fitted.
    `keep_decisions` (classifier auto): only methods that keep the chosen model's decisions."""
    (X_train, y_train), (X_val, y_val) = train, validation
    _require_two_labels(y_train, task)
    # An ordinal task's labels are scores that its regressor cuts into classes: it keeps them.
    setting = "none" if task.ordinal is not None else task.calibration
    try:
        calibration = choose_method(result.pipeline, setting, train, validation, keep_decisions)
    except NewstagError as exc:
        raise NewstagError(f"task '{task.name}': {exc}") from None
    pipeline = result.pipeline
    if calibration["method"] != "none":
        calibration["folds"] = calibration_folds(y_train + y_val)
        pipeline = calibrated(pipeline, calibration["method"], calibration["folds"])
        log.info("%s: calibrated by %s (validation log-loss %s)", task.name, calibration["method"],
                 {m: round(v, 4) for m, v in calibration["validation_log_loss"].items()})
    result.pipeline = _fit(pipeline, X_train + X_val, y_train + y_val, task)
    result.labels = [str(label) for label in result.pipeline.classes_]
    result.calibration = calibration
    return result


def fit_auto(task: TaskConfig, texts: list[str], labels: list[str],
             seed: int) -> tuple[TaskResult, TaskConfig]:
    """`classifier: auto`: the baseline unless a challenger wins on inner CV (see auto.py), or the
    task's own `search:` section when it has one. Returns the winner's (unfitted) pipeline and the
    task it amounts to; calibrate_task then refits it on train + validation."""
    _require_two_labels(labels, task)
    if task.search is None:
        return fit_default(task, texts, labels, seed)
    search = auto_folds(task.search, labels)
    result = run_search(task, search, texts, labels, seed)
    chosen = result.task
    best = result.best
    candidates = [{"params": c.settings(), "f1_macro": c.mean("f1_macro"), "accuracy": c.mean("accuracy"),
                   "state": c.state} for c in sorted(result.candidates, key=lambda c: c.number)
                  if c.state == "complete"]
    return TaskResult(
        pipeline=build_pipeline(chosen, seed),
        labels=[],
        best_params=best.settings(),
        validation={"f1_macro": best.mean("f1_macro"), "accuracy": best.mean("accuracy"),
                    "cv_folds": search.folds, "search_seconds": result.seconds},
        candidates=candidates,
        model=_model_choice(chosen, auto=True),
    ), chosen


def fit_default(task: TaskConfig, texts: list[str], labels: list[str],
                seed: int) -> tuple[TaskResult, TaskConfig]:
    """`auto` without a search section: the incumbent rule over auto.MEMBERS."""
    choice = auto.choose(task, texts, labels, seed)
    best = {key: value for key, value in choice.scores.get(choice.member.name, {}).items()
            if key != "gain_se"}
    candidates = [{"params": {"member": name}, **scores, "chosen": name == choice.member.name}
                  for name, scores in choice.scores.items()]
    return TaskResult(
        pipeline=build_pipeline(choice.task, seed),
        labels=[],
        best_params={"member": choice.member.name, **choice.task.params},
        validation={**best, "cv_folds": choice.folds, "search_seconds": choice.seconds},
        candidates=candidates,
        model={**_model_choice(choice.task), "member": choice.member.name,
               "chosen_by": "auto: the baseline unless a challenger matches or beats it on inner-CV "
                            "accuracy and macro-F1, by at least two standard errors in accuracy"},
    ), choice.task


def _model_choice(task: TaskConfig, auto: bool = False) -> dict:
    return {"classifier": task.classifier, "features": task.features, "params": dict(task.params),
            "chosen_by": "auto search (cross-validation on train + validation)" if auto else "config"}


def score_candidates(task: TaskConfig, grid: list[dict], train, validation, seed: int) -> list[dict]:
    """Validation scores of every candidate. When only classifier settings vary, the TF-IDF
    features are fitted once and shared, which is most of the cost on large corpora."""
    (X_train, y_train), (X_val, y_val) = train, validation
    y_val = task_truth(task, y_val)  # an ordinal task's scores, as the classes it predicts
    shared = all(key.startswith("clf__") for params in grid for key in params)
    if shared:
        vect = build_pipeline(task, seed).named_steps["vect"]
        X_train, X_val = _fit_transform(vect, X_train, y_train, task), vect.transform(X_val)
    candidates = []
    for params in tqdm(grid, desc=f"{task.name} grid", unit="fit", leave=False, disable=None):
        model = build_pipeline(task, seed, params)
        model = model.named_steps["clf"] if shared else model
        y_pred = _fit(model, X_train, y_train, task).predict(X_val)
        candidates.append({"params": params, "f1_macro": _f1(y_val, y_pred),
                           "accuracy": float(accuracy_score(y_val, y_pred))})
    return candidates


def _fit_transform(vect, X, y, task: TaskConfig):
    try:
        return vect.fit_transform(X, y)  # y: stacked features are scored out of fold
    except ValueError as exc:  # e.g. min_df/max_df leave no terms
        raise NewstagError(f"task '{task.name}': {str(exc).splitlines()[0]}") from None


def _require_two_labels(y, task: TaskConfig) -> None:
    if len(set(y)) < 2:
        raise NewstagError(f"task '{task.name}': the training data has only one label; "
                           f"a classifier needs at least two")


def _fit(pipeline, X, y, task: TaskConfig):
    _require_two_labels(y, task)
    try:
        return pipeline.fit(X, y)
    except ValueError as exc:  # includes scikit-learn's InvalidParameterError
        raise NewstagError(f"task '{task.name}': {str(exc).splitlines()[0]}") from None


def _f1(y_true, y_pred) -> float:
    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))
