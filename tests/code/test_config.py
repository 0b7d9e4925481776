from dataclasses import FrozenInstanceError, replace

import pytest
from pydantic import ValidationError

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


@pytest.mark.parametrize(("text", "match"), [
    ("data: {path: x.csv}\ntasks:\n  topic:\n\tlabels: [a]\n",
     r"exp\.yaml line 4, column 1: not valid YAML: found character '\\t' that cannot start any "
     r"token; indent with spaces$"),
    ("data: [unclosed\n", r"exp\.yaml line 2, column 1: not valid YAML: expected ',' or '\]', but "
                          r"got '<stream end>' \(while parsing a flow sequence from line 1\)$"),
    ("data: {path: x.csv}\ntasks: topic: {}\n",
     r"exp\.yaml line 2, column 13: not valid YAML: mapping values are not allowed here$"),
])
def test_yaml_syntax_errors_give_the_line_and_column(tmp_path, text, match):
    with pytest.raises(NewstagError, match=match):
        load_config(write(tmp_path, text))


def test_split_fractions_are_checked(tmp_path):
    with pytest.raises(NewstagError, match="split.test"):
        load_config(write(tmp_path, VALID + "split: {test: 1.5}\n"))


def test_search_space_and_new_defaults(tmp_path):
    text = VALID.replace("tone: {}", "tone: {search: {space: {clf__C: {low: 0.01, high: 100, log: true}, "
                                     "vect__min_df: [1, 2], classifier: [logreg, nbsvm]}, timeout: 30}}")
    config = load_config(write(tmp_path, text))
    topic, tone = config.tasks
    assert topic.search is None and config.data.max_file_mb == 64 and config.data.max_total_mb == 8192
    search = tone.search
    assert (search.n_iter, search.timeout, search.folds, search.scoring) == (20, 30, 5, "f1_macro")
    c_range = search.space["clf__C"]
    assert (c_range.low, c_range.high, c_range.log, c_range.int) == (0.01, 100, True, False)
    assert search.space["vect__min_df"] == [1, 2] and search.space["classifier"] == ["logreg", "nbsvm"]
    assert config.to_dict()["tasks"]["tone"]["search"]["space"]["clf__C"]["log"] is True


def test_labels_are_kept_as_text(tmp_path):
    config = load_config(write(tmp_path, VALID.replace("[a, b]", "[1, 2.5, true]")))
    assert config.tasks[0].labels == ("1", "2.5", "True")


def test_a_loaded_experiment_cannot_change_but_can_be_copied_with_changes(tmp_path):
    config = load_config(write(tmp_path, VALID))
    with pytest.raises(FrozenInstanceError):
        config.tasks[0].classifier = "sgd"
    changed = replace(config.tasks[0], classifier="nbsvm", grid={})
    assert (changed.classifier, changed.grid, changed.labels) == ("nbsvm", {}, ("a", "b"))
    with pytest.raises(ValidationError):  # copies are checked too
        replace(config.tasks[0], classifier="forest")


@pytest.mark.parametrize(("old", "new", "match"), [
    ("tone: {}", "tone: {search: {timeout: 9}}", r"missing required key 'tasks\.tone\.search\.space'"),
    ("tone: {}", "tone: {search: {space: {}}}", r"'tasks\.tone\.search\.space' is empty"),
    ("tone: {}", "tone: {search: {space: {clf__C: [1]}, n_iter: 0}}",
     r"'tasks\.tone\.search\.n_iter' should be at least 1, got int 0"),
    ("tone: {}", "tone: {search: {space: {clf__C: [1]}, timeout: -5}}",
     r"'tasks\.tone\.search\.timeout' should be greater than 0, got int -5"),
    ("tone: {}", "tone: {search: {space: {clf__C: [1]}, n_iter: null}}",
     r"'tasks\.tone\.search' should set n_iter, timeout or both"),
    ("tone: {}", "tone: {search: {space: {clf__C: [1]}, folds: 1}}",
     r"'tasks\.tone\.search\.folds' should be at least 2"),
    ("tone: {}", "tone: {search: {space: {clf__C: [1]}, scoring: f1}}",
     r"'tasks\.tone\.search\.scoring' is 'f1'; choose one of: f1_macro, accuracy"),
    ("tone: {}", "tone: {search: {space: {clf__C: 3}}}",
     r"'tasks\.tone\.search\.space\.clf__C' should be a list of candidate values or a range \{low, high\}"),
    ("tone: {}", "tone: {search: {space: {clf__C: []}}}", r"'tasks\.tone\.search\.space\.clf__C' is empty"),
    ("tone: {}", "tone: {search: {space: {clf__C: {low: 2, high: 1}}}}",
     r"'tasks\.tone\.search\.space\.clf__C' should have low < high, got low 2 and high 1"),
    ("tone: {}", "tone: {search: {space: {clf__C: {low: 0, high: 1, log: true}}}}",
     r"'tasks\.tone\.search\.space\.clf__C' should have low > 0 with log: true"),
    ("tone: {}", "tone: {search: {space: {clf__C: {low: 0, hi: 1}}}}",
     r"unknown key 'hi' in tasks\.tone\.search\.space\.clf__C; valid keys are: high, int, log, low"),
    ("tone: {}", "tone: {search: {space: {classifier: [logreg, forest]}}}",
     r"'tasks\.tone\.search\.space\.classifier\[1\]' is 'forest'; choose one of: logreg, .*nbsvm"),
    ("tone: {}", "tone: {search: {space: {features: {low: 1, high: 2}}}}",
     r"'tasks\.tone\.search\.space\.features' should be a list of choices from: word, char, word\+char"),
    ("[a, b]", "[a, [b, c]]",
     r"'tasks\.topic\.labels\[1\]' should be text, a number or true/false, got list"),
    ("[a, b]", "[a, {b: c}]",
     r"'tasks\.topic\.labels\[1\]' should be text, a number or true/false, got dict"),
    ("[0.5, 1]", "[]", r"'tasks\.topic\.grid\.clf__C' is empty"),
    ("[a, b]", "[]", r"'tasks\.topic\.labels' is empty; list the allowed labels, or remove labels"),
    ("[a, b]", "[sport, sport, world]", r"'tasks\.topic\.labels\[1\]' repeats 'sport'; list each label once"),
    ("[a, b]", "[1, '1']", r"'tasks\.topic\.labels\[1\]' repeats '1'"),
    # data labels are read stripped: these would never match a row
    ("[a, b]", "[a, '']", r"'tasks\.topic\.labels\[1\]' is '', an empty label; remove it"),
    ("[a, b]", "[a, ' sport']", r"'tasks\.topic\.labels\[1\]' is ' sport', with spaces around it, "
                                r"which labels in the data never have .*; write 'sport'$"),
    ("[a, b]", "['b\t', a]", r"'tasks\.topic\.labels\[0\]' is 'b\\t', with spaces around it"),
    # a label holding the separator: one label in a JSONL list, two in a CSV cell
    ("tone: {}", "tone: {multi_label: true, labels: [sport, 'sport;business']}",
     r"'tasks\.tone\.labels\[1\]' is 'sport;business', which holds the label_separator ';', so a "
     r"CSV cell would split it into several labels; rename the label or set label_separator to "
     r"another text, e\.g\. '\|'$"),
    ("tone: {}", "tone: {multi_label: true, labels: [a|b, c], label_separator: '|'}",
     r"'tasks\.tone\.labels\[0\]' is 'a\|b', which holds the label_separator '\|'.*e\.g\. ';'$"),
    ("tone: {}", "tone: {label_separator: '|'}",
     r"'tasks\.tone\.label_separator' is set, but only a multi_label task splits its labels; remove "
     r"label_separator or set multi_label: true"),
    ("path: data/x.csv", "path: data/x.csv, max_file_mb: 0",
     r"'data\.max_file_mb' should be greater than 0, got int 0"),
    ("path: data/x.csv", "path: data/x.csv, dataset: bbc_news", r"'data' should set exactly one of path"),
    ("path: data/x.csv", "path: data/x.csv, deduplicate: 'no'",
     r"'data\.deduplicate' should be true or false"),
    ("tone: {}", "tone: {clasifier: sgd}",
     r"unknown key 'clasifier' in tasks\.tone; valid keys are: calibration, classifier, column, .*search"),
    ("tasks:", "taks:", r"unknown key 'taks' in top level"),
    # a multi-label task has single-word TF-IDF features and per-label Platt sigmoids only
    ("tone: {}", "tone: {multi_label: true, negation: true, classifier: logreg}",
     r"'tasks\.tone\.negation' is set, but a multi_label task uses word features only; remove negation"),
    ("tone: {}", "tone: {multi_label: true, lexicons: [vader]}",
     r"'tasks\.tone\.lexicons' is set, but a multi_label task uses word features only"),
    ("tone: {}", "tone: {multi_label: true, features: word+char}",
     r"'tasks\.tone\.features' is 'word\+char', but a multi_label task uses word features only"),
    ("tone: {}", "tone: {multi_label: true, calibration: isotonic}",
     r"'tasks\.tone\.calibration' is 'isotonic', but a multi_label task calibrates each label"),
])
def test_bad_values_are_named_in_one_line(tmp_path, old, new, match):
    caught = refused(tmp_path, old, new, match)
    assert str(caught.value).startswith(str(tmp_path / "exp.yaml"))


def refused(tmp_path, old: str, new: str, match: str):
    """VALID with `old` replaced by `new` fails to load in one line matching `match`."""
    assert old in VALID
    with pytest.raises(NewstagError, match=match) as caught:
        load_config(write(tmp_path, VALID.replace(old, new)))
    assert "\n" not in str(caught.value)
    return caught


def test_missing_required_key(tmp_path):
    with pytest.raises(NewstagError, match=r"missing required key 'tasks'"):
        load_config(write(tmp_path, "data: {path: x.csv}\n"))


def test_a_label_with_the_separator_is_fine_where_nothing_splits_it(tmp_path):
    config = load_config(write(tmp_path, VALID.replace("[a, b]", "['sport;business', b]")))
    assert config.tasks[0].labels == ("sport;business", "b")


@pytest.mark.parametrize(("old", "new", "match"), [
    # YAML 1.1 (PyYAML) reads a float only with a dot and a signed exponent
    ("tone: {}", "tone: {min_confidence: 1e-9}",
     r"'tasks\.tone\.min_confidence' should be a number, got the text '1e-9' \(YAML 1\.1 reads "
     r"1e-9 as text: write 1\.0e-9\)$"),
    ("tone: {}", "tone: {min_confidence: 5.0e3}", r"got the text '5\.0e3' .*: write 5\.0e\+3\)$"),
    ("tone: {}", "tone: {min_confidence: '0.5'}",
     r"should be a number, got the text '0\.5' \(it is quoted: write 0\.5 without quotes\)$"),
    ("tone: {}", "tone: {min_confidence: high}", r"should be a number, got str 'high'$"),
    ("tasks:", "seed: 1e3\ntasks:",
     r"'seed' should be an integer, got the text '1e3' \(YAML 1\.1 reads 1e3 as text: write 1000\)$"),
    ("tasks:", "seed: '7'\ntasks:", r"'seed' should be an integer, got the text '7' \(it is quoted"),
    # .nan passes or misnames every bound check; .inf is no number to train with either
    ("tone: {}", "tone: {min_confidence: .nan}",
     r"'tasks\.tone\.min_confidence' should be a number in \(0, 1\), got \.nan \(not a number\)$"),
    ("tone: {}", "tone: {search: {space: {clf__C: [1]}, timeout: .inf}}",
     r"'tasks\.tone\.search\.timeout' should be a finite number greater than 0, got \.inf$"),
    ("tone: {}", "tone: {search: {space: {clf__C: {low: .nan, high: 1}}}}",
     r"'tasks\.tone\.search\.space\.clf__C\.low' should be a number, got \.nan \(not a number\)$"),
])
def test_number_errors_say_how_to_write_the_number(tmp_path, old, new, match):
    refused(tmp_path, old, new, match)
