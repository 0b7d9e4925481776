"""One task's test scores, added up a chunk of articles at a time.

evaluate used to hold a task's whole test split and every score of it in memory: fine for the
sample, not for the corpora a streaming experiment is made for. A TaskTally keeps counts and sums
only (the (true, predicted) pairs, ScoreSums of the calibrated and the uncalibrated scores, the
term shares) and a bounded handful of articles (the first misclassified ones, the most confident
mistakes), so evaluate needs the model and one chunk, whatever the split's size, and reports the
numbers the whole split at once gives.

A multi-label task's is a LabelSetTally: per-label true/false positive and false negative counts.
"""

import heapq
from collections import Counter

import numpy as np

from newstag.models import multilabel
from newstag.models.calibrate import ScoreSums, base_scores, class_scores
from newstag.models.ordinal import truth_for

MISCLASSIFIED_SAMPLE = 25  # misclassified.jsonl: the first ones, in file order
CONFIDENT_MISTAKES = 10  # the report's most confident mistakes
MISCLASSIFIED_CHARS = 400


class Mistakes:
    """The `keep` most confident mistakes seen so far, as (probability, -row, record): the
    surest first, the earliest article first on a tie."""

    def __init__(self, keep: int = CONFIDENT_MISTAKES):
        self.keep, self.mistakes = keep, []

    def _keep(self, found: list[tuple]) -> None:
        self.mistakes = heapq.nlargest(self.keep, self.mistakes + found, key=lambda m: m[:2])

    def most_confident_mistakes(self) -> list[dict]:
        return [record for *_, record in self.mistakes]


class TaskTally(Mistakes):
    """A single-label task's test scores, chunk after chunk (`add`), then `classification()`,
    `confusion()`, `scores`, the misclassified rows and the most confident mistakes."""

    def __init__(self, task: str, pipeline, thresholds=(), shares=None,
                 mistakes: int = CONFIDENT_MISTAKES):
        super().__init__(mistakes)
        self.task, self.pipeline, self.shares = task, pipeline, shares
        self.classes = [str(label) for label in pipeline.classes_]
        self.scores = {"calibrated": ScoreSums(thresholds), "uncalibrated": ScoreSums()}
        self.pairs: Counter = Counter()
        self.misclassified: list[dict] = []
        self.rows = 0

    def add(self, chunk) -> None:
        texts = chunk["text"].tolist()
        raw = chunk[self.task].tolist()
        y_true = truth_for(self.pipeline, raw)  # an ordinal task's scores -> its classes
        features, y_pred, proba, base = self._scores(texts)
        self.scores["calibrated"].add(y_true, self.classes, proba)
        self.scores["uncalibrated"].add(y_true, self.classes, base)
        self.pairs.update(zip(y_true, y_pred, strict=True))
        ids = chunk["id"].tolist() if "id" in chunk else list(range(self.rows, self.rows + len(texts)))
        self._note_misclassified(ids, texts, y_true, y_pred)
        self._note_mistakes(ids, texts, y_true, proba)
        if self.shares is not None:
            self.shares.add(texts, [str(label) for label in raw], features)
        self.rows += len(texts)

    def _scores(self, texts: list[str]) -> tuple:
        """(features, predicted labels, calibrated scores, uncalibrated scores). Every task's
        pipeline is vect -> clf, so the texts become features once for all three: vectorising
        (hashing, or a sentence encoder) is most of the time, and the clf step on the features
        is exactly what the pipeline does."""
        features = self.pipeline.named_steps["vect"].transform(texts)
        clf = self.pipeline.named_steps["clf"]
        return (features, clf.predict(features).tolist(), class_scores(clf, features),
                base_scores(self.pipeline, None, features))

    def _note_misclassified(self, ids, texts, y_true, y_pred) -> None:
        for i, (true, predicted) in enumerate(zip(y_true, y_pred, strict=True)):
            if len(self.misclassified) >= MISCLASSIFIED_SAMPLE:
                return
            if true != predicted:
                self.misclassified.append({"task": self.task, "id": ids[i], "true": true,
                                           "predicted": predicted,
                                           "text": texts[i][:MISCLASSIFIED_CHARS]})

    def _note_mistakes(self, ids, texts, y_true, proba: np.ndarray) -> None:
        """Keep the `keep` wrong answers given with the highest probability (the earliest first
        on a tie), judged by the scores' best label."""
        best = proba.argmax(axis=1)
        confidence = proba[np.arange(len(best)), best]
        wrong = np.flatnonzero(np.asarray(self.classes, dtype=object)[best] != np.asarray(y_true, dtype=str))
        found = [(float(confidence[i]), -(self.rows + int(i)),
                  {"id": str(ids[i]), "text": texts[i], "true": str(y_true[i]),
                   "predicted": self.classes[best[i]], "probability": float(confidence[i])})
                 for i in wrong]
        self._keep(found)

    def labels(self) -> list:
        """The labels reported: the model's and any other the test split has."""
        return sorted(set(self.pipeline.classes_) | {true for true, _ in self.pairs})

    def classification(self) -> dict:
        """scikit-learn's classification_report (as a dict) of every article added, from the
        pair counts: each distinct (true, predicted) pair once, weighted by its count."""
        from sklearn.metrics import classification_report

        true, predicted, weight = self._weighted_pairs()
        report = classification_report(true, predicted, labels=self.labels(), sample_weight=weight,
                                       output_dict=True, zero_division=0)
        for values in report.values():
            if isinstance(values, dict):
                values["support"] = int(round(values["support"]))
        return report

    def confusion(self) -> np.ndarray:
        from sklearn.metrics import confusion_matrix

        true, predicted, weight = self._weighted_pairs()
        counts = confusion_matrix(true, predicted, labels=self.labels(), sample_weight=weight)
        return counts.round().astype(int)

    def _weighted_pairs(self) -> tuple[list, list, list[int]]:
        pairs = sorted(self.pairs.items(), key=str)
        return [t for (t, _), _ in pairs], [p for (_, p), _ in pairs], [n for _, n in pairs]


class LabelSetTally(Mistakes):
    """A multi-label task's test scores, a chunk of articles at a time (`add`), then `result`:
    only each label's true/false positive and false negative counts and the per-article sums
    behind samples-F1, Hamming loss and exact-match accuracy are kept (plus the first misclassified
    articles), so a test split of any size takes the same memory and gives what
    multilabel_scores and precision_recall_fscore_support give on the whole of it."""

    def __init__(self, task: str, pipeline, shares=None, mistakes: int = CONFIDENT_MISTAKES):
        super().__init__(mistakes)
        self.task, self.pipeline, self.shares = task, pipeline, shares
        self.labels = [str(label) for label in pipeline.named_steps["clf"].labels]
        self.true_positives, self.false_positives, self.false_negatives = (
            np.zeros(len(self.labels), dtype=np.int64) for _ in range(3))
        self.samples_f1 = 0.0  # summed over articles
        self.wrong_cells = self.exact = self.rows = 0
        self.misclassified: list[dict] = []

    def add(self, chunk) -> None:
        from sklearn.metrics import f1_score

        texts, raw = chunk["text"].tolist(), multilabel.label_lists(chunk[self.task])
        features = self.pipeline.named_steps["vect"].transform(texts)
        clf = self.pipeline.named_steps["clf"]
        self._add_unseen(raw)
        truth, predicted = self._indicators(raw), self._padded(clf.predict(features).astype(bool))
        self.true_positives += (truth & predicted).sum(axis=0)
        self.false_positives += (~truth & predicted).sum(axis=0)
        self.false_negatives += (truth & ~predicted).sum(axis=0)
        self.samples_f1 += float(f1_score(truth, predicted, average="samples", zero_division=0)) * len(texts)
        wrong = (truth != predicted).any(axis=1)
        self.wrong_cells += int((truth != predicted).sum())
        self.exact += int((~wrong).sum())
        ids = chunk["id"].tolist() if "id" in chunk else list(range(self.rows, self.rows + len(texts)))
        self._note_misclassified(ids, texts, truth, predicted, np.flatnonzero(wrong))
        self._note_mistakes(ids, texts, truth, predicted, self._padded(clf.predict_proba(features)))
        if self.shares is not None:
            self.shares.add(texts, raw, features)
        self.rows += len(texts)

    def _add_unseen(self, raw: list[list[str]]) -> None:
        """A test label the model never learnt (none of its training articles had it) gets a
        column of its own, never predicted: its articles count as misses rather than vanish from
        the scores, which would flatter micro-F1 and leave the label out of macro-F1."""
        unseen = sorted({label for labels in raw for label in labels} - set(self.labels))
        if unseen:
            self.labels += unseen
            self.true_positives, self.false_positives, self.false_negatives = (
                np.concatenate([counts, np.zeros(len(unseen), dtype=np.int64)])
                for counts in (self.true_positives, self.false_positives, self.false_negatives))

    def _indicators(self, raw: list[list[str]]) -> np.ndarray:
        position = {label: i for i, label in enumerate(self.labels)}
        truth = np.zeros((len(raw), len(self.labels)), dtype=bool)
        for row, labels in enumerate(raw):
            truth[row, [position[label] for label in labels]] = True
        return truth

    def _padded(self, columns: np.ndarray) -> np.ndarray:
        """The model's columns (its labels come first) and zeros for the labels it never learnt."""
        extra = len(self.labels) - columns.shape[1]
        return np.pad(columns, ((0, 0), (0, extra))) if extra else columns

    def _note_mistakes(self, ids, texts, truth, predicted, proba: np.ndarray) -> None:
        """Keep the labels given wrongly with the highest probability, one per article (its
        surest wrong label)."""
        wrong = np.where(predicted & ~truth, proba, -1.0)
        names = np.asarray(self.labels, dtype=object)
        found = [(float(wrong[i].max()), -(self.rows + int(i)),
                  {"id": str(ids[i]), "text": texts[i], "true": names[truth[i]].tolist(),
                   "predicted": names[predicted[i]].tolist(), "label": self.labels[wrong[i].argmax()],
                   "probability": float(wrong[i].max())})
                 for i in np.flatnonzero(wrong.max(axis=1) >= 0)]
        self._keep(found)

    def _note_misclassified(self, ids, texts, truth, predicted, wrong) -> None:
        names = np.asarray(self.labels, dtype=object)
        for i in wrong[:max(0, MISCLASSIFIED_SAMPLE - len(self.misclassified))]:
            self.misclassified.append({"task": self.task, "id": ids[i], "true": names[truth[i]].tolist(),
                                       "predicted": names[predicted[i]].tolist(),
                                       "text": texts[i][:MISCLASSIFIED_CHARS]})

    def per_label(self) -> dict[str, dict]:
        """Each label's precision, recall, F1 (0 where undefined) and test article count."""
        tp, fp, fn = self.true_positives, self.false_positives, self.false_negatives
        return {label: {"precision": _ratio(t, t + p), "recall": _ratio(t, t + n),
                        "f1-score": _ratio(2 * t, 2 * t + p + n), "support": int(t + n)}
                for label, t, p, n in zip(self.labels, tp, fp, fn, strict=True)}

    def scores(self) -> dict:
        """multilabel_scores of every article added."""
        tp, fp, fn = (int(counts.sum()) for counts in
                      (self.true_positives, self.false_positives, self.false_negatives))
        per_label = self.per_label()
        rows = max(self.rows, 1)
        return {"f1_micro": _ratio(2 * tp, 2 * tp + fp + fn),
                "f1_macro": float(np.mean([values["f1-score"] for values in per_label.values()])),
                "f1_samples": self.samples_f1 / rows,
                "hamming_loss": self.wrong_cells / (rows * len(self.labels)),
                "accuracy": self.exact / rows}

    def result(self, out) -> dict:
        """evaluate's result for the task: micro/macro/samples F1, Hamming loss, subset accuracy,
        per-label P/R/F1, and a per-label F1 bar chart (no confusion matrix)."""
        from newstag.plots import label_f1_figure, save_figure

        per_label = self.per_label()
        save_figure(label_f1_figure(self.task, per_label), out / f"label_f1_{self.task}.png")
        return {"metrics": {**self.scores(), "multi_label": True, "per_class": per_label},
                "rows": self.rows, "misclassified": self.misclassified}


def _ratio(numerator, denominator) -> float:
    return float(numerator / denominator) if denominator else 0.0
