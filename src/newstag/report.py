"""reports/<experiment>/report.html: one self-contained page per evaluation, for people.

Everything evaluate measured, on one page an editor can open from a mail attachment: metrics per
task and label, the confusion matrix, reliability diagram and coverage-accuracy curve (a
multi-label task's F1 per label instead; PNG files inlined as data URIs, so the page needs nothing
beside it), the top terms per label with leak flags (and which labels had too few test articles
to judge), the most confident mistakes, the first label issues from `newstag review`, and the
label counts per split. The page is rendered by Jinja2 with autoescaping, because article text and ids are
untrusted input. Sections whose inputs are missing say so rather than fail: the page is written
whatever else an evaluation produced.
"""

import base64
import json
import logging
from pathlib import Path

import numpy as np

from newstag.data.files import atomic_path
from newstag.errors import NewstagError

log = logging.getLogger(__name__)
REPORT_NAME = "report.html"
MISTAKES_NAME = "mistakes.json"
ISSUES_NAME = "label_issues.jsonl"
REVIEWED_NAME = "label_issues.tasks.json"  # the tasks reviewed, with or without issues
FIGURES = (("confusion", "Confusion matrix"), ("reliability", "Reliability diagram"),
           ("coverage", "Coverage and accuracy"))
# A multi-label task has no one chosen label per article, so neither a confusion matrix nor a
# confidence to plot: evaluate draws its F1 per label instead.
MULTI_LABEL_FIGURES = (("label_f1", "F1 per label"),)
WIDE_CONFUSION = 8  # a confusion matrix of more labels takes the whole row, to stay legible
EXCERPT_CHARS = 300
EXPLAIN_TERMS = 5
MAX_JSON_BYTES = 64 << 20  # top_terms.json / leaks.json larger than this are not read
SHOWN_ISSUES = 50  # per task; the review sorts them, most doubtful first
SCORES = {"accuracy": "accuracy", "f1_macro": "macro-F1", "f1_micro": "micro-F1",
          "f1_samples": "samples-F1", "hamming_loss": "Hamming loss"}
MULTI_LABEL_SCORES = ("f1_micro", "f1_macro", "f1_samples", "hamming_loss", "accuracy")


def write_report(config, bundle: dict, summary: dict) -> Path:
    """Render the page from what evaluate has in hand and the files it wrote; atomic."""
    out = Path(config.report_dir)
    context = report_context(config, bundle, summary, out)
    html = render(context)
    path = out / REPORT_NAME
    with atomic_path(path) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return path


def refresh_report(config) -> Path | None:
    """Rebuild the page of an experiment already evaluated (after `newstag review` adds label
    issues); None when there is no evaluation to rebuild from."""
    from newstag.models.bundle import load_bundle
    from newstag.train import bundle_path

    metrics = Path(config.report_dir) / "metrics.json"
    model = bundle_path(config)
    if not metrics.is_file() or not model.is_file():
        return None
    summary = _read_json(metrics)
    if not isinstance(summary, dict):
        return None
    return write_report(config, load_bundle(model), summary)


def render(context: dict) -> str:
    from jinja2 import Environment, PackageLoader

    # autoescape on for every template: the .j2 suffix is not one Jinja2 escapes by default
    env = Environment(loader=PackageLoader("newstag", "templates"), autoescape=True,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = _number
    env.filters["pct"] = _percent
    env.filters["labels"] = _labels
    env.filters["term"] = _shown_term
    return env.get_template("report.html.j2").render(**context)


def report_context(config, bundle: dict, summary: dict, out: Path) -> dict:
    """Everything the template shows, as plain values."""
    found = {"terms": _by_task(_read_json(out / "top_terms.json")),
             "mistakes": _by_task(_read_json(out / MISTAKES_NAME)),
             "leaks": leak_flags(_read_json(out / "leaks.json")),
             "issues": issue_file(out / ISSUES_NAME)}
    metrics = summary.get("tasks", {}) if isinstance(summary, dict) else {}
    tasks = [task_context(config, task, pipeline, metrics.get(task) or {}, found, out)
             for task, pipeline in bundle["pipelines"].items()]
    metadata = bundle.get("metadata", {})
    return {"experiment": config.name, "description": getattr(config, "description", "") or "",
            "tasks": tasks, "model": model_summary(config, metadata),
            "issues_found": found["issues"] is not None, "leaks_found": found["leaks"] is not None}


def task_context(config, task: str, pipeline, metrics: dict, found: dict, out: Path) -> dict:
    """One task's section: its scores, figures, terms, mistakes, label issues and label counts."""
    from newstag.models.multilabel import is_multilabel

    multi = bool(metrics.get("multi_label")) or is_multilabel(pipeline)
    leaks, mistakes = found["leaks"], found["mistakes"].get(task)
    issues, totals = found["issues"] or ({}, {})
    return {
        "name": task,
        "multi_label": multi,
        "metrics": metrics,
        "scores": score_rows(metrics, multi),
        "figures": figures(out, task, multi, len(metrics.get("per_class") or {})),
        "terms": term_table(found["terms"].get(task), (leaks or {}).get(task), leaks is not None),
        "leak_check": leak_check(metrics),
        "mistakes": mistakes if isinstance(mistakes, list) else None,
        "issues": issues.get(task) if found["issues"] is not None else None,
        "issues_total": totals.get(task, 0),
        "distribution": label_distribution(config, task),
    }


def score_rows(metrics: dict, multi: bool) -> list[dict]:
    """The task's scores under readable names, headline first. A multi-label task's accuracy is
    exact match of the whole label set, far below its F1 scores, so the page says so."""
    order = MULTI_LABEL_SCORES if multi else ("accuracy", "f1_macro")
    names = {**SCORES, "accuracy": "accuracy (exact match of the label set)"} if multi else SCORES
    rows = [{"name": names[key], "value": metrics[key], "digits": 4 if key == "hamming_loss" else 3}
            for key in order if key in metrics]
    shown = set(order) | {"test_rows"}
    return rows + [{"name": SCORES.get(key, key), "value": value, "digits": 3}
                   for key, value in metrics.items() if key not in shown
                   and isinstance(value, int | float) and not isinstance(value, bool)]


def figures(out: Path, task: str, multi: bool, labels: int) -> list[dict]:
    """The task's PNGs as data URIs; a confusion matrix of many labels is marked wide."""
    kinds = MULTI_LABEL_FIGURES if multi else FIGURES
    return [{"title": title, "src": image_uri(out / f"{kind}_{task}.png"),
             "wide": kind == "label_f1" or (kind == "confusion" and labels > WIDE_CONFUSION)}
            for kind, title in kinds]


# ---- inputs -------------------------------------------------------------------------------------

def image_uri(path: Path) -> str | None:
    """A PNG as a data URI, or None when evaluate did not write it."""
    if not path.is_file():
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _read_json(path: Path):
    """A JSON file's contents, or None when it is absent, too large or not JSON (the page then
    says "not available" rather than failing)."""
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            log.warning("%s: larger than %d MB; not shown in the report", path, MAX_JSON_BYTES >> 20)
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("%s: cannot be read (%s); not shown in the report", path, exc)
        return None


def _by_task(data) -> dict:
    """{task: ...} from a file that may wrap it as {"tasks": {...}}."""
    if isinstance(data, dict) and isinstance(data.get("tasks"), dict):
        data = data["tasks"]
    return data if isinstance(data, dict) else {}


def _term(item) -> dict | None:
    """One top term from any of the shapes the files use: "term", ["term", weight], or
    {"term": ..., "weight": ..., "leak": ...}."""
    if isinstance(item, str):
        return {"term": item, "weight": None, "leak": False, "why": ""}
    if isinstance(item, list | tuple) and item:
        weight = item[1] if len(item) > 1 and isinstance(item[1], int | float) else None
        return {"term": str(item[0]), "weight": weight, "leak": False, "why": ""}
    if isinstance(item, dict) and (item.get("term") or item.get("feature")) is not None:
        weight = next((item[k] for k in ("weight", "coef", "contribution", "score")
                       if isinstance(item.get(k), int | float)), None)
        return {"term": str(item.get("term") or item.get("feature")), "weight": weight,
                "leak": bool(item.get("leak")), "why": _why(item)}
    return None


def _why(item: dict) -> str:
    """A leak's evidence as short text: the fields beside the term (shares, reason)."""
    if isinstance(item.get("reason"), str):
        return item["reason"]
    parts = [f"{key} {_number(value)}" for key, value in item.items()
             if key not in ("term", "feature", "label", "leak", "weight", "coef")
             and isinstance(value, int | float) and not isinstance(value, bool)]
    return ", ".join(parts)


def leak_flags(data) -> dict | None:
    """{task: {label: {term: why}}} from leaks.json, or None when there is no such file.
    Accepts {task: {label: [terms]}} and {task: [{"label", "term", ...}]}."""
    if data is None:
        return None
    flags: dict = {}
    for task, entries in _by_task(data).items():
        labels = flags.setdefault(task, {})
        if isinstance(entries, dict):
            pairs = [(label, item) for label, items in entries.items()
                     for item in (items if isinstance(items, list) else [])]
        elif isinstance(entries, list):
            pairs = [(item.get("label"), item) for item in entries if isinstance(item, dict)]
        else:
            continue
        for label, item in pairs:
            term = _term(item)
            if term is not None:
                labels.setdefault(str(label), {})[term["term"]] = term["why"]
    return flags


def term_table(terms, leaks: dict | None, have_leaks: bool) -> list[dict] | None:
    """Per label: its top terms, each flagged when leaks.json (or the term itself) says so."""
    if not isinstance(terms, dict):
        return None
    rows = []
    for label, items in terms.items():
        flagged = (leaks or {}).get(str(label), {})
        shown = []
        for item in items if isinstance(items, list) else []:
            term = _term(item)
            if term is None:
                continue
            if term["term"] in flagged:
                term = {**term, "leak": True, "why": flagged[term["term"]] or term["why"]}
            shown.append(term)
        rows.append({"label": str(label), "terms": shown, "checked": have_leaks})
    return rows


def leak_check(metrics: dict) -> dict | None:
    """The labels whose leak check could not be judged, and why: newstag.explain judges a label's
    terms only with LEAK_MIN_IN_LABEL test articles of the label and LEAK_MIN_OTHERS of the
    others, since shares of fewer say nothing. leaks.json does not say which were judged; the
    test rows and per-label support in the metrics do. None when those are unknown."""
    try:
        from newstag.explain import LEAK_MIN_IN_LABEL, LEAK_MIN_OTHERS
    except ImportError:  # as for explanations: the page builds without newstag.explain
        return None
    rows, per_label = metrics.get("test_rows"), metrics.get("per_class")
    if not isinstance(rows, int) or not isinstance(per_label, dict) or not per_label:
        return None
    unjudged = {}
    for label, values in per_label.items():
        mine = int((values or {}).get("support") or 0)
        few = [f"{count} test articles {who}" for count, least, who in
               ((mine, LEAK_MIN_IN_LABEL, "with the label"), (rows - mine, LEAK_MIN_OTHERS, "without it"))
               if count < least]
        if few:
            unjudged[str(label)] = " and ".join(few)
    return {"labels": unjudged, "all": len(unjudged) == len(per_label), "rows": rows,
            "min_in_label": LEAK_MIN_IN_LABEL, "min_others": LEAK_MIN_OTHERS}


def read_issues(path: Path, limit: int | None = None) -> dict | None:
    """label_issues.jsonl (written by `newstag review`) grouped by task, the first `limit` rows of
    each (all when None), a reviewed task without issues as an empty list (from
    label_issues.tasks.json beside it); None when absent."""
    found = issue_file(path, limit)
    return None if found is None else found[0]


def issue_file(path: Path, limit: int | None = SHOWN_ISSUES) -> tuple[dict, dict] | None:
    """read_issues' rows and each task's number of rows in the file: the page shows the first
    `limit` of a task (1,048 on 20 Newsgroups multi-label made a page 30,000 pixels long) and
    says how many more the file has."""
    if not path.is_file():
        return None
    grouped: dict = {str(task): [] for task in reviewed_tasks(path)}
    totals: dict = {}
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if not isinstance(row, dict):
                continue
            task = str(row.get("task"))
            totals[task] = totals.get(task, 0) + 1
            rows = grouped.setdefault(task, [])
            if limit is None or len(rows) < limit:
                rows.append(row)
    return grouped, totals


def reviewed_tasks(issues: Path) -> list:
    """The tasks `newstag review` has written into `issues` (label_issues.jsonl)."""
    try:
        reviewed = json.loads((issues.parent / REVIEWED_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return list(reviewed) if isinstance(reviewed, dict) else []


def label_distribution(config, task: str) -> dict | None:
    """Label counts per split from the manifest of the data the task was trained on."""
    from newstag.config import task_source
    from newstag.data.splits import read_manifest

    try:
        splits = read_manifest(task_source(config, task))["splits"]
    except (NewstagError, OSError):
        return None
    names = [name for name in ("train", "validation", "test") if name in splits] + \
        sorted(set(splits) - {"train", "validation", "test"})
    counts = {name: (splits[name].get("labels") or {}).get(task) or {} for name in names}
    labels = sorted({str(label) for values in counts.values() for label in values})
    return {"splits": names, "rows": {name: splits[name].get("rows") for name in names},
            "labels": [{"label": label, "counts": [counts[name].get(label, 0) for name in names]}
                       for label in labels]}


def model_summary(config, metadata: dict) -> dict:
    """What the bundle says about itself, and the sha256 its sidecar recorded."""
    from newstag.card import model_description
    from newstag.models.bundle import read_sidecar
    from newstag.train import bundle_path

    try:
        sha256 = read_sidecar(bundle_path(config))["sha256"]
    except (NewstagError, OSError):  # missing or damaged: the page says so rather than failing
        sha256 = "unknown"
    return {"file": str(bundle_path(config)), "sha256": sha256,
            "versions": metadata.get("versions", {}),
            "run": (metadata.get("mlflow") or {}).get("run_id") or "none",
            "tasks": {task: {"model": (info or {}).get("model", {}),
                             "described": model_description(metadata, task),
                             "calibration": ((info or {}).get("calibration") or {}).get("method", "none"),
                             "min_confidence": (info or {}).get("min_confidence")}
                      for task, info in metadata.get("tasks", {}).items()}}


# ---- the most confident mistakes ----------------------------------------------------------------

def mistake_rows(pipeline, mistakes: list[dict]) -> list[dict]:
    """The most confident mistakes (newstag.models.tally) as the page shows them: an excerpt of
    each article and the terms that pushed it toward the wrong label."""
    explained = explanations(pipeline, [row["text"] for row in mistakes],
                             [str(row.get("label", row.get("predicted"))) for row in mistakes])
    return [{**row, "text": excerpt(row["text"]), "terms": explained[n] if explained else None}
            for n, row in enumerate(mistakes)]


def explanations(pipeline, texts: list[str], labels: list[str] | None = None) -> list[list] | None:
    """Each text's strongest terms toward `labels` (its predicted label when None), from
    `newstag.explain` when it offers `explain_texts(pipeline, texts, top=N, labels=...)` (a list
    per text of [term, contribution]); None when it does not, so the page still builds without."""
    if not texts:
        return None
    try:
        from newstag.explain import explain_texts
    except (ImportError, AttributeError):
        return None
    try:
        found = explain_texts(pipeline, texts, top=EXPLAIN_TERMS, labels=labels)
    except (TypeError, ValueError, AttributeError, NewstagError) as exc:
        log.warning("explanations not shown in the report: %s", exc)
        return None
    rows = []
    for terms in list(found)[:len(texts)]:
        shown = [_term(item) for item in (terms if isinstance(terms, list | tuple) else [])]
        rows.append([term for term in shown if term is not None][:EXPLAIN_TERMS])
    return rows if len(rows) == len(texts) else None


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " …"


# ---- formatting ---------------------------------------------------------------------------------

def _shown_term(term) -> str:
    """A term as the page shows it, a character n-gram's leading or trailing space as ␣: ' film',
    'film' and 'film ' are three features that HTML would show alike."""
    text, kind = str(term), ""
    for prefix in ("word:", "char:"):  # a union's feature names start with their kind
        if text.startswith(prefix):
            kind, text = prefix, text[len(prefix):]
            break
    core = text.strip(" ")
    if core == text or not core:
        return kind + text
    lead, trail = len(text) - len(text.lstrip(" ")), len(text) - len(text.rstrip(" "))
    return kind + "␣" * lead + core + "␣" * trail


def _labels(value) -> str:
    """A label, or a multi-label task's list of them, as text."""
    return ", ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


def _number(value, digits: int = 3) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "–" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}" if np.isfinite(value) else "–"


def _percent(value) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, int | float) and np.isfinite(value) else "–"
