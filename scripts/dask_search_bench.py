"""Time `newstag search` locally and on a Dask LocalCluster of 1 and 2 worker processes, and check
that the three give the same candidates, scores and winner.

    NEWSTAG_DATA_DIR=../shared/datasets .venv/bin/python scripts/dask_search_bench.py [EXP] [N_ITER]

EXP defaults to experiments/bbc_news.yaml; its topic task gets a search section (linear SVM and
complement NB, C, n-grams; N_ITER candidates, default 8, 5 folds). Written to
reports/bench-scale-search.json.
"""

import json
import sys
import time
from pathlib import Path

import yaml


def searched_experiment(source: Path, n_iter: int) -> Path:
    config = yaml.safe_load(source.read_text())
    task = next(iter(config["tasks"]))
    config["tasks"][task].pop("grid", None)
    config["tasks"][task].update(features="word", params={}, search={
        "space": {"classifier": ["linear_svm", "complement_nb"],
                  "clf__C": {"low": 0.1, "high": 10, "log": True},
                  "vect__ngram_range": [[1, 1], [1, 2]]},
        "n_iter": n_iter, "folds": 5})
    config.pop("bench", None)
    path = Path("data/scale/search") / source.name  # same name: same processed splits
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def outcome(results) -> list:
    return [(c.number, c.state, c.settings(), c.scores)
            for result in results.values() for c in sorted(result.candidates, key=lambda c: c.number)]


def main() -> int:
    from distributed import Client, LocalCluster

    from newstag.config import load_config
    from newstag.preprocess import preprocess
    from newstag.search import search_experiment

    source = Path(sys.argv[1] if len(sys.argv) > 1 else "experiments/bbc_news.yaml")
    config = load_config(searched_experiment(source, int(sys.argv[2]) if len(sys.argv) > 2 else 8))
    preprocess(config)
    runs = {}
    start = time.perf_counter()
    local, _ = search_experiment(config, jobs=1, tracking=False)
    runs["local, 1 process"] = {"seconds": round(time.perf_counter() - start, 1), "same": True}
    for workers in (1, 2):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None) as cluster, Client(cluster) as client:
            start = time.perf_counter()
            remote, _ = search_experiment(config, jobs=1, tracking=False, client=client)
            runs[f"dask, {workers} worker(s)"] = {"seconds": round(time.perf_counter() - start, 1),
                                                  "same": outcome(remote) == outcome(local)}
    folds = sum(len(c.fit_seconds) for result in local.values() for c in result.candidates)
    result = {"experiment": str(source), "candidates": sum(len(r.candidates) for r in local.values()),
              "folds_fitted_locally": folds, "runs": runs}
    Path("reports").mkdir(exist_ok=True)
    Path("reports/bench-scale-search.json").write_text(json.dumps(result, indent=2) + "\n")
    for name, run in runs.items():
        print(f"{name:<20} {run['seconds']:>7.1f} s   same results as local: {run['same']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
