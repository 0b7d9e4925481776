"""Why top-label calibration joined the methods: the evidence, on 20 Newsgroups' training rows.

The processed train + validation rows (never the test split) are cut the way the official split
is: the latest fifth of each group's posts (by message number, which grows with time on a news
server) is held out; the rest is the training part. The experiment's pipeline is calibrated on
the training part by temperature scaling and by top-label (3 held-out folds, as training does
from 5,000 articles on), and both are scored on the held-out later posts.

    make data/processed/20newsgroups/manifest.json
    .venv/bin/python scripts/calibration_top_label.py [--share 0.2]
"""

import argparse
import logging

import pandas as pd

from newstag.config import load_config
from newstag.data.splits import load_split
from newstag.models.calibrate import _log_loss, calibrated, expected_calibration_error
from newstag.models.pipelines import build_pipeline


def later_posts(rows: pd.DataFrame, share: float) -> pd.Series:
    """True for the latest `share` of each group's posts (ids are group/message-number)."""
    number = rows["id"].str.rsplit("/", n=1).str[-1].astype(int)
    return number.groupby(rows["topic"]).rank(pct=True) > 1 - share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="experiments/20newsgroups.yaml")
    parser.add_argument("--share", type=float, default=0.2, help="latest share of each group held out")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    config = load_config(args.experiment)
    task = config.tasks[0]
    rows = pd.concat([load_split(config, "train"), load_split(config, "validation")], ignore_index=True)
    held = later_posts(rows, args.share)
    fit, later = rows[~held], rows[held]
    params = {key: values[0] for key, values in task.grid.items()}  # the grid's first candidate
    print(f"{len(fit)} earlier posts to fit on, {len(later)} later posts held out; params {params}")
    truth = later[task.name].to_numpy()
    for method in ("temperature", "top-label"):
        model = calibrated(build_pipeline(task, config.seed, params), method, 3)
        model.fit(fit["text"].tolist(), fit[task.name].tolist())
        proba = model.predict_proba(later["text"].tolist())
        accuracy = float((model.classes_[proba.argmax(axis=1)] == truth).mean())
        print(f"{method:12s} accuracy {accuracy:.4f}  mean confidence {proba.max(axis=1).mean():.4f}  "
              f"ECE {expected_calibration_error(truth, model.classes_, proba):.4f}  "
              f"log-loss {_log_loss(truth, proba, model.classes_):.4f}")


if __name__ == "__main__":
    main()
