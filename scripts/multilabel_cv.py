"""The multi-label default's features, by cross-validation on the training rows of 20 Newsgroups joined.

The train + validation rows of experiments/20newsgroups_multilabel.yaml (the official-train part)
are cut into 3 folds by iterative stratification. For each fold, the other two are split 90/10
(iterative stratification again) to tune the per-label thresholds and sigmoids, then refitted on
both, as `newstag train` does; the plain one-vs-rest baseline (TfidfVectorizer() + LinearSVC()
per label, a label at a margin >= 0, so a post may get none) is fitted on both. Each is scored on
the fold left out: micro- and macro-F1, the mean of the 3 folds. The settings compared: single
words (the default) and words and word pairs.

With --test it also scores, on the official test split, the models fitted on train + validation
(thresholds tuned on the validation split): the baseline, with the number of test posts it gives
no label, the default, and the previous default (words and word pairs, a tuned threshold kept
whatever its validation F1). This measures what was chosen; nothing is chosen from it.

    make data/processed/20newsgroups_multilabel/manifest.json
    .venv/bin/python scripts/multilabel_cv.py [--test]
"""

import argparse
import functools
import logging
from dataclasses import replace

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MultiLabelBinarizer
from sklearn.svm import LinearSVC

from newstag.config import load_config
from newstag.data.splits import load_split
from newstag.models import multilabel
from newstag.models.multilabel import iterative_split, label_lists, multilabel_scores
from newstag.train import fit_task

SETTINGS = {"single words (default)": {}, "words and word pairs": {"vect__ngram_range": [1, 2]}}


def baseline(fit: pd.DataFrame, column: str, labels: list[str]):
    binarizer = MultiLabelBinarizer(classes=labels).fit([labels])
    pipeline = make_pipeline(TfidfVectorizer(), OneVsRestClassifier(LinearSVC()))
    return pipeline.fit(fit["text"], binarizer.transform(label_lists(fit[column]))).predict


def newstag_model(task, train: pd.DataFrame, validation: pd.DataFrame, seed: int):
    return fit_task(task, train, validation, seed).pipeline.predict


def scores(predict, held: pd.DataFrame, column: str, labels: list[str]) -> dict:
    truth = MultiLabelBinarizer(classes=labels).fit([labels]).transform(label_lists(held[column]))
    predicted = predict(held["text"].tolist())
    return {**multilabel_scores(truth, predicted), "no label": int((predicted.sum(axis=1) == 0).sum())}


def cross_validation(config, task, rows: pd.DataFrame, labels: list[str], folds: int) -> None:
    fold_of = iterative_split(label_lists(rows[task.name]), [1 / folds] * folds, config.seed)
    results: dict[str, list[dict]] = {}
    for fold in range(folds):
        fit, held = rows[fold_of != fold], rows[fold_of == fold]
        inner = iterative_split(label_lists(fit[task.name]), [0.9, 0.1], config.seed)
        predictors = {"baseline": baseline(fit, task.name, labels)}
        for name, params in SETTINGS.items():
            predictors[name] = newstag_model(replace(task, params=params), fit[inner == 0], fit[inner == 1],
                                             config.seed)
        for name, predict in predictors.items():
            results.setdefault(name, []).append(scores(predict, held, task.name, labels))
    print(f"{folds}-fold CV on {len(rows)} train + validation rows, micro-F1 / macro-F1 (mean of the folds)")
    for name, values in results.items():
        micro = [v["f1_micro"] for v in values]
        macro = [v["f1_macro"] for v in values]
        print(f"  {name:26s} {np.mean(micro):.4f} / {np.mean(macro):.4f}   per fold "
              + ", ".join(f"{a:.3f}/{b:.3f}" for a, b in zip(micro, macro, strict=True)))


def test_split(config, task, train, validation, labels: list[str]) -> None:
    test = load_split(config, "test")
    no_fallback = functools.partial(multilabel.best_threshold, min_f1=0.0)
    runs = {"baseline": lambda: baseline(pd.concat([train, validation]), task.name, labels),
            "single words (default)": lambda: newstag_model(task, train, validation, config.seed)}
    print(f"official test split, {len(test)} posts, micro-F1 / macro-F1")
    for name, run in runs.items():
        result = scores(run(), test, task.name, labels)
        print(f"  {name:45s} {result['f1_micro']:.4f} / {result['f1_macro']:.4f}   "
              f"posts with no label: {result['no label']}")
    original, multilabel.best_threshold = multilabel.best_threshold, no_fallback
    try:
        predict = newstag_model(replace(task, params=SETTINGS["words and word pairs"]), train, validation,
                                config.seed)
    finally:
        multilabel.best_threshold = original
    result = scores(predict, test, task.name, labels)
    print(f"  {'words and word pairs, no threshold fallback':45s} {result['f1_micro']:.4f} / "
          f"{result['f1_macro']:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--test", action="store_true", help="also score on the official test split")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    config = load_config("experiments/20newsgroups_multilabel.yaml")
    task = config.tasks[0]
    train, validation = load_split(config, "train"), load_split(config, "validation")
    rows = pd.concat([train, validation], ignore_index=True)
    labels = sorted({label for row in label_lists(rows[task.name]) for label in row})
    cross_validation(config, task, rows, labels, args.folds)
    if args.test:
        test_split(config, task, train, validation, labels)


if __name__ == "__main__":
    main()
