"""Why `classifier: auto` is calibrated only by methods that keep its decisions: the evidence.

For each experiment, the processed train + validation rows (never the test split) are cut into
stratified 80/20 splits. On the 80% (its own train/validation split inside), `auto` picks its
model, then is calibrated twice: by every method (sigmoid, isotonic, temperature, and none for a
model with probabilities) and by the decision-keeping ones only (temperature, none). The plain
baseline (TfidfVectorizer() + LinearSVC()) is fitted on the same 80%. All are scored on the 20%.

    make data/processed/econ_news_tone/manifest.json
    .venv/bin/python scripts/calibration_decisions.py econ_news_tone [more experiments] [--splits 5]

The README quotes `econ_news_tone`, and `hyperpartisan econ_news_tone_binary` (each preprocessed
the same way).
"""

import argparse
import logging

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedShuffleSplit, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC

from newstag.bench import minimal_auto_task
from newstag.config import load_config
from newstag.data.splits import load_split
from newstag.models.calibrate import class_scores, expected_calibration_error
from newstag.train import calibrate_task, fit_auto


def scores(truth, classes, proba) -> list[float]:
    predicted = np.asarray(classes)[proba.argmax(axis=1)]
    return [accuracy_score(truth, predicted), f1_score(truth, predicted, average="macro"),
            expected_calibration_error(truth, classes, proba)]


def one_split(config, task, fit: pd.DataFrame, held: pd.DataFrame) -> dict[str, list[float]]:
    train, validation = train_test_split(fit, test_size=config.split.validation,
                                         stratify=fit[task.name], random_state=config.seed)
    texts, truth = held["text"].tolist(), held[task.name].tolist()
    baseline = make_pipeline(TfidfVectorizer(), LinearSVC()).fit(fit["text"], fit[task.name])
    predicted = baseline.predict(texts)
    row = {"baseline": [accuracy_score(truth, predicted), f1_score(truth, predicted, average="macro"),
                        float("nan")]}
    parts = [(frame["text"].tolist(), frame[task.name].tolist()) for frame in (train, validation)]
    for name, keep in (("auto, every method", False), ("auto, keeping decisions", True)):
        result, chosen = fit_auto(task, parts[0][0] + parts[1][0], parts[0][1] + parts[1][1], config.seed)
        result = calibrate_task(chosen, result, parts[0], parts[1], config.seed, keep_decisions=keep)
        row[name] = scores(truth, result.pipeline.classes_, class_scores(result.pipeline, texts))
        row[name + " method"] = result.calibration["method"]
    return row


def study(experiment: str, splits: int) -> None:
    config = load_config(f"experiments/{experiment}.yaml")
    task = minimal_auto_task(config.tasks[0])
    rows = pd.concat([load_split(config, "train"), load_split(config, "validation")], ignore_index=True)
    rows[task.name] = rows[task.name].astype(str)
    splitter = StratifiedShuffleSplit(n_splits=splits, test_size=0.2, random_state=0)
    results = [one_split(config, task, rows.iloc[fit], rows.iloc[held])
               for fit, held in splitter.split(rows, rows[task.name])]
    print(f"\n{experiment} ({splits} splits of {len(rows)} train + validation rows)")
    print(f"{'':26s} accuracy  macro-F1  ECE      per split macro-F1")
    for name in ("baseline", "auto, every method", "auto, keeping decisions"):
        values = np.array([r[name] for r in results])
        methods = ", ".join(r.get(name + " method", "-") for r in results)
        print(f"{name:26s} {values[:, 0].mean():.4f}    {values[:, 1].mean():.4f}    "
              f"{values[:, 2].mean():.4f}   {' '.join(f'{v:.3f}' for v in values[:, 1])}  {methods}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiments", nargs="+")
    parser.add_argument("--splits", type=int, default=5)
    args = parser.parse_args()
    logging.disable(logging.INFO)
    for experiment in args.experiments:
        study(experiment, args.splits)


if __name__ == "__main__":
    main()
