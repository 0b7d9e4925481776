"""The committed JSON Schema is what `newstag schema` prints, and every experiment file follows it."""

import json

import jsonschema
import pytest
import yaml

from newstag.cli import main
from newstag.config import load_config

from ..conftest import ROOT

EXPERIMENTS = ROOT / "experiments"
MODELINE = "# yaml-language-server: $schema=schema.json"
SEARCHED = """data: {path: x.csv, max_file_mb: 16}
tasks:
  topic:
    labels: [a, 1, true]
    search:
      space: {classifier: [logreg, nbsvm], clf__C: {low: 0.01, high: 100, log: true}, vect__min_df: [1, 2]}
      timeout: 60
"""


def printed_schema(capsys) -> str:
    assert main(["schema"]) == 0
    return capsys.readouterr().out


def validate(document, schema: dict) -> None:
    jsonschema.validate(document, schema, cls=jsonschema.Draft202012Validator)


def test_committed_schema_is_what_newstag_schema_prints(capsys):
    assert (EXPERIMENTS / "schema.json").read_text(encoding="utf-8") == printed_schema(capsys), \
        "experiments/schema.json is stale: run `newstag schema > experiments/schema.json`"


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_experiment_names_and_follows_the_schema(path):
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == MODELINE
    validate(yaml.safe_load(text), json.loads((EXPERIMENTS / "schema.json").read_text(encoding="utf-8")))


def test_schema_and_loader_accept_a_search(capsys, tmp_path):
    validate(yaml.safe_load(SEARCHED), json.loads(printed_schema(capsys)))
    (tmp_path / "exp.yaml").write_text(SEARCHED)
    assert load_config(tmp_path / "exp.yaml").tasks[0].search.timeout == 60


@pytest.mark.parametrize("bad", [
    {"data": {"path": "x.csv"}, "tasks": {"topic": {"classifier": "forest"}}},
    {"data": {"path": "x.csv"}, "tasks": {"topic": {}}, "sed": 1},
    {"data": {"path": "x.csv", "dataset": "bbc_news"}, "tasks": {"topic": {}}},
    {"data": {"path": "x.csv"}, "tasks": {"topic": {"labels": ["a", ["b"]]}}},
    {"data": {"path": "x.csv"}, "tasks": {"topic": {"labels": []}}},
    {"data": {"path": "x.csv"}, "tasks": {"topic": {"labels": ["a", "b", "a"]}}},
    {"data": {"path": "x.csv"}, "tasks": {"topic": {"search": {"space": {"classifier": ["forest"]}}}}},
    {"data": {"path": "x.csv"}, "tasks": {"topic": {"search": {"n_iter": 0}}}},
    {"compose": {"topic": "ag_news"}, "data": {"path": "x.csv"}},
])
def test_the_schema_rejects_what_load_config_rejects(capsys, bad):
    with pytest.raises(jsonschema.ValidationError):
        validate(bad, json.loads(printed_schema(capsys)))
