"""Label-noise review: training articles whose label the model, never trained on them, disputes.

Every article of train + validation gets an out-of-fold probability per label
(`cross_val_predict` over stratified folds with the task's configured pipeline; `classifier:
auto` uses auto's baseline, TF-IDF + linear SVM). Models without probabilities are calibrated
inside each fold by a sigmoid (`CalibratedClassifierCV`), or, when a label is too rare for that,
scored by a softmax of their margins.

Which articles to list: cleanlab's `find_label_issues` when the `review` extra is installed
(`pip install 'newstag[review]'`); otherwise confident learning (Northcutt, Jiang & Chuang 2021,
"Confident Learning") pruned by noise rate, cleanlab's default, built in (noise_rate_flags):
each label j has a threshold t_j, the mean probability of j over the articles labelled j; an
article is counted as belonging to the most probable label whose probability reaches its
threshold (the confident joint); those counts, rescaled to each given label's number of articles,
say how many of label i's articles to list as j: the ones with the largest p_j - p_i. Both rank
the listed articles by self-confidence (the out-of-fold probability of the given label), lowest
first. The plain off-diagonal of the joint listed 480 articles of the economic news tone corpus
where cleanlab lists 392 and 363 of Financial PhraseBank's where it lists 501; pruned, 386 (all
in cleanlab's) and 502 (501 shared).

A multi-label task is reviewed label by label (review_label_sets): cleanlab's per-class filter,
or the same rule for each label as a yes/no task. Pruning matters most there: a rare label's yes
threshold (the mean probability over its few articles) can be near 0, and the joint then counts
thousands of articles given no as yes (32,903 labels flagged on a 90-label trial corpus built
by hand from 20 Newsgroups, against cleanlab's 1,152), so only articles the model leans to the
other side (p_j > p_i) are listed. On 20 Newsgroups joined both flag the same 1,132 labels.
"""

import json
import logging
import warnings
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
    if task.multi_label:
        return review_label_sets(task, ids, texts, frames, config.seed, top)
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
                           f"train + validation; review needs at least 2 per label: add articles "
                           f"for it or drop it")
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
        return confident_learning(given, proba), "confident learning, pruned by noise rate (built in)"
    # n_jobs=1: its worker pool would be killed by newstag's SIGTERM handler, and the data is small
    found = find_label_issues(given, proba, return_indices_ranked_by="self_confidence", n_jobs=1)
    return [int(i) for i in found], "cleanlab find_label_issues"


def confident_learning(given: np.ndarray, proba: np.ndarray) -> list[int]:
    """The articles flagged by noise_rate_flags, ranked by self-confidence (lowest first)."""
    flagged = np.flatnonzero(noise_rate_flags(given, proba))
    self_confidence = proba[flagged, given[flagged]]
    return [int(i) for i in flagged[np.argsort(self_confidence, kind="stable")]]


def noise_rate_flags(given: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Confident learning pruned by noise rate (cleanlab's default; see the module's doc): the
    confident joint counts, per given label i, the articles whose confident label is j; rescaled
    so each given label keeps its number of articles, count (i, j) is how many of label i's
    articles to flag as j: those with the largest p_j - p_i, and only ones with p_j > p_i (a rare
    label's threshold, the mean probability over its few articles, can be near 0, and the joint
    would then count thousands of articles of other labels as that one)."""
    thresholds = np.array([proba[given == j, j].mean() if (given == j).any() else 1.0
                           for j in range(proba.shape[1])])
    above = proba >= thresholds  # the labels each article confidently belongs to
    confident = np.where(above.any(axis=1), np.where(above, proba, -1).argmax(axis=1), -1)
    flags = np.zeros(len(given), dtype=bool)
    for i in range(proba.shape[1]):
        mine = np.flatnonzero(given == i)
        counted = int((confident[mine] >= 0).sum())
        for j in range(proba.shape[1]) if counted else ():
            if j == i:
                continue
            expected = round((confident[mine] == j).sum() / counted * len(mine))
            lean = proba[mine, j] - proba[mine, i]
            leaning = np.flatnonzero(lean > 0)
            flags[mine[leaning[np.argsort(-lean[leaning], kind="stable")[:expected]]]] = True
    return flags


# ---- multi-label tasks --------------------------------------------------------------------------

def review_label_sets(task, ids: list[str], texts: list[str], frames, seed: int, top: int):
    """A multi-label task's review: each label judged on its own (is it wrongly given, or wrongly
    missing?), from out-of-fold probabilities. A row lists the article's labels, the set the
    model suggests (the doubtful labels taken out, the missing ones put in: see suggested_labels),
    which are which with their probabilities (`doubtful`, `missing`), and as `confidence` the
    probability of the change the model is surest of (1 - p of a doubtful label, p of a missing
    one), by which the rows are ranked."""
    from newstag.models.multilabel import label_lists

    given = [row for frame in frames for row in label_lists(frame[task.name])]
    names, truth, proba = out_of_fold_label_scores(task, texts, given, seed)
    flags, method = find_label_set_issues(truth, proba)
    agreement = np.where(truth, proba, 1 - proba)  # the probability of each label's given state
    doubt = np.where(flags, agreement, np.inf).min(axis=1)  # its most doubtful flagged label's
    flagged_rows = np.flatnonzero(flags.any(axis=1))
    rows = []
    for i in flagged_rows[np.argsort(doubt[flagged_rows], kind="stable")][:top]:
        flagged = {names[k]: round(float(proba[i, k]), 4) for k in np.flatnonzero(flags[i])}
        rows.append({"task": task.name, "id": ids[i], "label": given[i],
                     "suggested": suggested_labels(given[i], flagged, names, proba[i]),
                     "confidence": round(1 - float(doubt[i]), 4),
                     "doubtful": {name: p for name, p in flagged.items() if name in given[i]},
                     "missing": {name: p for name, p in flagged.items() if name not in given[i]},
                     "text": _excerpt(texts[i])})
    return rows, method


def suggested_labels(given: list[str], flagged: dict, names: list[str], proba: np.ndarray) -> list[str]:
    """The given labels with the flagged ones switched (doubtful out, missing in); never an empty
    set, which preprocess refuses and predict never gives: when every given label is doubtful and
    none is missing, the label most probable out of fold (which may be the doubtful one itself,
    when no other label is likelier), as predict falls back to the label nearest its threshold."""
    suggested = sorted(set(given) ^ set(flagged))
    return suggested or [names[int(proba.argmax())]]


def out_of_fold_label_scores(task, texts: list[str], given: list[list[str]], seed: int):
    """(labels, truth, probabilities): the articles' label-indicator matrix, and each one's row of
    per-label probabilities from the task's model fitted on the other folds (iterative
    stratification, as preprocess splits), its margins mapped by per-label Platt sigmoids fitted
    on all the out-of-fold margins."""
    from tqdm.auto import tqdm

    from newstag.models import multilabel

    names = sorted({label for row in given for label in row})
    folds = min(MAX_FOLDS, len(texts))
    if len(names) < 2 or folds < 2:
        raise NewstagError(f"task '{task.name}': the training data has fewer than 2 labels or "
                           f"articles; nothing to review")
    fold_of = multilabel.iterative_split(given, [1 / folds] * folds, seed)
    documents = np.asarray(texts, dtype=object)
    margins = np.zeros((len(texts), len(names)))
    for fold in tqdm(range(folds), desc=f"review {task.name}", unit="fold", disable=None):
        fit_rows, held_out = np.flatnonzero(fold_of != fold), np.flatnonzero(fold_of == fold)
        pipeline = multilabel.build(task, seed, names)
        try:
            with warnings.catch_warnings():  # a rare label absent from a fold: its model says no
                warnings.filterwarnings("ignore", message="Label not", category=UserWarning)
                pipeline.fit(documents[fit_rows].tolist(), [given[i] for i in fit_rows])
        except ValueError as exc:
            raise NewstagError(f"task '{task.name}': {str(exc).splitlines()[0]}") from None
        margins[held_out] = pipeline.named_steps["clf"].decision_function(
            pipeline.named_steps["vect"].transform(documents[held_out].tolist()))
    truth = np.array([[name in row for name in names] for row in given], dtype=bool)
    sigmoids = multilabel.label_sigmoids(margins, truth.astype(int))
    return names, truth, multilabel.label_probabilities(margins, sigmoids)


def find_label_set_issues(truth: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, str]:
    """(articles x labels) flags of the labels that look wrongly given or wrongly missing:
    cleanlab's per-class multi-label filter when installed, otherwise the built-in confident
    learning rule applied to each label as a yes/no task."""
    try:
        from cleanlab.multilabel_classification.filter import find_multilabel_issues_per_class
    except ImportError:
        flags = np.column_stack([noise_rate_flags(yes.astype(int), np.column_stack([1 - p, p]))
                                 for yes, p in zip(truth.T, proba.T, strict=True)])
        return flags, "confident learning per label, pruned by noise rate (built in)"
    labels = [np.flatnonzero(row).tolist() for row in truth]
    with warnings.catch_warnings():  # "too few examples" of a rare label: it is judged all the same
        warnings.simplefilter("ignore", UserWarning)
        masks = np.asarray(find_multilabel_issues_per_class(labels, proba, n_jobs=1))  # see find_issues
    return (masks if masks.shape == truth.shape else masks.T), "cleanlab find_multilabel_issues_per_class"



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
