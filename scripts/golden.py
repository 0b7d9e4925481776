"""Regenerate tests/e2e/golden_sample.json from the sample model that `make all` just built.

The golden file pins what a fresh clone must reproduce exactly: the default experiment's test
scores (rounded to 4 places, as the test compares them) and the labels the model gives a fixed
set of texts. Run it after a deliberate change to the sample corpus, the default experiment or
the pipelines, and commit the file with that change:

    make all && make golden        # or: python scripts/golden.py after `make all`
"""

import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "e2e" / "golden_sample.json"
MODEL = ROOT / "models" / "default" / "model.joblib"
METRICS = ROOT / "reports" / "default" / "metrics.json"
NOTE = ("Produced by the default experiment on the sample corpus (seed 42). A fresh clone must "
        "reproduce it exactly. Regenerate with `make golden` after `make all`.")


def golden_results(texts: list[str]) -> dict:
    """The test scores per task and the model's labels for `texts`."""
    from newstag.models.bundle import load_bundle

    for path in (MODEL, METRICS):
        if not path.is_file():
            sys.exit(f"{path.relative_to(ROOT)} not found: run `make all` first")
    tasks = json.loads(METRICS.read_text(encoding="utf-8"))["tasks"]
    bundle = load_bundle(MODEL)
    return {
        "note": NOTE,
        "metrics": {task: {"accuracy": round(scores["accuracy"], 4),
                           "f1_macro": round(scores["f1_macro"], 4)}
                    for task, scores in tasks.items()},
        "texts": texts,
        "labels": {task: pipeline.predict(texts).tolist()
                   for task, pipeline in bundle["pipelines"].items()},
    }


def write_atomically(path: Path, text: str) -> None:
    """Write beside the target and rename, so an interrupted run leaves the old file whole."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(temporary, path)


def main() -> None:
    # The texts stay as they are: they were picked to cover every topic, both polar tones and a
    # long real-world article, and changing them would make the labels incomparable over time.
    texts = json.loads(GOLDEN.read_text(encoding="utf-8"))["texts"]
    results = golden_results(texts)
    write_atomically(GOLDEN, json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {GOLDEN.relative_to(ROOT)}: " + ", ".join(
        f"{task} accuracy {m['accuracy']}, macro-F1 {m['f1_macro']}"
        for task, m in results["metrics"].items()))


if __name__ == "__main__":
    main()
