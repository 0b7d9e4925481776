"""Out-of-core training for `streaming: true` tasks: hashed features and SGD over chunks.

- Features: `HashedFeatures`, word n-grams hashed into a fixed number of columns
  (scikit-learn's HashingVectorizer: no vocabulary to hold), sublinear term frequency, IDF
  weights counted in one pass over the training split, rows scaled to unit length. Its only
  state is the IDF vector and a bounded sample of terms, so it is the same size for 10 MB or
  10 GB of text.
- Explanations: a hashed column has no name. The model keeps, for the MAX_TERMS most frequent
  terms of the first TERM_SAMPLE_TEXTS training articles, which column each hashes to;
  explanations show that term, and `#<column>` for a column outside the sample. A column may
  be shared by rarer terms too (a hash collision): a term shown is the sample's most frequent
  one in its column.
- Learner: `SGDClassifier(loss="modified_huber")` trained by `partial_fit`, epoch after epoch; each
  epoch visits the training split's chunks in a new seeded order, a chunk being a few Parquet row
  groups drawn from across the file (so a file sorted by label still gives mixed chunks), its
  rows shuffled. After every epoch it is scored on a bounded sample of the validation split.
- Calibration: the existing methods (sigmoid, isotonic, temperature; `auto` picks by held-out
  log-loss), fitted on that validation sample over the frozen learner, so the pipeline stays
  `vect -> CalibratedClassifierCV(FrozenEstimator(SGDClassifier))` and prediction, explanations
  and serving treat it as any bundle.
"""

import logging
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.preprocessing import normalize

from newstag.data.splits import SplitChunks

log = logging.getLogger(__name__)
MAX_TERMS = 50000
TERM_SAMPLE_TEXTS = 5000  # the term sample is counted on the first texts only


class HashedFeatures(TransformerMixin, BaseEstimator):
    """Hashed word n-grams with sublinear tf, optional IDF and unit-length rows."""

    def __init__(self, n_features: int = 2**20, ngram_range=(1, 2), use_idf: bool = True,
                 sublinear_tf: bool = True, lowercase: bool = True, max_terms: int = MAX_TERMS):
        self.n_features = n_features
        self.ngram_range = ngram_range
        self.use_idf = use_idf
        self.sublinear_tf = sublinear_tf
        self.lowercase = lowercase
        self.max_terms = max_terms

    def _hasher(self) -> HashingVectorizer:
        return HashingVectorizer(n_features=self.n_features, ngram_range=tuple(self.ngram_range),
                                 alternate_sign=False, norm=None, lowercase=self.lowercase,
                                 dtype=np.float64)

    # -- fitting in passes ---------------------------------------------------------------------
    def start(self) -> "HashedFeatures":
        self.document_count_ = 0
        self.document_frequency_ = np.zeros(self.n_features, dtype=np.int64)
        self.idf_ = np.ones(self.n_features, dtype=np.float32)
        self.term_columns_ = np.zeros(0, dtype=np.int64)
        self.term_names_ = []
        return self

    def count(self, texts: list[str]) -> None:
        """Add a chunk's document frequencies (the IDF pass)."""
        X = self._hasher().transform(texts)
        self.document_count_ += X.shape[0]
        self.document_frequency_ += np.bincount(X.indices, minlength=self.n_features)

    def finish(self) -> "HashedFeatures":
        """IDF from the counts: log((1 + n) / (1 + df)) + 1, as TfidfTransformer(smooth_idf)."""
        if self.use_idf:
            n, df = self.document_count_, self.document_frequency_
            self.idf_ = (np.log((1 + n) / (1 + df)) + 1).astype(np.float32)
        self.document_frequency_ = np.zeros(0, dtype=np.int64)  # not kept in the bundle
        return self

    def learn_terms(self, texts: list[str]) -> None:
        """The bounded term -> column sample that names columns in explanations."""
        analyze = self._hasher().build_analyzer()
        counts = Counter(term for text in texts[:TERM_SAMPLE_TEXTS] for term in analyze(text))
        columns, names, taken = [], [], set()
        for term, _ in counts.most_common(self.max_terms):
            column = term_column(term, self.n_features)
            if column not in taken:  # the most frequent term of a shared column names it
                taken.add(column)
                columns.append(column)
                names.append(term)
        self.term_columns_ = np.asarray(columns, dtype=np.int64)
        self.term_names_ = names
        self.__dict__.pop("_names", None)

    def fit(self, X, y=None):
        """Everything in one go, for texts that fit in memory (the streaming path uses passes)."""
        texts = list(X)
        self.start()
        self.count(texts)
        self.learn_terms(texts)
        return self.finish()

    def transform(self, X) -> sparse.csr_matrix:
        matrix = self._hasher().transform(X)
        if self.sublinear_tf:
            np.log(matrix.data, out=matrix.data)
            matrix.data += 1
        if self.use_idf:
            matrix.data *= self.idf_[matrix.indices]
        return normalize(matrix, copy=False)

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_names", None)  # a lookup built from term_columns_ / term_names_ on demand
        return state

    # -- names for explanations ----------------------------------------------------------------
    def feature_name(self, column: int) -> str:
        if getattr(self, "_names", None) is None:
            self._names = dict(zip(self.term_columns_.tolist(), self.term_names_, strict=True))
        return self._names.get(int(column), f"#{int(column)}")

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.array([self.feature_name(c) for c in range(self.n_features)], dtype=object)


def term_column(term: str, n_features: int) -> int:
    """The column HashingVectorizer puts a term in (murmurhash3, seed 0, abs modulo)."""
    from sklearn.utils import murmurhash3_32

    return abs(murmurhash3_32(term, seed=0, positive=False)) % n_features


def streaming_pipeline(task, seed: int):
    """vect (HashedFeatures) -> clf (SGDClassifier, modified Huber: it has probabilities), with
    the task's params (vect__n_features, vect__ngram_range, clf__alpha, ...)."""
    from sklearn.pipeline import Pipeline

    from newstag.models.pipelines import make_classifier, set_params

    pipeline = Pipeline([("vect", HashedFeatures()), ("clf", make_classifier("sgd", seed))])
    set_params(pipeline, task.params, f"tasks.{task.name}.params")
    return pipeline


# ---- training -----------------------------------------------------------------------------------

@dataclass
class StreamResult:
    """What streaming training produced, before calibration."""

    vect: HashedFeatures
    clf: object
    classes: list[str]
    history: list[dict] = field(default_factory=list)
    idf_seconds: float = 0.0


def train_stream(task, train: SplitChunks, validation_sample, labels: list[str], vect: HashedFeatures,
                 clf, seed: int) -> StreamResult:
    """The IDF pass (or a term sample only), then `task.stream.epochs` shuffled passes of
    partial_fit, each scored on the validation sample."""
    from sklearn.metrics import accuracy_score, f1_score

    settings = task.stream
    vect.use_idf = settings.idf
    start = time.perf_counter()
    vect.start()
    for number, chunk in enumerate(train.in_order()):
        if number == 0:
            vect.learn_terms(chunk["text"].tolist())
        if not settings.idf:
            break
        vect.count(chunk["text"].tolist())
    vect.finish()
    idf_seconds = time.perf_counter() - start
    X_val = vect.transform(validation_sample["text"].tolist())
    y_val = validation_sample[task.name].astype(str).to_numpy()
    classes = np.array(sorted(labels), dtype=object)
    history = []
    for epoch in range(1, settings.epochs + 1):
        rng = np.random.default_rng([seed, epoch])
        begun, text_bytes, rows = time.perf_counter(), 0, 0
        for chunk in train.shuffled(rng):
            texts = chunk["text"].tolist()
            text_bytes += sum(len(text.encode("utf-8")) for text in texts)
            rows += len(texts)
            clf.partial_fit(vect.transform(texts), chunk[task.name].astype(str).to_numpy(),
                            classes=classes)
        seconds = time.perf_counter() - begun
        predicted = clf.predict(X_val)
        history.append({"epoch": epoch, "seconds": seconds, "articles": rows,
                        "mb_per_second": text_bytes / 1e6 / seconds if seconds else 0.0,
                        "f1_macro": float(f1_score(y_val, predicted, average="macro", zero_division=0)),
                        "accuracy": float(accuracy_score(y_val, predicted))})
        log.info("%s: epoch %d/%d, %d articles, %.1f MB/s, validation-sample macro-F1 %.4f",
                 task.name, epoch, settings.epochs, rows, history[-1]["mb_per_second"],
                 history[-1]["f1_macro"])
    return StreamResult(vect, clf, [str(c) for c in classes], history, idf_seconds)


def score_split(pipeline, chunks: SplitChunks, task: str, classes: list[str]) -> dict:
    """Accuracy and macro-F1 over a whole split, chunk by chunk: only a confusion matrix is kept."""
    index = {label: i for i, label in enumerate(classes)}
    confusion = np.zeros((len(classes), len(classes)), dtype=np.int64)
    unknown = 0
    for chunk in chunks.in_order():
        predicted = pipeline.predict(chunk["text"].tolist())
        for truth, guess in zip(chunk[task].astype(str), predicted, strict=True):
            if truth in index:
                confusion[index[truth], index[str(guess)]] += 1
            else:
                unknown += 1
    return scores_from_confusion(confusion, unknown)


def scores_from_confusion(confusion: np.ndarray, unknown: int = 0) -> dict:
    """Accuracy and macro-F1 (zero for a label never predicted nor present) from counts."""
    total = confusion.sum() + unknown
    right = np.diag(confusion).astype(float)
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, right / predicted, 0.0)
        recall = np.where(actual > 0, right / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = (predicted + actual) > 0
    return {"accuracy": float(right.sum() / total) if total else 0.0,
            "f1_macro": float(f1[present].mean()) if present.any() else 0.0,
            "articles": int(total)}
