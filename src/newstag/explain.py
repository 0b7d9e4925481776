"""Why a model chose a label: the terms that pushed each article toward it, the strongest terms of
each label, and the terms that look like leaks.

A linear model's score for label k is w_k · x + b_k, a sum over the article's nonzero TF-IDF
features, so a term's contribution, its coefficient times its TF-IDF value (w_kj × x_j), is its
exact share of that score. Binary models keep one row of coefficients, + for classes_[1], so
classes_[0] gets the row negated. Complement naive Bayes scores label k as x · feature_log_prob_[k];
its weights here are feature_log_prob_ minus their mean over the labels, so contributions add up
to the label's score relative to the average label's. NB-SVM scales features by a per-label
naive-Bayes ratio r_k before its per-label SVM, so a term's contribution is coef_k × r_k × x.

A calibrated model (CalibratedClassifierCV with ensemble=False) maps the margins of one base model
to probabilities; the terms are that base model's.

A task predicted from its compact form (newstag.models.compact) is explained from the same
arrays by CompactExplainer, with the same numbers, so `predict --explain` needs no scikit-learn.

Light on purpose (NumPy at import time; SciPy and scikit-learn inside the functions that read a
scikit-learn model; no pandas, no MLflow): prediction imports it.
"""

import sys
from dataclasses import dataclass, replace

import numpy as np

from newstag.errors import NewstagError
from newstag.models import calibrate, compact

TERMS_PER_ARTICLE = 5
TERMS_PER_LABEL = 15
LEAK_IN_LABEL = 0.5  # a leak appears in more than half of its label's articles ...
LEAK_IN_OTHERS = 0.01  # ... and in under 1% of the other labels' articles
# Shares on few articles say nothing: "under 1% of the others" needs at least 100 of them, and
# "more than half of its label's" at least 10 (on a 60-article test split every topic word of a
# 10-article label would look like a leak).
LEAK_MIN_OTHERS = round(1 / LEAK_IN_OTHERS)
LEAK_MIN_IN_LABEL = 10
EXPLAINABLE = ("logreg, linear_svm, sgd, ridge, complement_nb and nbsvm (calibrated or not), "
               "and multi-label tasks")


class NotExplainable(NewstagError):
    """A task's model is of a kind whose terms newstag cannot read."""


def base_classifier(pipeline):
    """The model whose coefficients decide: the pipeline's clf step, or the one model a
    CalibratedClassifierCV(ensemble=False) in that step calibrates. With ensemble=True there are
    several base models whose calibrated probabilities are averaged: no one set of weights."""
    calibrated = getattr(pipeline.named_steps["clf"], "calibrated_classifiers_", None)
    if calibrated is not None and len(calibrated) != 1:
        raise NotExplainable(f"a model calibrated as an ensemble of {len(calibrated)} models "
                             f"has no single set of term weights")
    return calibrate.base_classifier(pipeline)


@dataclass
class LabelWeights:
    """Each label's weight per feature, read from a fitted model without copying its matrix."""

    classes: np.ndarray
    matrix: np.ndarray  # one row per label, or one row (+ for classes[1]) when binary
    offset: np.ndarray | None = None  # subtracted from every row (complement NB: the labels' mean)

    @property
    def binary(self) -> bool:
        return self.matrix.shape[0] == 1

    def at(self, label_index: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """Weights of features `columns` for labels `label_index` (arrays of equal length)."""
        if self.binary:
            return np.where(label_index == 1, 1.0, -1.0) * self.matrix[0, columns]
        weights = self.matrix[label_index, columns]
        return weights if self.offset is None else weights - self.offset[columns]

    def row(self, label_index: int) -> np.ndarray:
        """Every feature's weight for one label."""
        columns = np.arange(self.matrix.shape[1])
        return self.at(np.full(len(columns), label_index), columns)


def label_weights(clf) -> LabelWeights:
    """The per-label weights of a supported model; NotExplainable for any other kind."""
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression, RidgeClassifier, SGDClassifier
    from sklearn.naive_bayes import ComplementNB
    from sklearn.svm import LinearSVC

    from newstag.models.multilabel import MultiLabelLinear

    if isinstance(clf, MultiLabelLinear):  # one linear model a label
        return LabelWeights(np.asarray(clf.labels, dtype=object), multilabel_weights(clf))
    if isinstance(clf, ComplementNB):
        log_prob = np.asarray(clf.feature_log_prob_, dtype=float)
        return LabelWeights(clf.classes_, log_prob, log_prob.mean(axis=0))
    if isinstance(clf, (LinearSVC, LogisticRegression, SGDClassifier, RidgeClassifier)) or _is_nbsvm(clf):
        coef = clf.coef_  # for NB-SVM: coef_k × r_k, the weights on the unscaled features
        coef = coef.toarray() if sparse.issparse(coef) else np.asarray(coef, dtype=float)
        # 2-D: a ridge fitted on label codes 0 and 1 (temperature calibration) keeps 1-D ones
        return LabelWeights(clf.classes_, np.atleast_2d(coef))
    raise NotExplainable(f"a {type(clf).__name__} model cannot be explained; "
                         f"explanations work with {EXPLAINABLE}")


def multilabel_weights(clf) -> np.ndarray:
    """A multi-label model's weights, one row a label; a label no training article had (its
    model predicts a constant) weighs nothing."""
    from scipy import sparse

    rows = []
    for model in clf.ovr_.estimators_:
        coef = getattr(model, "coef_", None)
        coef = np.zeros(clf.n_features_in_) if coef is None else \
            (coef.toarray() if sparse.issparse(coef) else np.asarray(coef, dtype=float))
        rows.append(np.ravel(coef))
    matrix = np.vstack(rows)
    return np.vstack([matrix, np.zeros_like(matrix)]) if len(rows) == 1 else matrix  # never "binary"


def _is_nbsvm(clf) -> bool:
    """An NB-SVM model exists only once newstag.models.pipelines is loaded, so prediction need not
    import that module (and the experiment schema it brings) to recognise one."""
    pipelines = sys.modules.get("newstag.models.pipelines")
    return pipelines is not None and isinstance(clf, pipelines.NBSVMClassifier)


def feature_names(vectorizer) -> np.ndarray:
    """The name of every feature column; for a union, its kind first ('word:gaza', 'char:gaz')."""
    from sklearn.pipeline import FeatureUnion

    if isinstance(vectorizer, FeatureUnion):
        parts = [np.array([f"{kind}:{term}" for term in part.get_feature_names_out()], dtype=object)
                 for kind, part in vectorizer.transformer_list if part not in ("drop", None)]
        return np.concatenate(parts)
    return np.asarray(vectorizer.get_feature_names_out(), dtype=object)


class Explainer:
    """Reads one task's pipeline once, then explains any number of articles."""

    def __init__(self, pipeline):
        from sklearn.pipeline import Pipeline

        if not isinstance(pipeline, Pipeline) or set(pipeline.named_steps) != {"vect", "clf"}:
            raise NotExplainable("not a TF-IDF + classifier pipeline; retrain it")
        self.vectorizer = pipeline.named_steps["vect"]
        weights = label_weights(base_classifier(pipeline))
        # the pipeline's own labels: temperature calibration fits its base model on label codes
        self.weights = replace(weights, classes=np.asarray(pipeline.classes_))
        self.index = {str(label): i for i, label in enumerate(self.weights.classes)}
        self._names = None

    @property
    def names(self):
        if self._names is None:  # built on first use: large vocabularies take a moment
            named = getattr(self.vectorizer, "feature_name", None)  # hashed features: by column
            self._names = _ColumnNames(named) if named else feature_names(self.vectorizer)
        return self._names

    def contributions(self, texts: list[str], labels: list[str]):
        """Coefficient × TF-IDF value of every nonzero feature of each text, toward its label."""
        from scipy import sparse

        X = sparse.csr_matrix(self.vectorizer.transform(texts), dtype=float)
        unknown = sorted({str(label) for label in labels} - set(self.index))
        if unknown:
            raise NewstagError(f"unknown label(s) {', '.join(unknown)}; the model knows "
                               f"{', '.join(self.index)}")
        label_index = np.array([self.index[str(label)] for label in labels], dtype=int)
        per_value = np.repeat(label_index, np.diff(X.indptr))
        X.data = X.data * self.weights.at(per_value, X.indices)
        return X

    def explain(self, texts: list[str], labels: list[str],
                top: int = TERMS_PER_ARTICLE) -> list[list[list]]:
        """For each text, its `top` terms with the largest positive contribution toward its label,
        as [term, contribution rounded to 4 places], largest first (ties by column)."""
        if not texts:
            return []
        X = self.contributions(texts, labels)
        return [self._strongest(X.indices[start:end], X.data[start:end], top)
                for start, end in zip(X.indptr[:-1], X.indptr[1:], strict=True)]

    def strongest_terms(self, top: int = TERMS_PER_LABEL) -> dict[str, list[tuple[int, str, float]]]:
        """Each label's `top` features by weight, as (column, term, weight)."""
        result = {}
        for label, i in self.index.items():
            row = self.weights.row(i)
            best = _top_positions(np.arange(len(row)), row, top)
            result[label] = [(int(c), str(self.names[c]), float(row[c])) for c in best]
        return result

    def _strongest(self, columns: np.ndarray, values: np.ndarray, top: int) -> list[list]:
        terms = [[str(self.names[columns[i]]), round(float(values[i]), 4)]
                 for i in _top_positions(columns, values, top)]
        return [term for term in terms if term[1] > 0]  # drop what rounds to nothing


class _ColumnNames:
    """names[column] for hashed features (newstag.models.streaming): a term from the model's
    sample, or `#<column>`; built per lookup, never as an array of 2^20 names."""

    def __init__(self, name_of):
        self.name_of = name_of

    def __getitem__(self, column) -> str:
        return self.name_of(int(column))


def _top_positions(columns: np.ndarray, values: np.ndarray, top: int) -> np.ndarray:
    """Positions of the `top` largest positive values, largest first, ties broken by column so
    that the same model and text always give the same list."""
    positive = np.flatnonzero(values > 0)
    order = np.lexsort((columns[positive], -values[positive]))[:top]
    return positive[order]


def explain_texts(pipeline, texts: list[str], top: int = TERMS_PER_ARTICLE,
                  labels: list[str] | None = None) -> list[list[list]]:
    """Each text's strongest terms toward its label in `labels`, or toward the label the
    (single-label) pipeline predicts for it."""
    if labels is None:
        labels = [str(label) for label in pipeline.predict(texts)]
    return Explainer(pipeline).explain(texts, labels, top)


class CompactExplainer:
    """Explainer's `index` and `explain` for a task predicted from its compact form: the same
    TF-IDF values and weights, so the same terms and contributions."""

    def __init__(self, task: compact.Task):
        if not task.explainable():
            raise NotExplainable("its fast form was saved without explanation weights (a "
                                 "multi-label model saved before they were added)")
        self.task = task
        self.index = {label: i for i, label in enumerate(task.classes)}
        self._names = None

    @property
    def names(self) -> list[str]:
        if self._names is None:
            self._names = self.task.names()
        return self._names

    def explain(self, texts: list[str], labels: list[str],
                top: int = TERMS_PER_ARTICLE) -> list[list[list]]:
        if not texts:
            return []
        label_index = np.array([self.index[str(label)] for label in labels], dtype=int)
        compact.count_texts(texts, self.task.vectorizers)
        parts = []
        for rows, offset in zip(self.task.features(), self.task.meta["offsets"], strict=True):
            columns = rows.columns + offset
            values = rows.values.astype(float) * self.task.label_weight(label_index[rows.row], columns)
            parts.append((rows.row, columns, values))
        row, columns, values = (np.concatenate(arrays) for arrays in zip(*parts, strict=True))
        order = np.argsort(row, kind="stable")
        row, columns, values = row[order], columns[order], values[order]
        ends = np.searchsorted(row, np.arange(len(texts)), side="right")
        starts = np.r_[0, ends[:-1]]
        return [[[str(self.names[columns[start + i]]), round(float(values[start + i]), 4)]
                 for i in _top_positions(columns[start:end], values[start:end], top)
                 if round(float(values[start + i]), 4) > 0]
                for start, end in zip(starts, ends, strict=True)]


def explainers_for(pipelines: dict, source: str, advice: str = "retrain it") -> dict:
    """One Explainer per task (CompactExplainer for a compact task), or a one-line NewstagError
    naming the model file, task and advice."""
    explainers = {}
    for task, pipeline in pipelines.items():
        if isinstance(pipeline, compact.Task):
            try:
                explainers[task] = CompactExplainer(pipeline)
            except NotExplainable as exc:
                raise NewstagError(f"{source}: task {task!r}: {exc}; {advice}") from None
            continue
        try:
            explainers[task] = Explainer(pipeline)
        except NotExplainable as exc:
            raise NewstagError(f"{source}: task {task!r}: {exc}; {advice}") from None
    return explainers


def add_terms(rows: list[dict], texts: list[str | None], explainers: dict[str, Explainer],
              top: int = TERMS_PER_ARTICLE) -> list[dict]:
    """Add "<task>_terms" to every tagged row (rows and texts in the same order; error rows are
    left as they are). A row whose label the model does not know (say, an abstention without a
    candidate) gets an empty list."""
    for task, explainer in explainers.items():
        chosen = [(row, text, _chosen_label(row, task, explainer.index))
                  for row, text in zip(rows, texts, strict=True) if "error" not in row]
        known = [(row, text, label) for row, text, label in chosen if label is not None]
        terms = explainer.explain([text for _, text, _ in known], [label for _, _, label in known], top)
        for row, _, _ in chosen:
            row[f"{task}_terms"] = []
        for (row, _, _), row_terms in zip(known, terms, strict=True):
            row[f"{task}_terms"] = row_terms
    return rows


def _chosen_label(row: dict, task: str, known: dict) -> str | None:
    """The label the row gives for the task, or, when it abstained, its candidate label."""
    for value in (row.get(task), row.get(f"{task}_candidate")):
        if isinstance(value, (list, tuple)) and value:
            value = value[0]
        elif isinstance(value, dict):
            value = value.get("label")
        if isinstance(value, str) and value in known:
            return value
    return None


# ---- strongest terms per label, and leaks -------------------------------------------------------

def top_terms(pipeline, count: int = TERMS_PER_LABEL, texts: list[str] | None = None,
              labels: list[str] | None = None) -> dict[str, list[dict]]:
    """Each label's strongest terms: {label: [{"term", "weight"}, ...]}, strongest first; given
    articles and their true labels, with the shares and leak flag of TermShares."""
    shares = TermShares(pipeline, count)
    if texts is not None:
        shares.add(texts, labels)
    return shares.report(with_shares=texts is not None)


class TermShares:
    """Each label's strongest terms and, fed articles a chunk at a time, the share of its label's
    articles (`in_label`) and of the others' (`in_others`) each term appears in, and `leak`: true
    when it appears in more than half of its label's articles and under 1% of the others', the
    mark of a byline, an agency name, a mail header or a URL rather than of the topic (judged only
    with at least LEAK_MIN_IN_LABEL articles of the label and LEAK_MIN_OTHERS of the others).
    Only counts are kept: a test split of any size takes the same memory."""

    def __init__(self, pipeline, count: int = TERMS_PER_LABEL):
        explainer = Explainer(pipeline)
        self.vectorizer = explainer.vectorizer
        self.strongest = explainer.strongest_terms(count)
        self.rows = 0
        self.label_rows = dict.fromkeys(self.strongest, 0)
        self.in_label = {label: np.zeros(len(terms)) for label, terms in self.strongest.items()}
        self.anywhere = {label: np.zeros(len(terms)) for label, terms in self.strongest.items()}

    def add(self, texts: list[str], labels: list, features=None) -> None:
        """Count a chunk of articles; `features`, the pipeline's vect step's output for them,
        saves vectorising them again."""
        from scipy import sparse

        X = sparse.csr_matrix(self.vectorizer.transform(texts) if features is None else features)
        truth = [{str(one) for one in label} if _is_list(label) else {str(label)} for label in labels]
        self.rows += len(truth)
        for label, terms in self.strongest.items():
            present = X[:, [column for column, _, _ in terms]] != 0
            mine = np.array([label in row for row in truth], dtype=bool)
            self.label_rows[label] += int(mine.sum())
            self.in_label[label] += np.asarray(present[mine].sum(axis=0)).ravel()
            self.anywhere[label] += np.asarray(present.sum(axis=0)).ravel()

    def report(self, with_shares: bool = True) -> dict[str, list[dict]]:
        report = {}
        for label, terms in self.strongest.items():
            entries = [{"term": term, "weight": round(weight, 4)} for _, term, weight in terms]
            if with_shares:
                self._add_shares(label, entries)
            report[label] = entries
        return report

    def _add_shares(self, label: str, entries: list[dict]) -> None:
        mine, others = self.label_rows[label], self.rows - self.label_rows[label]
        in_others = self.anywhere[label] - self.in_label[label]
        enough = mine >= LEAK_MIN_IN_LABEL and others >= LEAK_MIN_OTHERS
        for entry, inside, outside in zip(entries, self.in_label[label], in_others, strict=True):
            inside = float(inside / mine) if mine else None
            outside = float(outside / others) if others else None
            entry["in_label"] = None if inside is None else round(inside, 4)
            entry["in_others"] = None if outside is None else round(outside, 4)
            entry["leak"] = bool(enough and inside > LEAK_IN_LABEL and outside < LEAK_IN_OTHERS)


def _is_list(value) -> bool:
    """A multi-label row's labels (a list, or the array a Parquet list column gives)."""
    return isinstance(value, (list, tuple, np.ndarray))


def leaks(report: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """The flagged terms of a top_terms report, per label (labels without any are left out)."""
    flagged = {label: [entry for entry in terms if entry.get("leak")] for label, terms in report.items()}
    return {label: terms for label, terms in flagged.items() if terms}
