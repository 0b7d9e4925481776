"""Each calibration method's log-loss and ECE on a validation split, as `calibration: auto` scores them.

The task's pipeline (the grid's best candidate on the validation split, as `newstag train` picks
it) is fitted on the train split. For each method, the validation split is cut into up to 5
stratified folds, and a calibrator over the train-fitted pipeline is fitted on all folds but one
and scores the one left out, so no validation probability comes from a calibrator that saw its
article. The log-losses are the ones `train` compares (the sidecar's
`tasks.<task>.calibration.validation_log_loss`); the ECE is over 15 equal-width bins of the top
label's probability, as `evaluate` measures it. Train and validation rows only, never the test split.

    make data/processed/20newsgroups/manifest.json
    .venv/bin/python scripts/calibration_validation.py 20newsgroups [--task topic]
"""

import argparse
import logging

from sklearn.base import clone
from sklearn.model_selection import ParameterGrid

from newstag.config import load_config
from newstag.data.splits import load_split
from newstag.models.calibrate import (
    _held_out_calibrated,
    _log_loss,
    candidate_methods,
    expected_calibration_error,
)
from newstag.models.pipelines import build_pipeline
from newstag.train import score_candidates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment")
    parser.add_argument("--task", help="the task to measure (default: the first)")
    args = parser.parse_args()
    logging.disable(logging.INFO)
    config = load_config(f"experiments/{args.experiment}.yaml")
    task = next(t for t in config.tasks if args.task in (None, t.name))
    train, validation = load_split(config, "train"), load_split(config, "validation")
    X_train, y_train = train["text"].tolist(), train[task.name].astype(str).tolist()
    X_val, y_val = validation["text"].tolist(), validation[task.name].astype(str).tolist()
    grid = list(ParameterGrid(task.grid)) or [{}]
    candidates = score_candidates(task, grid, (X_train, y_train), (X_val, y_val), config.seed)
    best = max(candidates, key=lambda c: c["f1_macro"])
    fitted = clone(build_pipeline(task, config.seed, best["params"])).fit(X_train, y_train)
    print(f"{args.experiment}, task {task.name}: {best['params'] or 'no grid'}, fitted on "
          f"{len(X_train)} train rows, scored on {len(X_val)} validation rows")
    print(f"{'method':12s} log-loss  ECE")
    for method in candidate_methods(fitted, "auto", keep_decisions=False):
        classes, proba = _held_out_calibrated(fitted, method, X_val, y_val)
        print(f"{method:12s} {_log_loss(y_val, proba, classes):.4f}    "
              f"{expected_calibration_error(y_val, classes, proba):.4f}")


if __name__ == "__main__":
    main()
