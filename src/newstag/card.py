"""The model card: a Markdown page written beside every bundle, and `newstag info` that prints it.

A bundle says what it predicts; the card says what it was trained on, how it was scored, what
its confidence means and where it is weak, for whoever picks the file up later. The weaknesses
are derived, not written by hand: a label whose strongest terms are mostly function words
("not", "had", "but") has learnt a writing style rather than a subject, and the card says so.
This module does not import MLflow (`newstag info` must work where only prediction does).
"""

import json
from pathlib import Path

from newstag.data.files import atomic_path
from newstag.errors import NewstagError

CARD_NAME = "MODEL_CARD.md"
TOP_TERMS = 10
STOPWORD_SHARE = 0.5  # a label whose top terms are at least this share stop words gets a note
SMALL_TRAINING = 1000


def card_path(bundle: str | Path) -> Path:
    return Path(bundle).with_name(CARD_NAME)


def write_model_card(config, sidecar: dict, pipelines: dict, bundle: Path) -> Path:
    """Write models/<experiment>/MODEL_CARD.md atomically; return its path."""
    from newstag.config import task_source
    from newstag.data.splits import read_manifest
    from newstag.explain import NotExplainable, top_terms

    manifests = {task: read_manifest(task_source(config, task)) for task in config.task_names}
    sources = {task: _source(task_source(config, task)) for task in config.task_names}
    terms = {}
    for task, pipeline in pipelines.items():
        try:
            terms[task] = {label: [entry["term"] for entry in entries]
                           for label, entries in top_terms(pipeline, TOP_TERMS).items()}
        except (NotExplainable, AttributeError, ValueError, IndexError):  # no per-label weights
            terms[task] = {}
    text = model_card(sidecar, manifests, sources, terms, Path(bundle).name)
    path = card_path(bundle)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def _source(config) -> str:
    data = config.data
    if data is None:
        return "composed"
    return f"known corpus `{data.dataset}`" if data.dataset else f"file `{data.path}`"


def model_card(sidecar: dict, manifests: dict, sources: dict, terms: dict, file_name: str) -> str:
    """The card's Markdown, from the sidecar, the data manifests and each label's top terms."""
    config = sidecar.get("config", {})
    lines = [f"# Model card: {sidecar.get('experiment', 'newstag model')}", ""]
    if config.get("description"):
        lines += [config["description"], ""]
    lines += ["## Intended use", "",
              "Tagging news articles (English prose like the training data) with the labels below, "
              "to sort, route or monitor articles, with a person checking what matters. "
              + _answers(sidecar) + " Not for text unlike the training data (other languages, other "
              "kinds of writing, other periods), nor for decisions about people without review.", ""]
    lines += _data_section(sidecar, manifests, sources)
    lines += _metrics_section(sidecar)
    lines += _limits_section(sidecar, manifests, terms)
    versions = sidecar.get("versions", {})
    lines += ["## Versions", "",
              f"- bundle: `{file_name}`, format {sidecar.get('format', '?')} "
              f"v{sidecar.get('format_version', '?')}",
              f"- bundle sha256: `{sidecar.get('sha256', 'unknown')}`",
              *(f"- {name} {version}" for name, version in sorted(versions.items())),
              f"- data sha256: `{sidecar.get('data_sha256', 'unknown')}`",
              f"- MLflow run: `{(sidecar.get('mlflow') or {}).get('run_id') or 'none (not tracked)'}`", ""]
    return "\n".join(lines)


def is_multi_label(sidecar: dict, task: str) -> bool:
    """Whether the sidecar's task is multi-label (labels by per-label thresholds, no min_confidence)."""
    meta = sidecar.get("tasks", {}).get(task) or {}
    settings = ((sidecar.get("config") or {}).get("tasks") or {}).get(task)
    return bool((meta.get("model") or {}).get("multi_label")
                or (isinstance(settings, dict) and settings.get("multi_label")))


def _split_tasks(sidecar: dict) -> tuple[list[str], list[str]]:
    """The sidecar's tasks: (single-label, multi-label)."""
    tasks = list(sidecar.get("tasks", {}))
    multi = [task for task in tasks if is_multi_label(sidecar, task)]
    return [task for task in tasks if task not in multi], multi


def _names(tasks: list[str]) -> str:
    return ", ".join(tasks)


def _answers(sidecar: dict) -> str:
    """What an answer is: one label or `uncertain` (single-label tasks), or a set of labels chosen
    by per-label thresholds (multi-label tasks)."""
    single, multi = _split_tasks(sidecar)
    text = []
    if single or not multi:
        text.append(("Each tag" if not multi else f"Each tag of {_names(single)}") + " comes with a "
                    "probability; below a task's `min_confidence` the answer is `uncertain`.")
    if multi:
        text.append(f"{_names(multi)} {'is' if len(multi) == 1 else 'are'} multi-label: an article "
                    "gets every label whose score reaches that label's own threshold (tuned on the "
                    "validation split), and at least one label, each with its probability; "
                    "`min_confidence` and `uncertain` do not apply.")
    return " ".join(text)


def _data_section(sidecar: dict, manifests: dict, sources: dict) -> list[str]:
    lines = ["## Data", ""]
    for task in sidecar.get("tasks", {}):
        splits = manifests.get(task, {}).get("splits", {})
        rows = ", ".join(f"{name} {info.get('rows', 0):,}" for name, info in splits.items())
        lines += [f"### {task}", "", f"- source: {sources.get(task, 'unknown')}",
                  f"- rows per split: {rows}", *(["- multi-label: articles per label below; an "
                                                  "article can carry several labels"]
                                                if is_multi_label(sidecar, task) else []), "",
                  "| label | " + " | ".join(splits) + " |", "| --- |" + " --- |" * len(splits)]
        counts = {name: (info.get("labels") or {}).get(task) or {} for name, info in splits.items()}
        for label in sorted({label for values in counts.values() for label in values}):
            lines.append(f"| {_cell(label)} | " + " | ".join(str(counts[name].get(label, 0))
                                                            for name in splits) + " |")
        lines.append("")
    return lines


def _metrics_section(sidecar: dict) -> list[str]:
    lines = ["## Metrics and how they were measured", "",
             "Validation scores from training: with a `grid`, each candidate was fitted on the train "
             "split and scored on the validation split, and the best was refitted on train + "
             "validation; with `classifier: auto` or a `search:`, the scores are the mean over "
             "cross-validation folds of train + validation. So these figures chose the model and "
             "flatter it a little. The unbiased figures are evaluate's, on the test split that "
             "training never reads: `reports/<experiment>/metrics.json` and `report.html`.", "",
             "| task | model | chosen parameters | validation accuracy | validation macro-F1 | "
             "calibration |", "| --- | --- | --- | --- | --- | --- |"]
    single, multi = _split_tasks(sidecar)
    for task, info in sidecar.get("tasks", {}).items():
        validation = info.get("validation") or {}
        calibration = info.get("calibration") or {}
        accuracy = _score(validation.get("accuracy")) if task not in multi else \
            f"– (multi-label; micro-F1 {_score(validation.get('f1_micro'))})"
        lines.append(f"| {task} | {model_description(sidecar, task)} | "
                     f"{_cell(_params(info.get('best_params')))} | "
                     f"{accuracy} | {_score(validation.get('f1_macro'))} | "
                     f"{_calibration(calibration)} |")
    lines.append("")
    if single:
        lines += _calibration_note(sidecar, single)
    for task in multi:
        lines += _multi_label_note(task, sidecar["tasks"][task])
    return lines


def _calibration_note(sidecar: dict, tasks: list[str]) -> list[str]:
    """How single-label tasks' probabilities are calibrated, and their min_confidence."""
    return ["Calibration: the classifier is wrapped in scikit-learn's `CalibratedClassifierCV` "
            "(one model fitted on all rows, a sigmoid, isotonic, temperature or top-label calibrator "
            "fitted on its held-out fold scores), the method chosen by validation log-loss (\"none\": the "
            "model's own probabilities did best; with classifier auto, only methods that keep its "
            "decisions compete); a task's probability is then meant to match how often such a tag is "
            "right. `min_confidence` per task: "
            + ", ".join(f"{task} {_threshold((sidecar['tasks'][task] or {}).get('min_confidence'))}"
                        for task in tasks) + ".", ""]


def _multi_label_note(task: str, info: dict) -> list[str]:
    """How a multi-label task chooses its labels, and each label's threshold tuned on validation."""
    lines = [f"Multi-label task {task}: one linear model per label (one-vs-rest). Each label's "
             "threshold on its model's margin was tuned on the validation split (the one giving "
             "that label's best validation F1; 0, the plain rule, when the label had no validation "
             "article, when 0 did as well, or when even the best threshold's validation F1 was under "
             "0.5), and a Platt sigmoid fitted on the "
             "validation margins turns the margin into the label's probability; both were kept when "
             "the model was refitted on train + validation. An article gets every label whose margin "
             "reaches its threshold, and at least one: when none does, the label nearest its "
             "threshold. `newstag predict` gives the chosen labels with their probabilities. "
             "`min_confidence` and `uncertain` do not apply to this task.", ""]
    labels = ((info.get("calibration") or {}).get("labels")) or {}
    if isinstance(labels, dict) and labels:
        lines += ["| label | threshold (margin) | validation F1 at it | at 0 | validation articles |",
                  "| --- | --- | --- | --- | --- |"]
        for label, tuned in labels.items():
            tuned = tuned if isinstance(tuned, dict) else {}
            articles = tuned.get("validation_articles")
            lines.append(f"| {_cell(label)} | {_score(tuned.get('threshold'))} | "
                         f"{_score(tuned.get('validation_f1'))} | "
                         f"{_score(tuned.get('validation_f1_at_0'))} | "
                         f"{articles if isinstance(articles, int) else '–'} |")
        lines.append("")
    return lines


def _limits_section(sidecar: dict, manifests: dict, terms: dict) -> list[str]:
    notes = []
    for task in sidecar.get("tasks", {}):
        notes += stopword_notes(task, terms.get(task) or {})
        train = manifests.get(task, {}).get("splits", {}).get("train", {})
        if 0 < train.get("rows", 0) < SMALL_TRAINING:
            notes.append(f"{task}: trained on {train['rows']} articles; expect its scores to vary "
                         f"by several points on new data.")
        counts = (train.get("labels") or {}).get(task) or {}
        if counts and max(counts.values()) >= 5 * max(min(counts.values()), 1):
            rare = min(counts, key=counts.get)
            notes.append(f"{task}: labels are unbalanced (label '{rare}' has {counts[rare]} training "
                         f"articles, the largest {max(counts.values())}); rare labels are less reliable.")
    notes.append(_features_note(sidecar))
    data = (sidecar.get("config") or {}).get("data") or {}
    if data.get("split_column"):
        notes.append(f"The test split is the one the data's `{data['split_column']}` column gives; "
                     f"validation was drawn from the training rows. When the test rows are later "
                     f"(a date split), expect test accuracy, and the calibrated probabilities' "
                     f"fit, below validation's.")
    return ["## Known limits", "", *(f"- {note}" for note in notes), ""]


def _features_note(sidecar: dict) -> str:
    """What the tasks' features can and cannot see: words, and characters for word+char tasks."""
    kinds = {str(((meta or {}).get("model") or {}).get("features", "word"))
             for meta in sidecar.get("tasks", {}).values()}
    seen = "word and character n-grams" if any("char" in kind for kind in kinds) else "word n-grams"
    return (f"The tasks see TF-IDF {seen} (and the features the table names): no word order beyond "
            f"n-grams, no knowledge of events after the training data, sarcasm and quotes read "
            f"literally. The top terms in reports/<experiment>/ show what each label leans on: "
            f"check them for names, signatures or headers the labels should not depend on.")


def stopword_notes(task: str, terms: dict[str, list[str]]) -> list[str]:
    """One note per label whose top terms are mostly English stop words (scikit-learn's list):
    such a label is told apart by style, not subject, and breaks on text written otherwise."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    notes = []
    for label, top in terms.items():
        words = [_bare(term) for term in top[:TOP_TERMS]]
        stop = [word for word in words if word in ENGLISH_STOP_WORDS]
        if words and len(stop) / len(words) >= STOPWORD_SHARE:
            notes.append(f"{task}: label '{label}' leans on function words ({', '.join(stop)}: "
                         f"{len(stop)} of its {len(words)} strongest terms are stop words); it "
                         f"follows how articles are written more than what they say.")
    return notes


def _bare(term: str) -> str:
    """`word:not` / `word__not` / `negation:not_rise` -> the word itself, lower-cased."""
    return str(term).rsplit("__", 1)[-1].rsplit(":", 1)[-1].lower()


def _params(params) -> str:
    return ", ".join(f"{key}={value}" for key, value in (params or {}).items()) or "defaults"


def _score(value) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "–"


def _calibration(calibration: dict) -> str:
    """The method with its validation log-loss, or, when training could not calibrate (a label
    with one training example), the reason: "none" alone would read as "none did best"."""
    method = calibration.get("method", "none")
    loss = (calibration.get("validation_log_loss") or {}).get(method)
    if isinstance(calibration.get("reason"), str):
        return f"{method} (not calibrated: {calibration['reason']})"
    return method + (f" (validation log-loss {loss:.3f})" if isinstance(loss, int | float) else "")


def model_description(sidecar: dict, task: str) -> str:
    """"logreg on word + negation features": the classifier and every kind of feature the task's
    settings add (negation scopes, lexicons), as its top terms and explanations name them."""
    model = (sidecar.get("tasks", {}).get(task) or {}).get("model") or {}
    settings = ((sidecar.get("config") or {}).get("tasks") or {}).get(task) or {}
    kinds = [str(model.get("features", "?"))]
    kinds += ["negation"] if settings.get("negation") is True else []
    kinds += [f"{name} lexicon" for name in settings.get("lexicons") or [] if isinstance(name, str)]
    return f"{model.get('classifier', '?')} on {' + '.join(kinds)} features"


def _threshold(value) -> str:
    return "not set (always answers)" if value is None else f"{value:g}"


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


# ---- newstag info -------------------------------------------------------------------------------

def info(bundle: str | Path) -> tuple[str, bool]:
    """The card beside a bundle and a summary of its sidecar, and whether the bundle and its
    compact form match their sha256s (checked without loading the pickle, so it is safe on a file
    you do not trust): `newstag info` prints the text either way and exits 1 when they do not."""
    from newstag.data.files import sha256_file
    from newstag.models.bundle import read_sidecar

    path = Path(bundle)
    if not path.exists():
        raise NewstagError(f"{path}: model not found; train one with `make train` or check the path")
    if not path.is_file():
        raise NewstagError(f"{path}: not a regular file; give the bundle file (e.g. "
                           f"models/default/model.joblib)")
    sidecar = read_sidecar(path)
    matches = sha256_file(path) == sidecar.get("sha256")
    text = read_card(card_path(path))
    if text is None:
        text = (f"(no readable {CARD_NAME} beside {path}: missing, over {CARD_LIMIT >> 20} MiB or "
                f"not UTF-8 text; retrain it to write one)\n")
    elif f"`{sidecar.get('sha256')}`" not in text:  # a training stopped between bundle and card
        text = (f"(warning: this {CARD_NAME} describes another save of the model, not this "
                f"bundle; retrain to bring it up to date)\n\n") + text
    compact_line, compact_ok = _compact_line(path, sidecar.get("compact"))
    return text.rstrip("\n") + "\n\n" + summary(path, sidecar, matches, compact_line), \
        matches and compact_ok


CARD_LIMIT = 1 << 20  # a card newstag writes is a few kB; a larger file is not one


def read_card(card: Path) -> str | None:
    """The card's text, or None when it is missing, too large or not UTF-8: `info` reads it into
    memory and prints it, so its size is bounded like the sidecar's."""
    try:
        with open(card, "rb") as handle:
            data = handle.read(CARD_LIMIT + 1)
        return None if len(data) > CARD_LIMIT else data.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def summary(path: Path, sidecar: dict, matches: bool, compact_line: str) -> str:
    lines = ["## Bundle metadata", "", f"- file: `{path}`",
             f"- sha256: `{sidecar.get('sha256', '?')}` "
             f"({'matches the file' if matches else 'DOES NOT match the file: do not load it; retrain'})",
             f"- experiment: {sidecar.get('experiment', '?')}",
             f"- versions: {json.dumps(sidecar.get('versions', {}), sort_keys=True)}"]
    for task, meta in sidecar.get("tasks", {}).items():
        meta = meta or {}
        answers = "multi-label: labels by per-label thresholds tuned on validation (no min_confidence)" \
            if is_multi_label(sidecar, task) else f"min_confidence {_threshold(meta.get('min_confidence'))}"
        lines += [f"- task {task}: labels {', '.join(map(str, meta.get('labels', [])))}; "
                  f"params {_params(meta.get('best_params'))}; "
                  f"calibration {_calibration(meta.get('calibration') or {})}; {answers}"]
    return "\n".join(lines + [compact_line]) + "\n"


def _compact_line(path: Path, compact: dict | None) -> tuple[str, bool]:
    """Which tasks `newstag predict` runs on NumPy alone (the fast path) and why any other does not,
    once the compact form's sha256 is checked as predict checks it (predict refuses a missing or
    changed one, so info must not call it fine); and False when predict would refuse it."""
    from newstag.data.files import sha256_file

    if not isinstance(compact, dict):
        return "- fast prediction: none (saved before the compact form; retrain to get it)", True
    target = path.with_name(Path(compact["file"]).name)  # the file predict reads
    if not target.is_file():
        return f"- fast prediction: {target.name} is missing; predict will refuse the model: retrain", False
    if sha256_file(target) != compact.get("sha256"):
        return f"- compact form: sha256 DOES NOT match {target.name}; predict will refuse it: retrain", False
    fast = ", ".join(compact.get("tasks") or []) or "no task"
    fallback = (compact.get("fallback") or {}).items()
    slow = "".join(f"; {task} uses scikit-learn ({why})" for task, why in fallback)
    return f"- fast prediction (NumPy only, {target.name}): {fast}{slow}", True
