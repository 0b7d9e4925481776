"""The compact form of a task: what prediction needs, in NumPy arrays, without scikit-learn.

A TF-IDF + linear model is a vocabulary, an idf vector, analyzer settings, a weight matrix, its
intercepts and a few calibration numbers. Training writes them beside the bundle
(`model.joblib.compact.npz`, loaded with `allow_pickle=False`, so no code runs), and prediction
rebuilds every score from them with NumPy and the standard library: importing scikit-learn
(which loads SciPy's statistics and pandas) is most of a one-article start-up.

The code here reproduces scikit-learn 1.x's TfidfVectorizer (word, char and char_wb analyzers,
lowercase, strip_accents, token_pattern, stop words, n-grams, binary, sublinear tf, idf, l1/l2
norm, float32 or float64), the decision functions of the linear classifiers and NB-SVM, ComplementNB's
probabilities, CalibratedClassifierCV(ensemble=False)'s sigmoid, isotonic and temperature maps (and
the top-label map newstag puts after temperature) and newstag's
multi-label thresholds and sigmoids. A FeatureUnion of such vectorisers is reproduced with its
transformer weights, and so is a NegationMarker before a vectoriser (newstag.models.negation is
plain Python, shared by both paths). Anything else (lexicon or sentence features, ordinal or
transfer tasks, an estimator it does not know) is not exported and that task is predicted by its
scikit-learn pipeline. A test compares both paths on every bench corpus and on generated text,
so a scikit-learn upgrade that changes any of this fails it.

Only the standard library and NumPy at import time: prediction imports this module.
"""

import json
import re
import unicodedata
from collections import Counter
from itertools import repeat

import numpy as np

from newstag.errors import NewstagError
from newstag.models.calibrate import softmax_margins, temperature_probabilities, top_label_map
from newstag.models.negation import mark_negation

FORMAT = "newstag-compact"
# 2 added negation members, union weights and temperature calibration: a version 1 reader would
# ignore them and predict wrongly, so it refuses these files; version 1 files read as before.
# 3 added the top-label map after temperature scaling.
VERSION = 3
READABLE = (1, 2, 3)
WORD_CACHE = 200_000  # words whose char_wb n-gram columns a vectoriser remembers
BLOCK = 1 << 20  # at most this many products (nonzero features x labels) in memory at once
WHITE_SPACES = re.compile(r"\s\s+")  # scikit-learn's whitespace normalisation for char n-grams


class NotCompact(Exception):
    """A task whose model the compact form cannot reproduce exactly (it stays scikit-learn)."""


# ---- text to n-grams: scikit-learn's analyzers ----------------------------------------------

def strip_accents_unicode(text: str) -> str:
    if text.isascii():
        return text
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def strip_accents_ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ASCII", "ignore").decode("ASCII")


ACCENTS = {None: None, "unicode": strip_accents_unicode, "ascii": strip_accents_ascii}


def word_ngrams(tokens: list[str], low: int, high: int) -> list[str]:
    """Tokens and their n-grams joined by a space, as CountVectorizer makes them (any order)."""
    grams = list(tokens) if low == 1 else []
    for n in range(max(low, 2), min(high, len(tokens)) + 1):
        grams += map(" ".join, zip(*(tokens[i:] for i in range(n)), strict=False))
    return grams


def char_ngrams(text: str, low: int, high: int) -> list[str]:
    text = WHITE_SPACES.sub(" ", text)
    grams = list(text) if low == 1 else []
    for n in range(max(low, 2), min(high, len(text)) + 1):
        grams += [text[i:i + n] for i in range(len(text) - n + 1)]
    return grams


def char_wb_words(text: str) -> list[str]:
    return WHITE_SPACES.sub(" ", text).split()


def word_char_ngrams(word: str, low: int, high: int) -> list[str]:
    """One word's char_wb n-grams: the same whatever text it is in, so they can be cached."""
    word, grams = f" {word} ", []
    for n in range(low, high + 1):
        if len(word) <= n:
            grams.append(word)
            break
        grams += [word[i:i + n] for i in range(len(word) - n + 1)]
    return grams


def analyzer(settings: dict):
    """text -> list of n-grams, for one vectoriser's settings."""
    lower, accents = settings["lowercase"], ACCENTS[settings["strip_accents"]]
    low, high = settings["ngram_range"]
    kind = settings["analyzer"]
    window = settings.get("negation")  # a NegationMarker before the vectoriser: its window

    def preprocess(text: str) -> str:
        if window is not None:
            text = " ".join(mark_negation(text, window))
        if lower:
            text = text.lower()
        return accents(text) if accents else text

    if kind == "char":
        return lambda text: char_ngrams(preprocess(text), low, high)
    if kind == "char_wb":  # the words: each vectoriser maps a word's n-grams once (Vectorizer.add_words)
        return lambda text: char_wb_words(preprocess(text))
    findall = re.compile(settings["token_pattern"]).findall
    stop = frozenset(settings["stop_words"]) if settings["stop_words"] is not None else None

    def words(text: str) -> list[str]:
        tokens = findall(preprocess(text))
        if stop is not None:
            tokens = [token for token in tokens if token not in stop]
        return word_ngrams(tokens, low, high)
    return words


ANALYZER_KEYS = ("analyzer", "lowercase", "strip_accents", "token_pattern", "stop_words", "ngram_range",
                 "negation")


def analyzer_key(settings: dict) -> str:
    """Vectorisers with the same key make the same n-grams, so a text is analysed once for all."""
    return json.dumps([settings.get(key) for key in ANALYZER_KEYS])


# ---- n-gram counts to TF-IDF rows -----------------------------------------------------------

class Vectorizer:
    """One TfidfVectorizer: its vocabulary and idf, and the settings that turn counts into TF-IDF."""

    def __init__(self, settings: dict, terms: list[str], idf: np.ndarray | None):
        self.settings, self.terms, self.idf = settings, terms, idf
        self.vocabulary = dict(zip(terms, range(len(terms)), strict=True))
        self.dtype = np.dtype(settings["dtype"])
        self.key = analyzer_key(settings)
        self._word_ids: dict[str, list[int]] = {}
        self.sorted_rows = False  # set by its Task when the weights are float32 (see Rows.dot)

    def start(self) -> None:
        """Begin a chunk: counts are gathered per text by `add`, then turned into rows by `rows`."""
        self._columns, self._counts, self._lengths = [], [], []

    def add_words(self, words: list[str]) -> None:
        """One text's char_wb words: each word's n-grams are looked up once and remembered, since
        news repeats its words (the cache is emptied when it holds WORD_CACHE words)."""
        cache, ids = self._word_ids, []
        low, high = self.settings["ngram_range"]
        for word in words:
            found = cache.get(word)
            if found is None:
                if len(cache) >= WORD_CACHE:
                    cache.clear()
                found = cache[word] = [i for i in map(self.vocabulary.get, word_char_ngrams(word, low, high),
                                                      repeat(-1)) if i >= 0]
            ids += found
        counted = Counter(ids)
        self._columns.extend(counted)
        self._counts.extend(counted.values())
        self._lengths.append(len(counted))

    def add(self, counted: Counter) -> None:
        """One text's n-gram counts (n-grams outside the vocabulary are dropped in `rows`)."""
        self._columns.extend(map(self.vocabulary.get, counted, repeat(-1)))
        self._counts.extend(counted.values())
        self._lengths.append(len(counted))

    def rows(self) -> "Rows":
        """The chunk's TF-IDF rows, exactly as TfidfVectorizer.transform computes them."""
        columns = np.fromiter(self._columns, dtype=np.int64, count=len(self._columns))
        counts = np.fromiter(self._counts, dtype=np.int64, count=len(self._counts))
        row = np.repeat(np.arange(len(self._lengths)), self._lengths)
        known = np.flatnonzero(columns >= 0)
        if self.sorted_rows:  # each row's features in column order, as scikit-learn sorts them
            known = known[np.argsort(row[known] * len(self.terms) + columns[known], kind="stable")]
        columns, counts, row = columns[known], counts[known], row[known]
        values = counts.astype(self.dtype)
        if self.settings["binary"]:
            values.fill(1)
        if self.settings["sublinear_tf"]:
            np.log(values, out=values)
            values += 1.0
        if self.idf is not None:
            values *= self.idf[columns]
        values = _normalise(values, row, len(self._lengths), self.settings["norm"])
        return Rows(row, columns, values, len(self._lengths))


def _normalise(values: np.ndarray, row: np.ndarray, n: int, norm: str | None) -> np.ndarray:
    """Each row divided by its l1 or l2 norm, summed in double precision as scikit-learn does."""
    if norm is None:
        return values
    summed = np.abs(values) if norm == "l1" else values * values
    totals = np.bincount(row, weights=summed.astype(np.float64), minlength=n)
    if norm == "l2":
        totals = np.sqrt(totals)
    totals[totals == 0] = 1.0
    return (values.astype(np.float64) / totals[row]).astype(values.dtype)


class Rows:
    """Sparse rows of one chunk: row number, column and value of every nonzero feature, by row."""

    def __init__(self, row: np.ndarray, columns: np.ndarray, values: np.ndarray, n: int):
        self.row, self.columns, self.values, self.n = row, columns, values, n

    def dot(self, weights: np.ndarray) -> np.ndarray:
        """rows @ weights (features x outputs), in blocks of rows so memory stays small.

        In float64 the products are summed with reduceat (its order changes a margin by about
        1e-16). Float32 weights (SGD keeps them for float32 features) are summed as SciPy does,
        one product at a time in column order: another order moves a probability by 1e-6."""
        dtype = np.result_type(self.values, weights)
        out = np.zeros((self.n, weights.shape[1]), dtype=dtype)
        lengths = np.bincount(self.row, minlength=self.n)
        ends = np.cumsum(lengths)
        starts = ends - lengths
        step = max(1, BLOCK // weights.shape[1])
        first = 0
        while first < self.n:
            last = max(int(np.searchsorted(ends, starts[first] + step, side="right")), first + 1)
            begin, end = starts[first], ends[last - 1]
            products = weights[self.columns[begin:end]] * self.values[begin:end, None]
            if dtype == np.float64:
                nonempty = np.flatnonzero(lengths[first:last]) + first
                if len(nonempty):
                    out[nonempty] = np.add.reduceat(products, starts[nonempty] - begin, axis=0)
            else:
                out[first:last] = _row_sums(products, starts[first:last] - begin, lengths[first:last], dtype)
            first = last
        return out

    @staticmethod
    def joined(parts: list["Rows"], offsets: list[int]) -> "Rows":
        """Several vectorisers' rows side by side (a FeatureUnion's hstack), each row's features
        in column order."""
        if len(parts) == 1:
            return parts[0]
        row = np.concatenate([part.row for part in parts])
        order = np.argsort(row, kind="stable")  # within a row: the first part's columns first
        columns = np.concatenate([part.columns + offset for part, offset in zip(parts, offsets, strict=True)])
        values = np.concatenate([part.values for part in parts])
        return Rows(row[order], columns[order], values[order], parts[0].n)


def _row_sums(products: np.ndarray, starts: np.ndarray, lengths: np.ndarray, dtype) -> np.ndarray:
    """Per row, the sum of its products taken in order: step j adds every row's j-th product."""
    sums = np.zeros((len(lengths), products.shape[1]), dtype=dtype)
    order = np.argsort(-lengths, kind="stable")
    longest = int(lengths[order[0]]) if len(order) else 0
    active = np.searchsorted(-lengths[order], -np.arange(longest), side="left")  # rows longer than j
    for j, count in enumerate(active):
        rows = order[:count]
        sums[rows] += products[starts[rows] + j]
    return sums


def count_texts(texts: list[str], vectorizers: list[Vectorizer]) -> None:
    """Feed every vectoriser each text's counts; vectorisers with the same analyzer share it."""
    groups: dict[str, tuple] = {}
    for vectorizer in vectorizers:
        vectorizer.start()
        groups.setdefault(vectorizer.key, (analyzer(vectorizer.settings), []))[1].append(vectorizer)
    for text in texts:
        for analyze, members in groups.values():
            if members[0].settings["analyzer"] == "char_wb":
                words = analyze(text)
                for vectorizer in members:
                    vectorizer.add_words(words)
                continue
            counted = Counter(analyze(text))
            for vectorizer in members:
                vectorizer.add(counted)


# ---- scores ----------------------------------------------------------------------------------

def _sigmoid_map(scores: np.ndarray, a: float, b: float) -> np.ndarray:
    """_SigmoidCalibration.predict: expit(-(a * score + b))."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(a * scores + b))


def _isotonic_map(scores: np.ndarray, x: np.ndarray, y: np.ndarray, low: float, high: float) -> np.ndarray:
    """IsotonicRegression.predict (out_of_bounds='clip'): scipy's linear interp1d, step by step."""
    scores = np.clip(scores, low, high)
    if len(x) == 1:
        return np.repeat(y, scores.shape)
    index = np.searchsorted(x, scores).clip(1, len(x) - 1)
    below = index - 1
    slope = (y[index] - y[below]) / (x[index] - x[below])
    return slope * (scores - x[below]) + y[below]


def _log_softmax_rows(jll: np.ndarray) -> np.ndarray:
    top = jll.max(axis=1, keepdims=True)
    return jll - (np.log(np.exp(jll - top).sum(axis=1, keepdims=True)) + top)


class Task:
    """One task's compact model: its vectorisers, weights and how weights become probabilities."""

    def __init__(self, meta: dict, arrays: dict, vectorizers: list[Vectorizer]):
        self.meta, self.vectorizers = meta, vectorizers
        self.name, self.kind = meta["name"], meta["kind"]
        self.classes = list(meta["classes"])
        self.weights, self.intercept = arrays["weights"], arrays["intercept"]
        self.arrays = arrays
        self.multilabel = self.kind == "multilabel"
        for vectorizer in vectorizers:  # float32 sums depend on the order of the features
            vectorizer.sorted_rows = self.weights.dtype != np.float64

    def features(self) -> list[Rows]:
        """This chunk's TF-IDF rows, one Rows per vectoriser (after count_texts), each multiplied
        by its weight in the union (FeatureUnion's transformer_weights) when it has one."""
        parts = [vectorizer.rows() for vectorizer in self.vectorizers]
        for part, scale in zip(parts, self.meta.get("scales") or [None] * len(parts), strict=True):
            if scale is not None:
                part.values = part.values * scale  # a Python float: float32 values stay float32
        return parts

    def margins(self, rows: list[Rows]) -> np.ndarray:
        """The linear part: rows @ weights + intercept, one column per weight column, in the
        model's own dtype (SGD keeps float32 weights for float32 features)."""
        if self.weights.dtype != np.float64:  # summed in SciPy's order: the union's rows joined
            return Rows.joined(rows, self.meta["offsets"]).dot(self.weights) + self.intercept
        total = 0.0
        for part, vectorizer, offset in zip(rows, self.vectorizers, self.meta["offsets"], strict=True):
            total = total + part.dot(self.weights[offset:offset + len(vectorizer.terms)])
        return total + self.intercept

    def probabilities(self, rows: list[Rows]) -> np.ndarray:
        """The scores predict reports, as the scikit-learn pipeline's class_scores gives them."""
        raw = self.margins(rows)
        response = self.meta["response"]
        if response == "cnb":
            if self.meta.get("single_class"):
                raw = raw + self.arrays["class_log_prior"]
            raw = np.exp(_log_softmax_rows(raw))
        scores = self.meta["scores"]
        if scores == "proba":
            return raw
        if scores == "softmax":
            return softmax_margins(raw[:, 0] if raw.shape[1] == 1 else raw)
        if scores == "logistic":  # LogisticRegression.predict_proba
            if raw.shape[1] == 1:
                with np.errstate(over="ignore"):
                    positive = 1.0 / (1.0 + np.exp(-raw[:, 0]))
                return np.column_stack([1 - positive, positive])
            return softmax_margins(raw)
        return self._calibrated(raw[:, 1:] if response == "cnb" and len(self.classes) == 2 else raw)

    def _calibrated(self, predictions: np.ndarray) -> np.ndarray:
        """_CalibratedClassifier.predict_proba for sigmoid, isotonic and temperature calibrators."""
        if self.meta["calibration"] == "temperature":
            proba = self._temperature(predictions)
        else:
            proba = self._one_vs_rest(predictions)
        proba[(proba > 1.0) & (proba <= 1.0 + 1e-5)] = 1.0  # as scikit-learn trims it
        return proba

    def _temperature(self, predictions: np.ndarray) -> np.ndarray:
        """_TemperatureScaling.predict (calibrate.temperature_probabilities), then the top-label
        map when the task was calibrated by top-label."""
        beta = self.arrays["temperature"][0]  # a NumPy scalar of the calibrator's own dtype
        proba = temperature_probabilities(predictions, beta, probabilities=self.meta["response"] == "cnb")
        if "top_label_x" in self.arrays:
            return top_label_map(proba, self.arrays["top_label_x"], self.arrays["top_label_y"])
        return proba

    def _one_vs_rest(self, predictions: np.ndarray) -> np.ndarray:
        """Sigmoid or isotonic: one calibrator per class (one for two classes), then normalised."""
        n_classes = len(self.classes)
        proba = np.zeros((len(predictions), n_classes))
        method, positions = self.meta["calibration"], self.meta["positions"]
        for i, (position, column) in enumerate(zip(positions, predictions.T, strict=False)):
            if n_classes == 2:
                position += 1
            if method == "sigmoid":
                a, b = self.arrays["sigmoid"][i]
                proba[:, position] = _sigmoid_map(column, a, b)
            else:
                start, end = self.arrays["iso_offsets"][i:i + 2]
                low, high = self.arrays["iso_bounds"][i]
                proba[:, position] = _isotonic_map(column, self.arrays["iso_x"][start:end],
                                                   self.arrays["iso_y"][start:end], low, high)
        if n_classes == 2:
            proba[:, 0] = 1.0 - proba[:, 1]
            return proba
        denominator = proba.sum(axis=1)[:, None]
        uniform = np.full_like(proba, 1 / n_classes)
        return np.divide(proba, denominator, out=uniform, where=denominator != 0)

    def tag(self) -> tuple[list[str], np.ndarray]:
        """(label, probability) per text counted, like predict.tag_texts on the pipeline."""
        scores = self.probabilities(self.features())
        best = scores.argmax(axis=1)
        return [self.classes[i] for i in best], scores[np.arange(len(best)), best]

    def tag_multilabel(self) -> list[dict[str, float]]:
        """Labels and probabilities per text counted, like multilabel.tag_texts on the pipeline."""
        margins = self.margins(self.features())
        over = margins - self.arrays["thresholds"]
        chosen = over >= 0
        none = ~chosen.any(axis=1)
        chosen[np.flatnonzero(none), over[none].argmax(axis=1)] = True
        sigmoids = self.arrays["sigmoids"]
        values = np.clip(margins * sigmoids[:, 0] + sigmoids[:, 1], -500, 500)
        proba = 1.0 / (1.0 + np.exp(-values))
        rows = []
        for picked, scores in zip(chosen, proba, strict=True):
            found = {self.classes[i]: round(float(scores[i]), 4) for i in np.flatnonzero(picked)}
            rows.append(dict(sorted(found.items(), key=lambda item: -item[1])))
        return rows

    # ---- explanations: coefficient x TF-IDF value, as newstag.explain computes them ----------

    def explainable(self) -> bool:
        return self.meta.get("explain", False)

    def names(self) -> list[str]:
        if len(self.vectorizers) == 1:
            return self.vectorizers[0].terms
        return [f"{prefix}:{term}" for prefix, vectorizer in zip(self.meta["prefixes"], self.vectorizers,
                                                                  strict=True) for term in vectorizer.terms]

    def label_weight(self, label: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """Weights of features `columns` for labels `label` (arrays of equal length), as
        explain.LabelWeights.at: a binary model's one column counts for the second label."""
        if self.weights.shape[1] == 1 and self.meta.get("kind") != "multilabel":
            return np.where(label == 1, 1.0, -1.0) * self.weights[columns, 0]
        weights = self.weights[columns, label]
        offset = self.arrays.get("explain_offset")
        return weights if offset is None else weights - offset[columns]


def tag_texts(tasks: dict[str, Task], texts: list[str]) -> dict:
    """Each task's answers for `texts` (see Task.tag and Task.tag_multilabel). Every text is
    analysed once for all the tasks' vectorisers that share an analyzer."""
    if not texts:
        return {name: [] if task.multilabel else ([], np.array([])) for name, task in tasks.items()}
    count_texts(texts, [vectorizer for task in tasks.values() for vectorizer in task.vectorizers])
    return {name: task.tag_multilabel() if task.multilabel else task.tag() for name, task in tasks.items()}


# ---- saving: from a fitted scikit-learn pipeline (imports scikit-learn) ------------------------

def export(pipeline) -> tuple[dict, dict]:
    """(meta, arrays) of a fitted pipeline's compact form; NotCompact says why there is none."""
    from sklearn.pipeline import Pipeline

    if type(pipeline) is not Pipeline or [name for name, _ in pipeline.steps] != ["vect", "clf"]:
        raise NotCompact("not a TF-IDF + classifier pipeline")
    members = _vectorizer_members(pipeline.named_steps["vect"])
    meta, arrays = {"vectorizers": [], "offsets": [], "prefixes": [], "scales": []}, {}
    offset = 0
    for index, (prefix, vectorizer, window, scale) in enumerate(members):
        settings, terms, idf = _vectorizer_parts(vectorizer)
        if window is not None:
            settings["negation"] = window
        meta["vectorizers"].append(settings)
        meta["offsets"].append(offset)
        meta["prefixes"].append(prefix)
        meta["scales"].append(scale)
        arrays[f"terms{index}"] = _terms_blob(terms)
        if idf is not None:
            arrays[f"idf{index}"] = idf
        offset += len(terms)
    clf = pipeline.named_steps["clf"]
    if _is_multilabel(clf):
        _export_multilabel(clf, meta, arrays)
    else:
        _export_single(clf, meta, arrays)
    if arrays["weights"].shape[0] != offset:
        raise NotCompact("the classifier's weights do not match the features")
    meta["version"] = VERSION
    return meta, arrays


def _vectorizer_members(vect) -> list[tuple[str | None, object, int | None, float | None]]:
    """(name in the union, TfidfVectorizer, negation window or None, union weight or None) of
    each feature member: a TfidfVectorizer, or a NegationMarker followed by one."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    if type(vect) is TfidfVectorizer:
        return [(None, vect, None, None)]
    if type(vect) is not FeatureUnion:
        raise NotCompact(f"features other than TF-IDF ({type(vect).__name__})")
    weights = vect.transformer_weights or {}
    members = []
    for name, part in vect.transformer_list:
        weight = weights.get(name)
        if weight is not None and (type(weight) not in (int, float) or not np.isfinite(weight)):
            raise NotCompact(f"a union weight that is not a plain number ({name}: {weight!r})")
        vectorizer, window = _member_vectorizer(part)
        members.append((name, vectorizer, window, None if weight is None else float(weight)))
    return members


def _member_vectorizer(part) -> tuple[object, int | None]:
    """(TfidfVectorizer, negation window or None) of one union member; NotCompact for others
    (lexicon or sentence features, a dropped member)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import Pipeline

    from newstag.models.features import NegationMarker

    if type(part) is TfidfVectorizer:
        return part, None
    if type(part) is Pipeline and len(part.steps) == 2 and type(part.steps[0][1]) is NegationMarker \
            and type(part.steps[1][1]) is TfidfVectorizer and type(part.steps[0][1].window) is int:
        return part.steps[1][1], part.steps[0][1].window
    raise NotCompact("features other than word, character or negation TF-IDF (lexicon or sentence "
                     "features)")


def _vectorizer_parts(vectorizer) -> tuple[dict, list[str], np.ndarray | None]:
    if vectorizer.input != "content" or vectorizer.preprocessor is not None \
            or vectorizer.tokenizer is not None or callable(vectorizer.analyzer) \
            or vectorizer.analyzer not in ("word", "char", "char_wb") \
            or vectorizer.strip_accents not in ACCENTS or vectorizer.norm not in (None, "l1", "l2") \
            or np.dtype(vectorizer.dtype) not in (np.float32, np.float64):
        raise NotCompact("a vectoriser with a custom preprocessor, tokenizer, analyzer or norm")
    if vectorizer.analyzer == "word" and re.compile(vectorizer.token_pattern).groups > 1:
        raise NotCompact("a token_pattern with more than one group")
    stop = vectorizer.get_stop_words() if vectorizer.analyzer == "word" else None
    settings = {"analyzer": vectorizer.analyzer, "lowercase": bool(vectorizer.lowercase),
                "strip_accents": vectorizer.strip_accents,
                "token_pattern": vectorizer.token_pattern if vectorizer.analyzer == "word" else None,
                "stop_words": sorted(stop) if stop is not None else None,
                "ngram_range": [int(n) for n in vectorizer.ngram_range],
                "binary": bool(vectorizer.binary), "sublinear_tf": bool(vectorizer.sublinear_tf),
                "norm": vectorizer.norm, "dtype": np.dtype(vectorizer.dtype).name}
    terms = [""] * len(vectorizer.vocabulary_)
    for term, column in vectorizer.vocabulary_.items():
        terms[column] = term
    idf = np.asarray(vectorizer.idf_) if vectorizer.use_idf else None
    return settings, terms, idf


def _terms_blob(terms: list[str]) -> np.ndarray:
    if any("\n" in term for term in terms):
        raise NotCompact("a vocabulary term holds a line break")
    return np.frombuffer("\n".join(terms).encode("utf-8", "surrogatepass"), dtype=np.uint8)


def _is_multilabel(clf) -> bool:
    from newstag.models.multilabel import MultiLabelLinear

    return type(clf) is MultiLabelLinear


def _linear_parts(model) -> tuple[np.ndarray, np.ndarray]:
    """(weights as features x outputs, intercepts) of a model scored by decision_function."""
    from sklearn.linear_model import LogisticRegression, RidgeClassifier, SGDClassifier
    from sklearn.svm import LinearSVC

    from newstag.models.pipelines import NBSVMClassifier

    if type(model) in (LinearSVC, LogisticRegression, SGDClassifier, RidgeClassifier):
        coef = model.coef_
        if hasattr(coef, "toarray"):
            raise NotCompact("sparse coefficients")
        # a ridge fitted on label codes 0 and 1 (temperature calibration) keeps 1-D coefficients
        coef = np.asarray(coef).reshape(-1, model.n_features_in_)
        return np.ascontiguousarray(coef.T), np.atleast_1d(np.asarray(model.intercept_))
    if type(model) is NBSVMClassifier:
        intercept = np.array([float(np.ravel(svm.intercept_)[0]) for svm in model.estimators_])
        return np.ascontiguousarray(np.asarray(model.coef_, dtype=np.float64).T), intercept
    raise NotCompact(f"a {type(model).__name__} model")


def _export_single(clf, meta: dict, arrays: dict) -> None:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.naive_bayes import ComplementNB

    from newstag.models.toplabel import TopLabelCalibratedClassifierCV

    calibrated = type(clf) in (CalibratedClassifierCV, TopLabelCalibratedClassifierCV)
    if calibrated:
        if len(clf.calibrated_classifiers_) != 1 or clf.method not in ("sigmoid", "isotonic", "temperature"):
            raise NotCompact("a calibration ensemble or method other than sigmoid, isotonic or temperature")
        inner = clf.calibrated_classifiers_[0]
        base = inner.estimator
    else:
        base = clf
    meta["kind"] = "single"
    meta["classes"] = [str(label) for label in clf.classes_]
    if type(base) is ComplementNB:
        meta["response"] = "cnb"
        meta["single_class"] = len(base.classes_) == 1
        arrays["weights"] = np.ascontiguousarray(np.asarray(base.feature_log_prob_, dtype=np.float64).T)
        arrays["intercept"] = np.zeros(arrays["weights"].shape[1])
        arrays["class_log_prior"] = np.asarray(base.class_log_prior_, dtype=np.float64)
        arrays["explain_offset"] = np.asarray(base.feature_log_prob_, dtype=float).mean(axis=0)
    else:
        meta["response"] = "margin"
        arrays["weights"], arrays["intercept"] = _linear_parts(base)
    meta["explain"] = True
    if calibrated:
        _export_calibration(clf, inner, base, meta, arrays)
    elif type(base) is ComplementNB:
        meta["scores"] = "proba"
    elif hasattr(base, "predict_proba"):
        from sklearn.linear_model import LogisticRegression

        if type(base) is not LogisticRegression:
            raise NotCompact(f"the uncalibrated probabilities of a {type(base).__name__} model")
        meta["scores"] = "logistic"
    else:
        meta["scores"] = "softmax"


def _export_calibration(clf, inner, base, meta: dict, arrays: dict) -> None:
    from sklearn.calibration import _SigmoidCalibration
    from sklearn.isotonic import IsotonicRegression
    from sklearn.preprocessing import LabelEncoder

    meta["scores"] = "calibrated"
    meta["calibration"] = inner.method
    if [str(c) for c in inner.classes] != meta["classes"]:
        raise NotCompact("calibrated classes in another order")
    if inner.method == "temperature":
        _export_temperature(inner, base, meta, arrays)
        if hasattr(clf, "top_label_x_"):
            arrays["top_label_x"], arrays["top_label_y"] = clf.top_label_x_, clf.top_label_y_
        return
    encoder = LabelEncoder().fit(inner.classes)
    meta["positions"] = [int(i) for i in encoder.transform(base.classes_)]
    if inner.method == "sigmoid":
        if not all(type(c) is _SigmoidCalibration for c in inner.calibrators):
            raise NotCompact("an unknown calibrator")
        arrays["sigmoid"] = np.array([[float(np.ravel(c.a_)[0]) if np.ndim(c.a_) else float(c.a_),
                                       float(np.ravel(c.b_)[0]) if np.ndim(c.b_) else float(c.b_)]
                                      for c in inner.calibrators], dtype=np.float64)
        return
    if not all(type(c) is IsotonicRegression and c.out_of_bounds == "clip" for c in inner.calibrators):
        raise NotCompact("an isotonic calibrator that does not clip")
    xs = [np.asarray(c.X_thresholds_, dtype=np.float64) for c in inner.calibrators]
    arrays["iso_x"] = np.concatenate(xs)
    arrays["iso_y"] = np.concatenate([np.asarray(c.y_thresholds_, dtype=np.float64)
                                      for c in inner.calibrators])
    arrays["iso_offsets"] = np.concatenate([[0], np.cumsum([len(x) for x in xs])]).astype(np.int64)
    arrays["iso_bounds"] = np.array([[c.X_min_, c.X_max_] for c in inner.calibrators], dtype=np.float64)


def _export_temperature(inner, base, meta: dict, arrays: dict) -> None:
    """One inverse temperature for all the classes. The base model was fitted on label codes
    (0, 1, ... for string labels), so its columns are the calibrated classes in their order."""
    from sklearn.calibration import _TemperatureScaling

    if len(inner.calibrators) != 1 or type(inner.calibrators[0]) is not _TemperatureScaling:
        raise NotCompact("an unknown calibrator")
    codes = list(base.classes_)
    if codes != list(range(len(meta["classes"]))) and [str(c) for c in codes] != meta["classes"]:
        raise NotCompact("calibrated classes in another order")
    beta = np.asarray(inner.calibrators[0].beta_)
    if beta.size != 1 or beta.dtype not in (np.float32, np.float64):
        raise NotCompact("a temperature that is not one number")
    arrays["temperature"] = beta.reshape(1)


def _export_multilabel(clf, meta: dict, arrays: dict) -> None:
    parts = [_linear_parts(model) for model in clf.ovr_.estimators_]
    if any(weights.shape[1] != 1 for weights, _ in parts):
        raise NotCompact("a multi-label model whose labels are not binary linear models")
    meta["kind"] = "multilabel"
    meta["explain"] = True  # each label's column of weights is its linear model's coefficients
    meta["classes"] = [str(label) for label in clf.labels]
    arrays["weights"] = np.ascontiguousarray(np.hstack([weights for weights, _ in parts]))
    arrays["intercept"] = np.concatenate([intercept for _, intercept in parts])
    labels = len(clf.labels)
    arrays["thresholds"] = np.zeros(labels) if clf.thresholds is None \
        else np.asarray(clf.thresholds, dtype=np.float64)
    arrays["sigmoids"] = np.tile([2.0, 0.0], (labels, 1)) if clf.sigmoids is None \
        else np.asarray(clf.sigmoids, dtype=np.float64)


def write(target, pipelines: dict) -> dict:
    """Write the compact form of every task that has one to `target` (an .npz file); return
    {"tasks": [names], "fallback": {task: why it has none}}."""
    meta = {"format": FORMAT, "version": VERSION, "tasks": []}
    arrays, fallback = {}, {}
    for task, pipeline in pipelines.items():
        try:
            task_meta, task_arrays = export(pipeline)
        except NotCompact as exc:
            fallback[task] = str(exc)
            continue
        index = len(meta["tasks"])
        meta["tasks"].append({**task_meta, "name": task})
        arrays.update({f"{index}/{key}": value for key, value in task_arrays.items()})
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    with open(target, "wb") as handle:
        np.savez(handle, **arrays)
    return {"tasks": [task["name"] for task in meta["tasks"]], "fallback": fallback}


# ---- loading ---------------------------------------------------------------------------------

def from_export(meta: dict, arrays: dict) -> Task:
    """The Task an export describes, without writing it to a file (the bench predicts with it)."""
    return _task({**meta, "name": meta.get("name", "task")}, 0,
                 {f"0/{key}": value for key, value in arrays.items()})


def load(path) -> dict[str, Task]:
    """Every task of a compact file; a NewstagError naming the file when it is malformed."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        meta = json.loads(bytes(arrays.pop("meta")).decode("utf-8"))
        if meta.get("format") != FORMAT or meta.get("version") not in READABLE:
            raise ValueError("not a compact model file of this version")
        return {task["name"]: _task(task, index, arrays) for index, task in enumerate(meta["tasks"])}
    except (OSError, ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError) as exc:
        raise NewstagError(f"{path}: cannot read the compact model ({exc}); retrain it") from None


def _task(meta: dict, index: int, arrays: dict) -> Task:
    own = {key.split("/", 1)[1]: value for key, value in arrays.items() if key.startswith(f"{index}/")}
    vectorizers = []
    for number, settings in enumerate(meta["vectorizers"]):
        blob = bytes(own[f"terms{number}"]).decode("utf-8", "surrogatepass")
        terms = blob.split("\n")
        vectorizers.append(Vectorizer(settings, terms, own.get(f"idf{number}")))
    task = Task(meta, own, vectorizers)
    width = sum(len(v.terms) for v in vectorizers)
    if task.weights.ndim != 2 or task.weights.shape[0] != width \
            or task.intercept.shape != (task.weights.shape[1],):
        raise ValueError(f"task {meta['name']!r}: weights do not match the vocabulary")
    return task
