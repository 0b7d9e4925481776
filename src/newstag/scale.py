"""`make bench-scale`: streaming preprocess + training on synthetic corpora of growing size.

The corpora are built under data/scale/ (git-ignored, never committed) from the BBC News articles
of $NEWSTAG_DATA_DIR (bbc_news/bbc_news.csv.gz): each synthetic article has the title of a random
article of a topic and 3-6 sentences drawn from random articles of that same topic, each
title or sentence replaced with probability 0.4 by one of a random topic (so the task is not
trivially separable), and copies are rare; one article in 50 is a near-exact twin of a recent one
(other case and punctuation) for the de-duplication to find. The seed is fixed: the same size
gives the same file.

For each size, `newstag preprocess` and `newstag train --no-tracking` run in their own processes,
and the operating system's peak resident memory of each (wait4's ru_maxrss) is recorded with
its wall time. On the largest size at most --in-memory-gb, the streaming model's test accuracy
is compared with the in-memory TF-IDF model (newstag's `linear_svm` pipeline: word 1-2-gram
TF-IDF, sublinear tf, LinearSVC) trained on the same train + validation rows, scored on the
same test split. `newstag evaluate --no-tracking` is measured too: it reads the test split a chunk
at a time, so its peak memory, like training's, should not grow with the size.
"""

import csv
import gzip
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from newstag.data.files import write_text
from newstag.errors import NewstagError

log = logging.getLogger(__name__)
SCALE_DIR = Path("data/scale")
GB = 1e9
TWIN_EVERY = 50
OFF_TOPIC = 0.4
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def load_sources(data_dir: Path) -> dict[str, dict]:
    """Per topic: titles and sentences of the real BBC articles."""
    path = data_dir / "bbc_news" / "bbc_news.csv.gz"
    if not path.is_file():
        raise NewstagError(f"{path}: not found; bench-scale resamples the BBC News articles: set "
                           f"NEWSTAG_DATA_DIR or run `newstag download bbc_news`")
    topics: dict[str, dict] = {}
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            entry = topics.setdefault(row["category"], {"titles": [], "sentences": []})
            entry["titles"].append(row["title"].strip())
            entry["sentences"] += [s.strip() for s in _SENTENCE.split(row["content"]) if len(s.split()) > 3]
    return topics


def build_corpus(size_gb: float, data_dir: Path, seed: int = 13) -> Path:
    """data/scale/corpus-<size>gb.jsonl of about `size_gb` GB of text (kept between runs)."""
    path = SCALE_DIR / f"corpus-{size_gb:g}gb.jsonl"
    info = path.with_suffix(".json")
    if path.is_file() and info.is_file() and json.loads(info.read_text()).get("recipe") == [seed, OFF_TOPIC]:
        return path
    topics = load_sources(data_dir)
    names = sorted(topics)
    rng = np.random.default_rng(seed)
    target, written, count, recent = size_gb * GB, 0, 0, []
    SCALE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    start = time.perf_counter()
    with open(tmp, "w", encoding="utf-8") as out:
        while written < target:
            count += 1
            if count % TWIN_EVERY == 0 and recent:
                title, text, topic = recent[int(rng.integers(len(recent)))]
                title, text = title.upper(), text.replace(",", " ,").replace(".", " .")
            else:
                topic = names[int(rng.integers(len(names)))]
                title = _pick(topics, topic, names, "titles", rng)
                text = " ".join(_pick(topics, topic, names, "sentences", rng)
                                for _ in range(int(rng.integers(3, 7))))
                recent = (recent + [(title, text, topic)])[-100:]
            out.write(json.dumps({"id": f"a{count}", "title": title, "text": text, "topic": topic},
                                 ensure_ascii=False) + "\n")
            written += len(title.encode("utf-8")) + len(text.encode("utf-8"))
    os.replace(tmp, path)
    write_text(info, json.dumps({"recipe": [seed, OFF_TOPIC], "articles": count, "text_bytes": written,
                                "file_bytes": path.stat().st_size,
                                "seconds": time.perf_counter() - start}, indent=2))
    return path


def _pick(topics: dict, topic: str, names: list[str], kind: str, rng) -> str:
    """A title or sentence of the topic, or (with probability OFF_TOPIC) of a random topic: the
    noise that keeps the synthetic task from being trivially separable."""
    if rng.random() < OFF_TOPIC:
        topic = names[int(rng.integers(len(names)))]
    items = topics[topic][kind]
    return items[int(rng.integers(len(items)))]


def experiment_file(size_gb: float, corpus: Path, epochs: int, chunk_rows: int) -> Path:
    path = SCALE_DIR / f"scale-{size_gb:g}gb.yaml"
    write_text(path, f"description: bench-scale, {size_gb:g} GB of synthetic BBC-like text\n"
                     f"seed: 7\n"
                     f"data: {{path: {corpus}, text_columns: [title, text], id_column: id}}\n"
                     f"tasks:\n  topic:\n    streaming: true\n"
                     f"    stream: {{epochs: {epochs}, chunk_rows: {chunk_rows}}}\n"
                     f"mlflow: {{register: false}}\n")
    return path


def measured(args: list[str], log_path: Path) -> dict:
    """Run `newstag ARGS` in its own process: wall seconds and that process's peak memory."""
    start = time.perf_counter()
    with open(log_path, "w") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "newstag", *args], stdout=log_file,
                                   stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise NewstagError(f"newstag {' '.join(args)} failed (exit {process.returncode}); see {log_path}")
    return {"seconds": round(time.perf_counter() - start, 1), "peak_mb": round(usage.ru_maxrss / 1024)}


def measure_size(size_gb: float, data_dir: Path, epochs: int, chunk_rows: int) -> dict:
    corpus = build_corpus(size_gb, data_dir)
    info = json.loads(corpus.with_suffix(".json").read_text())
    experiment = experiment_file(size_gb, corpus, epochs, chunk_rows)
    logs = SCALE_DIR / "logs"
    logs.mkdir(exist_ok=True)
    name = experiment.stem
    pre = measured(["preprocess", str(experiment)], logs / f"{name}-preprocess.log")
    fit = measured(["train", "--no-tracking", str(experiment)], logs / f"{name}-train.log")
    scored = measured(["evaluate", "--no-tracking", str(experiment)], logs / f"{name}-evaluate.log")
    metrics = json.loads((Path("reports") / name / "metrics.json").read_text())["tasks"]["topic"]
    manifest = json.loads((Path("data/processed") / name / "manifest.json").read_text())
    sidecar = json.loads((Path("models") / name / "model.joblib.json").read_text())
    history = sidecar["tasks"]["topic"].get("history", [])
    text_mb = info["text_bytes"] / 1e6
    return {
        "size_gb": size_gb, "articles": info["articles"], "text_mb": round(text_mb),
        "duplicates_removed": manifest["duplicates_removed"],
        "rows": {split: entry["rows"] for split, entry in manifest["splits"].items()},
        "seen_set_disk_mb_per_million": manifest["streaming"]["seen_set_disk_mb_per_million"],
        "preprocess": {**pre, "mb_per_second": round(text_mb / pre["seconds"], 1)},
        "train": {**fit, "epochs": epochs,
                  "epoch_mb_per_second": [round(row["mb_per_second"], 1) for row in history]},
        "validation_f1_macro": round(sidecar["tasks"]["topic"]["validation"]["f1_macro"], 4),
        "evaluate": scored, "test_accuracy": round(metrics["accuracy"], 4),
        "experiment": str(experiment),
    }


def in_memory_baseline(name: str) -> dict:
    """The in-memory TF-IDF model on the same rows, in its own process (for its peak memory)."""
    code = ("import json, sys; from newstag.scale import _fit_in_memory; "
            f"print(json.dumps(_fit_in_memory({name!r})))")
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise NewstagError(f"the in-memory TF-IDF baseline on {name} failed (exit {process.returncode})")
    return {**json.loads(output.strip().splitlines()[-1]), "seconds": round(time.perf_counter() - start, 1),
            "peak_mb": round(usage.ru_maxrss / 1024)}


def _fit_in_memory(name: str) -> dict:
    import pandas as pd

    from newstag.config import TaskConfig
    from newstag.models.pipelines import build_pipeline

    folder = Path("data/processed") / name
    train = pd.concat([pd.read_parquet(folder / f"{split}.parquet") for split in ("train", "validation")])
    test = pd.read_parquet(folder / "test.parquet")
    task = TaskConfig(name="topic", column="topic", classifier="linear_svm", features="word")
    pipeline = build_pipeline(task, seed=7).fit(train["text"].tolist(), train["topic"].tolist())
    accuracy = float((pipeline.predict(test["text"].tolist()) == test["topic"].to_numpy()).mean())
    return {"model": "TfidfVectorizer(word 1-2-grams, sublinear tf) + LinearSVC, in memory",
            "accuracy": round(accuracy, 4), "train_rows": len(train), "test_rows": len(test)}


def bench_scale(sizes: list[float], data_dir: Path, epochs: int = 3, chunk_rows: int = 20000,
                in_memory_gb: float = 0.5) -> dict:
    rows = []
    for size in sizes:
        log.info("bench-scale: %g GB", size)
        rows.append(measure_size(size, data_dir, epochs, chunk_rows))
        log.info("bench-scale: %s", rows[-1])
    rows.sort(key=lambda row: row["size_gb"])
    fitting = [row for row in rows if row["size_gb"] <= in_memory_gb]
    comparison = None
    if fitting:
        largest = max(fitting, key=lambda row: row["size_gb"])
        baseline = in_memory_baseline(Path(largest["experiment"]).stem)
        comparison = {"size_gb": largest["size_gb"], "streaming_accuracy": largest["test_accuracy"],
                      "streaming_train_peak_mb": largest["train"]["peak_mb"], "in_memory": baseline}
    return {"sizes": rows, "comparison": comparison, "epochs": epochs, "chunk_rows": chunk_rows,
            "train_peak_spread": _spread([row["train"]["peak_mb"] for row in rows]),
            "evaluate_peak_spread": _spread([row["evaluate"]["peak_mb"] for row in rows]),
            "cpu": os.cpu_count()}


def _spread(peaks: list[float]) -> float | None:
    """How much the largest size's peak memory exceeds the smallest's, as a share."""
    return round(max(peaks) / min(peaks) - 1, 3) if peaks else None


def table(result: dict) -> str:
    lines = ["| GB of text | articles | preprocess MB/s | preprocess peak MB | epoch MB/s | "
             "train s | train peak MB | evaluate s | evaluate peak MB | test accuracy |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in result["sizes"]:
        epoch = row["train"]["epoch_mb_per_second"]
        pre, fit, scored = row["preprocess"], row["train"], row["evaluate"]
        lines.append(f"| {row['size_gb']:g} | {row['articles']:,} | {pre['mb_per_second']:.1f} "
                     f"| {pre['peak_mb']} | {np.mean(epoch) if epoch else 0:.1f} | "
                     f"{fit['seconds']:.0f} | {fit['peak_mb']} | {scored['seconds']:.0f} | "
                     f"{scored['peak_mb']} | {row['test_accuracy']:.4f} |")
    if result["train_peak_spread"] is not None:
        lines.append(f"\ntraining peak memory: largest {result['train_peak_spread']:+.1%} over smallest "
                     f"(target: within 20%); evaluate's: {result['evaluate_peak_spread']:+.1%}")
    if result["comparison"]:
        c = result["comparison"]
        lines.append(f"at {c['size_gb']:g} GB: streaming test accuracy {c['streaming_accuracy']:.4f} "
                     f"(peak {c['streaming_train_peak_mb']} MB) vs in-memory TF-IDF "
                     f"{c['in_memory']['accuracy']:.4f} (peak {c['in_memory']['peak_mb']} MB, "
                     f"{c['in_memory']['seconds']:.0f} s)")
    return "\n".join(lines)
