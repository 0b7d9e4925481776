"""`newstag bench`: newstag beside a plain scikit-learn baseline, fastText, VADER and the majority
class, on the same rows, splits and folds, with accuracy, macro-F1, time, throughput and memory.

Each (experiment, task, method) runs in a fresh process so that its peak memory is its own.
"""

import io
import json
import logging
import multiprocessing
import re
import resource
import tempfile
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import RepeatedKFold, RepeatedStratifiedKFold, train_test_split

from newstag.config import ExperimentConfig, TaskConfig, load_config
from newstag.data.files import write_json, write_text
from newstag.errors import NewstagError
from newstag.models.multilabel import label_lists
from newstag.models.pipelines import task_truth

log = logging.getLogger(__name__)
TONES = {"negative", "neutral", "positive"}
QUICK_ROWS = 1200
BOOTSTRAP_ROUNDS = 1000  # for the interval of an ECE difference


@dataclass
class Fold:
    """Rows to fit on (train, validation for model selection) and rows to score."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame


def folds(config: ExperimentConfig, task: str, quick: bool = False) -> list[Fold]:
    """The held-out split, or repeated stratified k-fold with a validation split inside training."""
    from newstag.data.splits import load_split

    parts = {name: load_split(config, name) for name in ("train", "validation", "test")}
    if config.bench.protocol == "split":
        if quick:
            parts = {name: _sample(frame, task, QUICK_ROWS // 2, config.seed, config)
                     for name, frame in parts.items()}
        return [Fold(parts["train"], parts["validation"], parts["test"])]
    rows = pd.concat(parts.values(), ignore_index=True)
    rows = _sample(rows, task, QUICK_ROWS, config.seed, config) if quick else rows
    n_splits, repeats = (2, 1) if quick else (config.bench.folds, config.bench.repeats)
    multi = _task(config, task).multi_label  # label lists: plain folds (no single label to stratify on)
    splitter = (RepeatedKFold if multi else RepeatedStratifiedKFold)(
        n_splits=n_splits, n_repeats=repeats, random_state=config.seed)
    strata = None if multi else np.array(_truth(config, task, rows[task]))  # ordinal: by class
    result = []
    for train_index, test_index in splitter.split(rows, strata):
        training = rows.iloc[train_index]
        train, validation = train_test_split(training, test_size=config.split.validation,
                                             stratify=None if multi else strata[train_index],
                                             random_state=config.seed)
        result.append(Fold(train, validation, rows.iloc[test_index]))
    return result


def _task(config: ExperimentConfig, task: str) -> TaskConfig:
    return next(t for t in config.tasks if t.name == task)


def _truth(config: ExperimentConfig, task: str, labels) -> list[str]:
    return task_truth(_task(config, task), labels)


def _sample(frame: pd.DataFrame, task: str, size: int, seed: int,
            config: ExperimentConfig | None = None) -> pd.DataFrame:
    if len(frame) <= size:
        return frame
    strata = _truth(config, task, frame[task]) if config else frame[task]
    if config and _task(config, task).multi_label:
        strata = None
    sample, _ = train_test_split(frame, train_size=size, stratify=strata, random_state=seed)
    return sample


# ---- the methods: each fits on a Fold and returns (predict function, model size in bytes) -------

def fit_newstag(task: TaskConfig, fold: Fold, seed: int, quick: bool):
    """newstag's experiment, predicting as `newstag predict` does: from the compact form (NumPy)
    when the task has one, else with the scikit-learn pipeline."""
    from newstag.train import fit_task

    pipeline = fit_task(task, fold.train, fold.validation, seed).pipeline
    return predict_like_newstag(pipeline), _pickled_size(pipeline)


def predict_like_newstag(pipeline):
    """The labels `newstag predict` gives (the most probable label; for a multi-label task, each
    article's list of labels), from the compact form."""
    from newstag.models import compact, multilabel

    try:
        meta, arrays = compact.export(pipeline)
    except compact.NotCompact:
        if multilabel.is_multilabel(pipeline):
            return lambda texts: [list(found) for found in multilabel.tag_texts(pipeline, list(texts))]
        return pipeline.predict
    task = compact.from_export(meta, arrays)

    def predict(texts):
        answers = compact.tag_texts({"task": task}, list(texts))["task"]
        if task.multilabel:
            return [list(found) for found in answers]
        labels, _ = answers
        return np.array(labels)
    predict.pipeline = pipeline  # for the calibration and ordinal figures
    return predict


def fitted_pipeline(predict):
    """The scikit-learn pipeline behind a newstag method's predict function, else None."""
    return getattr(predict, "pipeline", None) or getattr(predict, "__self__", None)


def fit_newstag_auto(task: TaskConfig, fold: Fold, seed: int, quick: bool):
    """The minimal experiment: the same data and label column, classifier `auto`, nothing else.
    Its search runs inside the fit, so the search time counts in `train s`."""
    return fit_newstag(minimal_auto_task(task), fold, seed, quick)


def minimal_auto_task(task: TaskConfig) -> TaskConfig:
    """The task as the smallest experiment file gives it: its label column and `classifier: auto`."""
    from dataclasses import replace

    return replace(task, classifier="auto", features="word", params={}, grid={}, search=None,
                   negation=False, lexicons=())


def fit_baseline(task: TaskConfig, fold: Fold, seed: int, quick: bool):
    """The plain five-line baseline: default TfidfVectorizer + LinearSVC; for a multi-label task,
    one LinearSVC per label (one-vs-rest) on the binarized label lists, each label predicted at a
    margin >= 0 (so an article may get none)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MultiLabelBinarizer
    from sklearn.svm import LinearSVC

    train = pd.concat([fold.train, fold.validation])
    if not task.multi_label:
        pipeline = make_pipeline(TfidfVectorizer(), LinearSVC()).fit(train["text"], train[task.name])
        return pipeline.predict, _pickled_size(pipeline)
    binarizer = MultiLabelBinarizer().fit(label_lists(train[task.name]))
    pipeline = make_pipeline(TfidfVectorizer(), OneVsRestClassifier(LinearSVC())).fit(
        train["text"], binarizer.transform(label_lists(train[task.name])))
    return (lambda texts: [list(found) for found in binarizer.inverse_transform(pipeline.predict(texts))],
            _pickled_size(pipeline))


def fit_majority(task: TaskConfig, fold: Fold, seed: int, quick: bool):
    training = pd.concat([fold.train, fold.validation])[task.name]
    label = pd.Series(task_truth(task, training)).value_counts().idxmax()
    return (lambda texts: np.array([label] * len(texts))), 0


def fit_vader(task: TaskConfig, fold: Fold, seed: int, quick: bool):
    """VADER's compound score with its authors' thresholds: >= 0.05 positive, <= -0.05 negative."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()

    def predict(texts):
        scores = [analyzer.polarity_scores(text)["compound"] for text in texts]
        return np.array(["positive" if s >= 0.05 else "negative" if s <= -0.05 else "neutral"
                         for s in scores])
    return predict, 0


def fit_transfer(task: TaskConfig, fold: Fold, seed: int, quick: bool):
    """Sentence-to-article transfer alone: the sentence tone model of the task's `transfer`
    section tags every sentence, and the article's tone follows from the balance of its
    positive and negative sentences. No article label is used (only the label set)."""
    from newstag.models.features import SentenceTone, transfer_predict
    from newstag.models.pipelines import sentence_model

    if task.transfer is None:
        raise NewstagError(f"task '{task.name}': the transfer method needs a `transfer` section")
    tones = SentenceTone(sentence_model(task)).fit()
    labels = sorted(set(task_truth(task, fold.train[task.name])))
    return (lambda texts: transfer_predict(tones.transform(texts), labels)), 0


FASTTEXT_GRID = {"epoch": [10, 25, 50], "lr": [0.5, 1.0]}


def fit_fasttext(task: TaskConfig, fold: Fold, seed: int, quick: bool):
    """fastText supervised with word bigrams; epochs and learning rate chosen on validation."""
    import fasttext

    grid = {"epoch": [5], "lr": [0.5]} if quick else FASTTEXT_GRID
    with tempfile.TemporaryDirectory(prefix="newstag-bench-") as tmp:
        train_file = _fasttext_file(fold.train, task.name, Path(tmp) / "train.txt", seed)
        candidates = []
        for epoch in grid["epoch"]:
            for lr in grid["lr"]:
                model = _fasttext_train(fasttext, train_file, epoch, lr, seed)
                predicted = _fasttext_predict(model, fold.validation["text"])
                candidates.append((accuracy_score(fold.validation[task.name], predicted), epoch, lr))
        _, epoch, lr = max(candidates, key=lambda c: c[0])
        both = _fasttext_file(pd.concat([fold.train, fold.validation]), task.name,
                              Path(tmp) / "all.txt", seed)
        model = _fasttext_train(fasttext, both, epoch, lr, seed)
        model.save_model(str(Path(tmp) / "model.bin"))
        size = (Path(tmp) / "model.bin").stat().st_size
    return (lambda texts: _fasttext_predict(model, texts)), size


def _fasttext_tokens(text: str) -> str:
    """fastText's usual preparation: lower case, punctuation split off, one line."""
    return " ".join(re.sub(r"([^\w\s])", r" \1 ", text.lower()).split())


def _fasttext_file(frame: pd.DataFrame, task: str, path: Path, seed: int = 0) -> str:
    """fastText's training file, shuffled: it does not shuffle itself, and SGD over rows sorted
    by class (as 20 Newsgroups and BBC News are) forgets all but the last classes."""
    frame = frame.sample(frac=1.0, random_state=seed)
    lines = (f"__label__{label.replace(' ', '_')} {_fasttext_tokens(text)}"
             for label, text in zip(frame[task], frame["text"], strict=True))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def _fasttext_train(fasttext, path: str, epoch: int, lr: float, seed: int):
    return fasttext.train_supervised(path, epoch=epoch, lr=lr, wordNgrams=2, dim=50, minCount=1,
                                     thread=2, seed=seed, verbose=0)


def _fasttext_predict(model, texts) -> np.ndarray:
    labels, _ = model.predict([_fasttext_tokens(text) for text in texts])
    return np.array([label[0].removeprefix("__label__") for label in labels])


def _pickled_size(model) -> int:
    buffer = io.BytesIO()
    joblib.dump(model, buffer, compress=3)
    return buffer.tell()


METHODS = {"newstag": fit_newstag, "newstag-auto": fit_newstag_auto, "baseline": fit_baseline,
           "fasttext": fit_fasttext, "vader": fit_vader, "majority": fit_majority,
           "transfer": fit_transfer}
EXTRAS = {"fasttext": "fasttext", "vader": "vaderSentiment"}  # methods that need the bench extra


def methods_for(labels: set[str], task: TaskConfig | None = None) -> list[str]:
    """Every task gets newstag (tuned and auto), the baseline, fastText and the majority class;
    tone tasks VADER too, and transfer tasks the sentence model alone. newstag-auto and the
    baseline are left out of ordinal and transfer tasks, which they cannot express; multi-label
    tasks get newstag and the one-vs-rest baseline only (the others predict one label)."""
    if task is not None and task.multi_label:  # the bar: one-vs-rest LinearSVC
        return ["newstag", "baseline"]
    special = task is not None and (task.ordinal is not None or task.transfer is not None)
    base = ["newstag"] if special else ["newstag", "newstag-auto", "baseline", "fasttext"]
    if task is not None and task.transfer is not None:
        base.append("transfer")
    return base + (["vader", "majority"] if labels <= TONES else ["majority"])


# ---- running and reporting -------------------------------------------------------------------

def run_method(experiment: str, task_name: str, method: str, quick: bool) -> dict:
    """Score one method on every fold of one task (runs inside a fresh process)."""
    logging.disable(logging.INFO)
    config = load_config(experiment)
    task = next(t for t in config.tasks if t.name == task_name)
    scores, train_seconds, predict_seconds, predicted_rows, size = [], 0.0, 0.0, 0, 0
    errors, confidences = [], []
    for fold in folds(config, task_name, quick):
        start = time.perf_counter()
        predict, size = METHODS[method](task, fold, config.seed, quick)
        train_seconds += time.perf_counter() - start
        start = time.perf_counter()
        y_pred = predict(fold.test["text"].tolist())
        predict_seconds += time.perf_counter() - start
        predicted_rows += len(fold.test)
        scores.append(score(task, fold, y_pred))
        if task.ordinal is not None:
            errors.append(_ordinal_errors(predict, fold, task_name))
        elif method.startswith("newstag") and not task.multi_label:
            y_true = task_truth(task, fold.test[task_name])
            confidences.append(_confidences(predict, fold, y_true))
    extra = {key: float(np.mean([e[key] for e in part])) for part in (errors, scores)
             if part for key in part[0]}
    if confidences:  # every fold's rows together, column by column
        columns = [np.concatenate(column) for column in zip(*confidences, strict=True)]
        extra.update(calibration_errors(*columns))
    return {**extra, "experiment": config.name, "task": task_name, "method": method,
            "protocol": config.bench.protocol, "folds": len(scores),
            "accuracy_std": float(np.std([s["accuracy"] for s in scores])),
            "train_seconds": train_seconds / len(scores),
            "predict_per_second": predicted_rows / max(predict_seconds, 1e-9),
            "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "model_mb": size / 2**20}


def score(task: TaskConfig, fold: Fold, y_pred) -> dict:
    """Accuracy and macro-F1; for a multi-label task micro-, macro- and samples-F1, Hamming loss
    and subset accuracy (`accuracy`: the exact label set), over the labels of all the fold's rows."""
    from sklearn.preprocessing import MultiLabelBinarizer

    from newstag.models.multilabel import multilabel_scores

    if not task.multi_label:
        y_true = task_truth(task, fold.test[task.name])
        return {"accuracy": accuracy_score(y_true, y_pred),
                "f1_macro": f1_score(y_true, y_pred, average="macro", zero_division=0)}
    y_true = label_lists(fold.test[task.name])
    seen = pd.concat([fold.train, fold.validation, fold.test])[task.name]
    binarizer = MultiLabelBinarizer(classes=sorted({label for row in label_lists(seen) for label in row}))
    return multilabel_scores(binarizer.fit_transform(y_true), binarizer.transform(y_pred))


def _ordinal_errors(predict, fold: Fold, task: str) -> dict:
    """MAE on the score of an ordinal model (when the method has one), and of predicting the
    training rows' mean score, the bar an ordinal model must clear."""
    from newstag.models.ordinal import OrdinalClassifier, numeric_scores

    true = numeric_scores(fold.test[task])
    mean = numeric_scores(pd.concat([fold.train, fold.validation])[task]).mean()
    errors = {"mae_mean": float(np.abs(true - mean).mean())}
    model = fitted_pipeline(predict)
    if hasattr(model, "steps") and isinstance(model.steps[-1][1], OrdinalClassifier):
        features = model[:-1].transform(fold.test["text"].tolist())
        errors["mae"] = float(np.abs(true - model.steps[-1][1].predict_score(features)).mean())
    return errors


def _confidences(predict, fold: Fold, y_true: list[str]) -> tuple[np.ndarray, ...]:
    """Per scored row: the top-label confidence and rightness of the model's calibrated
    probabilities, then of its uncalibrated base scores (a softmax of the margins: what predict
    gave before calibration)."""
    from newstag.models.calibrate import base_scores, class_scores, top_label

    pipeline = fitted_pipeline(predict)
    texts = fold.test["text"].tolist()
    classes = list(pipeline.classes_)
    return (*top_label(y_true, classes, class_scores(pipeline, texts)),
            *top_label(y_true, classes, base_scores(pipeline, texts)))


def calibration_errors(confidence, correct, base_confidence, base_correct,
                       rounds: int = BOOTSTRAP_ROUNDS) -> dict:
    """ECE (15 bins) of the calibrated and of the uncalibrated scores over every scored row of
    every fold, and a 95% paired bootstrap interval of their difference (calibrated minus
    uncalibrated; resampling rows, both scores of a row together).

    Pooled, not a mean of per-fold ECEs: binning error grows as bins / rows, and on a fold of
    120 articles it is most of the figure (economic tone, binary: a mean of 0.081 over ten folds,
    0.023 pooled). The interval says whether a difference is more than that noise."""
    from newstag.models.calibrate import binned_ece

    rng = np.random.default_rng(0)
    differences = []
    for _ in range(rounds):
        rows = rng.integers(0, len(confidence), len(confidence))
        differences.append(binned_ece(confidence[rows], correct[rows])
                           - binned_ece(base_confidence[rows], base_correct[rows]))
    low, high = np.percentile(differences, [2.5, 97.5])
    return {"ece": binned_ece(confidence, correct),
            "ece_uncalibrated": binned_ece(base_confidence, base_correct),
            "ece_difference_low": float(low), "ece_difference_high": float(high)}


def run_isolated(experiment: str, task: str, method: str, quick: bool) -> dict:
    """run_method in a new process, so peak memory is measured per method."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(run_method, (experiment, task, method, quick))


def bench(experiments: list[str], quick: bool = False, methods: list[str] | None = None,
          checkpoint: Path | None = None) -> list[dict]:
    """Run every applicable method on every task of every experiment; return the result rows.

    Each row is appended to `checkpoint` (JSON lines) as soon as it is done, keyed by a
    fingerprint of the code, the experiment file and its preprocessed data: a run that was
    stopped picks up where it was, and a row measured on other code or data is never reused."""
    from tqdm.auto import tqdm

    jobs = []
    for experiment in experiments:
        config = load_config(experiment)
        for task in config.tasks:
            labels = set() if task.multi_label else set(  # label lists: methods_for needs none
                task.ordinal.labels if task.ordinal else task.labels or _labels_seen(config, task.name))
            jobs += [(experiment, task.name, method) for method in methods_for(labels, task)
                     if methods is None or method in methods]
    done = _checkpointed(checkpoint)
    rows = []
    for experiment, task, method in tqdm(jobs, desc="bench", unit="run", disable=None):
        key = fingerprint(experiment, task, method, quick)
        if key in done:
            rows.append(done[key])
            continue
        rows.append({**run_isolated(experiment, task, method, quick), "fingerprint": key})
        if checkpoint is not None:
            with open(checkpoint, "a", encoding="utf-8") as stream:
                stream.write(json.dumps(rows[-1]) + "\n")
        log.info("%s/%s %s: accuracy %.4f", rows[-1]["experiment"], task, method, rows[-1]["accuracy"])
    return rows


def fingerprint(experiment: str, task: str, method: str, quick: bool) -> str:
    """What a bench row depends on: the package's code, the experiment file, its processed data."""
    import hashlib

    digest = hashlib.sha256(f"{task}\0{method}\0{quick}\0{_package_digest()}".encode())
    manifest = load_config(experiment).processed_dir / "manifest.json"
    for path in (Path(experiment), manifest):
        digest.update(path.read_bytes() if path.exists() else b"-")
    return digest.hexdigest()[:16]


@cache
def _package_digest() -> str:
    """The sha256 of the package's source, read once per bench rather than once per row."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _checkpointed(checkpoint: Path | None) -> dict[str, dict]:
    """The rows a stopped run already measured, by fingerprint (a torn last line is ignored)."""
    rows = {}
    if checkpoint is not None and checkpoint.exists():
        text = checkpoint.read_text(encoding="utf-8")
        if text and not text.endswith("\n"):  # cut off mid-row: drop the torn row before appending
            text = text[:text.rfind("\n") + 1]
            checkpoint.write_text(text, encoding="utf-8")
        for line in text.splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            rows[row.get("fingerprint")] = row
    return rows


def _labels_seen(config: ExperimentConfig, task: str) -> set[str]:
    from newstag.data.splits import load_split

    return set(load_split(config, "train")[task].astype(str))


def with_ratios(rows: list[dict]) -> list[dict]:
    """Add each row's accuracy difference and time ratio to fastText on the same task."""
    fasttext = {(r["experiment"], r["task"]): r for r in rows if r["method"] == "fasttext"}
    for row in rows:
        reference = fasttext.get((row["experiment"], row["task"]))
        if reference:
            row["accuracy_vs_fasttext"] = row["accuracy"] - reference["accuracy"]
            row["train_time_vs_fasttext"] = row["train_seconds"] / max(reference["train_seconds"], 1e-9)
            row["predict_speed_vs_fasttext"] = row["predict_per_second"] / max(
                reference["predict_per_second"], 1e-9)
    return rows


def markdown_table(rows: list[dict]) -> str:
    """The figures as a Markdown table, one row per (corpus, task, method)."""
    head = ("| corpus | task | method | protocol | accuracy | macro-F1 | train s | articles/s "
            "| peak MB | model MB | acc. − fastText | train time ÷ fastText | articles/s ÷ fastText |")
    lines = [head, "|" + " --- |" * 13]
    for r in rows:
        delta = f"{r['accuracy_vs_fasttext']:+.4f}" if "accuracy_vs_fasttext" in r else ""
        ratio = f"{r['train_time_vs_fasttext']:.2f}" if "train_time_vs_fasttext" in r else ""
        speed = f"{r['predict_speed_vs_fasttext']:.2f}" if "predict_speed_vs_fasttext" in r else ""
        protocol = "split" if r["protocol"] == "split" else f"cv ({r['folds']} folds)"
        lines.append(f"| {r['experiment']} | {r['task']} | {r['method']} | {protocol} "
                     f"| {r['accuracy']:.4f} | {r['f1_macro']:.4f} | {r['train_seconds']:.1f} "
                     f"| {r['predict_per_second']:,.0f} | {r['peak_memory_mb']:.0f} "
                     f"| {r['model_mb']:.1f} | {delta} | {ratio} | {speed} |")
    ordinal = [r for r in rows if "mae_mean" in r]
    if ordinal:
        lines += ["", "| corpus | task | method | MAE on the score | MAE of predicting the mean |",
                  "| --- | --- | --- | --- | --- |"]
        lines += [f"| {r['experiment']} | {r['task']} | {r['method']} "
                  f"| {r['mae']:.3f} | {r['mae_mean']:.3f} |" if "mae" in r else
                  f"| {r['experiment']} | {r['task']} | {r['method']} | | {r['mae_mean']:.3f} |"
                  for r in ordinal]
    multi = [r for r in rows if "f1_micro" in r]
    if multi:
        lines += ["", "| corpus | task | method | micro-F1 | macro-F1 | samples-F1 | Hamming loss "
                  "| subset accuracy |", "|" + " --- |" * 8]
        lines += [f"| {r['experiment']} | {r['task']} | {r['method']} | {r['f1_micro']:.4f} "
                  f"| {r['f1_macro']:.4f} | {r['f1_samples']:.4f} | {r['hamming_loss']:.4f} "
                  f"| {r['accuracy']:.4f} |" for r in multi]
    calibrated = [r for r in rows if "ece" in r]
    if calibrated:
        lines += ["", "| corpus | task | method | ECE, calibrated | ECE, uncalibrated scores "
                  "| difference, 95% interval |", "|" + " --- |" * 6]
        lines += [f"| {r['experiment']} | {r['task']} | {r['method']} | {r['ece']:.3f} "
                  f"| {r['ece_uncalibrated']:.3f} | {_interval(r)} |" for r in calibrated]
    return "\n".join(lines)


def _interval(row: dict) -> str:
    """The bootstrap interval of calibrated minus uncalibrated ECE (rows from before it: blank)."""
    if "ece_difference_low" not in row:
        return ""
    return f"{row['ece_difference_low']:+.3f} to {row['ece_difference_high']:+.3f}"


def write_report(rows: list[dict], out: Path, quick: bool) -> str:
    """Write <out>.json and <out>.md; log both and the figures to the MLflow experiment 'bench'."""
    rows = with_ratios(rows)
    table = markdown_table(rows)
    from newstag.tracking import git_commit

    write_json(out.with_suffix(".json"), {"quick": quick, "commit": git_commit(), "results": rows})
    write_text(out.with_suffix(".md"), table + "\n")
    _log_to_mlflow(rows, out, quick)
    return table


def _log_to_mlflow(rows: list[dict], out: Path, quick: bool) -> None:
    import mlflow

    from newstag.tracking import check_reachable, metric_name, mlflow_errors, prepare_store, tracking_uri

    uri = tracking_uri()
    check_reachable(uri)
    prepare_store(uri)  # a fresh store is created under the lock `train` takes too
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("bench")
    with mlflow_errors(uri), mlflow.start_run(run_name="bench-quick" if quick else "bench"):
        for row in rows:
            prefix = (row["experiment"], row["task"], row["method"])
            mlflow.log_metrics({metric_name(*prefix, key): float(row[key]) for key in
                                ("accuracy", "f1_macro", "train_seconds", "predict_per_second",
                                 "peak_memory_mb", "model_mb", "ece", "ece_uncalibrated",
                                 "ece_difference_low", "ece_difference_high",
                                 "f1_micro", "f1_samples", "hamming_loss")
                                if key in row})
        mlflow.log_artifact(str(out.with_suffix(".json")))
        mlflow.log_artifact(str(out.with_suffix(".md")))


def require_bench_extras(methods: list[str] | None = None) -> None:
    """Stop early when a method asked for (all, by default) needs a package that is missing."""
    unknown = sorted(set(methods or []) - set(METHODS))
    if unknown:
        raise NewstagError(f"unknown bench method {', '.join(unknown)}; choose from: {', '.join(METHODS)}")
    for method, module in EXTRAS.items():
        if methods is not None and method not in methods:
            continue
        try:
            __import__(module)
        except ImportError:
            raise NewstagError(f"`{module}` is not installed; run `make bench` (it installs "
                               f"the bench extra) or pip install '.[bench]'") from None


# ---- prediction speed: cold start and the streaming load test --------------------------------

COLD_START_TEXT = "Shares jumped after record profits."


def cold_start(model: str, runs: int = 5) -> dict:
    """Median wall time of `newstag predict --model MODEL "one sentence"` and of a bare
    `python -c "import numpy"`, run alternately so that both see the same load on the machine."""
    import statistics
    import subprocess
    import sys

    commands = {"newstag": [sys.executable, "-m", "newstag", "predict", "--model", model, COLD_START_TEXT],
                "numpy": [sys.executable, "-c", "import numpy"]}
    seconds: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, command in commands.items():
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True)
            seconds[name].append(time.perf_counter() - start)
            if done.returncode != 0:
                raise NewstagError(f"cold start: {name} failed: {done.stderr.strip()[-300:]}")
    newstag, numpy = statistics.median(seconds["newstag"]), statistics.median(seconds["numpy"])
    return {"runs": runs, "newstag_seconds": newstag, "numpy_import_seconds": numpy,
            "ratio_to_numpy_import": newstag / numpy}


def load_test(model: str, articles: int, texts: list[str], jobs: int | None = None) -> dict:
    """Stream `articles` lines (cycling through `texts`) through `newstag predict --input -`.

    Returns articles/s, the sha256 of the output, and `peak_memory_mb`: the largest sum of the
    proportional set sizes of the predict process and its workers, sampled every 0.1 s (pages the
    workers share with the main process count once). Not the child's ru_maxrss: Linux carries the
    parent's high-water mark into a child across fork and exec, so that reported this bench
    process's own size (about 200 MB of scikit-learn and pandas), not predict's. The output is
    read as it comes and checked for count and order, so a run that drops or reorders rows is not
    reported as fast.
    """
    import hashlib
    import os
    import subprocess
    import sys
    import threading

    lines = [" ".join(text.split()) + "\n" for text in texts]
    command = [sys.executable, "-m", "newstag", "predict", "--model", model, "--input", "-"]
    command += ["--jobs", str(jobs)] if jobs else []
    start = time.perf_counter()
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, bufsize=1 << 16)

    def feed():
        try:
            for number in range(articles):
                process.stdin.write(lines[number % len(lines)])
        finally:
            process.stdin.close()

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    memory = _TreeMemory(process.pid)
    count, digest = 0, hashlib.sha256()
    for count, line in enumerate(process.stdout, start=1):
        digest.update(line.encode("utf-8"))
        if json.loads(line)["id"] != count:
            raise NewstagError(f"load test: row {count} came out of order")
    writer.join()
    memory.stop()
    _, status, _ = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0 or count != articles:
        raise NewstagError(f"load test: {count} of {articles} rows tagged; {process.stderr.read()[-500:]}")
    return {"articles": articles, "jobs": jobs, "seconds": seconds,
            "articles_per_second": articles / seconds, "output_sha256": digest.hexdigest(),
            "peak_memory_mb": memory.peak_mb}


class _TreeMemory:
    """Samples the summed proportional set size of a process and its children in a thread."""

    def __init__(self, pid: int, every: float = 0.1):
        import threading

        self.pid, self.every, self.peak_mb = pid, every, 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(self.every):
            self.peak_mb = max(self.peak_mb, sum(_pss_mb(pid) for pid in _tree(self.pid)))

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def _tree(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return [pid]
    return [pid] + [grandchild for child in children for grandchild in _tree(int(child))]


def _pss_mb(pid: int) -> float:
    """A process's proportional set size (its resident memory, shared pages divided among the
    processes sharing them); 0 once it has gone."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def load_markdown(result: dict) -> str:
    """The cold start and streaming figures as a Markdown table."""
    cold = result["cold_start"]
    one, two = result["streaming"]["1"], result["streaming"]["2"]
    return "\n".join([
        "| figure | value |", "| --- | --- |",
        f"| cold start, one article, median of {cold['runs']} | {cold['newstag_seconds']:.2f} s "
        f"({cold['ratio_to_numpy_import']:.2f}× a bare numpy import, {cold['numpy_import_seconds']:.2f} s) |",
        f"| streaming {one['articles']:,} articles, 1 process "
        f"| {one['articles_per_second']:,.0f} articles/s, peak {one['peak_memory_mb']:.0f} MB |",
        f"| streaming {two['articles']:,} articles, 2 workers | {two['articles_per_second']:,.0f} articles/s "
        f"({result['streaming']['speedup']:.2f}×), peak {two['peak_memory_mb']:.0f} MB (all processes) |",
        f"| output of 2 workers identical to 1 process | {result['streaming']['identical_output']} |",
    ]) + "\n"


# ---- the model server's latency ----------------------------------------------------------------

def serve_command(model_uri: str, host: str, port: int) -> list[str]:
    """What `make serve` runs: MLflow's model server over the registered model, in this venv."""
    import sys

    mlflow = str(Path(sys.executable).with_name("mlflow"))
    return [mlflow, "models", "serve", "-m", model_uri, "--env-manager", "local", "--host", host,
            "--port", str(port), "--workers", "1"]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, process, timeout: float = 120) -> float:
    """Seconds until `url` answers; fail if the process exits or the time runs out."""
    import urllib.request

    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if process.poll() is not None:
            raise NewstagError(f"the server exited (code {process.returncode}) before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return time.perf_counter() - start
        except OSError:
            time.sleep(0.2)
    raise NewstagError(f"{url} did not answer within {timeout:.0f} s")


def serve_latency(model_uri: str, text: str, requests: int = 200) -> dict:
    """Start the model server on a free port (as `make serve` does), post `requests` requests of
    one article each, one at a time, and stop it. Latency is per request, client side."""
    import os
    import signal
    import subprocess
    import urllib.request

    from newstag.tracking import lean_server_env, tracking_uri

    port = free_port()
    env = {**lean_server_env(), "MLFLOW_TRACKING_URI": tracking_uri()}
    process = subprocess.Popen(serve_command(model_uri, "127.0.0.1", port), env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        startup = wait_for(f"http://127.0.0.1:{port}/ping", process)
        body = json.dumps({"dataframe_records": [{"id": "1", "text": text}]}).encode()
        seconds = []
        for _ in range(requests):
            request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                             headers={"Content-Type": "application/json"})
            start = time.perf_counter()
            with urllib.request.urlopen(request, timeout=60) as response:
                response.read()
            seconds.append(time.perf_counter() - start)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
    milliseconds = np.array(seconds) * 1000
    return {"model": model_uri, "requests": requests, "startup_seconds": round(startup, 2),
            "p50_ms": round(float(np.percentile(milliseconds, 50)), 2),
            "p95_ms": round(float(np.percentile(milliseconds, 95)), 2),
            "mean_ms": round(float(milliseconds.mean()), 2)}
