"""Build the scikit-learn pipeline a task's config describes: TF-IDF features, then a linear model."""

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, SGDClassifier
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
    raise NewstagError(f"unknown classifier {name!r}; choose logreg, linear_svm, sgd or complement_nb")


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
    """TF-IDF features (sublinear tf) + classifier, with the task's params then `overrides`."""
    pipeline = Pipeline([
        ("vect", make_features(task.features)),
        ("clf", make_classifier(task.classifier, seed)),
    ])
    set_params(pipeline, task.params, f"tasks.{task.name}.params")
    set_params(pipeline, overrides or {}, f"tasks.{task.name}.grid")
    return pipeline


def set_params(pipeline: Pipeline, params: dict, where: str) -> None:
    """Set pipeline params by their scikit-learn names (vect__min_df, clf__C); lists become tuples."""
    valid = pipeline.get_params(deep=True)
    for key, value in params.items():
        if key not in valid or "__" not in key:
            names = ", ".join(sorted(k for k in valid if "__" in k and not k.endswith("__steps")
                                     and "transformer_list" not in k))
            raise NewstagError(f"'{where}.{key}' is not a parameter of this pipeline; valid: {names}")
        try:
            pipeline.set_params(**{key: tuple(value) if isinstance(value, list) else value})
        except (TypeError, ValueError) as exc:
            raise NewstagError(f"'{where}.{key}': {exc}") from None


def top_terms(pipeline: Pipeline, count: int = 15) -> dict[str, list[str]]:
    """The terms that weigh most for each class: a quick look at what the model has learned."""
    clf = pipeline.named_steps["clf"]
    vocabulary = pipeline.named_steps["vect"].get_feature_names_out()  # word__x / char__x with both
    weights = clf.feature_log_prob_ if hasattr(clf, "feature_log_prob_") else clf.coef_
    classes = list(clf.classes_)
    if weights.shape[0] == 1:  # binary linear models keep one row: + for classes[1]
        weights = [-weights[0], weights[0]]
    return {str(label): [str(vocabulary[i]) for i in row.argsort()[::-1][:count]]
            for label, row in zip(classes, weights, strict=True)}
