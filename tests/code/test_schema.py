"""The committed JSON Schema is what `newstag schema` prints, and every experiment file follows it."""

import json

import jsonschema
import pytest
import yaml

from newstag.cli import main

from ..conftest import ROOT

EXPERIMENTS = ROOT / "experiments"
MODELINE = "# yaml-language-server: $schema=schema.json"

def schema_printed(capsys) -> str:
    assert main(["schema"]) == 0
    return capsys.readouterr().out

def test_committed_schema_is_what_newstag_schema_prints(capsys):
    assert (EXPERIMENTS / "schema.json").read_text(encoding="utf-8") == schema_printed(capsys), \
        "experiments/schema.json is stale: run `newstag schema > experiments/schema.json`"

@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_experiment_names_and_follows_the_schema(path):
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == MODELINE
    schema = json.loads((EXPERIMENTS / "schema.json").read_text(encoding="utf-8"))
    jsonschema.validate(yaml.safe_load(text), schema, cls=jsonschema.Draft202012Validator)

@pytest.mark.parametrize("bad", [
    {"data": {"path": "x.csv"}, "tasks": {"topic": {"classifier": "forest"}}},
    {"data": {"path": "x.csv"}, "tasks": {"topic": {}}, "sed": 1},
    {"data": {"path": "x.csv", "dataset": "bbc_news"}, "tasks": {"topic": {}}},
    {"data": {"path": "x.csv"}, "tasks": {"topic": {"search": {"space": {"classifier": ["forest"]}}}}},
    {"compose": {"topic": "ag_news"}, "data": {"path": "x.csv"}},
])
def test_the_schema_rejects_what_load_config_rejects(capsys, bad):
    schema = json.loads(schema_printed(capsys))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema, cls=jsonschema.Draft202012Validator)
