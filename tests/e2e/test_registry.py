"""One registered pyfunc model per experiment: what it holds, how it answers, served over HTTP,
promoted on evidence, and the MLflow UI showing it all (in headless Chromium).

The tests share one project trained, evaluated and promoted once; the last test retrains it and
so runs last (pytest keeps file order)."""

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ..conftest import ROOT, copy_project, run_newstag, sample_experiment
from .test_report import chromium, headless

SEED_ARTICLE = ROOT.parent / "shared" / "seeds" / "article-000.txt"
NAME = "newstag-default"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The project copied (Makefile, venv link), the sample trained, evaluated and promoted."""
    work = copy_project(tmp_path_factory.mktemp("registry-project"))
    experiment = sample_experiment(work)
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"}
    done = run_in_one_process([[stage, str(experiment)] for stage in
                               ("preprocess", "train", "evaluate", "promote")], cwd=work, env=env)
    return {"dir": work, "experiment": experiment, "env": env, "promoted": done.stdout.splitlines()[-1]}


def run_in_one_process(commands: list[list[str]], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    """Several newstag commands, one after the other, in one interpreter (each subprocess would
    import everything again); stops at the first that fails."""
    code = ("import json, sys\nfrom newstag.cli import main\nfor command in json.loads(sys.argv[1]):\n"
            "    code = main(command)\n    if code:\n        sys.exit(code)\n")
    result = subprocess.run([sys.executable, "-c", code, json.dumps(commands)], cwd=cwd, text=True,
                            capture_output=True, env={**os.environ, **env}, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def client(project):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=project["env"]["MLFLOW_TRACKING_URI"])


def the_run(client):
    experiment = client.get_experiment_by_name("newstag")
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])[0]


def test_first_version_is_promoted_with_who_when_why(project, client):
    assert "version 1 is now the champion" in project["promoted"]
    assert "no champion yet" in project["promoted"]
    version = client.get_model_version_by_alias(NAME, "champion")
    assert str(version.version) == "1"
    assert {"promoted_by", "promoted_at", "promotion_reason"} <= set(version.tags)
    assert "test/mean/f1_macro" in version.tags["promotion_reason"]


def test_promote_check_names_the_champion_or_says_how_to_get_one(project, tmp_path):
    shown = run_newstag("promote", str(project["experiment"]), "--check", cwd=project["dir"],
                        env=project["env"]).stdout
    assert shown.strip() == f"models:/{NAME}@champion (version 1)"
    empty = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'empty.db'}"}  # what `make serve` checks first
    result = run_newstag("promote", str(project["experiment"]), "--check", cwd=project["dir"],
                         env=empty, check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert f"{NAME} has no champion" in result.stderr and "make promote" in result.stderr


def test_logged_model_is_the_bundle_and_no_more(project, client):
    model = client.get_logged_model(the_run(client).data.tags["newstag.model_id"])
    versions = json.loads(model.tags["mlflow.modelVersions"])
    assert [(v["name"], str(v["version"])) for v in versions] == [(NAME, "1")]
    folder = Path(model.artifact_location.removeprefix("file://"))
    files = sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())
    assert files == ["MLmodel", "artifacts/bundle/model.joblib", "artifacts/bundle/model.joblib.json",
                     "conda.yaml", "input_example.json", "mlflow_model.py", "python_env.yaml",
                     "requirements.txt", "serving_input_example.json"]
    bundle = project["dir"] / "models/default/model.joblib"
    size = sum((folder / name).stat().st_size for name in files)
    assert size <= 2 * bundle.stat().st_size, (size, bundle.stat().st_size)
    import sklearn

    requirements = (folder / "requirements.txt").read_text().split()
    assert f"scikit-learn=={sklearn.__version__}" in requirements
    assert any(line.startswith("newstag==") for line in requirements)


def test_pyfunc_answers_as_newstag_predict_does(project, tmp_path):
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(project["env"]["MLFLOW_TRACKING_URI"])
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    inputs = model.metadata.get_input_schema()
    assert inputs.input_names() == ["text", "id"] and inputs.required_input_names() == ["text"]
    assert [p.name for p in model.metadata.get_params_schema().params] == ["explain"]
    texts = ["Shares jumped after record profits.", "   ", "The striker scored twice in the final."]
    answer = model.predict(pd.DataFrame({"id": ["a", "b", "c"], "text": texts}))
    rows = [{key: value for key, value in row.items() if value is not None}
            for row in answer.to_dict("records")]
    articles = tmp_path / "articles.jsonl"
    articles.write_text("".join(json.dumps({"id": ident, "text": text}) + "\n"
                                for ident, text in zip("abc", texts, strict=True)))
    expected = [json.loads(line) for line in run_newstag(
        "predict", "--input", str(articles), cwd=project["dir"], env=project["env"]).stdout.splitlines()]
    assert rows[0] == expected[0] and rows[2] == expected[2]
    assert rows[1] == {"id": "b", "error": "record b: empty text"}
    explained = model.predict(pd.DataFrame({"text": texts[:1]}), params={"explain": True})
    terms = json.loads(run_newstag("predict", "--explain", "--input", str(articles), cwd=project["dir"],
                                   env=project["env"]).stdout.splitlines()[0])["topic_terms"]
    assert [list(term) for term in explained.loc[0, "topic_terms"]] == terms


def test_version_carries_metrics_data_code_and_config(project, client):
    version = client.get_model_version(NAME, "1")
    manifest = json.loads((project["dir"] / "data/processed/default/manifest.json").read_text())
    assert version.tags["data_sha256"] == manifest["data_sha256"]
    assert {"git_commit", "config", "config_sha256", "val/topic/f1_macro", "test/topic/f1_macro",
            "test/mean/f1_macro"} <= set(version.tags)
    assert json.loads(version.tags["config"])["tasks"]["tone"]["classifier"] == "logreg"
    assert "test macro-F1" in version.description and manifest["data_sha256"] in version.description
    logged = client.get_logged_model(the_run(client).data.tags["newstag.model_id"])
    metrics = {metric.key for metric in logged.metrics}
    assert {"val/topic/f1_macro", "test/topic/accuracy", "test/tone/f1_macro"} <= metrics


def test_run_and_experiment_as_the_ui_shows_them(project, client):
    experiment = client.get_experiment_by_name("newstag")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert "- **default**: Topic and tone taggers" in experiment.tags["mlflow.note.content"]
    run = the_run(client)
    assert run.data.tags["mlflow.note.content"].startswith("Topic and tone taggers")
    inputs = {i.dataset.name: i for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"default-train", "default-validation", "default-test"}
    test = inputs["default-test"]
    tags = {tag.key: tag.value for tag in test.tags}
    manifest = json.loads((project["dir"] / "data/processed/default/manifest.json").read_text())
    assert tags["mlflow.data.context"] == "test"
    assert tags["rows"] == str(manifest["splits"]["test"]["rows"])
    assert test.dataset.digest == tags["sha256"][:32]
    params = run.data.params
    assert not [key for key in params if key.startswith(("bench.", "compose", "data.options"))]
    assert "description" not in params and "data.encoding" not in params  # a default
    assert params["tasks.tone.classifier"] == "logreg"


def test_review_adds_its_list_and_the_rebuilt_report_to_the_evaluation_run(project, client, tmp_path):
    """The report in MLflow is the one on disk: without this, review's section never reached it."""
    reviewed = run_newstag("review", str(project["experiment"]), "--task", "tone", cwd=project["dir"],
                           env=project["env"])
    ids = [json.loads(line)["id"] for line in reviewed.stdout.splitlines()]
    assert ids, "the sample's tone review lists articles"
    run = the_run(client)
    assert {"evaluation/label_issues.jsonl", "evaluation/report.html"} <= \
        {item.path for item in client.list_artifacts(run.info.run_id, "evaluation")}
    page = Path(client.download_artifacts(run.info.run_id, "evaluation/report.html", str(tmp_path)))
    assert ids[0] in page.read_text(encoding="utf-8")
    assert (project["dir"] / "reports/default/report.html").read_bytes() == page.read_bytes()


# ---- serving ------------------------------------------------------------------------------------

def start(command: list[str], cwd: Path, env: dict, log: Path) -> subprocess.Popen:
    handle = open(log, "w")  # noqa: SIM115 (the child keeps it; closed with the process)
    return subprocess.Popen(command, cwd=cwd, env={**os.environ, **env}, stdout=handle,
                            stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)


def post(url: str, body: bytes, content_type: str = "application/json") -> dict:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_make_serve_answers_json_and_csv(project, tmp_path):
    from newstag.bench import free_port, wait_for

    port = free_port()
    process = start(["make", "serve", f"SERVE_PORT={port}"], project["dir"], project["env"],
                    tmp_path / "serve.log")
    url = f"http://127.0.0.1:{port}/invocations"
    seed = SEED_ARTICLE.read_text() if SEED_ARTICLE.is_file() else "Talks collapsed in Geneva overnight."
    try:
        wait_for(f"http://127.0.0.1:{port}/ping", process, timeout=60)
        answers = {
            "dataframe_split": post(url, json.dumps({"dataframe_split": {
                "columns": ["id", "text"], "data": [["seed", seed], ["empty", ""]]}}).encode()),
            "dataframe_records": post(url, json.dumps({"dataframe_records": [
                {"id": "seed", "text": seed}, {"id": "empty", "text": " "}]}).encode()),
            "inputs": post(url, json.dumps({"inputs": [{"id": "seed", "text": seed},
                                                       {"id": "empty", "text": ""}]}).encode()),
            "csv": post(url, _csv([("seed", seed), ("empty", "")]), "text/csv"),
        }
    finally:
        stop(process)
    for kind, answer in answers.items():
        tagged, empty = answer["predictions"]
        assert tagged["id"] == "seed" and tagged["error"] is None, (kind, tagged)
        assert tagged["topic"] in {"world", "politics"}, (kind, tagged)
        assert tagged["tone"] in {"negative", "neutral", "positive"}, (kind, tagged)
        assert 0 < tagged["topic_score"] <= 1 and 0 < tagged["tone_score"] <= 1, (kind, tagged)
        assert empty == {**{key: None for key in empty}, "id": "empty", "error": "record empty: empty text"}
    assert len({json.dumps(answer) for answer in answers.values()}) == 1  # four ways, one answer


def _csv(rows) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "text"])
    writer.writerows(rows)
    return out.getvalue().encode()


# ---- the UI in a browser ------------------------------------------------------------------------

SCREENSHOTS = ROOT / "reports" / "ui-screenshots"  # git-ignored (reports/)


def page_text(dom: str) -> str:
    import html

    text = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text)))


def test_make_ui_shows_run_dataset_metrics_and_champion(project, client, tmp_path):
    from newstag.bench import free_port, wait_for

    browser = chromium()
    port = free_port()
    began = time.perf_counter()
    process = start(["make", "ui", f"PORT={port}"], project["dir"], project["env"], tmp_path / "ui.log")
    try:
        wait_for(f"http://127.0.0.1:{port}/health", process, timeout=60)
        started = time.perf_counter() - began
        link = re.search(r"http://\S+#/experiments/\d+/runs", (tmp_path / "ui.log").read_text()).group(0)
        run = the_run(client)
        pages = {"runs": link, "run": f"{link}/{run.info.run_id}",
                 "model": f"http://127.0.0.1:{port}/#/models/{NAME}"}
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        texts = {}
        for name, address in pages.items():
            dom = headless(browser, tmp_path, "--window-size=1400,1000", "--virtual-time-budget=20000",
                           "--dump-dom", address)
            texts[name] = page_text(dom.stdout)
            headless(browser, tmp_path, "--window-size=1400,1000", "--virtual-time-budget=20000",
                     f"--screenshot={SCREENSHOTS / f'{name}.png'}", address)
    finally:
        stop(process)
    print(f"make ui answered in {started:.1f} s; screenshots in {SCREENSHOTS}")
    assert "Training runs" in texts["runs"] and "default-test" in texts["runs"], texts["runs"][:2000]
    assert "Topic and tone taggers trained on the bundled sample corpus" in texts["run"]
    for shown in ("default-test", "test/topic/accuracy", "val/tone/f1_macro", NAME):
        assert shown in texts["run"], shown
    assert "Version 1" in texts["model"] and "champion" in texts["model"], texts["model"][:2000]
    for name in pages:
        assert (SCREENSHOTS / f"{name}.png").stat().st_size > 20_000


# ---- retraining and promotion (changes the store: keep last) -------------------------------------

def test_an_unchanged_retrain_registers_no_new_version(project, client):
    again = run_newstag("train", str(project["experiment"]), cwd=project["dir"], env=project["env"])
    assert "no new version of newstag-default" in again.stderr and "models:/newstag-default/1" in again.stderr
    assert [str(v.version) for v in client.search_model_versions(f"name='{NAME}'")] == ["1"]


def test_a_worse_challenger_is_promoted_only_by_force(project, client):
    import yaml

    work, env, experiment = project["dir"], project["env"], project["experiment"]
    config = yaml.safe_load(experiment.read_text())  # the same experiment, a weaker tone model
    config["tasks"]["tone"]["grid"] = {"clf__C": [0.01]}
    experiment.write_text(yaml.safe_dump(config, sort_keys=False))
    done = run_in_one_process([["train", str(experiment)], ["promote", str(experiment)]], cwd=work, env=env)
    refused = done.stdout.splitlines()[-1]
    assert "version 2 not promoted" in refused, refused
    assert len(re.findall(r"\b0\.\d{4}\b", refused)) >= 2 and "paired bootstrap p =" in refused
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"

    forced = run_newstag("promote", "--force", "--reason", "trying the weak model", str(experiment),
                         cwd=work, env=env)
    assert "version 2 is now the champion" in forced.stdout
    champion = client.get_model_version_by_alias(NAME, "champion")
    assert str(champion.version) == "2" and champion.tags["promotion_reason"] == "trying the weak model"
    assert champion.tags["promotion_forced"] == "True"
    tagged = run_newstag("predict", "--model", f"models:/{NAME}@champion", "Shares jumped.",
                         cwd=work, env=env)
    assert json.loads(tagged.stdout)["topic"] == "business"


def test_thresholds_written_by_evaluate_train_and_register(project, client):
    """The documented threshold workflow: evaluate --write-experiment writes
    <name>.threshold.yaml, and that experiment (a dot in its name, which MLflow refuses in a
    logged model's name) trains, registers as its own model and keeps the threshold."""
    import yaml

    work, env, experiment = project["dir"], project["env"], project["experiment"]
    run_newstag("evaluate", str(experiment), "--target-precision", "0.95", "--write-experiment",
                cwd=work, env=env)
    written = experiment.with_name(f"{experiment.stem}.threshold.yaml")
    kept = [line for line in experiment.read_text().splitlines() if line.lstrip().startswith("#")]
    assert set(kept) <= set(written.read_text().splitlines())  # the author's comments stay
    thresholds = {task: values["min_confidence"] for task, values in
                  yaml.safe_load(written.read_text())["tasks"].items()}
    assert set(thresholds) == {"topic", "tone"} and all(0 < value < 1 for value in thresholds.values())
    run_in_one_process([["preprocess", str(written)], ["train", str(written)]], cwd=work, env=env)
    versions = client.search_model_versions(f"name='newstag-{written.stem}'")
    assert [str(v.version) for v in versions] == ["1"]
    shown = run_newstag("info", str(work / "models" / written.stem / "model.joblib"), cwd=work,
                        env=env).stdout
    for task, threshold in thresholds.items():
        assert re.search(rf"task {task}: .*min_confidence {threshold:g}\n", shown), shown[-2000:]


def test_a_champion_trained_on_other_splits_is_not_compared_on_the_new_ones(tmp_path, monkeypatch, capsys):
    """After a re-split, the champion's training articles can be in the test split: its score
    there would be flattered, so promote does not compare (and --force still can promote)."""
    from newstag.cli import main
    from tests.code.test_report import toy_project

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = toy_project(tmp_path)
    assert main(["train", str(experiment)]) == 0 and main(["promote", str(experiment)]) == 0
    experiment.write_text(experiment.read_text() + "seed: 7\n")
    assert main(["preprocess", str(experiment)]) == 0 and main(["train", str(experiment)]) == 0
    capsys.readouterr()
    assert main(["promote", str(experiment)]) == 0
    said = capsys.readouterr().out
    assert "version 2 not promoted: champion version 1 was trained on other splits than the current " \
           "ones" in said and "--force" in said
    assert main(["promote", str(experiment), "--force", "--reason", "re-split"]) == 0
    assert "version 2 is now the champion" in capsys.readouterr().out
