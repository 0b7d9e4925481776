"""Label-noise review: training articles whose label the model, never trained on them, disputes.

Every article of train + validation gets an out-of-fold probability per label
(`cross_val_predict` over stratified folds with the task's configured pipeline; `classifier:
auto` uses auto's baseline, TF-IDF + linear SVM). Models without probabilities are calibrated
inside each fold by a sigmoid (`CalibratedClassifierCV`), or, when a label is too rare for that,
scored by a softmax of their margins.

Which articles to list: cleanlab's `find_label_issues` when the `review` extra is installed
(`pip install 'newstag[review]'`); otherwise confident learning's own rule (Northcutt, Jiang &
Chuang 2021, "Confident Learning", the confident joint): each label j has a threshold t_j, the
mean probability of j over the articles labelled j; an article is counted as belonging to every
label whose probability reaches that label's threshold, and to the most probable of those. It is
listed when that label is not its own, i.e. its self-confidence is below its label's threshold
while another label is confidently above its own. Both rank the listed articles by
self-confidence (the out-of-fold probability of the given label), lowest first.
"""

import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np

from newstag.data.files import atomic_path, write_json
from newstag.errors import NewstagError

log = logging.getLogger(__name__)
MAX_FOLDS = 5
EXCERPT_CHARS = 300


def review(config, task_name: str, top: int) -> tuple[list[dict], str]:
    """The `top` most doubtful labels of a task's train + validation articles, and the method."""
    from newstag.data.splits import load_task_splits

    task = _task(config, task_name)
    frames = [load_task_splits(config, split)[task_name] for split in ("train", "validation")]
    ids = [str(value) for frame in frames for value in frame["id"]]
    texts = [text for frame in frames for text in frame["text"]]
    labels = [str(label) for frame in frames for label in frame[task.column if task.column in frame
                                                                  else task_name]]
    classes, proba = out_of_fold_scores(task, texts, labels, config.seed)
    flagged, method = find_issues(labels, classes, proba)
    index = {label: i for i, label in enumerate(classes)}
    rows = []
    for i in flagged[:top]:
        suggested = int(proba[i].argmax())
        rows.append({"task": task_name, "id": ids[i], "label": labels[i],
                     "suggested": str(classes[suggested]), "confidence": round(float(proba[i, suggested]), 4),
                     "label_probability": round(float(proba[i, index[labels[i]]]), 4),
                     "text": _excerpt(texts[i])})
    return rows, method


def _task(config, name: str):
    found = [task for task in config.tasks if task.name == name]
    if not found:
        raise NewstagError(f"--task {name!r}: the experiment has no such task (it has: "
                           f"{', '.join(config.task_names)})")
    task = found[0]
    if task.ordinal is not None or task.transfer is not None:
        raise NewstagError(f"--task {name!r}: an {'ordinal' if task.ordinal else 'transfer'} task "
                           f"cannot be reviewed; review a plain classification task")
    if task.multi_label:
        raise NewstagError(f"--task {name!r}: a multi-label task cannot be reviewed yet (review "
                           f"judges one label per article); review a single-label task")
    return task


def review_pipeline(task, seed: int):
    """The task's configured pipeline (auto: its baseline member)."""
    from newstag.models import auto
    from newstag.models.pipelines import build_pipeline

    if task.classifier == "auto":
        task = auto.member_task(task, auto.MEMBERS[0])
    return build_pipeline(task, seed)


def out_of_fold_scores(task, texts: list[str], labels: list[str], seed: int):
    """(classes, probabilities) with each article's row from a model fitted without it."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    counts = Counter(labels)
    if len(counts) < 2:
        raise NewstagError(f"task '{task.name}': the training data has only one label; nothing to review")
    rarest_label, rarest = counts.most_common()[-1]
    if rarest < 2:
        raise NewstagError(f"task '{task.name}': label {rarest_label!r} has only {rarest} article in "
                           f"train + validation; review needs at least 2 per label")
    folds = min(MAX_FOLDS, rarest)
    pipeline = review_pipeline(task, seed)
    method = "predict_proba"
    if not hasattr(pipeline, "predict_proba"):
        inner = rarest * (folds - 1) // folds  # the rarest label's count inside a training fold
        if inner >= 2:
            from newstag.models.calibrate import calibrated

            pipeline = calibrated(pipeline, "sigmoid", min(3, inner))
        else:
            method = "decision_function"
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    try:
        scores = cross_val_predict(pipeline, texts, labels, cv=splitter, method=method)
    except ValueError as exc:
        raise NewstagError(f"task '{task.name}': {str(exc).splitlines()[0]}") from None
    if method == "decision_function":
        from newstag.models.calibrate import softmax_margins

        scores = softmax_margins(scores)
    return sorted(counts), scores  # cross_val_predict orders columns by the sorted labels


def find_issues(labels: list[str], classes: list[str], proba: np.ndarray) -> tuple[list[int], str]:
    """Indices of the doubtful labels, most doubtful first, and which method found them."""
    index = {label: i for i, label in enumerate(classes)}
    given = np.array([index[label] for label in labels])
    try:
        from cleanlab.filter import find_label_issues
    except ImportError:
        return confident_learning(given, proba), "confident learning (built in)"
    # n_jobs=1: its worker pool would be killed by newstag's SIGTERM handler, and the data is small
    found = find_label_issues(given, proba, return_indices_ranked_by="self_confidence", n_jobs=1)
    return [int(i) for i in found], "cleanlab find_label_issues"


def confident_learning(given: np.ndarray, proba: np.ndarray) -> list[int]:
    """The off-diagonal of the confident joint, ranked by self-confidence (see the module's doc)."""
    labels = range(proba.shape[1])
    thresholds = np.array([proba[given == j, j].mean() if (given == j).any() else 1.0 for j in labels])
    above = proba >= thresholds  # the labels each article confidently belongs to
    confident = np.where(above.any(axis=1), np.where(above, proba, -1).argmax(axis=1), -1)
    flagged = np.flatnonzero((confident >= 0) & (confident != given))
    self_confidence = proba[np.arange(len(given)), given]
    return [int(i) for i in flagged[np.argsort(self_confidence[flagged], kind="stable")]]


def write_issues(config, task: str, rows: list[dict]) -> Path:
    """reports/<exp>/label_issues.jsonl with this task's rows replaced (other tasks' kept), then
    report.html rebuilt if the experiment was evaluated, so its section shows them."""
    from newstag.report import ISSUES_NAME, REVIEWED_NAME, read_issues, refresh_report

    path = Path(config.report_dir) / ISSUES_NAME
    found = read_issues(path, limit=None) or {}
    kept = [row for name, issues in found.items() if name != task for row in issues]
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for row in kept + rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    counts = {name: len(issues) for name, issues in found.items()} | {task: len(rows)}
    write_json(path.with_name(REVIEWED_NAME), counts)  # so that a task with no issue shows as reviewed
    try:
        refresh_report(config)
    except NewstagError as exc:  # the issues are written; an old model is no reason to fail
        log.warning("report.html not rebuilt: %s", exc)
    return path


def _excerpt(text: str) -> str:
    from newstag.report import excerpt

    return excerpt(text, EXCERPT_CHARS)
