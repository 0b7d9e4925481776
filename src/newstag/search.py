"""Choose a task's model by evidence: search a space of pipelines, scored by stratified k-fold CV
inside the training rows (train + validation; the test split is never read).

How the search stays cheap:
- Optuna proposes candidates: a seeded TPE sampler, so numeric settings such as C are drawn
  log-uniformly and later candidates concentrate where earlier ones scored well; the budget is a
  number of candidates (`n_iter`) and/or seconds (`timeout`).
- A median pruner stops a candidate after a fold when its mean so far is below the median of
  earlier candidates at the same fold, so bad candidates rarely cost more than one fold.
- Vectorised folds are cached: candidates that differ only in `clf__*` settings reuse the fold's
  fitted TF-IDF matrices (the cache key is the feature settings, and it holds a bounded number).
- A candidate proposed twice is scored once.

The tie rule: among the candidates that finished every fold, those whose mean CV score is within
TIE_TOLERANCE (0.001) of the best mean tie, and the cheaper model wins: fewer features first
(word, char, word+char), then the classifier cheaper to fit (complement_nb, linear_svm, ridge, sgd,
logreg, nbsvm), then the earlier candidate. A fixed order rather than measured fit times (which
are logged) keeps training reproducible: the same rows and seed give the same model. With
--jobs above 1 the candidates proposed depend on which finish first, so only --jobs 1 is exact.
"""

import json
import logging
import threading
import time
import warnings
from collections import Counter, OrderedDict
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from itertools import product
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.utils._param_validation import Interval

from newstag.config import Distribution, SearchConfig, TaskConfig, plain
from newstag.errors import NewstagError
from newstag.models.pipelines import build_pipeline, set_params

log = logging.getLogger(__name__)

TIE_TOLERANCE = 0.001
# Cheapest first, as measured on the bench corpora: the tie rule's order.
FEATURE_COST = ("word", "char", "word+char")
CLASSIFIER_COST = ("complement_nb", "linear_svm", "ridge", "sgd", "logreg", "nbsvm")
SPECIAL_KEYS = ("classifier", "features")
CACHED_FOLDS_PER_SETTING = 3  # cached vectorised folds: this many feature settings' worth


@dataclass
class Candidate:
    """One proposed pipeline and what its folds scored."""

    number: int
    classifier: str
    features: str
    params: dict
    scores: dict[str, list[float]] = field(default_factory=lambda: {"f1_macro": [], "accuracy": []})
    fit_seconds: list[float] = field(default_factory=list)
    state: str = "running"  # running, complete, pruned, failed
    error: str = ""

    def mean(self, scoring: str) -> float:
        return float(np.mean(self.scores[scoring])) if self.scores[scoring] else float("nan")

    def sd(self, scoring: str) -> float:
        return float(np.std(self.scores[scoring])) if self.scores[scoring] else float("nan")

    @property
    def mean_fit_seconds(self) -> float:
        return float(np.mean(self.fit_seconds)) if self.fit_seconds else float("nan")

    def settings(self) -> dict:
        return {"classifier": self.classifier, "features": self.features, **self.params}

    def row(self, scoring: str) -> dict:
        """A flat, JSON-friendly line of the results table."""
        return {"number": self.number, "state": self.state, "classifier": self.classifier,
                "features": self.features, "params": json.dumps(self.params, sort_keys=True),
                "cv_mean": self.mean(scoring), "cv_sd": self.sd(scoring),
                "accuracy_mean": self.mean("accuracy"), "f1_macro_mean": self.mean("f1_macro"),
                "folds_done": len(self.scores[scoring]), "fit_seconds": self.mean_fit_seconds,
                "error": self.error}


@dataclass
class SearchResult:
    """The candidates a search tried, the winner, and the task config it amounts to."""

    task: TaskConfig
    best: Candidate
    candidates: list[Candidate]
    scoring: str
    seconds: float


class NoCandidateLog:
    """Where candidates would be logged when tracking is off."""

    def started(self, candidate: Candidate):
        return None

    def finished(self, handle, candidate: Candidate, scoring: str) -> None:
        return None


# ---- checking the space before any work ---------------------------------------------------------

def check_search(task: TaskConfig, search: SearchConfig, where: str) -> None:
    """Raise a one-line NewstagError naming the key and the fix when a searched setting is not a
    parameter of any candidate pipeline, or a range is given for one that is not a number.
    The section's shape (budget, scoring, folds, non-empty lists, ranges with low < high,
    classifier and feature names) is checked by its schema (config.SearchConfig) when it is read."""
    pipelines = candidate_pipelines(task, search.space)
    for key, value in search.space.items():
        if key not in SPECIAL_KEYS:
            _check_parameter(key, value, pipelines, f"{where}.space.{key}")


def _check_parameter(key: str, value, pipelines: dict, where: str) -> None:
    owners = [pipeline for pipeline in pipelines.values() if key in pipeline.get_params(deep=True)]
    if not owners:
        names = sorted({name for pipeline in pipelines.values() for name in _param_names(pipeline)})
        raise NewstagError(f"'{where}' is not a parameter of any candidate pipeline "
                           f"({', '.join(f'{c}/{f}' for c, f in pipelines)}); valid: {', '.join(names)}")
    if isinstance(value, Distribution) and not any(_is_numeric(pipeline, key) for pipeline in owners):
        raise NewstagError(f"'{where}' is a range, but {key} is not a number; list its values instead, "
                           f"e.g. {key}: [a, b]")


def _param_names(pipeline) -> list[str]:
    return [name for name in pipeline.get_params(deep=True)
            if "__" in name and not name.endswith("__steps") and "transformer_list" not in name]


def _is_numeric(pipeline, key: str) -> bool:
    """True when scikit-learn declares the parameter as a number range (or its default is one)."""
    *path, name = key.split("__")
    owner = pipeline
    for step in path:
        owner = owner.get_params(deep=True)[step]
    constraints = getattr(owner, "_parameter_constraints", {}).get(name, [])
    default = owner.get_params(deep=False).get(name)
    numeric_default = isinstance(default, int | float) and not isinstance(default, bool)
    return numeric_default or any(isinstance(c, Interval) for c in constraints)


def check_folds(y, folds: int, where: str) -> None:
    """Stratified folds need every label in every fold: the rarest label bounds the folds."""
    label, count = Counter(y).most_common()[-1]
    if count < folds:
        raise NewstagError(f"'{where}.folds' is {folds}, but label {label!r} has only {count} "
                           f"example(s) in train + validation; set folds to at most {max(count, 2)}")


# ---- candidates -------------------------------------------------------------------------------

def candidate_pipelines(task: TaskConfig, space: dict) -> dict:
    """An unfitted pipeline for every (classifier, features) the space can choose."""
    classifiers = space.get("classifier") or [_default_classifier(task)]
    features = space.get("features") or [task.features]
    return {(c, f): _base_pipeline(task, c, f) for c, f in product(classifiers, features)}


def _default_classifier(task: TaskConfig) -> str:
    return task.classifier if task.classifier != "auto" else "linear_svm"  # auto's incumbent


def _base_pipeline(task: TaskConfig, classifier: str, features: str, seed: int = 0):
    bare = replace(task, classifier=classifier, features=features, params={}, grid={}, search=None)
    return build_pipeline(bare, seed)


def chosen_task(task: TaskConfig, candidate: Candidate) -> TaskConfig:
    """The task as the winning candidate configures it: no search, no grid, explicit choices."""
    return replace(task, classifier=candidate.classifier, features=candidate.features,
                   params=dict(candidate.params), grid={}, search=None)


def _applicable(task: TaskConfig, classifier: str, features: str, params: dict) -> dict:
    """The task's own params, then the candidate's, kept only where this pipeline has them."""
    valid = _base_pipeline(task, classifier, features).get_params(deep=True)
    return {key: value for key, value in {**task.params, **params}.items() if key in valid}


def _suggest(trial, task: TaskConfig, space: dict, number: int) -> Candidate:
    classifier = _categorical(trial, "classifier", space.get("classifier")) or _default_classifier(task)
    features = _categorical(trial, "features", space.get("features")) or task.features
    valid = _base_pipeline(task, classifier, features).get_params(deep=True)
    params = {}
    for key, value in space.items():
        if key in SPECIAL_KEYS or key not in valid:
            continue
        if isinstance(value, Distribution):
            params[key] = (trial.suggest_int(key, int(value.low), int(value.high), log=value.log)
                           if value.int else trial.suggest_float(key, value.low, value.high, log=value.log))
        else:
            params[key] = _categorical(trial, key, value)
    return Candidate(number, classifier, features, _applicable(task, classifier, features, params))


def _categorical(trial, key: str, choices):
    """Optuna takes only plain values as choices, so lists (ngram_range) travel as JSON text."""
    if not choices:
        return None
    if all(choice is None or isinstance(choice, bool | int | float | str) for choice in choices):
        return trial.suggest_categorical(key, choices)
    return json.loads(trial.suggest_categorical(key, [json.dumps(choice) for choice in choices]))


# ---- scoring ----------------------------------------------------------------------------------

class FoldCache:
    """Vectorised folds, keyed by fold and feature settings, at most `size` at once (LRU)."""

    def __init__(self, texts: list[str], splits: list, size: int):
        self.texts, self.splits, self.size = texts, splits, size
        self.entries: OrderedDict = OrderedDict()
        self.lock = threading.Lock()
        self.key_locks: dict = {}

    def get(self, fold: int, candidate: Candidate, pipeline):
        """(train matrix, held-out matrix, seconds it took to fit the vectoriser)."""
        vect_params = {k: v for k, v in candidate.params.items() if k.startswith("vect__")}
        key = (fold, candidate.features, json.dumps(vect_params, sort_keys=True, default=str))
        with self.lock:
            key_lock = self.key_locks.setdefault(key, threading.Lock())
        with key_lock:  # two threads wanting the same fold: one fits, the other waits for it
            with self.lock:
                if key in self.entries:
                    self.entries.move_to_end(key)
                    return self.entries[key]
            entry = self._vectorise(fold, pipeline.named_steps["vect"])
            with self.lock:
                self.entries[key] = entry
                while len(self.entries) > self.size:
                    self.entries.popitem(last=False)
            return entry

    def _vectorise(self, fold: int, vect):
        train_index, held_out_index = self.splits[fold]
        start = time.perf_counter()
        X_train = vect.fit_transform([self.texts[i] for i in train_index])
        seconds = time.perf_counter() - start
        return X_train, vect.transform([self.texts[i] for i in held_out_index]), seconds


def _score_candidate(candidate: Candidate, trial, task: TaskConfig, y: np.ndarray, cache: FoldCache,
                     scoring: str, seed: int, stop: threading.Event) -> Candidate:
    """Fit and score fold after fold; stop early when the pruner says so or on Ctrl-C."""
    pipeline = _base_pipeline(task, candidate.classifier, candidate.features, seed)
    try:
        set_params(pipeline, candidate.params, f"tasks.{task.name}.search")
        for fold, (train_index, held_out_index) in enumerate(cache.splits):
            if stop.is_set():
                candidate.state = "killed"
                return candidate
            X_train, X_held_out, vect_seconds = cache.get(fold, candidate, pipeline)
            start = time.perf_counter()
            model = clone(pipeline.named_steps["clf"]).fit(X_train, y[train_index])
            candidate.fit_seconds.append(vect_seconds + time.perf_counter() - start)
            predicted = model.predict(X_held_out)
            truth = y[held_out_index]
            candidate.scores["accuracy"].append(float(accuracy_score(truth, predicted)))
            candidate.scores["f1_macro"].append(float(f1_score(truth, predicted, average="macro",
                                                               zero_division=0)))
            trial.report(candidate.mean(scoring), fold)
            if fold < len(cache.splits) - 1 and trial.should_prune():
                candidate.state = "pruned"
                return candidate
    except (ValueError, NewstagError) as exc:  # e.g. min_df leaves no terms for this setting
        candidate.state, candidate.error = "failed", str(exc).splitlines()[0]
        return candidate
    candidate.state = "complete"
    return candidate


def choose_best(candidates: list[Candidate], scoring: str) -> Candidate:
    """The cheapest of the candidates within TIE_TOLERANCE of the best mean CV score (by a fixed
    cost order, not measured times, so that the same data and seed give the same model)."""
    complete = [c for c in candidates if c.state == "complete"]
    if not complete:
        errors = {c.error for c in candidates if c.error}
        raise NewstagError("no search candidate finished its folds"
                           + (f"; first error: {sorted(errors)[0]}" if errors else ""))
    top = max(c.mean(scoring) for c in complete)
    tied = [c for c in complete if c.mean(scoring) >= top - TIE_TOLERANCE]
    return min(tied, key=lambda c: (FEATURE_COST.index(c.features), CLASSIFIER_COST.index(c.classifier),
                                    c.number))


# ---- the search loop --------------------------------------------------------------------------

def run_search(task: TaskConfig, search: SearchConfig, texts: list[str], labels, seed: int,
               jobs: int = 1, candidate_log=None, progress: bool = True, client=None) -> SearchResult:
    """Search `search.space` for `task` on these rows; return every candidate and the winner.
    With a Dask `client`, each candidate's folds are fitted on the cluster (newstag.cluster)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    y = np.asarray(labels, dtype=object)
    splits = list(StratifiedKFold(search.folds, shuffle=True, random_state=seed).split(texts, y))
    cache = FoldCache(list(texts), splits, CACHED_FOLDS_PER_SETTING * search.folds)
    budget = search.n_iter or 0
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(10, budget // 3 or 10))),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0))
    loop = _SearchLoop(study, task, search, y, cache, seed, max(1, jobs), candidate_log or NoCandidateLog())
    if client is not None:
        from newstag.cluster import DaskFolds

        loop.remote = DaskFolds(client, texts, y, splits)
    start = time.perf_counter()
    candidates = loop.run(progress)
    best = choose_best(candidates, search.scoring)
    log.info("%s: best %s (CV %s %.4f ± %.4f over %d candidates)", task.name, best.settings(),
             search.scoring, best.mean(search.scoring), best.sd(search.scoring), len(candidates))
    return SearchResult(chosen_task(task, best), best, candidates, search.scoring,
                        time.perf_counter() - start)


class _SearchLoop:
    """Ask Optuna for candidates, score up to `jobs` at once in threads, tell it the results.

    All MLflow logging happens on the calling thread; on Ctrl-C the running candidates are told
    to stop and the interrupt goes on up (the search's run marks their child runs KILLED).
    """

    def __init__(self, study, task, search, y, cache, seed, jobs, candidate_log):
        self.study, self.task, self.search, self.y = study, task, search, y
        self.cache, self.seed, self.jobs, self.log = cache, seed, jobs, candidate_log
        self.stop = threading.Event()
        self.candidates: list[Candidate] = []
        self.seen: dict[str, Candidate] = {}
        self.proposed = 0
        self.remote = None  # a newstag.cluster.DaskFolds: the folds are fitted on a Dask cluster

    def run(self, progress: bool) -> list[Candidate]:
        from tqdm.auto import tqdm

        self.start = time.perf_counter()
        self.bar = tqdm(total=self.search.n_iter, desc=f"{self.task.name} search", unit="cand",
                        leave=False, disable=None if progress else True)
        running: dict = {}
        with self.bar, ThreadPoolExecutor(self.jobs) as pool:
            try:
                while True:
                    while len(running) < self.jobs and self._may_propose():
                        self._propose(pool, running)
                    if not running:
                        return self.candidates
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        trial, _, handle = running.pop(future)
                        self._finish(future.result(), trial, handle)
            except BaseException:  # Ctrl-C: running candidates stop at their next fold
                self.stop.set()
                raise

    def _may_propose(self) -> bool:
        budget_left = self.search.n_iter is None or self.proposed < self.search.n_iter
        time_left = self.search.timeout is None or self._elapsed() < self.search.timeout
        return budget_left and time_left

    def _propose(self, pool, running: dict) -> None:
        trial = self.study.ask()
        candidate = _suggest(trial, self.task, self.search.space, trial.number)
        self.proposed += 1
        key = json.dumps(candidate.settings(), sort_keys=True, default=str)
        if key in self.seen:  # TPE proposed it again: its score is known, tell it without refitting
            self._tell(trial, self.seen[key])
            self._advance()
            return
        self.seen[key] = candidate
        handle = self.log.started(candidate)
        if self.remote is not None:
            future = pool.submit(self.remote.score_candidate, candidate, trial, self.task,
                                 self.search.scoring, self.seed, self.stop)
        else:
            future = pool.submit(_score_candidate, candidate, trial, self.task, self.y, self.cache,
                                 self.search.scoring, self.seed, self.stop)
        running[future] = (trial, candidate, handle)

    def _finish(self, candidate: Candidate, trial, handle) -> None:
        self._tell(trial, candidate)
        self.candidates.append(candidate)
        self.log.finished(handle, candidate, self.search.scoring)
        self._advance()

    def _tell(self, trial, candidate: Candidate) -> None:
        from optuna.trial import TrialState

        if candidate.state == "complete":
            self.study.tell(trial, candidate.mean(self.search.scoring))
        else:  # pruned, failed, or still running (a repeat proposed meanwhile)
            self.study.tell(trial, state=TrialState.FAIL if candidate.state == "failed"
                            else TrialState.PRUNED)

    def _advance(self) -> None:
        complete = [c.mean(self.search.scoring) for c in self.candidates if c.state == "complete"]
        postfix = {"best": f"{max(complete):.4f}"} if complete else {}
        left = self._seconds_left()
        if left is not None:
            postfix["left"] = f"{left:.0f}s"
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(1)

    def _seconds_left(self) -> float | None:
        elapsed, left = self._elapsed(), []
        if self.search.n_iter:
            left.append(elapsed / max(self.proposed, 1) * (self.search.n_iter - self.proposed))
        if self.search.timeout:
            left.append(max(self.search.timeout - elapsed, 0.0))
        return min(left) if left else None

    def _elapsed(self) -> float:
        return time.perf_counter() - self.start


# ---- `classifier: auto` -----------------------------------------------------------------------

def check_auto(task: TaskConfig) -> None:
    """`classifier: auto` with a `search:` section: the search must be valid, and each of the task's
    params must belong to some candidate pipeline (it is applied to the candidates that have it)."""
    search = task.search
    check_search(task, search, f"tasks.{task.name}.search")
    pipelines = candidate_pipelines(task, search.space)
    for key, value in task.params.items():
        _check_parameter(key, value, pipelines, f"tasks.{task.name}.params.{key}")


def auto_folds(search: SearchConfig, labels) -> SearchConfig:
    """At train time a rare label lowers the folds (to 2 at least) rather than stopping."""
    rarest = Counter(labels).most_common()[-1][1]
    return replace(search, folds=max(2, min(search.folds, rarest)))


# ---- `newstag search EXP` ---------------------------------------------------------------------

def search_experiment(config, jobs: int = 1, tracking: bool = True, client=None) -> tuple[dict, Path]:
    """Search every task that has a `search:` section, log it, write `<name>.best.yaml`.
    With a Dask `client`, the CV fits run on its cluster."""
    from newstag.data.splits import load_task_splits

    tasks = _searched_tasks(config)
    if tracking:
        from newstag.tracking import check_reachable, tracking_uri

        check_reachable(tracking_uri())
    rows = {task.name: _training_rows(load_task_splits, config, task) for task in tasks}
    for task in tasks:
        try:
            check_folds(rows[task.name][1], task.search.folds, f"tasks.{task.name}.search")
        except NewstagError as exc:
            raise NewstagError(f"{config.path}: {exc}") from None
    with _search_tracker(tracking, config) as run:
        results = {task.name: run_search(task, task.search, *rows[task.name], config.seed, jobs,
                                         run.candidate_log(task.name), client=client)
                   for task in tasks}
        path = write_best_yaml(config, results)
        run.log_results(results, path)
    return results, path


def _searched_tasks(config) -> list[TaskConfig]:
    if config.compose:
        raise NewstagError(f"{config.path}: a composed experiment has no data of its own; search the "
                           f"experiment each task comes from (compose: ...) instead")
    tasks = [task for task in config.tasks if task.search is not None]
    if not tasks:
        raise NewstagError(f"{config.path}: no task has a 'search:' section; add one under "
                           f"tasks.<task>.search (space, n_iter, folds; see the README)")
    for task in tasks:
        try:
            check_search(task, task.search, f"tasks.{task.name}.search")
        except NewstagError as exc:
            raise NewstagError(f"{config.path}: {exc}") from None
    return tasks


def _training_rows(load_task_splits, config, task: TaskConfig) -> tuple[list[str], list[str]]:
    """Train + validation: the search's folds are cut from these, never from the test split."""
    frames = [load_task_splits(config, split)[task.name] for split in ("train", "validation")]
    texts = [text for frame in frames for text in frame["text"].tolist()]
    labels = [label for frame in frames for label in frame[task.name].tolist()]
    return texts, labels


def _search_tracker(enabled: bool, config):
    from newstag import tracking

    return tracking.SearchRun(config) if enabled else tracking.NoSearchRun()


def best_yaml_path(config) -> Path:
    return Path(config.path).with_name(f"{config.name}.best.yaml")


def write_best_yaml(config, results: dict[str, SearchResult]) -> Path:
    """The original experiment file with each searched task's choice written in and its search
    section removed; a new file beside it, written atomically (the original is never touched)."""
    from newstag.data.files import write_edited_yaml

    def set_choices(document) -> None:
        for name, result in results.items():
            if document["tasks"].get(name) is None:
                document["tasks"][name] = {}
            task = document["tasks"][name]
            for key in ("search", "grid"):
                task.pop(key, None)
            task.update(classifier=result.task.classifier, features=result.task.features,
                        params=plain(result.task.params))

    path = best_yaml_path(config)
    header = (f"# Written by `newstag search {config.path}`: each searched task's best configuration\n"
              f"# (stratified {_folds(results)}-fold CV on train + validation). Train it with\n"
              f"# `make all EXP={path}`.\n")
    write_edited_yaml(config.path, path, set_choices, header)
    return path


def _folds(results: dict[str, SearchResult]) -> str:
    return "/".join(sorted({str(len(r.best.fit_seconds)) for r in results.values()}))


