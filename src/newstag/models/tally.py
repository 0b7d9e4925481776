"""One task's test scores, added up a chunk of articles at a time.

evaluate used to hold a task's whole test split and every score of it in memory: fine for the
sample, not for the corpora a streaming experiment is made for. A TaskTally keeps counts and sums
only (the (true, predicted) pairs, ScoreSums of the calibrated and the uncalibrated scores, the
term shares) and a bounded handful of articles (the first misclassified ones, the most confident
mistakes), so evaluate needs the model and one chunk, whatever the split's size, and reports the
numbers the whole split at once gives.

A multi-label task's counterpart is newstag.models.multilabel.LabelSetTally.
"""

import heapq
from collections import Counter

import numpy as np

from newstag.models.calibrate import ScoreSums, base_scores, class_scores
from newstag.models.ordinal import truth_for

MISCLASSIFIED_SAMPLE = 25  # misclassified.jsonl: the first ones, in file order
CONFIDENT_MISTAKES = 10  # the report's most confident mistakes
MISCLASSIFIED_CHARS = 400


class TaskTally:
    """A single-label task's test scores, chunk after chunk (`add`), then `classification()`,
    `confusion()`, `scores`, the misclassified rows and the most confident mistakes."""

    def __init__(self, task: str, pipeline, thresholds=(), shares=None,
                 mistakes: int = CONFIDENT_MISTAKES):
        self.task, self.pipeline, self.shares, self.keep = task, pipeline, shares, mistakes
        self.classes = [str(label) for label in pipeline.classes_]
        self.scores = {"calibrated": ScoreSums(thresholds), "uncalibrated": ScoreSums()}
        self.pairs: Counter = Counter()
        self.misclassified: list[dict] = []
        self.mistakes: list[tuple] = []  # (probability, -row, record), the most confident kept
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
        self.mistakes = heapq.nlargest(self.keep, self.mistakes + found, key=lambda m: m[:2])

    def most_confident_mistakes(self) -> list[dict]:
        return [record for *_, record in self.mistakes]

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

