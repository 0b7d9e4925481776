"""Stage 3: score the saved bundle on the test split and write the reports people read."""

import json
import logging
import math
import os
from pathlib import Path

from newstag.config import ExperimentConfig
from newstag.data.files import atomic_path, write_edited_yaml, write_json
from newstag.data.safe_yaml import load_yaml
from newstag.data.splits import CHUNK_ROWS, by_source, read_manifest, split_chunks, trained_on
from newstag.errors import NewstagError
from newstag.explain import NotExplainable, TermShares, leaks
from newstag.models import multilabel
from newstag.models.bundle import load_bundle, read_sidecar
from newstag.models.calibrate import is_calibrated, threshold_for_precision
from newstag.models.tally import LabelSetTally, TaskTally
from newstag.plots import confusion_figure, coverage_figure, reliability_figure, save_figure
from newstag.report import MISTAKES_NAME, mistake_rows, write_report
from newstag.train import bundle_path

log = logging.getLogger(__name__)


def evaluate(config: ExperimentConfig, tracking: bool = True, target_precision: dict | None = None,
             write_experiment: bool = False) -> dict:
    """Write reports/<experiment>/ (metrics.json last, as the stage's target) and log to MLflow.

    The test split is read a chunk at a time and only counts and sums are kept (TaskTally), so
    memory stays bounded whatever its size. `target_precision` ({task: precision}, or
    {"*": precision} for every task) picks each task's lowest confidence threshold reaching it on
    the validation split; `write_experiment` then writes experiments/<name>.threshold.yaml with
    those min_confidence values.
    """
    if write_experiment and not target_precision:
        raise NewstagError("--write-experiment needs --target-precision (e.g. --target-precision 0.95)")
    if write_experiment:
        check_threshold_yaml(config)
    saved = [bundle_path(config, fmt) for fmt in ("joblib", "skops")]
    path = next((path for path in saved if path.exists()), saved[0])
    bundle = load_bundle(path)
    check_tasks(config, path, list(bundle["pipelines"]))
    check_trained_on(config, path, bundle["metadata"])
    multi = [task for task, pipeline in bundle["pipelines"].items() if multilabel.is_multilabel(pipeline)]
    targets = task_targets(target_precision or {}, list(bundle["pipelines"]), multi)
    thresholds = {task: pick_threshold(task, bundle["metadata"], target) for task, target in targets.items()}
    out = config.report_dir
    out.mkdir(parents=True, exist_ok=True)
    tasks_meta = bundle["metadata"].get("tasks", {})
    tallies = tally_test(config, bundle["pipelines"], tasks_meta, thresholds)
    results = {task: tally.result(out) if isinstance(tally, LabelSetTally) else
               score_task(tally, out, tasks_meta.get(task) or {}, thresholds.get(task))
               for task, tally in tallies.items()}
    _write_terms(out, tallies)
    _write_misclassified(out / "misclassified.jsonl", results)
    write_json(out / MISTAKES_NAME, {task: mistake_rows(tally.pipeline, tally.most_confident_mistakes())
                                     for task, tally in tallies.items()})
    metrics = {task: {**result["metrics"], "test_rows": result["rows"]} for task, result in results.items()}
    summary = {"experiment": config.name, "tasks": metrics}
    if write_experiment:
        summary["threshold_experiment"] = str(write_threshold_yaml(config, thresholds))
    write_report(config, bundle, summary)  # report.html, logged with the other files
    if tracking:
        from newstag.tracking import log_evaluation

        write_json(out / "metrics.json", summary)  # logged with the other files
        sidecar = read_sidecar(path)  # checked again: the registry reads its fields
        summary["mlflow_run_id"] = log_evaluation(config, sidecar, flat_metrics(metrics), out)
    write_json(out / "metrics.json", summary)
    return summary


def check_tasks(config: ExperimentConfig, path: Path, saved: list[str]) -> None:
    """The bundle must have the experiment's tasks: one trained before the file was edited would
    be scored (and its thresholds written) under the wrong names."""
    if sorted(saved) != sorted(config.task_names):
        raise NewstagError(f"{path} has tasks {', '.join(saved)} but {config.path} has "
                           f"{', '.join(config.task_names)}; retrain it (make train EXP={config.path})")


def check_trained_on(config: ExperimentConfig, path: Path, metadata: dict) -> None:
    """The bundle must have been trained on the splits on disk: after the data or the split
    settings change (a new seed, new rows), its training articles can sit in the new test split,
    and scoring it there would flatter it. Bundles from before splits_sha256 are checked by
    their data's sha256 alone."""
    if not trained_on(metadata, read_manifest(config)):
        raise NewstagError(f"{path} was trained on other splits than {config.processed_dir} holds "
                           f"now (the data or the split settings changed), so its training "
                           f"articles may be in the test split; retrain it "
                           f"(make train EXP={config.path}) before evaluating")


def tally_test(config: ExperimentConfig, pipelines: dict, tasks_meta: dict, thresholds: dict) -> dict:
    """Every task's tally over its test split, each source's split read once, chunk by chunk."""
    from tqdm.auto import tqdm

    tallies = {task: new_tally(task, pipeline, tasks_meta.get(task) or {}, thresholds.get(task))
               for task, pipeline in pipelines.items()}
    for source, tasks in by_source(config, tallies):
        chunks = split_chunks(source, "test", CHUNK_ROWS)
        for chunk in tqdm(chunks.in_order(), desc=f"evaluate {', '.join(tasks)}", unit="chunk",
                          total=-(-chunks.groups // chunks.groups_per_chunk), disable=None):
            for task in tasks:
                tallies[task].add(chunk)
    return tallies


def new_tally(task: str, pipeline, meta: dict, target: dict | None) -> TaskTally | LabelSetTally:
    try:
        shares = TermShares(pipeline)
    except NotExplainable as exc:  # a model newstag cannot read gets no terms, not a failure
        log.warning("task %s: no top terms: %s", task, exc)
        shares = None
    if multilabel.is_multilabel(pipeline):
        return LabelSetTally(task, pipeline, shares)
    thresholds = [value for value in (meta.get("min_confidence"), (target or {}).get("threshold"))
                  if value is not None]
    return TaskTally(task, pipeline, thresholds, shares)


def score_task(tally: TaskTally, out, meta: dict | None = None, target: dict | None = None) -> dict:
    """Metrics, a confusion-matrix PNG, and calibration and abstention figures and metrics for one
    task. `meta` is the bundle's metadata for the task; `target` a threshold picked for a target
    precision."""
    task, labels = tally.task, tally.labels()
    report = tally.classification()
    save_figure(confusion_figure(task, tally.confusion(), labels), out / f"confusion_{task}.png")
    return {
        "metrics": {
            "accuracy": report["accuracy"],
            "f1_macro": report["macro avg"]["f1-score"],
            "per_class": {label: report[label] for label in labels},
            **confidence_metrics(tally, out, meta or {}, target),
        },
        "rows": tally.rows,
        "misclassified": tally.misclassified,
    }


def confidence_metrics(tally: TaskTally, out, meta: dict, target: dict | None) -> dict:
    """Calibration (log-loss, Brier, ECE) of the bundle's scores and of the uncalibrated base
    model's, a reliability diagram, and coverage/accuracy at the task's threshold(s)."""
    task, scores = tally.task, tally.scores
    calibration = {name: sums.metrics() for name, sums in scores.items()}
    fallback = "unknown" if is_calibrated(tally.pipeline) else "none"
    calibration["method"] = (meta.get("calibration") or {}).get("method", fallback)
    tables = {name: sums.reliability() for name, sums in scores.items()}
    save_figure(reliability_figure(task, tables, {n: calibration[n]["ece"] for n in tables}),
                out / f"reliability_{task}.png")
    calibration["reliability"] = tables["calibrated"]
    calibration["reliability_uncalibrated"] = tables["uncalibrated"]
    result = {"calibration": calibration}
    marks = {}
    if meta.get("min_confidence") is not None:
        result["abstention"] = scores["calibrated"].answered(meta["min_confidence"])
        marks[f"min_confidence {meta['min_confidence']:g}"] = _point(result["abstention"])
    if target is not None:
        answered = scores["calibrated"].answered(target["threshold"])
        result["target_precision"] = {**target, **_on_test(answered)}
        marks[f"target {target['target']:g} (threshold {target['threshold']:g})"] = \
            _point(result["target_precision"], "test_")
    curves = {"calibrated scores": scores["calibrated"].curve(),
              "uncalibrated scores": scores["uncalibrated"].curve()}
    save_figure(coverage_figure(task, curves, marks), out / f"coverage_{task}.png")
    result["coverage_curve"] = {name.split()[0]: curve_points(*curve) for name, curve in curves.items()}
    return result


def curve_points(coverage, accuracy, points: int = 100) -> list[list[float]]:
    """The coverage curve as at most `points` + 1 [coverage, accuracy] pairs (the last one, all
    answered, always in): what the PNG draws, in metrics.json, at a readable length."""
    step = max(1, math.ceil(len(coverage) / points))
    keep = list(range(0, len(coverage), step))
    if len(coverage) and keep[-1] != len(coverage) - 1:
        keep.append(len(coverage) - 1)
    return [[round(float(coverage[i]), 4), round(float(accuracy[i]), 4)] for i in keep]


def _point(values: dict, prefix: str = "") -> tuple[float, float]:
    accuracy = values[f"{prefix}accuracy"]
    return values[f"{prefix}coverage"], 1.0 if accuracy is None else accuracy


def _on_test(values: dict) -> dict:
    return {"test_coverage": values["coverage"], "test_accuracy": values["accuracy"],
            "test_answered": values["answered"]}


# ---- target precision ---------------------------------------------------------------------------

def parse_target_precision(text: str) -> dict[str, float]:
    """`0.95` (every task) or `topic=0.95,tone=0.9` -> {"*": 0.95} or {"topic": 0.95, ...}.
    An empty value or a task given twice is an error: neither should quietly pick a target."""
    if not text.strip():
        raise NewstagError("--target-precision is empty; give e.g. 0.95 or topic=0.95,tone=0.9")
    targets = {}
    for part in text.split(","):
        task, _, value = part.strip().rpartition("=")
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not 0 < number <= 1:
            raise NewstagError(f"--target-precision: {part.strip()!r} is not a precision in (0, 1]; "
                               f"give e.g. 0.95 or topic=0.95,tone=0.9")
        name = task.strip() or "*"
        if name in targets:
            who = "a precision for every task" if name == "*" else f"task {name!r}"
            raise NewstagError(f"--target-precision gives {who} twice; give one target per task, "
                               f"e.g. 0.95 or topic=0.95,tone=0.9")
        targets[name] = number
    return targets


def task_targets(targets: dict[str, float], tasks: list[str], multi_label=()) -> dict[str, float]:
    """Each single-label task's target ("*": every one). A multi-label task has a threshold per
    label, tuned on validation at training, so a target cannot name it; "*" passes it by."""
    unknown = sorted(set(targets) - set(tasks) - {"*"})
    if unknown:
        raise NewstagError(f"--target-precision names task(s) {', '.join(unknown)} the model does not "
                           f"have (it has: {', '.join(tasks)})")
    named = sorted(set(targets) & set(multi_label))
    if named:
        raise NewstagError(f"--target-precision: task(s) {', '.join(named)} are multi-label; each of "
                           f"their labels has its own threshold, tuned on validation at training; "
                           f"give targets for single-label tasks only")
    chosen = {task: targets.get(task, targets.get("*")) for task in tasks
              if task not in multi_label and targets.get(task, targets.get("*")) is not None}
    if targets and not chosen:
        raise NewstagError("--target-precision: the model has no single-label task to pick a "
                           "threshold for (multi-label tasks have theirs per label)")
    return chosen


def pick_threshold(task: str, metadata: dict, target: float) -> dict:
    """The lowest threshold reaching `target` on the validation split, from the held-out
    validation confidences training stored in the bundle (the model scored them before it was
    refitted on them, so they are not flattered)."""
    calibration = (metadata.get("tasks", {}).get(task) or {}).get("calibration") or {}
    table = calibration.get("validation_confidence")
    if not table and isinstance(calibration.get("reason"), str):  # training could not calibrate
        raise NewstagError(f"task '{task}': the model is not calibrated ({calibration['reason']}), so "
                           f"it has no validation confidences; add training articles and retrain")
    if not table:
        raise NewstagError(f"task '{task}': the model holds no validation confidences (saved before "
                           f"calibration, or with calibration: none); retrain it with calibration")
    try:
        return {"target": target, **threshold_for_precision(table, target)}
    except NewstagError as exc:
        raise NewstagError(f"task '{task}': {exc}") from None


def threshold_yaml_path(config: ExperimentConfig) -> Path:
    return Path(config.path).with_name(f"{config.name}.threshold.yaml")


THRESHOLD_HEADER = "# Written by `newstag evaluate"


def check_threshold_yaml(config: ExperimentConfig) -> None:
    """Refuse before any work a composed experiment (its tasks' settings live in other files)
    and replacing a .threshold.yaml that newstag did not write."""
    if "compose" in load_yaml(config.path):
        raise NewstagError(f"{config.path}: a composed experiment; run --write-experiment on the "
                           f"experiment each task comes from")
    path = threshold_yaml_path(config)
    if not os.access(path.parent, os.W_OK):
        raise NewstagError(f"{path.parent}/: not writable, so {path.name} could not be written; "
                           f"make the folder writable or copy the experiment to one that is")
    head = path.read_text(encoding="utf-8", errors="replace").splitlines()[:2] if path.exists() else []
    if path.exists() and not any(line.startswith(THRESHOLD_HEADER) for line in head):  # (below a schema line)
        raise NewstagError(f"{path}: exists and was not written by newstag; move it away to write "
                           f"the thresholds there")


def write_threshold_yaml(config: ExperimentConfig, thresholds: dict[str, dict]) -> Path:
    """The experiment file with each task's min_confidence set; a new file beside it, written
    atomically (the original is never touched)."""
    check_threshold_yaml(config)

    def set_thresholds(document) -> None:
        for task, chosen in thresholds.items():
            if document["tasks"].get(task) is None:  # `tone:` with no settings
                document["tasks"][task] = {}
            document["tasks"][task]["min_confidence"] = chosen["threshold"]

    path = threshold_yaml_path(config)
    targets = ", ".join(f"{task} {chosen['target']:g}" for task, chosen in thresholds.items())
    header = (f"{THRESHOLD_HEADER} --target-precision` on {config.path}: min_confidence is the lowest\n"
              f"# threshold reaching the target precision ({targets}) on the validation split.\n"
              f"# Train it with `make all EXP={path}`.\n")
    write_edited_yaml(config.path, path, set_thresholds, header)
    return path


def flat_metrics(metrics: dict) -> dict[str, float]:
    """{'topic': {...}} -> {'test/topic/accuracy': .., 'test/topic/f1_macro': ..,
    'test/topic/f1/sport': .., ...} and the main metric, test/mean/f1_macro (the mean over tasks
    of the macro-F1, which promotion compares)."""
    from newstag.tracking import MAIN_METRIC, metric_name

    flat = {}
    for task, values in metrics.items():
        flat[metric_name("test", task, "accuracy")] = values["accuracy"]
        flat[metric_name("test", task, "f1_macro")] = values["f1_macro"]
        for label, scores in values["per_class"].items():
            flat[metric_name("test", task, "f1", label)] = scores["f1-score"]
        if values.get("multi_label"):  # micro/samples F1, Hamming loss, per-label P/R
            flat.update(multilabel.flat_metrics(task, values))
        for kind, prefix in (("calibrated", ()), ("uncalibrated", ("uncalibrated",))):
            for name, value in values.get("calibration", {}).get(kind, {}).items():
                flat[metric_name("test", task, *prefix, name)] = value
        for section, prefix in (("abstention", "abstain"), ("target_precision", "target")):
            for name, value in values.get(section, {}).items():
                if isinstance(value, int | float) and math.isfinite(value):
                    flat[metric_name("test", task, prefix, name)] = value
    if metrics:
        flat[MAIN_METRIC] = sum(values["f1_macro"] for values in metrics.values()) / len(metrics)
    return flat


def _write_terms(out, tallies: dict) -> None:
    """top_terms.json: each label's strongest terms, with how often they appear in the test split
    and a leak flag; leaks.json: the flagged ones (a byline or agency name, say, that the model
    learned in place of the topic)."""
    terms = {task: tally.shares.report() for task, tally in tallies.items() if tally.shares is not None}
    write_json(out / "top_terms.json", terms)
    write_json(out / "leaks.json", {task: leaks(report) for task, report in terms.items()})
    for task, report in terms.items():
        for label, flagged in leaks(report).items():
            log.warning("task %s, label %s: possible leak(s) %s: in over half of its test articles "
                        "and almost none of the others (see leaks.json)", task, label,
                        ", ".join(entry["term"] for entry in flagged))


def _write_misclassified(path, results: dict) -> None:
    """The first misclassified test articles of each task, in file order."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for result in results.values():
            for row in result["misclassified"]:
                handle.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")


def _figure(value) -> str:
    """Three decimals, or a dash where the figure does not apply (ECE of a multi-label task)."""
    return "—" if value is None or value != value else f"{value:.3f}"


def format_summary(summary: dict) -> str:
    """A short table of test scores for people."""
    lines = [f"{'task':<14} {'accuracy':>9} {'macro-F1':>9} {'ECE':>6} {'ECE raw':>8} {'test rows':>10}"]
    for task, values in summary["tasks"].items():
        calibration = values.get("calibration", {})
        ece, raw = (_figure(calibration.get(kind, {}).get("ece")) for kind in ("calibrated", "uncalibrated"))
        lines.append(f"{task:<14} {values['accuracy']:>9.3f} {values['f1_macro']:>9.3f} {ece:>6} "
                     f"{raw:>8} {values['test_rows']:>10}")
    for task, values in summary["tasks"].items():
        if values.get("multi_label"):  # its accuracy above is exact match of the label set
            lines.append(f"{task}: multi-label: micro-F1 {values['f1_micro']:.3f}, samples-F1 "
                         f"{values['f1_samples']:.3f}, Hamming loss {values['hamming_loss']:.4f} "
                         f"(accuracy: the whole label set right)")
        for section, name in (("abstention", "min_confidence"), ("target_precision", "target")):
            if section in values:
                found = values[section]
                coverage = found.get("coverage", found.get("test_coverage"))
                accuracy = found.get("accuracy", found.get("test_accuracy"))
                extra = (f" (target {found['target']!r}: validation precision "
                         f"{found['validation_precision']:.3f}, coverage {found['validation_coverage']:.3f})"
                         if section == "target_precision" else "")
                shown = "none answered" if accuracy is None else f"accuracy {accuracy:.3f}"
                if section == "target_precision" and accuracy is not None and accuracy < found["target"]:
                    shown += (" (below the target on test: the threshold is picked on the validation "
                              "split, and a larger one gives a steadier threshold)")
                lines.append(f"{task}: {name} threshold {found['threshold']:g}{extra}: test coverage "
                             f"{coverage:.3f}, {shown}")
    if "threshold_experiment" in summary:
        lines.append(f"written {summary['threshold_experiment']}")
    return "\n".join(lines)
