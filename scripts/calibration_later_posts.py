"""Calibration that has to hold on later posts: the evidence, on 20 Newsgroups' training rows.

The processed train + validation rows (never the test split) are cut the way the official split
is: the latest fifth of each group's posts (by message number, which grows with time on a news
server) is held out; the rest is the training part. The experiment's pipeline is calibrated on
the training part (3 held-out folds, as training does from 5,000 articles on) and scored on the
held-out later posts, for each calibration method and each way of cutting the folds:

- stratified: what training does (scikit-learn's StratifiedKFold, unshuffled);
- author / thread: folds that never split one author's (From: address) or one thread's
  (Subject: without its Re: prefixes) posts, so that the held-out scores the calibrator learns
  from come from authors or threads the fold's model never saw, as many later posts do.

Top-label joined the methods on this evidence; grouping the folds did not help (the grouped
folds' scores came out more confident, not less).

    make data/processed/20newsgroups/manifest.json
    .venv/bin/python scripts/calibration_later_posts.py [--share 0.2] [--folds stratified author thread]
"""

import argparse
import logging
import re

import pandas as pd

from newstag.config import load_config
from newstag.data.corpora import data_dir, twenty_newsgroups
from newstag.data.splits import load_split
from newstag.models.calibrate import _log_loss, calibrated, expected_calibration_error
from newstag.models.pipelines import build_pipeline

FOLDS = 3


def later_posts(rows: pd.DataFrame, share: float) -> pd.Series:
    """True for the latest `share` of each group's posts (ids are group/message-number)."""
    number = rows["id"].str.rsplit("/", n=1).str[-1].astype(int)
    return number.groupby(rows["topic"]).rank(pct=True) > 1 - share


def author(post: str) -> str:
    """The From: header's e-mail address (else the whole header), lower-cased."""
    found = re.search(r"^From:(.*)$", post, re.M)
    header = (found.group(1) if found else "").strip().lower()
    address = re.search(r"[\w.+-]+@[\w.-]+", header)
    return address.group(0) if address else header


def thread(post: str) -> str:
    """The Subject: header without its Re:/Fwd: prefixes, lower-cased."""
    found = re.search(r"^Subject:(.*)$", post, re.M)
    subject = (found.group(1) if found else "").strip().lower()
    while (shorter := re.sub(r"^(re|fwd?)\s*(\[\d+\])?\s*:\s*", "", subject)) != subject:
        subject = shorter
    return re.sub(r"\s+", " ", subject)


def fold_plan(scheme: str, texts: list[str], labels: list[str], ids: pd.Series, raw: pd.Series):
    """The cv argument for CalibratedClassifierCV: a fold count, or grouped (train, held-out) pairs."""
    from sklearn.model_selection import StratifiedGroupKFold

    if scheme == "stratified":
        return FOLDS
    groups = ids.map(raw).map(author if scheme == "author" else thread).to_numpy()
    return list(StratifiedGroupKFold(FOLDS, shuffle=True, random_state=0).split(texts, labels, groups))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="experiments/20newsgroups.yaml")
    parser.add_argument("--share", type=float, default=0.2, help="latest share of each group held out")
    parser.add_argument("--methods", nargs="+", default=["temperature", "top-label"])
    parser.add_argument("--folds", nargs="+", default=["stratified"],
                        choices=["stratified", "author", "thread"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    config = load_config(args.experiment)
    task = config.tasks[0]
    rows = pd.concat([load_split(config, "train"), load_split(config, "validation")], ignore_index=True)
    held = later_posts(rows, args.share)
    fit, later = rows[~held].reset_index(drop=True), rows[held]
    params = {key: values[0] for key, values in task.grid.items()}  # the grid's first candidate
    print(f"{len(fit)} earlier posts to fit on, {len(later)} later posts held out; params {params}")
    raw = pd.Series(dtype=object)
    if set(args.folds) - {"stratified"}:  # the headers, as posted (cleaning drops e-mail addresses)
        raw = twenty_newsgroups(data_dir() / "20newsgroups").frame.set_index("id")["text"]
    texts, labels, truth = fit["text"].tolist(), fit[task.name].tolist(), later[task.name].to_numpy()
    for scheme in args.folds:
        plan = fold_plan(scheme, texts, labels, fit["id"], raw)
        for method in args.methods:
            model = calibrated(build_pipeline(task, config.seed, params), method, plan)
            proba = model.fit(texts, labels).predict_proba(later["text"].tolist())
            accuracy = float((model.classes_[proba.argmax(axis=1)] == truth).mean())
            ece = expected_calibration_error(truth, model.classes_, proba)
            print(f"{scheme:10s} {method:12s} accuracy {accuracy:.4f}  mean confidence "
                  f"{proba.max(axis=1).mean():.4f}  ECE {ece:.4f}  "
                  f"log-loss {_log_loss(truth, proba, model.classes_):.4f}", flush=True)


if __name__ == "__main__":
    main()
