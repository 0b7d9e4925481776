"""Build the scikit-learn pipeline a task's config describes: TF-IDF features, then a linear model."""

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, RidgeClassifier, SGDClassifier
from sklearn.naive_bayes import ComplementNB
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.svm import LinearSVC

from newstag.config import TaskConfig
from newstag.errors import NewstagError


def make_classifier(name: str, seed: int):
    """A linear classifier with defaults that suit sparse TF-IDF features."""
    if name == "logreg":
        return LogisticRegression(C=10.0, max_iter=3000, random_state=seed)
    if name == "linear_svm":
        return LinearSVC(C=1.0, random_state=seed)
    if name == "sgd":
        # modified_huber gives probability estimates, so predictions carry a score.
        return SGDClassifier(loss="modified_huber", alpha=1e-4, max_iter=50, tol=None,
                             random_state=seed)
    if name == "complement_nb":
        return ComplementNB(alpha=0.3)
    if name == "ridge":
        return RidgeClassifier(alpha=1.0, solver="sparse_cg", random_state=seed)
    if name == "nbsvm":
        return NBSVMClassifier(alpha=1.0, C=1.0, random_state=seed)
    raise NewstagError(f"unknown classifier {name!r}; choose one of: {', '.join(CLASSIFIER_NAMES)}")


CLASSIFIER_NAMES = ("logreg", "linear_svm", "sgd", "complement_nb", "ridge", "nbsvm")
FEATURE_NAMES = ("word", "char", "word+char")


def log_count_ratio(X, positive: np.ndarray, alpha: float) -> np.ndarray:
    """Wang & Manning's r = log((p / |p|1) / (q / |q|1)), with p (q) the smoothed feature sums
    over the positive (other) rows. Features the positive class uses more get weights above 1."""
    X = sparse.csr_matrix(X)
    p = alpha + np.asarray(X[positive].sum(axis=0)).ravel()
    q = alpha + np.asarray(X[~positive].sum(axis=0)).ravel()
    return np.log((p / p.sum()) / (q / q.sum()))


class NBSVMClassifier(ClassifierMixin, BaseEstimator):
    """NB-SVM (Wang & Manning 2012): a linear SVM on features scaled by their naive-Bayes
    log-count ratio. Many classes are one-vs-rest: each class has its own ratios and its own
    binary SVM, and the largest margin wins. Written as an estimator so it sits in the Pipeline
    and is saved with the bundle. The counts are the feature values it is given (TF-IDF here).
    """

    def __init__(self, alpha: float = 1.0, C: float = 1.0, class_weight=None, max_iter: int = 1000,
                 random_state=None):
        self.alpha = alpha
        self.C = C
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X, y):
        if self.alpha <= 0 or self.C <= 0:
            raise ValueError(f"NBSVMClassifier needs alpha > 0 and C > 0, got {self.alpha}, {self.C}")
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError("NBSVMClassifier needs at least two classes")
        targets = self.classes_[1:] if len(self.classes_) == 2 else self.classes_
        self.ratios_ = np.vstack([log_count_ratio(X, y == label, self.alpha) for label in targets])
        self.estimators_ = [
            LinearSVC(C=self.C, class_weight=self.class_weight, max_iter=self.max_iter,
                      random_state=self.random_state).fit(self._scaled(X, row), y == label)
            for row, label in zip(self.ratios_, targets, strict=True)
        ]
        self.n_features_in_ = X.shape[1]
        return self

    def _scaled(self, X, ratios: np.ndarray):
        return sparse.csr_matrix(X).multiply(ratios).tocsr()

    def decision_function(self, X) -> np.ndarray:
        margins = np.column_stack([estimator.decision_function(self._scaled(X, row))
                                   for row, estimator in zip(self.ratios_, self.estimators_, strict=True)])
        return margins.ravel() if len(self.classes_) == 2 else margins

    def predict(self, X) -> np.ndarray:
        margins = self.decision_function(X)
        if margins.ndim == 1:
            return self.classes_[(margins > 0).astype(int)]
        return self.classes_[margins.argmax(axis=1)]

    @property
    def coef_(self) -> np.ndarray:
        """Weights on the unscaled features (ratio × SVM weight): what explain.py reads."""
        return np.vstack([row * estimator.coef_.ravel()
                          for row, estimator in zip(self.ratios_, self.estimators_, strict=True)])


def make_features(kind: str):
    """Word n-grams, character n-grams within word boundaries, or both side by side.

    With both, parameters are addressed as vect__word__... and vect__char__...
    """
    word = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=1, dtype=np.float32)
    char = TfidfVectorizer(sublinear_tf=True, analyzer="char_wb", ngram_range=(2, 5), min_df=2,
                           dtype=np.float32)
    if kind == "word":
        return word
    if kind == "char":
        return char
    return FeatureUnion([("word", word), ("char", char)])


def build_pipeline(task: TaskConfig, seed: int, overrides: dict | None = None) -> Pipeline:
    """TF-IDF features (sublinear tf) + classifier, with the task's params then `overrides`.

    The tone options change it: negation and lexicon features are joined to the TF-IDF, an
    ordinal task's classifier is a regressor with cut points, and a transfer task stacks the
    result with the tones of the article's sentences (see tone_pipeline)."""
    pipeline = Pipeline([
        ("vect", tone_features(make_features(task.features), task)),
        ("clf", _task_classifier(task, seed)),
    ])
    set_params(pipeline, task.params, f"tasks.{task.name}.params")
    set_params(pipeline, overrides or {}, f"tasks.{task.name}.grid")
    return transfer_pipeline(pipeline, task, seed) if task.transfer else pipeline


def _task_classifier(task: TaskConfig, seed: int):
    if task.ordinal is None:
        return make_classifier(task.classifier, seed)
    from newstag.models.ordinal import OrdinalClassifier

    return OrdinalClassifier(make_regressor(task.classifier, seed), cuts=tuple(task.ordinal.cuts),
                             labels=tuple(task.ordinal.labels), tune_cuts=task.ordinal.tune_cuts,
                             random_state=seed)


def make_regressor(name: str, seed: int):
    """The regressor of an ordinal task: ridge, or SGD with squared loss."""
    from sklearn.linear_model import Ridge, SGDRegressor

    if name == "ridge":
        return Ridge(alpha=1.0, solver="sparse_cg", random_state=seed)
    if name == "sgd":
        return SGDRegressor(alpha=1e-4, max_iter=50, tol=None, random_state=seed)
    raise NewstagError(f"an ordinal task needs classifier ridge or sgd, got {name!r}")


def tone_features(vect, task: TaskConfig):
    """The TF-IDF features, joined with negation-scope and lexicon features when asked for.
    A single vectoriser becomes the union's `word` member (its params: vect__word__...)."""
    if not task.negation and not task.lexicons:
        return vect
    from sklearn.preprocessing import MaxAbsScaler

    from newstag.models.features import LexiconCounts, NegationMarker

    members = list(vect.transformer_list) if isinstance(vect, FeatureUnion) else [("word", vect)]
    if task.negation:
        negated = TfidfVectorizer(sublinear_tf=True, token_pattern=r"\S+", min_df=2, dtype=np.float32)
        members.append(("negation", Pipeline([("mark", NegationMarker()), ("tfidf", negated)])))
    if task.lexicons:
        # Scaled to [-1, 1] so the shares weigh like TF-IDF values under the same regularisation.
        members.append(("lexicon", Pipeline([("counts", LexiconCounts(tuple(task.lexicons))),
                                             ("scale", MaxAbsScaler())])))
    return FeatureUnion(members)


def transfer_pipeline(article: Pipeline, task: TaskConfig, seed: int) -> Pipeline:
    """Sentence-to-article transfer. stack: the article pipeline's out-of-fold class scores beside
    the sentence tone features, under a logistic regression; else the sentence features (and the
    lexicon counts, if any) alone under the task's classifier."""
    from sklearn.preprocessing import MaxAbsScaler

    from newstag.models.features import OutOfFoldScores, SentenceTone

    sentences = Pipeline([("tones", SentenceTone(sentence_model(task))), ("scale", MaxAbsScaler())])
    if not task.transfer.stack:
        members = [("sentences", sentences)]
        if isinstance(article.named_steps["vect"], FeatureUnion):
            members += [(name, part) for name, part in article.named_steps["vect"].transformer_list
                        if name == "lexicon"]
        return Pipeline([("vect", FeatureUnion(members)), ("clf", article.named_steps["clf"])])
    scores = OutOfFoldScores(article, folds=5, random_state=seed)
    return Pipeline([("vect", FeatureUnion([("article", scores), ("sentences", sentences)])),
                     ("clf", LogisticRegression(C=1.0, max_iter=3000, random_state=seed))])


def sentence_model(task: TaskConfig):
    """The sentence tone pipeline a transfer task names, from its (checksum-verified) bundle."""
    from newstag.models.bundle import load_bundle

    bundle = load_bundle(task.transfer.model)
    pipelines = bundle["pipelines"]
    if task.transfer.task not in pipelines:
        raise NewstagError(f"'tasks.{task.name}.transfer.task' is {task.transfer.task!r}, but "
                           f"{task.transfer.model} has: {', '.join(pipelines)}")
    return pipelines[task.transfer.task]


def task_truth(task: TaskConfig, y) -> list[str]:
    """The class labels a task is scored on: the labels themselves, or for an ordinal task the
    class each numeric score falls in by the task's cut points."""
    if task.ordinal is None:
        return [str(label) for label in y]
    from newstag.models.ordinal import classes_of, numeric_scores

    try:
        scores = numeric_scores(y)
    except ValueError as exc:
        raise NewstagError(f"task '{task.name}': {exc}") from None
    return [str(label) for label in classes_of(scores, task.ordinal.cuts, task.ordinal.labels)]


def set_params(pipeline: Pipeline, params: dict, where: str) -> None:
    """Set pipeline params by their scikit-learn names (vect__min_df, clf__C); lists become tuples."""
    valid = pipeline.get_params(deep=True)
    for key, value in params.items():
        if key not in valid or "__" not in key:
            raise NewstagError(f"'{where}.{key}' is not a parameter of this pipeline; "
                               f"valid: {valid_names(valid, key)}")
        try:
            pipeline.set_params(**{key: tuple(value) if isinstance(value, list) else value})
        except (TypeError, ValueError) as exc:
            raise NewstagError(f"'{where}.{key}': {exc}") from None


def valid_names(valid, key: str) -> str:
    """The parameter names to offer for a wrong `key`: those of the step it names (clf__...,
    vect__...), else all; the whole list is some 40 names, mostly beside the point."""
    names = sorted(k for k in valid if "__" in k and not k.endswith("__steps")
                   and "transformer_list" not in k)
    return ", ".join([k for k in names if k.split("__")[0] == key.split("__")[0]] or names)
