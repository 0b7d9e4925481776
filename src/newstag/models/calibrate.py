"""Calibrated confidence: scores that are probabilities, and how well they are.

A linear SVM's softmax of margins looks like a probability and is not one. After training picks a
task's model, its classifier step is wrapped in scikit-learn's
`CalibratedClassifierCV(base, method, cv=k, ensemble=False)`: one base classifier fitted on all
rows (so its coefficients stay readable as `calibrated_classifiers_[0].estimator`), and a
calibrator fitted on the base model's held-out fold predictions: sigmoid or isotonic (one-vs-rest
for many labels, then normalised), or temperature scaling (one temperature for the softmax of all
the margins, so the top label never changes; on 20 Newsgroups' validation split its log-loss
was 0.216 against sigmoid's 0.258). The method is chosen on the validation split by log-loss; a
model that has probabilities of its own (logistic regression, naive Bayes) competes uncalibrated
too ("none"), since calibrating probabilities that are already good only adds noise.

Sigmoid and isotonic calibrate each label on its own, so they can change which label wins: on
the economic news tone corpus (train + validation rows, five 80/20 splits) they took macro-F1 from
0.413 to 0.396 on every split, pulling articles toward the frequent tones. `classifier: auto` is
chosen by comparing decisions with the baseline's, so its calibration is limited to the methods
that keep every decision (KEEPING: temperature, top-label, or none): what auto compared is what
it ships. Top-label (newstag.models.toplabel) is temperature followed by an isotonic map of the
winning label's probability, which fixes the shape of the confidences as well as their level.

The metrics here (log-loss, Brier, ECE) and the coverage/accuracy of a confidence threshold are
plain NumPy so that they can be checked by hand. Prediction imports this module, so it imports
scikit-learn's calibration and metrics (which load pandas) only inside the functions that fit.
"""

import logging
from collections import Counter

import numpy as np

from newstag.errors import NewstagError

log = logging.getLogger(__name__)
METHODS = ("sigmoid", "isotonic", "temperature", "top-label", "none")  # in this order on a tie
KEEPING = ("temperature", "top-label", "none")  # the methods that never change the top label
MAX_FOLDS = 5
LARGE, LARGE_FOLDS = 5000, 3  # from 5,000 articles on, 3 folds hold out plenty and cost less
ECE_BINS = 15
THRESHOLD_BINS = 1000  # validation confidences are kept at this resolution in the bundle


# ---- wrapping a pipeline ------------------------------------------------------------------------

def calibration_folds(labels) -> int:
    """Folds for the held-out predictions: 5, fewer when the rarest label has fewer examples.
    0 means calibration is impossible (a label with a single example)."""
    rarest = Counter(labels).most_common()[-1][1]
    folds = min(MAX_FOLDS if len(labels) < LARGE else LARGE_FOLDS, rarest)
    return folds if folds >= 2 else 0


def calibrated(pipeline, method: str, folds: int):
    """The pipeline with its classifier step wrapped (unfitted); the shape stays vect -> clf."""
    from sklearn.base import clone
    from sklearn.pipeline import Pipeline

    clf = calibrator(clone(pipeline.named_steps["clf"]), method, cv=folds)
    return Pipeline([("vect", clone(pipeline.named_steps["vect"])), ("clf", clf)])


def calibrator(estimator, method: str, cv=None):
    """An unfitted CalibratedClassifierCV(ensemble=False) of `method` around `estimator`
    (top-label: newstag.models.toplabel's subclass of it)."""
    if method == "top-label":
        from newstag.models.toplabel import TopLabelCalibratedClassifierCV

        return TopLabelCalibratedClassifierCV(estimator, cv=cv)
    from sklearn.calibration import CalibratedClassifierCV

    return CalibratedClassifierCV(estimator, method=method, cv=cv, ensemble=False)


def base_classifier(pipeline):
    """The linear model inside a pipeline, calibrated or not (for coefficients and raw scores);
    a frozen one (a streaming task's learner, calibrated after training) is unwrapped."""
    clf = pipeline.named_steps["clf"]
    base = clf.calibrated_classifiers_[0].estimator if is_calibrated(pipeline) else clf
    return base.estimator if type(base).__name__ == "FrozenEstimator" else base


def is_calibrated(pipeline) -> bool:
    """A fitted CalibratedClassifierCV step (told by its fitted attribute, so that checking
    needs no import of sklearn.calibration)."""
    return hasattr(pipeline.named_steps["clf"], "calibrated_classifiers_")


def choose_method(pipeline, setting: str, train, validation, keep_decisions: bool = False) -> dict:
    """Sigmoid, isotonic, temperature, top-label or none, whichever gives the lower log-loss on the validation
    split (`keep_decisions`: only those in KEEPING; none only for a model with probabilities).

    Cheap on purpose: the pipeline is fitted once on train, and each method's calibrator is
    cross-validated over the validation split's scores (no probability is scored by a calibrator
    that saw its article). Fitting each method's own CalibratedClassifierCV on train instead costs
    2 x (folds + 1) classifier fits before the refit. `pipeline` is the chosen, unfitted pipeline.
    Returns {"method", "folds", "validation_log_loss", "validation_confidence"}; method "none" when
    the task opts out or a label has a single training example.
    """
    from sklearn.base import clone

    (X_train, y_train), (X_val, y_val) = train, validation
    folds = calibration_folds(y_train)
    if setting == "none":
        return {"method": "none"}
    if not folds:
        label = Counter(y_train).most_common()[-1][0]
        log.warning("label %r has a single training example; scores stay uncalibrated", label)
        return {"method": "none", "reason": f"label {label!r} has one training example"}
    try:
        fitted = clone(pipeline).fit(X_train, y_train)
    except ValueError as exc:
        raise NewstagError(f"calibration: {str(exc).splitlines()[0]}") from None
    return {**choose_on_validation(fitted, setting, X_val, y_val, keep_decisions), "folds": folds}


def choose_on_validation(fitted, setting: str, X_val, y_val, keep_decisions: bool = False) -> dict:
    """The method with the lowest held-out log-loss over the validation articles, for a pipeline
    already fitted on training rows (streaming training has no refit: it calibrates this one)."""
    losses, validation_scores = {}, {}
    for method in candidate_methods(fitted, setting, keep_decisions):
        classes, proba = _held_out_calibrated(fitted, method, X_val, y_val)
        losses[method] = _log_loss(y_val, proba, classes)
        validation_scores[method] = (classes, proba)
    method = min(losses, key=losses.get)
    classes, proba = validation_scores[method]
    return {"method": method, "validation_log_loss": losses,
            "validation_confidence": confidence_table(y_val, classes, proba)}


def candidate_methods(fitted, setting: str, keep_decisions: bool) -> tuple[str, ...]:
    """The task's own setting, or for auto every method (KEEPING only, when asked); none only
    for a model with probabilities: a softmax of margins is what calibration is there to fix."""
    if setting != "auto":
        return (setting,)
    methods = KEEPING if keep_decisions else METHODS
    return tuple(m for m in methods if m != "none" or hasattr(fitted, "predict_proba"))


def _held_out_calibrated(fitted, method: str, X_val, y_val) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated probabilities of the validation articles, each from a calibrator fitted on the
    other validation folds over the frozen, train-fitted pipeline (none: the fitted scores)."""
    if method == "none":
        return fitted.classes_, class_scores(fitted, list(X_val))
    from sklearn.frozen import FrozenEstimator
    from sklearn.model_selection import StratifiedKFold

    classes = fitted.classes_
    folds = min(MAX_FOLDS, Counter(y_val).most_common()[-1][1])
    if folds < 2 or len(set(y_val)) < len(classes):  # too few to cross-validate: the fitted scores
        return classes, class_scores(fitted, list(X_val))
    texts, labels = np.asarray(X_val, dtype=object), np.asarray(y_val, dtype=str)
    proba = np.zeros((len(labels), len(classes)))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    try:
        for fit_rows, held_out in splitter.split(texts, labels):
            frozen = calibrator(FrozenEstimator(fitted), method).fit(texts[fit_rows], labels[fit_rows])
            proba[held_out] = frozen.predict_proba(texts[held_out])
    except (ValueError, IndexError):  # too few articles of a label in a fold: uncalibrated scores
        return classes, class_scores(fitted, list(X_val))
    return classes, proba


def _log_loss(y_true, proba: np.ndarray, classes) -> float:
    """Log-loss of probabilities renormalised in float64: an isotonic 0 would be an infinite
    loss, and float32 scores (a model fitted on float32 features) miss a sum of 1 by 1e-7, which
    scikit-learn warns about."""
    from sklearn.metrics import log_loss

    clipped = np.clip(np.asarray(proba, dtype=np.float64), 1e-15, 1)
    return float(log_loss(y_true, clipped / clipped.sum(axis=1, keepdims=True), labels=list(classes)))


# ---- scores -------------------------------------------------------------------------------------

def softmax_margins(margins: np.ndarray) -> np.ndarray:
    """A softmax of decision margins (binary: [-m, m]), for models without probabilities."""
    if margins.ndim == 1:
        margins = np.column_stack([-margins, margins])
    scores = np.exp(margins - margins.max(axis=1, keepdims=True))
    return scores / scores.sum(axis=1, keepdims=True)


def temperature_probabilities(predictions: np.ndarray, beta, probabilities: bool = False) -> np.ndarray:
    """What CalibratedClassifierCV's temperature calibrator gives for the base model's
    predictions: softmax(beta * logits). A binary model's one column becomes two (margins:
    [-m, m]; a probability p: [1 - p, p]); the result is added to float64 zeros, as there."""
    if predictions.shape[1] == 1 and probabilities:
        predictions = np.concatenate([1 - predictions, predictions], axis=1)
    scores = _softmax(beta * _logits(predictions))
    return np.zeros(scores.shape) + scores


def _logits(values: np.ndarray) -> np.ndarray:
    """calibration._convert_to_logits: one column -> [-x, x]; a batch whose every entry is in
    [0, 1] and whose rows sum to 1 is taken for probabilities (log(p + 1e-12)), else kept."""
    if values.shape[1] == 1:
        return np.concatenate([-values, values], axis=1)
    if np.all((values >= 0) & (values <= 1)) and np.all(np.isclose(values.sum(axis=1),
                                                                    np.asarray(1.0, dtype=values.dtype))):
        return np.log(values + 1e-12)
    return values


def _softmax(values: np.ndarray) -> np.ndarray:
    """sklearn.utils.extmath.softmax, step by step (the same float operations)."""
    values = values - values.max(axis=1).reshape(-1, 1)
    np.exp(values, out=values)
    values /= values.sum(axis=1).reshape(-1, 1)
    return values


def top_label_map(proba: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Top-label calibration (newstag.models.toplabel): the winning label's probability through
    an isotonic map (thresholds x -> y, clipped at both ends); the other labels share the rest in
    their old proportions (equally, when they had nothing). The winner is kept above the
    runner-up, so no decision changes."""
    proba = np.asarray(proba, dtype=np.float64)
    rows, best = np.arange(len(proba)), proba.argmax(axis=1)
    first = proba[rows, best]
    second = np.sort(proba, axis=1)[:, -2] if proba.shape[1] > 1 else np.zeros(len(proba))
    others = proba.copy()
    others[rows, best] = 0.0
    rest = others.sum(axis=1)  # summed, not 1 - first: float32 scores miss 1 by 1e-7, and 1 - 0.999...
    # the runner-up after rescaling is second * (1 - top) / rest; top above it when top > floor
    floor = np.divide(second, rest + second, out=np.zeros_like(second), where=rest + second > 0)
    top = np.minimum(np.maximum(np.interp(first, x, y), floor * (1 + 1e-9)), 1.0)
    # shares of the rest first (each at most 1): (1 - top) / rest overflows when rest is ~1e-310
    shares = np.divide(others, rest[:, None], out=np.zeros_like(others), where=rest[:, None] > 0)
    mapped = shares * (1.0 - top)[:, None]
    if proba.shape[1] > 1:  # a winner that had everything: the others share the rest equally
        mapped[rest <= 0] = ((1.0 - top[rest <= 0]) / (proba.shape[1] - 1))[:, None]
    mapped[rows, best] = top
    return mapped


def class_scores(pipeline, texts: list[str]) -> np.ndarray:
    """Each class's score: its probability where the model has them, else a softmax of margins."""
    if hasattr(pipeline, "predict_proba"):
        return pipeline.predict_proba(texts)
    return softmax_margins(pipeline.decision_function(texts))


def base_scores(pipeline, texts: list[str] | None, features=None) -> np.ndarray:
    """The uncalibrated base model's scores (what predict gave before calibration), from the
    texts or from their features when the caller has them already."""
    base = base_classifier(pipeline)
    if features is None:
        features = pipeline.named_steps["vect"].transform(texts)
    if hasattr(base, "predict_proba"):
        return base.predict_proba(features)
    return softmax_margins(base.decision_function(features))


# ---- how good are the scores --------------------------------------------------------------------

def _one_hot(y_true, classes) -> np.ndarray:
    index = {label: i for i, label in enumerate(classes)}
    rows = np.zeros((len(y_true), len(classes)))
    for row, label in enumerate(y_true):
        if label in index:  # a test label the model never saw has no column: every score is wrong
            rows[row, index[label]] = 1.0
    return rows


def brier_score(y_true, classes, proba: np.ndarray) -> float:
    """The standard multi-class Brier score: mean over articles of sum over classes of
    (p - 1[true])^2. From 0 (perfect) to 2; for two classes it is twice the binary Brier."""
    return float(np.mean(np.sum((proba - _one_hot(y_true, classes)) ** 2, axis=1)))


def expected_calibration_error(y_true, classes, proba: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE on the top-label confidence: equal-width bins over [0, 1]; the weighted mean of
    |accuracy - mean confidence| per bin, weighted by the share of articles in the bin."""
    return binned_ece(*top_label(y_true, classes, proba), bins)


def binned_ece(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE from each article's top-label confidence and whether it was right, with the bins of
    reliability_table: sum over bins of |right answers - summed confidence| / articles (the same
    as the count-weighted |accuracy - mean confidence|), in a few array operations so that a
    bootstrap can afford a thousand of them."""
    if not len(confidence):
        return 0.0
    _, right, sure = bin_sums(confidence, correct, bins)
    return float(np.abs(right - sure).sum() / len(confidence))


def bin_sums(confidence: np.ndarray, correct: np.ndarray, bins: int) -> tuple[np.ndarray, ...]:
    """Per equal-width confidence bin: articles, right answers and summed confidence."""
    index = bin_index(confidence, bins)
    return (np.bincount(index, minlength=bins),
            np.bincount(index, weights=correct.astype(np.float64), minlength=bins),
            np.bincount(index, weights=confidence.astype(np.float64), minlength=bins))


def reliability_table(y_true, classes, proba: np.ndarray, bins: int = ECE_BINS) -> list[dict]:
    """Per equal-width bin of top-label confidence: count, mean confidence, accuracy.
    A confidence of exactly 1 falls in the last bin; bins are (low, high] except the first.
    An empty bin has None (JSON null) for its confidence and accuracy."""
    return ScoreSums(bins=bins).add(y_true, classes, proba).reliability()


def bin_index(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Each confidence's equal-width bin: (low, high], the first from 0 inclusive, 1 in the last."""
    return np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)


def top_label(y_true, classes, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(confidence of the chosen label, whether it was right) per article."""
    best = proba.argmax(axis=1)
    predicted = np.asarray(classes)[best]
    return proba[np.arange(len(best)), best], predicted == np.asarray(y_true)


def calibration_metrics(y_true, classes, proba: np.ndarray) -> dict:
    return {"log_loss": _log_loss(y_true, proba, classes),
            "brier": brier_score(y_true, classes, proba),
            "ece": expected_calibration_error(y_true, classes, proba)}


class ScoreSums:
    """Log-loss, Brier score, ECE, the reliability table and the coverage of confidence thresholds
    of scores seen a chunk at a time. Only sums are kept (per bin, and the answered articles of
    each threshold given up front), so a test split of any size takes the same memory."""

    def __init__(self, thresholds=(), bins: int = ECE_BINS):
        self.rows, self.log_loss, self.brier = 0, 0.0, 0.0
        self.bins = np.zeros((3, bins))  # articles, right answers, summed confidence
        self.fine = np.zeros((2, THRESHOLD_BINS))  # articles, right answers: the coverage curve
        self.thresholds = {float(t): [0, 0] for t in thresholds}  # answered, right

    def add(self, y_true, classes, proba: np.ndarray) -> "ScoreSums":
        if not len(proba):
            return self
        self.rows += len(proba)
        self.log_loss += _log_loss(y_true, proba, classes) * len(proba)
        self.brier += brier_score(y_true, classes, proba) * len(proba)
        confidence, correct = top_label(y_true, classes, proba)
        self.bins += np.vstack(bin_sums(confidence, correct, self.bins.shape[1]))
        self.fine += np.vstack(bin_sums(confidence, correct, THRESHOLD_BINS)[:2])
        for threshold, counts in self.thresholds.items():
            answered = confidence >= threshold
            counts[0] += int(answered.sum())
            counts[1] += int(correct[answered].sum())
        return self

    def metrics(self) -> dict:
        """Mean log-loss and Brier score, and the ECE, over every article added."""
        rows = max(self.rows, 1)
        articles, right, sure = self.bins
        return {"log_loss": self.log_loss / rows, "brier": self.brier / rows,
                "ece": float(np.abs(right - sure).sum() / rows)}

    def reliability(self) -> list[dict]:
        width = self.bins.shape[1]
        return [{"low": b / width, "high": (b + 1) / width, "count": int(count),
                 "confidence": float(sure / count) if count else None,
                 "accuracy": float(right / count) if count else None}
                for b, (count, right, sure) in enumerate(self.bins.T)]

    def answered(self, threshold: float) -> dict:
        """coverage_accuracy at a threshold given when the sums were made."""
        count, right = self.thresholds[float(threshold)]
        return {"threshold": float(threshold), "coverage": count / self.rows if self.rows else 0.0,
                "accuracy": right / count if count else None, "answered": count}

    def curve(self) -> tuple[np.ndarray, np.ndarray]:
        """(coverage, accuracy) answering the most confident first, a 0.001-wide bin at a time."""
        articles, right = self.fine[:, ::-1][:, self.fine[0, ::-1] > 0]
        answered = np.cumsum(articles)
        return answered / max(self.rows, 1), np.cumsum(right) / np.maximum(answered, 1)


# ---- abstention ---------------------------------------------------------------------------------

def coverage_accuracy(confidence: np.ndarray, correct: np.ndarray, threshold: float) -> dict:
    """Share of articles answered (confidence >= threshold) and the accuracy on those (None when
    none is answered)."""
    answered = confidence >= threshold
    count = int(answered.sum())
    return {"threshold": float(threshold), "coverage": count / len(confidence) if len(confidence) else 0.0,
            "accuracy": float(correct[answered].mean()) if count else None, "answered": count}


def coverage_curve(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, accuracy) when answering the k most confident articles, k = 1..n."""
    order = np.argsort(-confidence, kind="stable")
    hits = np.cumsum(correct[order])
    answered = np.arange(1, len(order) + 1)
    return answered / len(order), hits / answered


def confidence_table(y_true, classes, proba: np.ndarray) -> list[list[int]]:
    """Held-out validation confidences in THRESHOLD_BINS bins, as [bin, articles, correct] for
    the bins that have any: bounded (at most 1000 rows) so it fits in the bundle's metadata, and
    exact for thresholds on a 0.001 grid."""
    confidence, correct = top_label(y_true, classes, proba)
    index = np.minimum((confidence * THRESHOLD_BINS).astype(int), THRESHOLD_BINS - 1)
    articles = np.bincount(index, minlength=THRESHOLD_BINS)
    right = np.bincount(index, weights=correct.astype(float), minlength=THRESHOLD_BINS)
    return [[int(b), int(articles[b]), int(right[b])] for b in np.flatnonzero(articles)]


def threshold_for_precision(table: list[list[int]], target: float) -> dict:
    """The lowest threshold (a multiple of 0.001) whose answered validation articles reach
    `target` accuracy: the confidence of the least confident of them, as in selective
    classification; raise naming the best reachable precision when none does. When every
    validation article can be answered it is 0.001, so that nothing is held back: a new article
    less confident than any validation one is not evidence against answering it (the shipped
    model's confidences are not exactly the held-out ones the table has)."""
    if not table:
        raise NewstagError("no validation confidences in the bundle")
    rows = sorted(table, reverse=True)  # most confident bins first
    total = sum(row[1] for row in rows)
    articles = right = 0
    best, chosen = 0.0, None
    for bin_index, count, correct in rows:
        articles, right = articles + count, right + correct
        precision = right / articles
        best = max(best, precision)
        if precision >= target:
            chosen = {"threshold": bin_index / THRESHOLD_BINS, "validation_precision": precision,
                      "validation_coverage": articles / total}
    if chosen is None:
        raise NewstagError(f"target precision {target!r} is not reachable on the validation split; "
                           f"the best reachable is {best:.4f}")
    if chosen["validation_coverage"] == 1:
        chosen["threshold"] = 1 / THRESHOLD_BINS
    return chosen
