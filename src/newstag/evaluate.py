"""Stage 3: score the saved bundle on the test split and write the reports people read."""

import json
import logging

import pandas as pd
from sklearn.metrics import classification_report

from newstag.bundle import load_bundle
from newstag.config import ExperimentConfig
from newstag.explain import NotExplainable, leaks, top_terms
from newstag.files import atomic_path, write_json
from newstag.plots import confusion_figure, save_figure
from newstag.splits import load_task_splits
from newstag.train import bundle_path

log = logging.getLogger(__name__)
MISCLASSIFIED_SAMPLE = 25


def evaluate(config: ExperimentConfig, tracking: bool = True) -> dict:
    """Write reports/<experiment>/ (metrics.json last, as the stage's target) and log to MLflow."""
    saved = [bundle_path(config, fmt) for fmt in ("joblib", "skops")]
    bundle = load_bundle(next((path for path in saved if path.exists()), saved[0]))
    tests = load_task_splits(config, "test")
    out = config.report_dir
    out.mkdir(parents=True, exist_ok=True)
    results = {task: score_task(task, pipeline, tests[task], out)
               for task, pipeline in bundle["pipelines"].items()}
    _write_terms(out, bundle["pipelines"], tests)
    _write_misclassified(out / "misclassified.jsonl", tests, results)
    metrics = {task: {**result["metrics"], "test_rows": len(tests[task])}
               for task, result in results.items()}
    summary = {"experiment": config.name, "tasks": metrics}
    if tracking:
        from newstag.tracking import log_evaluation

        write_json(out / "metrics.json", summary)  # logged with the other files
        summary["mlflow_run_id"] = log_evaluation(config, bundle["metadata"],
                                                  flat_metrics(metrics), out)
    write_json(out / "metrics.json", summary)
    return summary


def score_task(task: str, pipeline, test: pd.DataFrame, out) -> dict:
    """Metrics, a confusion-matrix PNG and the misclassified rows for one task."""
    y_true = test[task].astype(str).tolist()
    y_pred = pipeline.predict(test["text"].tolist()).tolist()
    labels = sorted(set(pipeline.classes_) | set(y_true))
    report = classification_report(y_true, y_pred, labels=labels, output_dict=True,
                                   zero_division=0)
    save_figure(confusion_figure(task, y_true, y_pred, labels), out / f"confusion_{task}.png")
    wrong = [i for i, (t, p) in enumerate(zip(y_true, y_pred, strict=True)) if t != p]
    return {
        "metrics": {
            "accuracy": report["accuracy"],
            "f1_macro": report["macro avg"]["f1-score"],
            "per_class": {label: report[label] for label in labels},
        },
        "wrong": [(i, y_true[i], y_pred[i]) for i in wrong],
    }


def flat_metrics(metrics: dict) -> dict[str, float]:
    """{'topic': {...}} -> {'topic_accuracy': .., 'topic_f1_macro': .., 'topic_f1_sport': ..}."""
    from newstag.tracking import metric_name

    flat = {}
    for task, values in metrics.items():
        flat[metric_name(task, "accuracy")] = values["accuracy"]
        flat[metric_name(task, "f1_macro")] = values["f1_macro"]
        for label, scores in values["per_class"].items():
            flat[metric_name(task, "f1", label)] = scores["f1-score"]
    return flat


def _write_terms(out, pipelines: dict, tests: dict[str, pd.DataFrame]) -> None:
    """top_terms.json: each label's strongest terms, with how often they appear in the test split
    and a leak flag; leaks.json: the flagged ones (a byline or agency name, say, that the model
    learned in place of the topic). A model newstag cannot read gets no terms, not a failure."""
    terms = {}
    for task, pipeline in pipelines.items():
        test = tests[task]
        try:
            terms[task] = top_terms(pipeline, texts=test["text"].tolist(),
                                    labels=test[task].astype(str).tolist())
        except NotExplainable as exc:
            log.warning("task %s: no top terms: %s", task, exc)
    write_json(out / "top_terms.json", terms)
    write_json(out / "leaks.json", {task: leaks(report) for task, report in terms.items()})
    for task, report in terms.items():
        for label, flagged in leaks(report).items():
            log.warning("task %s, label %s: possible leak(s) %s: in over half of its test articles "
                        "and almost none of the others (see leaks.json)", task, label,
                        ", ".join(entry["term"] for entry in flagged))


def _write_misclassified(path, tests: dict[str, pd.DataFrame], results: dict) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for task, result in results.items():
            test = tests[task]
            for index, true, predicted in result["wrong"][:MISCLASSIFIED_SAMPLE]:
                row = {"task": task, "id": test["id"].iloc[index], "true": true,
                       "predicted": predicted, "text": test["text"].iloc[index][:400]}
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def format_summary(summary: dict) -> str:
    """A short table of test scores for people."""
    lines = [f"{'task':<14} {'accuracy':>9} {'macro-F1':>9} {'test rows':>10}"]
    for task, values in summary["tasks"].items():
        lines.append(f"{task:<14} {values['accuracy']:>9.3f} {values['f1_macro']:>9.3f} "
                     f"{values['test_rows']:>10}")
    return "\n".join(lines)
