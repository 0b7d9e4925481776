"""The parts of the MLflow integration that need no store: the paired bootstrap behind promotion,
the params a run logs, the experiment's note, and how the pyfunc model reads a DataFrame."""

import numpy as np
import pandas as pd
import pytest

from newstag.config import load_config
from newstag.registry import main_score, paired_bootstrap
from newstag.tracking import NOTE_HEADER, experiment_note, metric_name, run_params

from ..conftest import DEFAULT_EXPERIMENT, ROOT


def predictions(truth: list[str], predicted: list[str], frame: int = 1) -> dict:
    return {"topic": (frame, None, truth, predicted)}


def test_a_model_equal_to_the_champion_does_not_beat_it():
    truth = ["a", "b", "c", "a"] * 15
    same = paired_bootstrap(predictions(truth, truth), predictions(truth, truth), 500)
    assert same["difference"] == 0 and same["p_value"] == 1.0


def test_a_clearly_better_model_beats_the_champion_and_a_slightly_better_one_does_not():
    rng = np.random.default_rng(1)
    truth = list(rng.choice(["a", "b", "c"], 300))
    wrong = {"a": "b", "b": "c", "c": "a"}
    old = [wrong[t] if rng.random() < 0.4 else t for t in truth]
    better = [t if rng.random() < 0.9 else wrong[t] for t in truth]
    clear = paired_bootstrap(predictions(truth, better), predictions(truth, old), 1000)
    assert clear["difference"] > 0.2 and clear["p_value"] < 0.01 and clear["low"] > 0
    slightly = list(old)  # one mistake fewer
    first_mistake = next(i for i, (t, p) in enumerate(zip(truth, old, strict=True)) if t != p)
    slightly[first_mistake] = truth[first_mistake]
    close = paired_bootstrap(predictions(truth, slightly), predictions(truth, old), 1000)
    assert close["difference"] > 0 and close["p_value"] > 0.05


def test_the_main_metric_is_sklearns_macro_f1():
    from sklearn.metrics import f1_score

    truth, predicted = ["a", "b", "b", "c", "c", "c"], ["a", "b", "c", "c", "a", "d"]
    expected = f1_score(truth, predicted, labels=["a", "b", "c", "d"], average="macro", zero_division=0)
    assert main_score(predictions(truth, predicted)) == pytest.approx(expected)


def test_run_params_leave_out_empty_and_default_settings():
    params = run_params(load_config(DEFAULT_EXPERIMENT))
    assert params["tasks.topic.classifier"] == "complement_nb" and params["seed"] == "42"
    assert not [key for key in params if key.startswith(("bench", "compose", "data.options", "description"))]
    assert "data.encoding" not in params and "tasks.topic.negation" not in params  # defaults
    assert params["tasks.tone.negation"] == "True"  # set in the YAML
    composed = run_params(load_config(ROOT / "experiments" / "news.yaml"))
    assert composed["compose.topic"] == "ag_news"


def test_the_experiment_note_keeps_one_line_per_experiment_file():
    note = experiment_note("", "default", "Sample taggers.")
    note = experiment_note(note, "bbc_news", "BBC topics.")
    note = experiment_note(note, "default", "Sample taggers, retrained.")
    assert note.splitlines() == [NOTE_HEADER, "", "- **bbc_news**: BBC topics.",
                                 "- **default**: Sample taggers, retrained."]


def test_metric_names_lead_with_the_split():
    assert metric_name("test", "topic", "f1", "sci/tech") == "test/topic/f1/sci/tech"
    assert metric_name("val", "tone", "f1_macro") == "val/tone/f1_macro"


def test_the_served_model_reads_text_and_optional_ids():
    from newstag.serving import frame_records

    records = frame_records(pd.DataFrame({"text": ["one", None, float("nan")], "id": ["x", None, 7.0]}))
    assert [(r.id, r.text) for r in records] == [("x", "one"), (2, ""), (7, "")]
    with pytest.raises(ValueError, match="no 'text' column"):
        frame_records(pd.DataFrame({"body": ["one"]}))
