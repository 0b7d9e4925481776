"""Multi-label tasks (`multi_label: true`): an article may carry several labels, e.g. sport AND business.

Data. A row's labels are a JSON list (`"topics": ["sport", "business"]` in JSONL, or a list column in
Parquet) or text joined by the task's `label_separator` (`sport;business` in a CSV cell). Rows with
no label, a label outside the task's declared `labels`, or a list that is no list of labels (see
parse_labels) are invalid rows like any other. The processed splits keep each row's labels as a
list column in Parquet (no separator to escape).

Splitting. Stratified splits of multi-label data use iterative stratification (Sechidis, Tsoumakas
& Vlahavas 2011): the label with the fewest unassigned rows goes first, each of its rows to the
split that still wants most of that label (ties: the split that wants most rows, then random), so
rare labels are spread over train / validation / test before common ones fill the rest.

Model. One linear model per label (one-vs-rest over the label set, scikit-learn's
`OneVsRestClassifier`); the default (`classifier: auto`) is `LinearSVC`: the one-vs-rest baseline's
own model, fast and strong on sparse TF-IDF, and `auto`'s search is single-label (stratified folds
on one label per row), so it does not apply. Its features are single words (TF-IDF, sublinear
tf), not the single-label tasks' words and word pairs (`features: word` only; `vect__ngram_range`
in `params` overrides it). Each label's model is first fitted on train and its decision margins on
the validation split give the label two things, kept as parameters of the classifier step:
- a threshold on the margin that maximises the label's validation F1 (the midpoint between the
  margins it separates), so rare labels, whose margins are mostly negative, still get predicted;
  0, the plain SVM's rule, when the label has no validation article, when 0 does as well, or when
  even the best threshold's validation F1 is under `MIN_THRESHOLD_F1` (0.5). That last fallback
  is Yang's SCutFBR (2001): a label with one or two validation articles can only be "caught" by
  a threshold that also takes in dozens of others, and on new articles such a threshold tags far
  more wrong than right;
- a Platt sigmoid (Platt's smoothed targets) mapping the margin to a probability, fitted per label
  when the label has at least `MIN_PLATT_POSITIVES` validation articles, otherwise one sigmoid
  fitted on all labels' validation margins together.
Then every label's model is refitted on train + validation, keeping those thresholds and sigmoids.
A label is predicted when its margin reaches its threshold; when no label does, the single label
with the highest margin above its threshold (the least far below it) is predicted, so every article
gets at least one label (as every training article has one). `newstag predict` gives the labels
and each one's probability.

Evidence for the words-only features and the fallback (chosen on training rows only): 3-fold
cross-validation (iterative stratification) on the official-train part of 20newsgroups_multilabel
(20 groups, a sixth of the posts joined to one of another group, 1.2 labels a post), each fold's
training part split 90/10 to tune thresholds, then refitted. Micro-/macro-F1, mean of 3 folds:
- all 9,395 rows (377-599 a label), `scripts/multilabel_cv.py`: OvR LinearSVC baseline
  0.743 / 0.734; words and word pairs 0.826 / 0.826; single words 0.834 / 0.834 (better in each
  fold).
- the same rows thinned to a long tail (4 to 397 rows a label, 9 of 20 under 50), closer to
  Reuters' many rare topics: there, plain tuned thresholds fell below the baseline's micro-F1
  (rare labels with one validation article got thresholds near -1 and tagged hundreds of wrong
  articles); the fallback at F1 0.1, 0.3 and 0.5 raised micro-F1 and lowered macro-F1 step by
  step, 0.5 gave the best sum of the two on single words, and no threshold at all (0, with the
  at-least-one rule) gave the highest micro-F1 and a lower macro-F1. That study's thinning code
  was not kept: it is described here, not reproducible from this repository.

This module is imported by prediction, so it imports only NumPy and scikit-learn at the top.
"""

import json
import math
from collections import defaultdict

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone

from newstag.errors import NewstagError

MIN_PLATT_POSITIVES = 5
MIN_THRESHOLD_F1 = 0.5  # a tuned threshold whose validation F1 is lower falls back to 0 (SCutFBR)


# ---- labels in the data -------------------------------------------------------------------------

class BadLabels:
    """A cell that holds no list of labels, and why: preprocess refuses or drops its row like any
    other invalid row (it never reaches a split)."""

    def __init__(self, reason: str):
        self.reason = reason


def parse_labels(value, separator: str) -> list[str] | BadLabels | None:
    """One cell's labels, in order, each once: a JSON list, or text split at `separator`.
    None when the cell is missing; BadLabels when it holds something else.

    A list's items are text or numbers; a number reads as the text JSON wrote, 1 as '1' and 2.5
    as '2.5', as a number does in a single-label column and in the config's `labels:`. null,
    true/false (Python would make 'True' of it, which the data never wrote), a list in the list
    and a mapping are no labels, and neither is a list item holding `separator` (the same labels
    in a CSV cell would be split there): each makes the row invalid.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    items = _cell_items(value, separator)
    if isinstance(items, BadLabels):
        return items
    for item in items:
        if problem := _item_problem(item, separator):
            return BadLabels(problem)
    labels = [str(item).strip() for item in items if str(item).strip()]
    return list(dict.fromkeys(labels))


def _cell_items(value, separator: str) -> list | BadLabels:
    """The cell's items: its list (a JSON array arrives as text), or its text split at `separator`."""
    if isinstance(value, list | tuple | np.ndarray):
        return [item.item() if isinstance(item, np.generic) else item for item in value]
    text = str(value).strip()
    parsed = json_container(text)
    if isinstance(parsed, dict):
        return BadLabels(f"holds a mapping ({shorten(text)}); give a list of labels")
    return parsed if isinstance(parsed, list) else text.split(separator)


def json_container(text: str) -> list | dict | None:
    """A JSON array or object (how a JSONL list reaches us as text), else None."""
    if not text.startswith(("[", "{")):
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _item_problem(item, separator: str) -> str | None:
    if isinstance(item, bool) or not isinstance(item, str | int | float) or \
            (isinstance(item, float) and not math.isfinite(item)):
        shown = shorten(json.dumps(item, ensure_ascii=False, default=str))
        return f"holds a list with a non-text item ({shown}); labels must be text or numbers"
    if isinstance(item, str) and separator in item:
        return (f"holds the label {item!r}, which contains the label_separator {separator!r} (a "
                f"CSV cell would split it); rename the label or set another label_separator")
    return None


def shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def label_problem(labels, task) -> str | None:
    """Why a row's labels are invalid for the task, or None."""
    if labels is None:
        return f"missing label: column '{task.column}' is empty"
    if isinstance(labels, BadLabels):
        return f"invalid label: column '{task.column}' {labels.reason}"
    if not len(labels):
        return f"missing label: column '{task.column}' holds an empty label list"
    if task.labels:
        unknown = [label for label in labels if label not in task.labels]
        if unknown:
            return (f"unknown label: {unknown[0]!r} in column '{task.column}' "
                    f"is not one of {', '.join(task.labels)}")
    return None


def label_counts(column) -> dict[str, int]:
    """Articles per label (an article counts once for each of its labels)."""
    counts: dict[str, int] = defaultdict(int)
    for labels in column:
        for label in labels:
            counts[str(label)] += 1
    return dict(sorted(counts.items()))


def multilabel_tasks(config) -> list:
    return [task for task in config.tasks if task.multi_label]


# ---- splitting ----------------------------------------------------------------------------------

def iterative_split(label_lists: list, shares: list[float], seed: int) -> np.ndarray:
    """Sechidis et al.'s iterative stratification: the subset index (0..k-1) of every row, with
    subset j getting about shares[j] of the rows and of each label's rows."""
    rng = np.random.default_rng(seed)
    shares = np.asarray(shares, dtype=float)
    wanted = shares * len(label_lists)  # rows each subset still wants
    rows_of = defaultdict(list)
    for row, labels in enumerate(label_lists):
        for label in set(labels):
            rows_of[label].append(row)
    wanted_of = {label: shares * len(rows) for label, rows in rows_of.items()}
    left = {label: len(rows) for label, rows in rows_of.items()}
    subset = np.full(len(label_lists), -1)
    while left:
        label = min(left, key=lambda name: (left[name], name))  # the rarest label left
        rows = [row for row in rows_of[label] if subset[row] < 0]
        rng.shuffle(rows)
        for row in rows:
            subset[row] = _pick(wanted_of[label], wanted, rng)
            wanted[subset[row]] -= 1
            for other in set(label_lists[row]):
                wanted_of[other][subset[row]] -= 1
                left[other] -= 1
        left = {name: count for name, count in left.items() if count > 0}
    for row in np.flatnonzero(subset < 0):  # rows without labels (none after validation)
        subset[row] = _pick(wanted, wanted, rng)
        wanted[subset[row]] -= 1
    return subset


def _pick(label_wants: np.ndarray, row_wants: np.ndarray, rng) -> int:
    best = np.flatnonzero(label_wants == label_wants.max())
    if len(best) > 1:
        best = best[row_wants[best] == row_wants[best].max()]
    return int(rng.choice(best))


def split_frame(articles, config, shares: dict[str, float]) -> dict:
    """Split a DataFrame into named parts by iterative stratification on the first multi-label
    task's labels (other tasks of the experiment are not stratified on)."""
    task = multilabel_tasks(config)[0]
    names = list(shares)
    subset = iterative_split(articles[task.name].tolist(), [shares[n] for n in names], config.seed)
    parts = {name: articles[subset == i] for i, name in enumerate(names)}
    empty = [name for name, part in parts.items() if part.empty]
    if empty:
        raise NewstagError(f"cannot split the data: the {empty[0]} split would be empty; add "
                           f"articles or change split.test / split.validation")
    return parts


# ---- the model ----------------------------------------------------------------------------------

class MultiLabelLinear(ClassifierMixin, BaseEstimator):
    """One-vs-rest linear models with per-label margin thresholds and Platt sigmoids.

    `fit(X, y)` takes each row's label list. `thresholds` and `sigmoids` (one per label, in
    `labels` order) are set from validation margins by `tune`; unset, a label is predicted at a
    margin >= 0 and its probability is 1 / (1 + exp(-2 margin)).
    """

    def __init__(self, estimator=None, labels=(), thresholds=None, sigmoids=None):
        self.estimator = estimator
        self.labels = labels
        self.thresholds = thresholds
        self.sigmoids = sigmoids

    def fit(self, X, y):
        from sklearn.multiclass import OneVsRestClassifier

        indicator = self.binarize(y)
        self.classes_ = np.asarray(self.labels, dtype=object)
        self.ovr_ = OneVsRestClassifier(clone(self.estimator)).fit(X, indicator)
        self.n_features_in_ = X.shape[1]
        return self

    def binarize(self, y) -> np.ndarray:
        position = {label: i for i, label in enumerate(self.labels)}
        indicator = np.zeros((len(y), len(self.labels)), dtype=int)
        for row, labels in enumerate(y):
            for label in labels:
                if str(label) in position:
                    indicator[row, position[str(label)]] = 1
        return indicator

    def decision_function(self, X) -> np.ndarray:
        margins = np.column_stack([_margin(model, X) for model in self.ovr_.estimators_])
        return margins.astype(float)

    def _thresholds(self) -> np.ndarray:
        return np.zeros(len(self.labels)) if self.thresholds is None else np.asarray(self.thresholds)

    def predict(self, X) -> np.ndarray:
        """The indicator matrix of predicted labels, at least one per row."""
        over = self.decision_function(X) - self._thresholds()
        chosen = (over >= 0).astype(int)
        none = ~chosen.any(axis=1)
        chosen[np.flatnonzero(none), over[none].argmax(axis=1)] = 1
        return chosen

    def predict_proba(self, X) -> np.ndarray:
        """Each label's own probability (rows do not sum to 1)."""
        sigmoids = self.sigmoids if self.sigmoids is not None else [(2.0, 0.0)] * len(self.labels)
        return label_probabilities(self.decision_function(X), sigmoids)

    @property
    def coef_(self) -> np.ndarray:
        """Each label's weights (one row per label), for top_terms."""
        return np.vstack([np.ravel(getattr(model, "coef_", np.zeros((1, self.n_features_in_))))
                          for model in self.ovr_.estimators_])


def _margin(model, X) -> np.ndarray:
    if hasattr(model, "decision_function"):
        return np.ravel(model.decision_function(X))
    proba = np.clip(model.predict_proba(X)[:, -1], 1e-6, 1 - 1e-6)  # complement_nb: log-odds
    return np.log(proba / (1 - proba))


def _sigmoid(values: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(values, -500, 500)))


def best_threshold(margins: np.ndarray, truth: np.ndarray, min_f1: float = MIN_THRESHOLD_F1) -> float:
    """The margin threshold maximising F1 on held-out rows: the midpoint between the last margin
    kept and the next; 0 when 0 does as well, when there is no positive row, or when even the
    best F1 is under `min_f1` (a threshold lowered to catch a rare label's one validation article
    among many others would tag far more wrong articles than right ones)."""
    if truth.sum() == 0:
        return 0.0
    order = np.argsort(-margins, kind="stable")
    sorted_margins, hits = margins[order], np.cumsum(truth[order])
    predicted = np.arange(1, len(margins) + 1)
    f1 = 2 * hits / (predicted + truth.sum())
    ends = np.r_[np.flatnonzero(np.diff(sorted_margins)), len(margins) - 1]  # ties go together
    best = ends[np.argmax(f1[ends])]
    zero_f1 = f1_at(margins, truth, 0.0)
    if zero_f1 >= f1[best] or f1[best] < min_f1:
        return 0.0
    below = sorted_margins[best + 1] if best + 1 < len(margins) else sorted_margins[best] - 1.0
    return float((sorted_margins[best] + below) / 2)


def f1_at(margins: np.ndarray, truth: np.ndarray, threshold: float) -> float:
    predicted = margins >= threshold
    hits = float((predicted & (truth == 1)).sum())
    return 2 * hits / (predicted.sum() + truth.sum()) if predicted.sum() + truth.sum() else 0.0


def platt(margins: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of P(label | margin) = sigmoid(slope * margin + intercept), fitted by
    Platt's method: log-loss against smoothed targets, so a few examples cannot make it a step."""
    from scipy.optimize import minimize

    positives, negatives = truth.sum(), len(truth) - truth.sum()
    target = np.where(truth == 1, (positives + 1) / (positives + 2), 1 / (negatives + 2))

    def loss(params):
        p = np.clip(_sigmoid(params[0] * margins + params[1]), 1e-12, 1 - 1e-12)
        return -np.sum(target * np.log(p) + (1 - target) * np.log(1 - p))

    slope, intercept = minimize(loss, x0=[2.0, 0.0], method="L-BFGS-B").x
    return (float(slope), float(intercept)) if slope > 0 else (2.0, 0.0)


def tune(model: MultiLabelLinear, X_val, y_val) -> dict:
    """Per-label thresholds and sigmoids from a train-fitted model's validation margins; set them
    on the model and return them with each label's validation F1 at 0 and at its threshold."""
    margins, truth = model.decision_function(X_val), model.binarize(y_val)
    sigmoids = label_sigmoids(margins, truth)
    thresholds, report = [], {}
    for i, label in enumerate(model.labels):
        thresholds.append(best_threshold(margins[:, i], truth[:, i]))
        positives = int(truth[:, i].sum())
        report[label] = {"threshold": thresholds[-1], "validation_articles": positives,
                         "validation_f1_at_0": f1_at(margins[:, i], truth[:, i], 0.0),
                         "validation_f1": f1_at(margins[:, i], truth[:, i], thresholds[-1])}
    model.set_params(thresholds=tuple(thresholds), sigmoids=tuple(map(tuple, sigmoids)))
    return report


def label_sigmoids(margins: np.ndarray, truth: np.ndarray) -> list[tuple[float, float]]:
    """Each label's Platt sigmoid from held-out margins: its own with at least MIN_PLATT_POSITIVES
    positive articles, otherwise one fitted on every label's margins together."""
    pooled = platt(margins.ravel(), truth.ravel())
    return [platt(margins[:, i], truth[:, i]) if truth[:, i].sum() >= MIN_PLATT_POSITIVES else pooled
            for i in range(margins.shape[1])]


def label_probabilities(margins: np.ndarray, sigmoids) -> np.ndarray:
    """Each label's probability from its margin through its sigmoid (rows do not sum to 1)."""
    sigmoids = np.asarray(sigmoids)
    return _sigmoid(margins * sigmoids[:, 0] + sigmoids[:, 1])


# ---- training -----------------------------------------------------------------------------------

def classifier_name(task) -> str:
    """`auto` is LinearSVC for multi-label tasks (see the module's docstring)."""
    return "linear_svm" if task.classifier == "auto" else task.classifier


def build(task, seed: int, labels=(), overrides: dict | None = None):
    """vect -> MultiLabelLinear(one linear model per label), with the task's params."""
    from dataclasses import replace

    from sklearn.pipeline import Pipeline

    from newstag.models.pipelines import build_pipeline, set_params

    single = build_pipeline(replace(task, classifier=classifier_name(task), params={}, grid={},
                                    multi_label=False), seed)
    if task.features == "word":  # single words: see the module's docstring
        single.set_params(vect__ngram_range=(1, 1))
    pipeline = Pipeline([("vect", single.named_steps["vect"]),
                         ("clf", MultiLabelLinear(single.named_steps["clf"], tuple(labels)))])
    set_params(pipeline, task.params, f"tasks.{task.name}.params")
    set_params(pipeline, overrides or {}, f"tasks.{task.name}.grid")
    return pipeline


def fit_task(task, train_df, validation_df, seed: int):
    """Fit each grid candidate on train, tune its thresholds on validation, keep the best by
    validation macro-F1, refit it on train + validation. Returns a train.TaskResult."""
    from sklearn.model_selection import ParameterGrid

    from newstag.train import TaskResult

    X_train, y_train = train_df["text"].tolist(), label_lists(train_df[task.name])
    X_val, y_val = validation_df["text"].tolist(), label_lists(validation_df[task.name])
    # The labels the articles have, as a single-label model's classes are: a declared label with
    # none (preprocess refuses it) would get a constant model, tagging every article with it.
    labels = tuple(sorted({label for row in y_train + y_val for label in row}))
    candidates = []
    for params in list(ParameterGrid(task.grid)) or [{}]:
        pipeline = _fit(build(task, seed, labels, params), X_train, y_train, task)
        tuning = tune(pipeline.named_steps["clf"], pipeline.named_steps["vect"].transform(X_val), y_val)
        scores = multilabel_scores(pipeline.named_steps["clf"].binarize(y_val), pipeline.predict(X_val))
        candidates.append({"params": params, "f1_macro": scores["f1_macro"],
                           "f1_micro": scores["f1_micro"], "tuning": tuning,
                           "clf": pipeline.named_steps["clf"].get_params(deep=False)})
    best = max(candidates, key=lambda c: c["f1_macro"])
    final = build(task, seed, labels, best["params"])
    final.set_params(clf__thresholds=best["clf"]["thresholds"], clf__sigmoids=best["clf"]["sigmoids"])
    final = _fit(final, X_train + X_val, y_train + y_val, task)
    return TaskResult(
        pipeline=final, labels=list(labels), best_params=best["params"],
        validation={"f1_macro": best["f1_macro"], "f1_micro": best["f1_micro"]},
        candidates=[{key: c[key] for key in ("params", "f1_macro", "f1_micro")} for c in candidates],
        model={"classifier": classifier_name(task), "features": task.features,
               "params": dict(task.params), "multi_label": True,
               "chosen_by": "config" if task.classifier != "auto" else "auto: LinearSVC per label"},
        calibration={"method": "platt on validation margins", "labels": best["tuning"]},
    )


def label_lists(column) -> list[list[str]]:
    """A column of label lists (lists, or the arrays a Parquet list column gives) as lists of str."""
    return [[str(label) for label in labels] for labels in column]


def _fit(pipeline, X, y, task):
    try:
        return pipeline.fit(X, y)
    except ValueError as exc:
        raise NewstagError(f"task '{task.name}': {str(exc).splitlines()[0]}") from None


def is_multilabel(pipeline) -> bool:
    steps = getattr(pipeline, "named_steps", None)
    return steps is not None and isinstance(steps.get("clf"), MultiLabelLinear)


# ---- evaluation ---------------------------------------------------------------------------------

def multilabel_scores(truth: np.ndarray, predicted: np.ndarray) -> dict:
    from sklearn.metrics import accuracy_score, f1_score, hamming_loss

    def f1(average):
        return float(f1_score(truth, predicted, average=average, zero_division=0))

    return {"f1_micro": f1("micro"), "f1_macro": f1("macro"), "f1_samples": f1("samples"),
            "hamming_loss": float(hamming_loss(truth, predicted)),
            "accuracy": float(accuracy_score(truth, predicted))}  # exact match of the label set


def flat_metrics(task: str, values: dict) -> dict[str, float]:
    """The multi-label metrics evaluate's flat_metrics does not know, for MLflow."""
    from newstag.tracking import metric_name

    flat = {metric_name("test", task, key): values[key] for key in ("f1_micro", "f1_samples", "hamming_loss")}
    for label, scores in values["per_class"].items():
        flat[metric_name("test", task, "precision", label)] = scores["precision"]
        flat[metric_name("test", task, "recall", label)] = scores["recall"]
    return flat


# ---- prediction ---------------------------------------------------------------------------------

def tag_texts(pipeline, texts: list[str]) -> list[dict[str, float]]:
    """Per text, its predicted labels with their probabilities, most probable first."""
    if not texts:
        return []
    chosen = pipeline.predict(texts)
    proba = pipeline.predict_proba(texts)
    labels = pipeline.named_steps["clf"].labels
    rows = []
    for picked, scores in zip(chosen, proba, strict=True):
        found = {str(labels[i]): round(float(scores[i]), 4) for i in np.flatnonzero(picked)}
        rows.append(dict(sorted(found.items(), key=lambda item: -item[1])))
    return rows


def answer(task: str, scores: dict[str, float]) -> dict:
    """A row's fields for a multi-label task."""
    return {task: list(scores), f"{task}_scores": scores}
