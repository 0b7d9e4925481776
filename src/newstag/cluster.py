"""The search's cross-validation fits on a Dask cluster (`newstag search --backend dask`).

Dask is an optional extra (`pip install 'newstag[dask]'`). The client connects to an existing
scheduler (`--scheduler tcp://HOST:PORT` or DASK_SCHEDULER_ADDRESS): a `dask scheduler` with
`dask worker`s, dask-jobqueue on Slurm, Dask on Kubernetes, or a LocalCluster. Workers need the
same newstag (and scikit-learn) installed.

What runs where: the search loop, Optuna and MLflow stay on the client. The training rows are
sent to every worker once (scattered); each candidate's k folds are k tasks, fitted in parallel
on the workers, each worker keeping its vectorised folds in a small cache of its own. The
scores come back to the client, which reports them to Optuna fold by fold, so the pruner makes
the same decisions as in a local run: with `--jobs 1` the candidates, their scores and the
winner are those of `newstag search --jobs 1` (a pruned candidate's later folds were computed
and are discarded). A worker lost mid-search: Dask reruns its folds on the others; a fold that
loses workers repeatedly stops the search with a one-line error, never a missing candidate.
The rows are scattered, so Dask cannot recompute them, and its active memory manager keeps a
single copy of them while no fold is waiting (between candidates): when the worker holding that
copy dies, Dask cancels the folds needing it, and the rows are scattered again and the folds
resubmitted, up to FOLD_RETRIES times per candidate.
"""

import json
import os
import threading
import time
import uuid
from collections import OrderedDict

import numpy as np

from newstag.errors import NewstagError

INSTALL = "pip install 'newstag[dask]' (or: pip install 'dask[distributed]')"
CONNECT_SECONDS = 10
FOLD_RETRIES = 2


def scheduler_address(given: str | None) -> str:
    address = given or os.environ.get("DASK_SCHEDULER_ADDRESS")
    if not address:
        raise NewstagError("--backend dask needs the scheduler's address: --scheduler tcp://HOST:PORT "
                           "or DASK_SCHEDULER_ADDRESS (start one with `dask scheduler` and "
                           "`dask worker tcp://HOST:8786`)")
    return address


def connect(address: str, timeout: float = CONNECT_SECONDS):
    """A distributed.Client on the scheduler, with at least one worker; one-line errors before
    any work when Dask is missing, the scheduler does not answer or has no worker."""
    try:
        import distributed
    except ImportError:
        raise NewstagError(f"--backend dask needs Dask, which is not installed: {INSTALL}") from None
    try:
        client = distributed.Client(address, timeout=f"{timeout}s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise NewstagError(f"Dask scheduler {address} does not answer ({str(exc).splitlines()[0][:160]}); "
                           f"start one with `dask scheduler` and `dask worker {address}`, or check "
                           f"--scheduler / DASK_SCHEDULER_ADDRESS") from None
    try:
        client.wait_for_workers(1, timeout=timeout)
    except (TimeoutError, OSError):
        client.close()
        raise NewstagError(f"Dask scheduler {address} has no worker; start some with "
                           f"`dask worker {address}`") from None
    return client


class DaskFolds:
    """Scores candidates fold by fold on the cluster, for one task's training rows."""

    def __init__(self, client, texts: list[str], y: np.ndarray, splits: list):
        self.client = client
        self.token = uuid.uuid4().hex
        self.rows = (list(texts), np.asarray(y, dtype=object), splits)
        self.lock = threading.Lock()
        self.data = self.scatter()
        self.folds = len(splits)
        # Fold k goes to the same worker for every candidate (while it lives), so its vectorised
        # fold is cached there; allow_other_workers lets the others take it when it is gone.
        self.workers = sorted(client.scheduler_info()["workers"])

    def score_candidate(self, candidate, trial, task, scoring: str, seed: int, stop: threading.Event):
        """Submit the k folds, wait for all, then replay them into Optuna in fold order."""
        from distributed import KilledWorker
        from distributed.client import FutureCancelledError

        for _ in range(FOLD_RETRIES + 1):
            data = self.scattered(task)
            futures = [self.client.submit(fold_score, task, candidate.classifier, candidate.features,
                                          candidate.params, fold, data, self.token, seed,
                                          pure=False, retries=FOLD_RETRIES,
                                          workers=[self.workers[fold % len(self.workers)]],
                                          allow_other_workers=True)
                       for fold in range(self.folds)]
            try:
                results = self.client.gather(futures)
            except KilledWorker as exc:
                raise NewstagError(f"the Dask cluster lost the workers running candidate {candidate.number} "
                                   f"of task '{task.name}' {FOLD_RETRIES + 1} times ({exc}); the search "
                                   f"stopped and wrote nothing. Check the workers' memory and logs") from None
            except FutureCancelledError as exc:  # the rows' last copy was lost with its worker
                cancelled = str(exc).splitlines()[0][:160]
                continue
            finally:
                for future in futures:
                    future.release()
            return replay(candidate, trial, results, scoring)
        raise NewstagError(f"the Dask cluster cancelled the folds of candidate {candidate.number} of task "
                           f"'{task.name}' {FOLD_RETRIES + 1} times ({cancelled}: it lost the workers "
                           f"holding the training rows, or the scheduler restarted); the search stopped "
                           f"and wrote nothing. Check the workers' memory and logs")

    def scatter(self):
        """The rows sent to every worker, under new keys (not those of rows Dask has forgotten)."""
        return self.client.scatter(self.rows, broadcast=True, hash=False)

    def scattered(self, task):
        """The futures of the scattered rows, scattered again if the cluster lost them (scattered
        data cannot be recomputed: when its last copy goes, Dask cancels it and the tasks needing it)."""
        with self.lock:  # with --jobs > 1, one thread scatters them again
            if any(future.status != "finished" for future in self.data):
                try:
                    self.data = self.scatter()
                except (TimeoutError, OSError) as exc:
                    raise NewstagError(f"the Dask cluster lost task '{task.name}''s training rows and has "
                                       f"no worker to send them to again ({exc}); the search stopped "
                                       f"and wrote nothing. Check the workers' memory and logs") from None
            return self.data


def replay(candidate, trial, results: list[dict], scoring: str):
    """The folds' scores told to Optuna in order, pruning as the local loop does after each fold."""
    for fold, result in enumerate(results):
        if "error" in result:
            candidate.state, candidate.error = "failed", result["error"]
            return candidate
        candidate.fit_seconds.append(result["seconds"])
        candidate.scores["accuracy"].append(result["accuracy"])
        candidate.scores["f1_macro"].append(result["f1_macro"])
        trial.report(candidate.mean(scoring), fold)
        if fold < len(results) - 1 and trial.should_prune():
            candidate.state = "pruned"
            return candidate
    candidate.state = "complete"
    return candidate


# ---- on the workers -----------------------------------------------------------------------------

_CACHE: OrderedDict = OrderedDict()
_CACHE_LOCK = threading.Lock()
CACHE_ENTRIES = 15  # vectorised folds a worker keeps (3 feature settings of 5 folds)


def fold_score(task, classifier: str, features: str, params: dict, fold: int, data, token: str,
               seed: int) -> dict:
    """Fit one candidate on one fold and score it on the held-out part (runs on a worker)."""
    import warnings

    from sklearn.base import clone
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, f1_score

    from newstag.models.pipelines import set_params
    from newstag.search import _base_pipeline

    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    texts, y, splits = data
    train_index, held_out_index = splits[fold]
    try:
        pipeline = _base_pipeline(task, classifier, features, seed)
        set_params(pipeline, params, f"tasks.{task.name}.search")
        start = time.perf_counter()
        X_train, X_held_out = _vectorised(token, fold, features, params, pipeline, texts, splits)
        model = clone(pipeline.named_steps["clf"]).fit(X_train, y[train_index])
        predicted = model.predict(X_held_out)
    except (ValueError, NewstagError) as exc:
        return {"error": str(exc).splitlines()[0]}
    truth = y[held_out_index]
    return {"accuracy": float(accuracy_score(truth, predicted)),
            "f1_macro": float(f1_score(truth, predicted, average="macro", zero_division=0)),
            "seconds": time.perf_counter() - start}


def _vectorised(token, fold, features, params, pipeline, texts, splits):
    vect_params = {k: v for k, v in params.items() if k.startswith("vect__")}
    key = (token, fold, features, json.dumps(vect_params, sort_keys=True, default=str))
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    train_index, held_out_index = splits[fold]
    vect = pipeline.named_steps["vect"]
    entry = (vect.fit_transform([texts[i] for i in train_index]),
             vect.transform([texts[i] for i in held_out_index]))
    with _CACHE_LOCK:
        _CACHE[key] = entry
        while len(_CACHE) > CACHE_ENTRIES:
            _CACHE.popitem(last=False)
    return entry
