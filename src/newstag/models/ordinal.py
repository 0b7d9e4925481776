"""Ordinal tone: a linear regressor on a numeric score (positivity 1-9), with cut points that
turn the predicted score into a class label, wrapped as a classifier so training, evaluation,
the bench and predict treat it like any other.

The task's cut points define the classes (a score below the first cut is the first label, ...).
The regressor's predictions shrink towards the mean, so the same cut points applied to them would
rarely pick the outer classes: the fitted model re-tunes its cut points on out-of-fold predictions
of its training rows (validation data it was not fitted on), maximising macro-F1.
"""

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold, cross_val_predict

CANDIDATE_CUTS = 60  # candidate values per cut point: quantiles of the out-of-fold predictions


def numeric_scores(y, where: str = "labels") -> np.ndarray:
    """The labels as numbers; a one-line ValueError naming the first that is not one."""
    values = []
    for label in y:
        try:
            value = float(label)
        except (TypeError, ValueError):
            raise ValueError(f"an ordinal task needs numeric {where} (e.g. a 1-9 score), "
                             f"got {label!r}; set the task's column to the score column") from None
        if not np.isfinite(value):
            raise ValueError(f"an ordinal task needs finite numeric {where}, got {label!r}")
        values.append(value)
    return np.array(values, dtype=np.float64)


def check_cuts(cuts, labels) -> None:
    """Cut points must increase strictly, and there must be one fewer than labels."""
    cuts = list(cuts)
    if len(cuts) != len(labels) - 1:
        raise ValueError(f"{len(labels)} labels need {len(labels) - 1} cut points, got {len(cuts)}")
    for left, right in zip(cuts, cuts[1:], strict=False):
        if not left < right:
            raise ValueError(f"cut points should increase, got {cuts}")


def classes_of(scores: np.ndarray, cuts, labels) -> np.ndarray:
    """Score -> label: below or at the first cut, the first label; above the last, the last."""
    return np.asarray(labels, dtype=object)[np.searchsorted(np.asarray(cuts, dtype=float), scores)]


def macro_f1(true: np.ndarray, predicted: np.ndarray, n_classes: int) -> float:
    """Macro-F1 over class indices 0..n-1, fast enough to score thousands of cut settings."""
    f1 = []
    for k in range(n_classes):
        tp = np.sum((predicted == k) & (true == k))
        denominator = np.sum(predicted == k) + np.sum(true == k)
        f1.append(2 * tp / denominator if denominator else 0.0)
    return float(np.mean(f1))


def tune_cuts(predicted: np.ndarray, true_class: np.ndarray, start, passes: int = 3) -> np.ndarray:
    """Cut points maximising macro-F1 of `predicted` scores against true class indices, by
    coordinate ascent from `start`: each cut in turn moves to the best candidate between its
    neighbours, so the cuts keep increasing."""
    cuts = np.array(start, dtype=np.float64)
    candidates = np.unique(np.quantile(predicted, np.linspace(0, 1, CANDIDATE_CUTS)))
    n_classes = len(cuts) + 1

    def score(trial):
        return macro_f1(true_class, np.searchsorted(trial, predicted), n_classes)

    best = score(cuts)
    for _ in range(passes):
        for i in range(len(cuts)):
            low = cuts[i - 1] if i > 0 else -np.inf
            high = cuts[i + 1] if i + 1 < len(cuts) else np.inf
            for value in candidates[(candidates > low) & (candidates < high)]:
                trial = cuts.copy()
                trial[i] = value
                trial_score = score(trial)
                if trial_score > best:
                    best, cuts = trial_score, trial
    return cuts


class OrdinalClassifier(ClassifierMixin, BaseEstimator):
    """A regressor on the numeric labels; predict gives class labels by tuned cut points.

    fit(X, y) takes the scores (numbers, or text that reads as numbers); predict returns one of
    `labels`; predict_score the regressor's score. `cuts` are the task's cut points (they define
    the true classes); `cuts_` those tuned on out-of-fold predictions (`cut_folds` folds), or the
    task's own with tune_cuts false.
    """

    def __init__(self, estimator=None, cuts=(4.5, 5.5), labels=("negative", "neutral", "positive"),
                 tune_cuts: bool = True, cut_folds: int = 5, random_state=None):
        self.estimator = estimator
        self.cuts = cuts
        self.labels = labels
        self.tune_cuts = tune_cuts
        self.cut_folds = cut_folds
        self.random_state = random_state

    def fit(self, X, y):
        check_cuts(self.cuts, self.labels)
        scores = numeric_scores(y)
        regressor = clone(self.estimator if self.estimator is not None else Ridge())
        self.classes_ = np.asarray(self.labels, dtype=object)
        self.cuts_ = np.asarray(self.cuts, dtype=np.float64)
        if self.tune_cuts:
            folds = KFold(self.cut_folds, shuffle=True, random_state=self.random_state)
            out_of_fold = cross_val_predict(regressor, X, scores, cv=folds)
            true_class = np.searchsorted(self.cuts_, scores)
            self.cuts_ = tune_cuts(out_of_fold, true_class, self.cuts_)
        self.regressor_ = regressor.fit(X, scores)
        self.n_features_in_ = X.shape[1]
        return self

    def predict_score(self, X) -> np.ndarray:
        return self.regressor_.predict(X)

    def predict(self, X) -> np.ndarray:
        return classes_of(self.predict_score(X), self.cuts_, self.classes_)

    def decision_function(self, X) -> np.ndarray:
        """Per class, minus the score's distance outside the class's interval (0 inside), so the
        largest margin is the predicted class and a softmax of them gives a confidence."""
        score = self.predict_score(X)[:, None]
        bounds = np.concatenate([[-np.inf], self.cuts_, [np.inf]])
        below, above = bounds[:-1][None, :], bounds[1:][None, :]
        return -np.maximum(np.maximum(below - score, score - above), 0.0)

    @property
    def coef_(self) -> np.ndarray:
        """For top terms: the lowest class weighs words that lower the score, the highest those
        that raise it, a middle class those that move it least."""
        weights = np.ravel(self.regressor_.coef_)
        rows = [-weights] + [-np.abs(weights)] * (len(self.classes_) - 2) + [weights]
        return np.vstack(rows)


def truth_for(pipeline, y) -> list[str]:
    """The labels a fitted pipeline is scored against: `y` as text, or for an ordinal model the
    class each numeric score falls in by the task's own cut points (not the tuned ones)."""
    clf = pipeline.steps[-1][1] if hasattr(pipeline, "steps") else pipeline
    if not isinstance(clf, OrdinalClassifier):
        return [str(label) for label in y]
    return [str(label) for label in classes_of(numeric_scores(y), clf.cuts, clf.labels)]
