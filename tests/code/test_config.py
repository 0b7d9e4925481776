import pytest

from newstag.config import load_config
from newstag.errors import NewstagError

from ..conftest import DEFAULT_EXPERIMENT

VALID = """
data: {path: data/x.csv, text_columns: [title, body]}
tasks:
  topic: {labels: [a, b], classifier: linear_svm, grid: {clf__C: [0.5, 1]}}
  tone: {}
"""


def write(tmp_path, text: str):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def test_default_experiment_loads():
    config = load_config(DEFAULT_EXPERIMENT)
    assert config.name == "default"
    assert config.task_names == ["topic", "tone"]
    assert config.data.text_columns == ("title", "text")


def test_valid_file_fills_defaults(tmp_path):
    config = load_config(write(tmp_path, VALID))
    assert config.name == "exp"
    topic, tone = config.tasks
    assert topic.classifier == "linear_svm" and topic.grid == {"clf__C": [0.5, 1]}
    assert tone.column == "tone" and tone.classifier == "auto" and tone.labels is None
    assert config.seed == 42 and config.split.test == 0.15


def test_unknown_key_lists_the_valid_ones(tmp_path):
    with pytest.raises(NewstagError, match=r"unknown key 'sed' in top level; valid keys are: .*seed"):
        load_config(write(tmp_path, VALID + "sed: 3\n"))


def test_wrong_type_is_named(tmp_path):
    with pytest.raises(NewstagError, match=r"'seed' should be an integer, got str"):
        load_config(write(tmp_path, VALID + "seed: abc\n"))


def test_unknown_classifier_lists_choices(tmp_path):
    text = VALID.replace("linear_svm", "random_forest")
    with pytest.raises(NewstagError, match=r"tasks.topic.classifier.*logreg, linear_svm, sgd"):
        load_config(write(tmp_path, text))


def test_grid_values_must_be_lists(tmp_path):
    text = VALID.replace("[0.5, 1]", "0.5")
    with pytest.raises(NewstagError, match=r"'tasks\.topic\.grid\.clf__C' should be a list, got float 0.5"):
        load_config(write(tmp_path, text))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(NewstagError, match="experiment file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(NewstagError, match="not valid YAML"):
        load_config(write(tmp_path, "data: [unclosed\n"))


def test_split_fractions_are_checked(tmp_path):
    with pytest.raises(NewstagError, match="split.test"):
        load_config(write(tmp_path, VALID + "split: {test: 1.5}\n"))
