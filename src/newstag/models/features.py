"""Tone features beside TF-IDF, as scikit-learn transformers so they sit inside the Pipeline, are
saved with the bundle, served by predict and named in the top terms.

- NegationMarker: the tokens in a negation's scope, marked (`not good` -> `not_good`), so a
  linear model can give "not good" its own weight instead of counting "good".
- LexiconCounts: the share of an article's tokens that an established sentiment lexicon rates
  positive or negative, and their mean valence. The lexicon is copied into the fitted
  transformer, so a saved model needs no lexicon package to predict.
- SentenceTone: a sentence tone model (trained on the Financial PhraseBank) applied to each
  sentence of an article; the share and strength of its positive and negative sentences.
- OutOfFoldScores: a model's class scores as features for a model stacked on top, computed out of
  fold while training, so the stacked model never sees scores of rows the first model was fitted on.

Only NumPy and scikit-learn are imported here: prediction loads this module with the bundle.
"""

import re

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from newstag.models.negation import SCOPE_ENDS, mark_negation, negation_scopes, tokens

LEXICONS = ("vader",)  # established lexicons shipped by packages newstag depends on


class NegationMarker(TransformerMixin, BaseEstimator):
    """Texts -> texts of their negated tokens (`not_good not_enough`), for a TF-IDF after it.

    Only the marked tokens are kept: the plain words are already counted by the word features,
    so each negated word adds one feature of its own beside them.
    """

    def __init__(self, window: int = 0):
        self.window = window

    def fit(self, X, y=None):
        if not isinstance(self.window, int) or self.window < 0:
            raise ValueError(f"negation window should be a whole number >= 0, got {self.window!r}")
        return self

    def transform(self, X):
        return [" ".join(mark_negation(text, self.window)) for text in X]

    def get_feature_names_out(self, input_features=None):
        """Texts have no feature names; the TF-IDF after this step names the marked tokens."""
        return np.array(["text"], dtype=object)


def vader_lexicon() -> dict[str, float]:
    """VADER's word valences (-4 to +4), read from the vaderSentiment package (MIT licence)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return {word: float(valence) for word, valence in SentimentIntensityAnalyzer().lexicon.items()
            if " " not in word}


LEXICON_LOADERS = {"vader": vader_lexicon}


def check_lexicons(names, where: str = "lexicons") -> None:
    """Raise a one-line ValueError naming a lexicon that does not exist and the valid names."""
    for name in names:
        if name not in LEXICON_LOADERS:
            raise ValueError(f"'{where}' names lexicon {name!r}, which does not exist; "
                             f"valid: {', '.join(LEXICONS)}")


class LexiconCounts(TransformerMixin, BaseEstimator):
    """Per lexicon: the share of tokens it rates positive, the share it rates negative, and the
    mean valence per token. Normalised by the article's length so long articles do not score
    higher. With `negation`, a word in a negation scope counts with its polarity flipped."""

    def __init__(self, lexicons=("vader",), negation: bool = True):
        self.lexicons = lexicons
        self.negation = negation

    def fit(self, X=None, y=None):
        check_lexicons(self.lexicons)
        # Kept as arrays (words, valences) per lexicon: a saved model carries its lexicon, and
        # skops stores arrays in one piece where a dict of 7,500 words would be 7,500 objects.
        lexicons = [LEXICON_LOADERS[name]() for name in self.lexicons]
        self.words_ = [np.array(sorted(lexicon), dtype=str) for lexicon in lexicons]
        self.values_ = [np.array([lexicon[w] for w in sorted(lexicon)]) for lexicon in lexicons]
        self.n_features_out_ = 3 * len(self.lexicons)
        return self

    @property
    def valences_(self) -> dict[str, dict[str, float]]:
        return {name: dict(zip(words.tolist(), values.tolist(), strict=True))
                for name, words, values in zip(self.lexicons, self.words_, self.values_, strict=True)}

    def transform(self, X):
        valences = self.valences_
        return np.array([self._row(text, valences) for text in X],
                        dtype=np.float64).reshape(len(X), -1)

    def _row(self, text: str, lexicons: dict) -> list[float]:
        words = tokens(text)
        scopes = negation_scopes(words) if self.negation else [False] * len(words)
        length = max(sum(w not in SCOPE_ENDS for w in words), 1)
        row = []
        for name in self.lexicons:
            valences = lexicons[name]
            scored = [-valences[w] if inside else valences[w]
                      for w, inside in zip(words, scopes, strict=True) if w in valences]
            row += [sum(v > 0 for v in scored) / length, sum(v < 0 for v in scored) / length,
                    sum(scored) / length]
        return row

    def get_feature_names_out(self, input_features=None):
        return np.array([f"{name}_{part}" for name in self.lexicons
                         for part in ("positive", "negative", "valence")], dtype=object)


# ---- sentence-to-article transfer -----------------------------------------------------------

SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def sentences(text: str, limit: int = 200) -> list[str]:
    """The article's sentences (at most `limit`, so memory stays bounded). Text with no sentence
    ends, such as one long line, is one sentence; an empty text is one empty sentence."""
    parts = [part.strip() for part in SENTENCE_END.split(text) if part.strip()]
    return parts[:limit] or [text.strip()]


def class_scores(model, texts: list[str]) -> np.ndarray:
    """Probabilities per class: predict_proba, or a softmax of the decision margins."""
    if hasattr(model, "predict_proba"):
        try:
            return model.predict_proba(texts)
        except AttributeError:  # e.g. SGD with a loss that has no probabilities
            pass
    margins = np.asarray(model.decision_function(texts), dtype=np.float64)
    if margins.ndim == 1:
        margins = np.column_stack([-margins, margins])
    margins = np.exp(margins - margins.max(axis=1, keepdims=True))
    return margins / margins.sum(axis=1, keepdims=True)


SENTENCE_FEATURES = ("share_positive", "share_negative", "mean_positive", "mean_negative",
                     "max_positive", "max_negative", "balance")


class SentenceTone(TransformerMixin, BaseEstimator):
    """Article -> features of its sentences' tones, from a fitted sentence tone model (labels
    `positive` and `negative` among its classes): the share of sentences it calls positive /
    negative, their mean and largest probabilities, and mean positive minus mean negative.

    `model` is a fitted pipeline (e.g. the tone pipeline of a Financial PhraseBank bundle); it is
    never refitted here, so it learns nothing from the articles or their labels.
    """

    def __init__(self, model=None, max_sentences: int = 200):
        self.model = model
        self.max_sentences = max_sentences

    def __sklearn_clone__(self):
        """A clone shares the fitted sentence model (as FrozenEstimator does): scikit-learn's
        clone would copy it unfitted, and calibration's cross-validation clones this step."""
        return type(self)(model=self.model, max_sentences=self.max_sentences)

    def fit(self, X=None, y=None):
        classes = [str(c) for c in getattr(self.model, "classes_", [])]
        if "positive" not in classes or "negative" not in classes:
            raise ValueError(f"the sentence model should predict positive and negative, "
                             f"it predicts: {', '.join(classes) or 'nothing (not fitted)'}")
        self.positive_ = classes.index("positive")
        self.negative_ = classes.index("negative")
        return self

    def transform(self, X):
        return np.array([self._row(text) for text in X], dtype=np.float64).reshape(len(X), -1)

    def _row(self, text: str) -> list[float]:
        scores = class_scores(self.model, sentences(text, self.max_sentences))
        top = scores.argmax(axis=1)
        positive, negative = scores[:, self.positive_], scores[:, self.negative_]
        return [float(np.mean(top == self.positive_)), float(np.mean(top == self.negative_)),
                float(positive.mean()), float(negative.mean()), float(positive.max()),
                float(negative.max()), float(positive.mean() - negative.mean())]

    def get_feature_names_out(self, input_features=None):
        return np.array(SENTENCE_FEATURES, dtype=object)


def transfer_predict(features: np.ndarray, labels: list[str]) -> np.ndarray:
    """Article tone from its sentence features alone, with no article labels: positive when the
    positive sentences outweigh the negative (mean probabilities), else negative; with a
    `neutral` label, neutral when the sentence model called no sentence positive or negative."""
    balance = features[:, SENTENCE_FEATURES.index("balance")]
    tone = np.where(balance > 0, "positive", "negative").astype(object)
    if "neutral" in labels:
        polar = features[:, 0] + features[:, 1]
        tone[polar == 0] = "neutral"
    return tone


class OutOfFoldScores(TransformerMixin, BaseEstimator):
    """A classifier's class scores as features, for stacking.

    fit_transform (what a Pipeline calls while training) returns out-of-fold scores: each row is
    scored by a copy fitted on the other folds, never on itself. transform (prediction) uses the
    copy fitted on every training row. So the model stacked on these scores learns how far they
    can be trusted on unseen articles, not how well the first model remembers its training rows.
    """

    def __init__(self, estimator=None, folds: int = 5, random_state=None):
        self.estimator = estimator
        self.folds = folds
        self.random_state = random_state

    def fit(self, X, y):
        self.estimator_ = clone(self.estimator).fit(X, y)
        self.classes_ = self.estimator_.classes_
        return self

    def fit_transform(self, X, y=None, **fit_params):
        if y is None:
            raise ValueError("out-of-fold scores need the labels: fit with y")
        folds = StratifiedKFold(self.folds, shuffle=True, random_state=self.random_state)
        method = "predict_proba" if hasattr(self.estimator, "predict_proba") else "decision_function"
        scores = cross_val_predict(clone(self.estimator), X, y, cv=folds, method=method)
        self.fit(X, y)
        return _two_columns(scores)

    def transform(self, X):
        method = "predict_proba" if hasattr(self.estimator_, "predict_proba") else "decision_function"
        return _two_columns(getattr(self.estimator_, method)(X))

    def get_feature_names_out(self, input_features=None):
        return np.array([f"score_{label}" for label in self.classes_], dtype=object)


def _two_columns(scores) -> np.ndarray:
    """Binary decision functions give one column; give one per class, as for many classes."""
    scores = np.asarray(scores, dtype=np.float64)
    return np.column_stack([-scores, scores]) if scores.ndim == 1 else scores
