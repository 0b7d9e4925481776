"""The bad-input matrix: each case exits non-zero with one line naming the file/row/field and
what to do, shows no traceback, and changes no file."""

import gzip
import hashlib
import json
import os
import re
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from newstag.cli import main
from newstag.data.files import exclusive_lock
from newstag.errors import NewstagError

WORDS = ["harbour", "tariff", "senate", "vaccine", "striker", "server", "budget", "clinic"]


def corpus(rows: int = 40) -> pd.DataFrame:
    return pd.DataFrame({
        "id": [f"r{i}" for i in range(rows)],
        "text": [f"{WORDS[i % 8]} report {i} on {WORDS[(i * 3) % 8]} and {WORDS[(i * 5) % 8]}"
                 for i in range(rows)],
        "label": ["a" if i % 2 else "b" for i in range(rows)],
    })


EXPERIMENT = """data: {{path: {path}, id_column: id{data_extra}}}
tasks: {{topic: {{column: label, labels: {labels}{task_extra}}}}}
split: {{validation: 0.2, test: 0.2}}
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_experiment(path: Path, data_path, data_extra="", task_extra="", extra="",
                     labels="[a, b]") -> Path:
    path.write_text(EXPERIMENT.format(path=data_path, data_extra=data_extra, labels=labels,
                                      task_extra=task_extra) + extra)
    return path


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "mlflow" not in p.name}


def fails(capsys, folder: Path, *args: str, match: str) -> str:
    """Run the CLI in-process; check the one-line error and that nothing changed on disk."""
    before = snapshot(folder)
    code = main(list(args))
    output = capsys.readouterr().err.strip()
    assert code == 1, output
    errors = [line for line in output.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and output.splitlines()[-1] == errors[0], output
    assert errors[0].startswith("newstag: error: ") and "Traceback" not in output
    err = errors[0]
    assert re.search(match, err), err
    assert snapshot(folder) == before, "a failing command must not write or change files"
    return err


# ---- files ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("setup", "match"), [
    (lambda p: None, r"data\.csv: file not found; check data\.path"),
    (lambda p: p.write_bytes(b""), r"data\.csv: file is empty"),
    (lambda p: p.mkdir(), r"data\.csv: no <class>/<file>\.txt files found"),
    (lambda p: p.write_bytes(bytes(range(256)) * 20), r"data\.csv: looks like a binary file"),
    (lambda p: p.write_bytes("id,text,label\nr1,caf\u00e9 na\u00efve,a\n".encode("latin-1")),
     r"data\.csv: line 2 is not valid utf-8 \(invalid continuation byte at byte 20\); set "
     r"data\.encoding in the experiment .*encoding: latin-1"),
    (lambda p: p.write_text("id,text,label\nr1,one,a\nr2,two,b,extra\n"),
     r"data\.csv: row 2: too many fields: line 3 has 4 fields where the header has 3; quote a "
     r"field that contains a comma; fix the data or set data\.on_invalid: drop"),
    (lambda p: p.write_text('id,text,label\nr1,"one,a\nr2,two,b\n'),
     r"data\.csv: line 2: a quoted field opened on this line is never closed; fix the quoting"),
    (lambda p: p.write_text("\n\n"), r"data\.csv: no header line; the first line must name the columns"),
    (lambda p: p.write_text("id,body,label\nr1,one,a\n"),
     r"missing column\(s\) text; the file has: id, body, label"),
])
def test_bad_csv_files(project, capsys, setup, match):
    setup(project / "data.csv")
    experiment = write_experiment(project / "exp.yaml", "data.csv")
    fails(capsys, project, "preprocess", str(experiment), match=match)


def test_latin1_file_reads_once_the_encoding_is_named(project, capsys):
    frame = corpus()
    frame.loc[0, "text"] = "Caf\u00e9 owners in K\u00f6ln"
    frame.to_csv(project / "data.csv", index=False, encoding="latin-1")
    fails(capsys, project, "preprocess", str(write_experiment(project / "exp.yaml", "data.csv")),
          match="not valid utf-8")
    experiment = write_experiment(project / "exp.yaml", "data.csv", data_extra=", encoding: latin-1")
    assert main(["preprocess", str(experiment)]) == 0
    texts = pd.concat(pd.read_parquet(p) for p in (project / "data/processed/exp").glob("*.parquet"))
    assert "Caf\u00e9 owners in K\u00f6ln" in set(texts["text"])


def test_truncated_gzip(project, capsys):
    data = gzip.compress(corpus(400).to_csv(index=False).encode())
    (project / "data.csv.gz").write_bytes(data[: len(data) // 2])
    experiment = write_experiment(project / "exp.yaml", "data.csv.gz")
    fails(capsys, project, "preprocess", str(experiment), match=r"data\.csv\.gz: cannot (read|parse)")


def test_jsonl_broken_line_is_numbered(project, capsys):
    lines = [json.dumps(row) for row in corpus().to_dict("records")]
    lines[6] = '{"id": "r6", "text": "unterminated'
    (project / "data.jsonl").write_text("\n".join(lines) + "\n")
    experiment = write_experiment(project / "exp.yaml", "data.jsonl")
    fails(capsys, project, "preprocess", str(experiment), match=r"data\.jsonl: line 7 is not valid JSON")


def test_parquet_without_the_column(project, capsys):
    corpus().drop(columns="label").to_parquet(project / "data.parquet")
    experiment = write_experiment(project / "exp.yaml", "data.parquet")
    fails(capsys, project, "preprocess", str(experiment), match=r"missing column\(s\) label")


def test_class_folders_with_an_empty_class(project, capsys):
    for name in ("a", "b"):
        (project / "news" / name).mkdir(parents=True)
    for i in range(12):
        (project / "news" / "a" / f"{i}.txt").write_text(f"article {i}")
    (project / "exp.yaml").write_text("data: {path: news}\ntasks: {label: {}}\n")
    fails(capsys, project, "preprocess", "exp.yaml", match=r"news: class folder\(s\) b hold no files")


# ---- data -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("change", "match"), [
    (lambda f: f.__setitem__("text", f["text"].where(f.index != 4, "   \t ")),
     r"row 5: empty text.*data\.on_invalid: drop"),
    (lambda f: f.__setitem__("label", f["label"].where(f.index != 2, None)),
     r"row 3: missing label: column 'label' is empty"),
    (lambda f: f.__setitem__("label", f["label"].where(f.index != 9, "c")),
     r"row 10: unknown label: 'c' in column 'label' is not one of a, b"),
    (lambda f: f.__setitem__("label", f["label"].where(f.index != 3, '["a", "b"]')),
     r"row 4: invalid label: column 'label' holds a list or mapping \(\[\"a\", \"b\"\]\); one "
     r"label a row, unless the task sets multi_label: true"),
    (lambda f: f.__setitem__("label", "a"), r"data\.csv: task 'topic' has only one label \('a'\) after "
                                            r"cleaning; a classifier needs at least two: add articles"),
    (lambda f: f.__setitem__("text", "the same story"), r"only 1 distinct usable article.*39 duplicates"),
])
def test_bad_data(project, capsys, change, match):
    frame = corpus()
    change(frame)
    frame.to_csv(project / "data.csv", index=False)
    experiment = write_experiment(project / "exp.yaml", "data.csv")
    fails(capsys, project, "preprocess", str(experiment), match=match)


def test_label_with_one_example_suggests_the_fix(project, capsys):
    frame = corpus()
    frame.loc[0, "label"] = "c"
    frame.to_csv(project / "data.csv", index=False)
    experiment = write_experiment(project / "exp.yaml", "data.csv", labels="[a, b, c]")
    fails(capsys, project, "preprocess", str(experiment),
          match=r"label 'c' .* only 1 article.*add articles, drop that label, or add a split column")


def test_a_declared_label_without_training_article_is_refused(project, capsys):
    """A single-label model would never predict it (a multi-label one tagged every article)."""
    corpus().to_csv(project / "data.csv", index=False)
    experiment = write_experiment(project / "exp.yaml", "data.csv", labels="[a, b, c]")
    fails(capsys, project, "preprocess", str(experiment),
          match=r"data\.csv: task 'topic': label 'c' is declared in labels but has no article in "
                r"train \+ validation; add articles or remove it from labels$")
    frame = corpus().assign(split=["train"] * 30 + ["test"] * 10)
    frame.loc[35:, "label"] = "c"
    frame.to_csv(project / "data.csv", index=False)
    experiment = write_experiment(project / "exp.yaml", "data.csv", data_extra=", split_column: split",
                                  labels="[a, b, c]")
    fails(capsys, project, "preprocess", str(experiment),
          match=r"label 'c' is declared in labels but has no article in train \+ validation "
                r"\(only 5 in test\); add articles")


def test_huge_article_and_any_script_are_tagged(project, capsys):
    frame = corpus()
    frame.loc[0, "text"] = "budget " * 1_500_000  # about 10 MB
    frame.loc[1, "text"] = ("Wahl in K\u00f6ln \U0001f5f3 \u9078\u6319 "
                            "\u0627\u0646\u062a\u062e\u0627\u0628\u0627\u062a \u200f\x07 senate")
    frame.to_csv(project / "data.csv", index=False)
    experiment = write_experiment(project / "exp.yaml", "data.csv")
    assert main(["preprocess", str(experiment)]) == 0
    assert main(["train", "--no-tracking", str(experiment)]) == 0
    capsys.readouterr()
    texts = ["x" * 10_000_000, "\u200f\u202e\U0001f600 \u0645\u0631\u062d\u0628\u0627", "\x00\x1b[31m"]
    assert main(["predict", "--model", "models/exp/model.joblib", *texts]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in rows] == [1, 2, 3] and all(r["topic"] in "ab" for r in rows)


# ---- config -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("extra", "task_extra", "match"), [
    ("sed: 1\n", "", r"exp\.yaml: unknown key 'sed' in top level; valid keys are: .*seed"),
    ("seed: many\n", "", r"exp\.yaml: 'seed' should be an integer, got str"),
    ("", ", classifier: forest", r"'tasks\.topic\.classifier' is 'forest'; choose one of: auto, logreg"),
    ("", ", label_separator: '|'", r"exp\.yaml: 'tasks\.topic\.label_separator' is set, but only a "
                                   r"multi_label task splits its labels"),
    ("", ", multi_label: true, negation: true, classifier: logreg",
     r"exp\.yaml: 'tasks\.topic\.negation' is set, but a multi_label task uses word features only"),
])
def test_bad_config(project, capsys, extra, task_extra, match):
    corpus().to_csv(project / "data.csv", index=False)
    experiment = write_experiment(project / "exp.yaml", "data.csv", task_extra=task_extra, extra=extra)
    fails(capsys, project, "preprocess", str(experiment), match=match)


def test_yaml_syntax_error_names_the_line(project, capsys):
    (project / "exp.yaml").write_text("data: {path: data.csv}\ntasks:\n  topic:\n\tlabels: [a]\n")
    fails(capsys, project, "train", "--no-tracking", "exp.yaml",
          match=r"exp\.yaml line 4, column 1: not valid YAML: found character .* indent with spaces$")


@pytest.mark.parametrize("task_extra", [", params: {clf__depth: 3}",
                                        ", classifier: logreg, params: {clf__depth: 3}",
                                        ", classifier: logreg, grid: {clf__depth: [3, 4]}"])
def test_parameter_the_pipeline_does_not_have(project, capsys, task_extra):
    corpus().to_csv(project / "data.csv", index=False)
    experiment = write_experiment(project / "exp.yaml", "data.csv", task_extra=task_extra)
    assert main(["preprocess", str(experiment)]) == 0
    err = fails(capsys, project, "train", "--no-tracking", str(experiment),
                match=r"exp\.yaml: 'tasks\.topic\.(params|grid)\.clf__depth' is not a parameter of "
                      r"(this|any candidate) pipeline.*valid: clf__C, ")
    assert "vect__" not in err  # the names of the step it names, not all 35
    assert not (project / "models").exists()


def test_missing_dataset_file(project, capsys):
    (project / "exp.yaml").write_text("data: {dataset: bbc_news}\ntasks: {topic: {}}\n")
    fails(capsys, project, "preprocess", "exp.yaml", "--data-dir", "nowhere",
          match=r"nowhere/bbc_news/bbc-fulltext\.tar\.gz: not found.*newstag download bbc_news")


@pytest.mark.parametrize(("value", "match"), [
    ("", r"--target-precision is empty; give e\.g\. 0\.95"),
    (" ", r"--target-precision is empty"),
    ("topic=0.9,topic=0.2", r"--target-precision gives task 'topic' twice; give one target per task"),
    ("0.9,0.8", r"--target-precision gives a precision for every task twice"),
])
def test_target_precision_that_picks_no_one_target(project, capsys, value, match):
    corpus().to_csv(project / "data.csv", index=False)
    write_experiment(project / "exp.yaml", "data.csv")
    fails(capsys, project, "evaluate", "--no-tracking", "exp.yaml", "--target-precision", value, match=match)


# ---- models -----------------------------------------------------------------------------------

@pytest.fixture
def trained(project, capsys):
    corpus().to_csv(project / "data.csv", index=False)
    experiment = write_experiment(project / "exp.yaml", "data.csv")
    assert main(["preprocess", str(experiment)]) == 0
    assert main(["train", "--no-tracking", str(experiment)]) == 0
    capsys.readouterr()
    return project / "models/exp/model.joblib"


def test_missing_model(project, capsys):
    fails(capsys, project, "predict", "--model", "models/x/model.joblib", "hello",
          match=r"models/x/model\.joblib: model not found; train one with `make train`")


@pytest.mark.parametrize(("damage", "match"), [
    (lambda p: p.write_bytes(p.read_bytes()[:200]), "sha256 does not match model.joblib.json"),
    (lambda p: p.write_bytes(p.read_bytes()[:-1] + bytes([p.read_bytes()[-1] ^ 1])),
     "sha256 does not match model.joblib.json.*Refusing"),
])
def test_damaged_model_is_refused(trained, capsys, damage, match):
    damage(trained)
    fails(capsys, trained.parents[2], "predict", "--model", str(trained), "hello", match=match)


def test_not_a_bundle(project, capsys):
    import joblib

    from newstag.data.files import sha256_file

    path = project / "model.joblib"
    joblib.dump(["just", "a", "list"], path)
    (project / "model.joblib.json").write_text(json.dumps({"sha256": sha256_file(path)}))
    fails(capsys, project, "predict", "--model", str(path), "hi", match="not a newstag model bundle")


def test_skops_bundle_predicts_the_same(trained, capsys):
    joblib_out = main(["predict", "--model", str(trained), "senate budget vote"]), capsys.readouterr().out
    assert main(["train", "--no-tracking", "--format", "skops", "exp.yaml"]) == 0
    capsys.readouterr()
    skops_path = trained.with_suffix(".skops")
    skops_out = main(["predict", "--model", str(skops_path), "senate budget vote"]), capsys.readouterr().out
    assert joblib_out == skops_out


# ---- runtime ----------------------------------------------------------------------------------

def test_second_training_of_the_same_experiment_is_told_it_is_busy(trained, capsys):
    with exclusive_lock(trained.parent / ".train.lock"):
        fails(capsys, trained.parents[2], "train", "--no-tracking", "exp.yaml",
              match=r"a training of exp is already running \(lock .*\.train\.lock\).*--wait")


def test_failed_first_training_leaves_no_model_folder(project, capsys):
    corpus().to_csv(project / "data.csv", index=False)
    experiment = write_experiment(project / "exp.yaml", "data.csv",
                                  task_extra=", classifier: logreg, params: {clf__C: -1}")
    assert main(["preprocess", str(experiment)]) == 0
    fails(capsys, project, "train", "--no-tracking", str(experiment), match=r"task 'topic': .*'C' parameter")
    assert not (project / "models/exp").exists()


def test_a_lock_file_its_holder_deleted_still_excludes(tmp_path):
    """A failed first training deletes its lock file while holding it; one waiting behind it
    must then lock the new file, not the deleted one (or a third would run beside it)."""
    lock, inside, done = tmp_path / "models/exp/.train.lock", threading.Event(), threading.Event()

    def waiter():
        with exclusive_lock(lock, wait=True):
            inside.set()
            done.wait(10)

    thread = threading.Thread(target=waiter)
    try:
        with exclusive_lock(lock):
            thread.start()
            time.sleep(0.1)  # it is now waiting on this lock file
            lock.unlink()
            lock.parent.rmdir()
        assert inside.wait(10)
        with pytest.raises(NewstagError, match="already running"), exclusive_lock(lock):
            pass
    finally:
        done.set()
        thread.join()


def test_bad_records_become_error_rows_unless_strict(trained, capsys):
    path = trained.parents[2] / "in.jsonl"
    path.write_text('{"text": "senate"}\nnot json\n{"text": ""}\n')
    assert main(["predict", "--model", str(trained), "--input", str(path)]) == 0
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert ["error" in row for row in rows] == [False, True, True]
    assert "2 record(s) could not be tagged" in captured.err
    fails(capsys, trained.parents[2], "predict", "--strict", "--model", str(trained), "--input",
          str(path), match=r"line 2: not valid JSON.*drop --strict")


def test_non_utf8_input_names_the_encoding_option(trained, capsys):
    path = trained.parents[2] / "latin.txt"
    path.write_bytes("Caf\u00e9 budget".encode("latin-1"))
    fails(capsys, trained.parents[2], "predict", "--model", str(trained), "--input", str(path),
          match=r"latin\.txt: not valid utf-8 .*--encoding")
    assert main(["predict", "--model", str(trained), "--encoding", "latin-1", "--input", str(path)]) == 0


def test_debug_shows_the_traceback(project):
    with pytest.raises(Exception, match="model not found"):
        main(["--debug", "predict", "--model", "nope.joblib", "x"])


def test_secrets_in_the_environment_never_reach_params(trained):
    from newstag.config import load_config
    from newstag.tracking import flatten

    os.environ["NEWSTAG_TEST_SECRET"] = "s3cr3t-token"
    try:
        params = flatten(load_config("exp.yaml").to_dict())
        assert not any("s3cr3t" in value for value in params.values())
        assert all(key.split(".")[0] in {"name", "data", "tasks", "seed", "split", "mlflow",
                                         "bench", "description", "compose"} for key in params)
    finally:
        del os.environ["NEWSTAG_TEST_SECRET"]
