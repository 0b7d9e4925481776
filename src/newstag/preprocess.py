"""Stage 1: raw articles in, validated, cleaned, de-duplicated train/validation/test splits out."""

import logging
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from newstag import __version__
from newstag.config import ExperimentConfig, task_source
from newstag.data.clean import clean_text, dedup_key
from newstag.data.corpora import data_dir as corpora_dir
from newstag.data.corpora import load_corpus, read_class_folders
from newstag.data.files import (
    atomic_path,
    exclusive_lock,
    remove_orphans,
    sha256_file,
    sha256_path,
    sha256_text,
    write_json,
)
from newstag.data.readers import read_table
from newstag.errors import NewstagError
from newstag.models import multilabel

log = logging.getLogger(__name__)
SPLITS = ("train", "validation", "test")
ARCHIVES = (".tar.gz", ".tgz", ".tar", ".zip")
_NOT_ALNUM = re.compile(r"[^0-9a-z]+")
SPLIT_ALIASES = {"train": "train", "training": "train", "validation": "validation",
                 "valid": "validation", "val": "validation", "dev": "validation", "test": "test"}


def preprocess(config: ExperimentConfig, data_dir: str | None = None) -> dict:
    """Run the whole stage for one experiment and return its manifest."""
    if config.compose:
        return _preprocess_sources(config, data_dir)
    if any(task.streaming for task in config.tasks):  # a corpus larger than memory
        return preprocess_streaming(config)
    raw, files = load_raw(config, data_dir)
    config = _without_missing_official_split(config, raw)
    source = files[0] if config.data.path else f"dataset {config.data.dataset}"
    articles, dropped = build_articles(raw, config, source)
    if config.data.deduplicate:
        articles, duplicates = drop_duplicates(articles, body=_body(raw, config, articles))
    else:
        duplicates = {"removed": 0, "note": "de-duplication switched off (data.deduplicate)"}
    log.info("read %d rows from %s; dropped %d invalid, %d duplicates",
             len(raw), source, sum(dropped.values()), duplicates["removed"])
    _check_enough(articles, len(raw), duplicates["removed"], source)
    _check_label_sets(articles, config, source)
    try:
        splits = split_articles(articles, config)
    except NewstagError as exc:
        raise NewstagError(f"{source}: {exc}") from None
    check_declared_labels(config, {name: _label_tally(frame, config) for name, frame in splits.items()},
                          source)
    with exclusive_lock(config.processed_dir / ".preprocess.lock", wait=True):  # one writer at a time
        return write_splits(splits, config, files, len(raw), dropped, duplicates)


def _preprocess_sources(config: ExperimentConfig, data_dir: str | None) -> dict:
    """A composed experiment: preprocess each source experiment; the manifest points at theirs."""
    sources = {task.name: task_source(config, task.name) for task in config.tasks}
    by_name = {source.name: source for source in sources.values()}  # each source once
    manifests = {name: preprocess(source, data_dir) for name, source in by_name.items()}
    inputs = [item for manifest in manifests.values() for item in manifest["inputs"]]
    manifest = {
        "experiment": config.name,
        "newstag_version": __version__,
        "inputs": inputs,
        "data_sha256": _inputs_sha256(inputs),
        "sources": {task: str(source.processed_dir / "manifest.json") for task, source in sources.items()},
        "splits": {task: manifests[source.name]["splits"] for task, source in sources.items()},
    }
    write_json(config.processed_dir / "manifest.json", manifest)
    _write_deps(config.processed_dir, [Path(item["path"]) for item in inputs])
    return manifest


def _inputs_sha256(inputs: list[dict]) -> str:
    """One hash for all the raw inputs: what MLflow tags a run with."""
    return sha256_text("".join(item["sha256"] for item in inputs))


MIN_ARTICLES = 10


def _check_enough(articles: pd.DataFrame, rows: int, duplicates: int, source) -> None:
    if len(articles) < MIN_ARTICLES:
        raise NewstagError(f"{source}: only {len(articles)} distinct usable article(s) of {rows} rows "
                           f"({duplicates} duplicates removed); train/validation/test splits need at "
                           f"least {MIN_ARTICLES}. Add articles")


def _check_label_sets(articles: pd.DataFrame, config: ExperimentConfig, source) -> None:
    """Every task needs two labels in the data left after cleaning (an ordinal task's are scores)."""
    for task in config.tasks:
        seen = (multilabel.label_counts(articles[task.name]) if task.multi_label
                else _counts(articles[task.name]))
        if len(seen) < 2:
            raise NewstagError(f"{source}: task '{task.name}' has only one label "
                               f"({next(iter(seen), None)!r}) after cleaning; a classifier needs at "
                               f"least two: add articles of another label")


def _label_tally(frame: pd.DataFrame, config: ExperimentConfig) -> dict[str, dict[str, int]]:
    """Articles per label of each task in one split, as the manifest records them."""
    return {task.name: multilabel.label_counts(frame[task.name]) if task.multi_label
            else _counts(frame[task.name]) for task in config.tasks}


def check_declared_labels(config: ExperimentConfig, tally: dict, source) -> None:
    """Refuse a declared label that no train or validation article has (`tally`: split -> task ->
    label -> articles). A model cannot learn it: a single-label model never predicts it, and a
    multi-label task's model for it would be a constant, tagging every article or none."""
    for task in config.tasks:
        if not task.labels or task.ordinal is not None:  # an ordinal task's labels are its scores
            continue
        seen = {label for name in ("train", "validation") for label in tally[name][task.name]}
        unseen = [label for label in task.labels if label not in seen]
        if unseen:
            in_test = tally["test"][task.name].get(unseen[0], 0)
            raise NewstagError(f"{source}: task '{task.name}': label {unseen[0]!r} is declared in "
                               f"labels but has no article in train + validation"
                               f"{f' (only {in_test} in test)' if in_test else ''}; add articles "
                               f"or remove it from labels")


def _without_missing_official_split(config: ExperimentConfig, raw: pd.DataFrame) -> ExperimentConfig:
    """A known corpus may lack its official split here (AG News without train.csv): split it ourselves."""
    column = config.data.split_column
    if not config.data.dataset or not column or column in raw.columns:
        return config
    log.warning("dataset %s has no official split here; using a stratified, seeded split",
                config.data.dataset)
    return replace(config, data=replace(config.data, split_column=None))


def load_raw(config: ExperimentConfig, data_dir: str | None = None) -> tuple[pd.DataFrame, list[Path]]:
    """The raw table and the files it came from: a known corpus, a class-folder tree, or a table."""
    if config.data.dataset:
        corpus = load_corpus(config.data.dataset, corpora_dir(data_dir), config.data.options)
        return corpus.frame, corpus.files
    path = Path(config.data.path)
    if config.data.format == "folder" or path.is_dir() or path.name.endswith(ARCHIVES):
        if not path.exists():
            raise NewstagError(f"{path}: not found; check data.path in the experiment")
        return read_class_folders(path, max_file_mb=config.data.max_file_mb,
                                  max_total_mb=config.data.max_total_mb), [path]
    return read_table(path, config.data.format, config.data.encoding,
                      max_record_mb=config.data.max_file_mb, max_total_mb=config.data.max_total_mb), [path]


def build_articles(raw: pd.DataFrame, config: ExperimentConfig, source: Path):
    """Check columns and values, clean the text; return (articles, counts of dropped rows)."""
    _check_columns(raw, config, source)
    articles = pd.DataFrame({"id": _ids(raw, config), "text": _joined_text(raw, config),
                             "source_row": raw.index})
    for task in config.tasks:
        if task.multi_label:  # a list of labels per row (newstag.models.multilabel)
            articles[task.name] = raw[task.column].map(
                lambda value, sep=task.label_separator: multilabel.parse_labels(value, sep))
        else:
            articles[task.name] = raw[task.column].map(_label)
    if config.data.split_column:
        articles["split"] = raw[config.data.split_column].map(
            lambda value: SPLIT_ALIASES.get(str(value).strip().lower()))
    problems = _row_problems(articles, config, raw.attrs.get("row_problems", {}))
    if problems and config.data.on_invalid == "error":
        row, reason = problems[0]
        more = f" (and {len(problems) - 1} more rows)" if len(problems) > 1 else ""
        raise NewstagError(f"{source}: row {row + 1}: {reason}{more}; fix the data or set "
                           f"data.on_invalid: drop to skip such rows")
    bad_rows = [row for row, _ in problems]
    dropped = Counter(reason.split(":")[0] for _, reason in problems)
    _check_unique_ids(articles.drop(index=bad_rows), source)
    return articles.drop(index=bad_rows).reset_index(drop=True), dict(dropped)


def _check_columns(raw: pd.DataFrame, config: ExperimentConfig, source: Path) -> None:
    data = config.data
    wanted = [*data.text_columns, *(task.column for task in config.tasks)]
    wanted += [column for column in (data.id_column, data.split_column) if column]
    missing = [column for column in wanted if column not in raw.columns]
    if missing:
        raise NewstagError(
            f"{source}: missing column(s) {', '.join(missing)}; the file has: "
            f"{', '.join(map(str, raw.columns))}. Fix the column names in the experiment's data section"
        )


def _ids(raw: pd.DataFrame, config: ExperimentConfig) -> pd.Series:
    if config.data.id_column:
        return raw[config.data.id_column].map(lambda value: "" if pd.isna(value) else str(value))
    return pd.Series([f"row-{number}" for number in range(1, len(raw) + 1)], index=raw.index)


def _joined_text(raw: pd.DataFrame, config: ExperimentConfig) -> pd.Series:
    """The text columns joined by newlines (column by column: a row-wise join is 10x slower)."""
    parts = [raw[column].map(lambda v: "" if pd.isna(v) else str(v)).astype(object)
             for column in config.data.text_columns]
    joined = parts[0]
    for part in parts[1:]:
        joined = joined + "\n" + part
    return joined.map(clean_text)


def _label(value) -> str | None:
    return None if pd.isna(value) or not str(value).strip() else str(value).strip()


def _row_problems(articles: pd.DataFrame, config: ExperimentConfig,
                  found: dict[int, str]) -> list[tuple[int, str]]:
    """Every invalid row as (row index, reason), in file order; `found` holds those the reader
    already knew to be invalid (a CSV row with more fields than its header)."""
    problems = []
    for row in articles.itertuples():
        reason = found.get(row.Index) or _problem(row._asdict(), config)
        if reason:
            problems.append((row.Index, reason))
    return problems


def _problem(row: dict, config: ExperimentConfig) -> str | None:
    if not row["text"]:
        return "empty text: the text column(s) are blank after cleaning"
    for task in config.tasks:
        label = row[task.name]
        if task.multi_label:  # multi-label rows: newstag.models.multilabel
            if reason := multilabel.label_problem(label, task):
                return reason
            continue
        if label is None or pd.isna(label):
            return f"missing label: column '{task.column}' is empty"
        if multilabel.json_container(label) is not None:  # e.g. a JSONL list: one label is wanted
            return (f"invalid label: column '{task.column}' holds a list or mapping "
                    f"({multilabel.shorten(label)}); one label a row, unless the task sets "
                    f"multi_label: true")
        if task.labels and label not in task.labels:
            return (f"unknown label: {label!r} in column '{task.column}' "
                    f"is not one of {', '.join(task.labels)}")
    if config.data.split_column and row["split"] is None:
        return f"unknown split: column '{config.data.split_column}' must be train, validation or test"
    return None


def _check_unique_ids(articles: pd.DataFrame, source: Path) -> None:
    repeated = articles["id"][articles["id"].duplicated()]
    if len(repeated):
        raise NewstagError(f"{source}: id {repeated.iloc[0]!r} appears more than once; ids must be "
                           f"unique (or leave data.id_column unset to number the rows)")


def _body(raw: pd.DataFrame, config: ExperimentConfig, articles: pd.DataFrame) -> pd.Series | None:
    """The last text column alone, when there are several (BBC repeats bodies under new headlines)."""
    if len(config.data.text_columns) < 2:
        return None
    body = raw[config.data.text_columns[-1]].loc[articles["source_row"]]
    return body.map(lambda v: "" if pd.isna(v) else str(v)).reset_index(drop=True)


def drop_duplicates(articles: pd.DataFrame, body: pd.Series | None = None) -> tuple[pd.DataFrame, dict]:
    """Remove exact and near-exact duplicates, keeping test copies over training ones.

    Exact: the same text after cleaning and case-folding. Near-exact: the same letters and digits
    once punctuation and spacing are ignored, or the same body under a different headline.
    """
    order = _keep_priority(articles)
    seen: dict[str, str | None] = {}
    report = {"exact": {"within_split": 0, "across_splits": 0},
              "near_exact": {"within_split": 0, "across_splits": 0}}
    drop = []
    for index in order:
        split = articles.at[index, "split"] if "split" in articles else None
        exact = dedup_key(articles.at[index, "text"])
        keys = [("exact", exact), ("near_exact", _NOT_ALNUM.sub(" ", exact).strip())]
        if body is not None and len(body.iat[index].split()) >= 20:
            keys.append(("near_exact", "body:" + _NOT_ALNUM.sub(" ", dedup_key(body.iat[index]))))
        match = next(((kind, key) for kind, key in keys if key in seen), None)
        if match:
            kind, key = match
            report[kind]["within_split" if seen[key] == split else "across_splits"] += 1
            drop.append(index)
        for _kind, key in keys:
            seen.setdefault(key, split)
    report["removed"] = len(drop)
    return articles.drop(index=drop).reset_index(drop=True), report


def _keep_priority(articles: pd.DataFrame) -> list[int]:
    """Row order for de-duplication: test rows first, so a test article's twin leaves training."""
    if "split" not in articles:
        return list(articles.index)
    rank = articles["split"].map({"test": 0, "validation": 1, "train": 2}).fillna(3)
    return list(rank.sort_values(kind="stable").index)


def split_articles(articles: pd.DataFrame, config: ExperimentConfig) -> dict[str, pd.DataFrame]:
    """Split by the data's own split column, or stratified and seeded."""
    if config.data.split_column:
        return _split_by_column(articles, config)
    if multilabel.multilabel_tasks(config):  # iterative stratification (newstag.models.multilabel)
        test, validation = config.split.test, config.split.validation
        return multilabel.split_frame(articles, config, {"train": 1 - test - validation,
                                                         "validation": validation, "test": test})
    strata = _strata(articles, config)
    rest, test = _stratified(articles, config.split.test, strata, config.seed)
    validation_share = config.split.validation / (1 - config.split.test)
    train, validation = _stratified(rest, validation_share, strata.loc[rest.index], config.seed)
    return {"train": train, "validation": validation, "test": test}


def _split_by_column(articles: pd.DataFrame, config: ExperimentConfig) -> dict[str, pd.DataFrame]:
    parts = {name: articles[articles["split"] == name].drop(columns="split") for name in SPLITS}
    if parts["train"].empty or parts["test"].empty:
        raise NewstagError(f"split column '{config.data.split_column}' must mark some rows train "
                           f"and some test")
    if parts["validation"].empty and multilabel.multilabel_tasks(config):  # newstag.models.multilabel
        share = config.split.validation
        parts.update(multilabel.split_frame(parts["train"], config,
                                            {"train": 1 - share, "validation": share}))
    elif parts["validation"].empty:
        strata = _strata(parts["train"], config)
        share = config.split.validation
        parts["train"], parts["validation"] = _stratified(parts["train"], share, strata, config.seed)
    return parts


def _strata(articles: pd.DataFrame, config: ExperimentConfig) -> pd.Series:
    """Stratify on every task's labels together when each combination is common enough."""
    first = config.tasks[0].name
    counts = articles[first].value_counts()
    if len(counts) < 2:
        raise NewstagError(f"task '{first}' has only one label ({counts.index[0]!r}) after "
                           f"cleaning; a classifier needs at least two")
    if counts.min() < 2:
        raise NewstagError(
            f"label {counts.idxmin()!r} of task '{first}' has only {counts.min()} article; a "
            f"stratified split needs at least 2 (add articles, drop that label, or add a split column)"
        )
    combined = articles[config.task_names].astype(str).agg("|".join, axis=1)
    min_per_stratum = 1 / min(config.split.test, config.split.validation) + 1
    return combined if combined.value_counts().min() >= min_per_stratum else articles[first]


def _stratified(frame: pd.DataFrame, share: float, strata: pd.Series, seed: int):
    try:
        first, second = train_test_split(frame, test_size=share, stratify=strata, random_state=seed)
    except ValueError as exc:
        raise NewstagError(f"cannot split the data ({exc}); add articles to the rare labels or "
                           f"lower split.test / split.validation") from None
    return first.sort_index(), second.sort_index()


def write_splits(splits, config, files: list[Path], rows_read: int, dropped: dict, duplicates: dict):
    """Write each split as Parquet plus a manifest and a Make dependency file, all atomically."""
    out = config.processed_dir
    (out / "manifest.json").unlink(missing_ok=True)  # splits of two runs never pass for one
    remove_orphans(out)
    inputs = [{"path": str(path), "sha256": sha256_path(path)} for path in files]
    manifest = {
        "experiment": config.name,
        "newstag_version": __version__,
        "inputs": inputs,
        "data_sha256": _inputs_sha256(inputs),
        "rows_read": rows_read,
        "rows_dropped": dropped,
        "duplicates_removed": duplicates["removed"],
        "duplicates": duplicates,
        "splits": {},
    }
    for name, frame in splits.items():
        path = out / f"{name}.parquet"
        with atomic_path(path) as tmp:
            frame.drop(columns="source_row").reset_index(drop=True).to_parquet(tmp, index=False)
        manifest["splits"][name] = {
            "path": str(path),
            "sha256": sha256_file(path),
            "rows": len(frame),
            "labels": _label_tally(frame, config),
        }
    write_json(out / "manifest.json", manifest)
    _write_deps(out, files)
    return manifest


def _counts(labels: pd.Series) -> dict[str, int]:
    return {str(label): int(count) for label, count in sorted(labels.value_counts().items())}


def _write_deps(out: Path, files: list[Path]) -> None:
    """Tell Make which raw file the manifest depends on, so an edited input re-runs this stage."""
    def escape(path) -> str:
        return str(path).replace(" ", "\\ ")

    with atomic_path(out / "deps.mk") as tmp:
        tmp.write_text(f"{escape(out / 'manifest.json')}: {' '.join(map(escape, files))}\n")


def describe_manifest(manifest: dict, config: ExperimentConfig) -> str:
    """One line per experiment for people: rows per split and duplicates removed."""
    if "sources" in manifest:
        return f"{config.name}: composed of " + ", ".join(
            f"{task} from {Path(path).parent.name}" for task, path in manifest["sources"].items())
    rows = ", ".join(f"{name} {split['rows']}" for name, split in manifest["splits"].items())
    return (f"{config.name}: {rows} rows ({manifest['duplicates_removed']} duplicates removed) "
            f"-> {config.processed_dir}")


# ---- a corpus larger than memory: one pass, by hashing (newstag.data.hashsplit) -------------------

def preprocess_streaming(config: ExperimentConfig) -> dict:
    """Read the data file chunk by chunk; clean, check, de-duplicate and split every article by
    the keyed hash of its near-exact text; write the splits as Parquet row groups. Memory is
    bounded by one chunk and the seen-set's cache, whatever the file's size."""
    from newstag.data.stream import Source

    _check_streamable(config)
    out = config.processed_dir
    chunk_rows = min(task.stream.chunk_rows for task in config.tasks if task.streaming)
    source = Source(config.data.path, config.data.format, config.data.encoding, chunk_rows,
                    config.data.max_file_mb)
    with exclusive_lock(out / ".preprocess.lock", wait=True):
        (out / "manifest.json").unlink(missing_ok=True)  # splits of two runs never pass for one
        remove_orphans(out)
        tally = _stream_splits(source, config, out)
        return _write_stream_manifest(config, source, tally)


def _check_streamable(config: ExperimentConfig) -> None:
    data = config.data
    if data.dataset or data.format == "folder" or ("://" not in data.path and Path(data.path).is_dir()):
        raise NewstagError("a streaming task reads one data file (data.path: .csv, .tsv, .jsonl or "
                           ".parquet, also .gz, or a URL such as s3://...); known corpora and folders "
                           "are read into memory: drop streaming: true or export the data to a file")
    multi = [task.name for task in config.tasks if task.multi_label]
    if multi:
        raise NewstagError(f"task '{multi[0]}' is multi_label, which streaming preprocessing does "
                           f"not support; train it in its own experiment")


def _stream_splits(source, config: ExperimentConfig, out: Path) -> dict:
    """The one pass: returns the counts the manifest records (the files are in place after it)."""
    from contextlib import ExitStack

    from newstag.data.files import publish
    from newstag.data.hashsplit import SPLITS, SplitWriters, digest, near_exact_key, seen_set, split_of

    tally = {"rows_read": 0, "dropped": Counter(), "duplicates": Counter(),
             "labels": {name: {task.name: Counter() for task in config.tasks} for name in SPLITS}}
    columns = ["id", "text", *config.task_names]
    with ExitStack() as stack, seen_set(out) as seen:
        writers = SplitWriters(out, columns, stack)
        for chunk in source.chunks():
            tally["rows_read"] += len(chunk)
            articles = _stream_articles(chunk, config, source.path, tally)
            digests = [digest(near_exact_key(text, cleaned=True), config.seed) for text in articles["text"]]
            new = seen.add_new(digests) if config.data.deduplicate else [True] * len(digests)
            names = (articles["split"].tolist() if config.data.split_column else
                     [split_of(d, config.split.validation, config.split.test) for d in digests])
            tally["duplicates"]["removed"] += new.count(False)
            keep = pd.Series(new, index=articles.index)
            articles = articles.assign(split=names)[keep]
            for name, part in articles.groupby("split", sort=False):
                writers.add(name, part)
                for task in config.tasks:
                    tally["labels"][name][task.name].update(part[task.name])
        paths = writers.close()
        tally["seen_bytes"], tally["distinct"] = seen.disk_bytes(), sum(writers.rows.values())
        tally["rows"] = dict(writers.rows)
        _check_stream_splits(tally, config, source.path)
        for name, tmp in paths.items():
            publish(tmp, out / f"{name}.parquet")
    return tally


def _stream_articles(chunk: pd.DataFrame, config: ExperimentConfig, source: str, tally: dict):
    """build_articles on one chunk, with row ids numbered over the whole file."""
    articles, dropped = build_articles(chunk, config, source)
    tally["dropped"].update(dropped)
    if not config.data.id_column:
        articles["id"] = [f"row-{row + 1}" for row in articles["source_row"]]
    return articles


def _check_stream_splits(tally: dict, config: ExperimentConfig, source: str) -> None:
    rows = tally["rows"]
    _check_enough(pd.DataFrame(index=range(sum(rows.values()))), tally["rows_read"],
                  tally["duplicates"]["removed"], source)
    for name in SPLITS:
        if not rows.get(name):
            raise NewstagError(f"cannot split the data: the {name} split would be empty; add articles "
                               f"or change split.test / split.validation" +
                               (f" (or mark some rows {name} in '{config.data.split_column}')"
                                if config.data.split_column else ""))
    check_declared_labels(config, tally["labels"], source)


def _write_stream_manifest(config: ExperimentConfig, source, tally: dict) -> dict:
    from newstag.data.hashsplit import ROW_GROUP, SEEN_CACHE_MB, disk_per_million

    out = config.processed_dir
    inputs = [{"path": source.path, "sha256": source.sha256}]
    removed = tally["duplicates"]["removed"]
    manifest = {
        "experiment": config.name,
        "newstag_version": __version__,
        "inputs": inputs,
        "data_sha256": _inputs_sha256(inputs),
        "rows_read": tally["rows_read"],
        "rows_dropped": dict(tally["dropped"]),
        "duplicates_removed": removed,
        "duplicates": {"removed": removed, "key": "near-exact text (letters and digits, case-folded)",
                       "how": "one pass; keyed BLAKE2b digests in a disk-backed SQLite set"},
        "streaming": {"chunk_rows": source.chunk_rows, "row_group_rows": ROW_GROUP,
                      "split_by": "split column" if config.data.split_column else
                      "keyed hash of the near-exact text (twins share a split)",
                      "seen_set_cache_mb": SEEN_CACHE_MB,
                      "seen_set_disk_mb": round(tally["seen_bytes"] / 1e6, 1),
                      "seen_set_disk_mb_per_million": disk_per_million(tally["seen_bytes"],
                                                                       tally["distinct"])},
        "splits": {},
    }
    for name in SPLITS:
        path = out / f"{name}.parquet"
        manifest["splits"][name] = {
            "path": str(path), "sha256": sha256_file(path), "rows": tally["rows"][name],
            "labels": {task: {str(k): int(v) for k, v in sorted(counts.items())}
                       for task, counts in tally["labels"][name].items()}}
    write_json(out / "manifest.json", manifest)
    if "://" not in source.path:
        _write_deps(out, [Path(source.path)])
    return manifest
