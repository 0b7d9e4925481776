import json
import logging
import re

import pytest
from sklearn.dummy import DummyClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import Pipeline

from newstag.errors import NewstagError
from newstag.models.bundle import compact_path, load_bundle, load_for_prediction, save_bundle, sidecar_path


@pytest.fixture
def saved(tmp_path):
    pipeline = Pipeline([("vect", TfidfVectorizer()), ("clf", DummyClassifier())])
    pipeline.fit(["rain falls", "sun shines"], ["wet", "dry"])
    path = tmp_path / "models" / "x" / "model.joblib"
    sidecar = save_bundle(path, {"weather": pipeline}, {"experiment": "x"})
    return path, sidecar


def test_round_trip_keeps_pipelines_and_metadata(saved):
    path, sidecar = saved
    bundle = load_bundle(path)
    assert bundle["pipelines"]["weather"].predict(["rain"]).tolist() in (["wet"], ["dry"])
    assert bundle["metadata"]["experiment"] == "x"
    assert json.loads(sidecar_path(path).read_text()) == sidecar
    assert sidecar["versions"]["scikit-learn"] and len(sidecar["sha256"]) == 64
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.joblib", "model.joblib.compact.npz",
                                                             "model.joblib.json"]


def test_missing_model_says_how_to_make_it(tmp_path):
    with pytest.raises(NewstagError, match="model not found; train one with `make train`"):
        load_bundle(tmp_path / "model.joblib")


def test_changed_bytes_are_refused(saved):
    path, _ = saved
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(NewstagError, match="sha256 does not match model.joblib.json.*Refusing"):
        load_bundle(path)


def test_truncated_file_is_refused(saved):
    path, _ = saved
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(NewstagError, match="sha256 does not match"):
        load_bundle(path)


def test_missing_sidecar_is_refused(saved):
    path, _ = saved
    sidecar_path(path).unlink()
    with pytest.raises(NewstagError, match="model.joblib.json: missing"):
        load_bundle(path)


def test_other_scikit_learn_version_warns_with_both(saved, caplog):
    path, _ = saved
    import joblib

    from newstag.data.files import sha256_file

    bundle = joblib.load(path)
    bundle["metadata"]["versions"]["scikit-learn"] = "0.0.1"
    joblib.dump(bundle, path)
    sidecar = json.loads(sidecar_path(path).read_text())
    sidecar["sha256"] = sha256_file(path)
    sidecar_path(path).write_text(json.dumps(sidecar))
    with caplog.at_level(logging.WARNING):
        load_bundle(path)
    assert "saved with scikit-learn 0.0.1 but" in caplog.text


def test_not_a_bundle_is_refused(tmp_path):
    import joblib

    from newstag.data.files import sha256_file

    path = tmp_path / "model.joblib"
    joblib.dump({"something": "else"}, path)
    sidecar_path(path).write_text(json.dumps({"sha256": sha256_file(path)}))
    with pytest.raises(NewstagError, match="not a newstag model bundle"):
        load_bundle(path)


@pytest.fixture
def linear(tmp_path):
    from sklearn.svm import LinearSVC

    pipeline = Pipeline([("vect", TfidfVectorizer()), ("clf", LinearSVC())])
    pipeline.fit(["rain falls", "sun shines", "rain again", "sun again"], ["wet", "dry", "wet", "dry"])
    path = tmp_path / "models" / "x" / "model.joblib"
    save_bundle(path, {"weather": pipeline, "other": pipeline}, {"experiment": "x"})
    return path


def test_prediction_loads_the_compact_form_without_unpickling(linear):
    from newstag.models.compact import Task

    sidecar = json.loads(sidecar_path(linear).read_text())
    assert sidecar["compact"]["tasks"] == ["weather", "other"] and sidecar["compact"]["fallback"] == {}
    bundle = load_for_prediction(linear)
    assert list(bundle["pipelines"]) == ["weather", "other"]  # the bundle's order, not the sidecar's
    assert all(isinstance(task, Task) for task in bundle["pipelines"].values())
    assert bundle["metadata"]["experiment"] == "x"


@pytest.mark.parametrize("damage", ["flip", "truncate", "remove"])
def test_changed_or_missing_compact_form_is_refused(linear, damage):
    target = compact_path(linear)
    if damage == "remove":
        target.unlink()
    else:
        data = bytearray(target.read_bytes())
        data[-10] ^= 0xFF
        target.write_bytes(bytes(data) if damage == "flip" else bytes(data[:100]))
    match = "compact.npz: missing; it belongs to model.joblib" if damage == "remove" else \
        "compact.npz: sha256 does not match model.joblib.json.*Refusing"
    with pytest.raises(NewstagError, match=match):
        load_for_prediction(linear)


def test_changed_model_is_refused_even_with_a_good_compact_form(linear):
    linear.write_bytes(linear.read_bytes()[:100])
    with pytest.raises(NewstagError, match="model.joblib: sha256 does not match"):
        load_for_prediction(linear)


def test_task_without_a_compact_form_is_predicted_with_scikit_learn_and_said_so(saved, caplog):
    path, sidecar = saved  # a DummyClassifier has no compact form
    assert sidecar["compact"]["fallback"] == {"weather": "a DummyClassifier model"}
    with caplog.at_level(logging.INFO):
        bundle = load_for_prediction(path)
    assert isinstance(bundle["pipelines"]["weather"], Pipeline)
    assert caplog.text.count("is predicted with scikit-learn") == 1
    assert "DummyClassifier" in caplog.text


def test_bundle_saved_before_compact_forms_is_still_predicted(linear, caplog):
    from newstag.data.files import sha256_file

    sidecar = json.loads(sidecar_path(linear).read_text())
    del sidecar["compact"]
    compact_path(linear).unlink()
    sidecar_path(linear).write_text(json.dumps(sidecar))
    assert sidecar["sha256"] == sha256_file(linear)
    with caplog.at_level(logging.INFO):
        bundle = load_for_prediction(linear)
    assert isinstance(bundle["pipelines"]["weather"], Pipeline)
    assert "has no compact form (saved by an older newstag)" in caplog.text


def test_an_interrupt_waits_for_a_deferred_block_even_when_another_thread_takes_it():
    import os
    import signal
    import threading
    import time

    from newstag.data.files import signals_deferred

    busy = threading.Event()
    worker = threading.Thread(target=lambda: busy.wait(5))  # a second thread the signal may go to
    worker.start()
    finished = []
    try:
        with pytest.raises(KeyboardInterrupt), signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)  # the signal has arrived by now; the block must still finish
            finished.append(True)
    finally:
        busy.set()
        worker.join()
    assert finished == [True]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is back


# ---- the sidecar's shape ----------------------------------------------------------------------

@pytest.fixture
def tagged(tmp_path):
    """A bundle of two compact tasks whose sidecar records task metadata as training does."""
    from sklearn.svm import LinearSVC

    pipeline = Pipeline([("vect", TfidfVectorizer()), ("clf", LinearSVC())])
    pipeline.fit(["rain falls", "sun shines", "rain again", "sun again"], ["wet", "dry", "wet", "dry"])
    tasks = {task: {"labels": ["dry", "wet"], "best_params": {}, "min_confidence": None,
                    "calibration": {"method": "none"}, "model": {"classifier": "linear_svm"},
                    "validation": {"accuracy": 1.0}} for task in ("weather", "other")}
    path = tmp_path / "models" / "x" / "model.joblib"
    save_bundle(path, {"weather": pipeline, "other": pipeline}, {"experiment": "x", "tasks": tasks})
    return path


def edit_sidecar(path, change) -> None:
    sidecar = json.loads(sidecar_path(path).read_text())
    change(sidecar)
    sidecar_path(path).write_text(json.dumps(sidecar))


def _set(*keys_and_value):
    *keys, value = keys_and_value

    def change(sidecar):
        target = sidecar
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return change


@pytest.mark.parametrize(("change", "field", "wanted"), [
    (_set("tasks", 5), "tasks", "not an object"),
    (_set("tasks", ["weather"]), "tasks", "not an object"),
    (_set("tasks", "weather", "x"), "tasks.weather", "not an object"),
    (_set("tasks", "weather", "min_confidence", "high"), "tasks.weather.min_confidence",
     "not a number between 0 and 1"),
    (_set("tasks", "weather", "min_confidence", 2.0), "tasks.weather.min_confidence",
     "not a number between 0 and 1"),
    (_set("tasks", "weather", "min_confidence", 0), "tasks.weather.min_confidence",
     "not a number between 0 and 1"),
    (_set("tasks", "weather", "min_confidence", True), "tasks.weather.min_confidence",
     "not a number between 0 and 1"),
    (_set("tasks", "weather", "labels", "dry"), "tasks.weather.labels", "not a list"),
    (_set("tasks", "weather", "best_params", [1]), "tasks.weather.best_params", "not an object"),
    (_set("tasks", "weather", "calibration", "method", 3), "tasks.weather.calibration.method",
     "not a string"),
    (_set("versions", "1.0"), "versions", "not an object"),
    (_set("compact", "tasks", "weather"), "compact.tasks", "not a list"),
    (lambda sidecar: sidecar.pop("sha256"), "sha256", "missing"),
])
def test_sidecar_with_wrong_types_is_refused_in_one_line_by_every_reader(tagged, capsys, change, field,
                                                                          wanted):
    from newstag.card import info
    from tests.code.test_bad_input import fails

    edit_sidecar(tagged, change)
    match = rf"model\.joblib\.json: field '{re.escape(field)}' is .*{wanted}.*Restore it or retrain"
    for command in (["info", str(tagged)], ["predict", "--model", str(tagged), "rain"],
                    ["explain", str(tagged)]):
        fails(capsys, tagged.parent, *command, match=match)
    from newstag.models.bundle import read_sidecar

    for reader in (load_for_prediction, load_bundle, info, read_sidecar):  # evaluate, serving: load_bundle
        with pytest.raises(NewstagError, match=match):
            reader(tagged)


def test_sidecar_with_a_threshold_in_range_is_read(tagged):
    edit_sidecar(tagged, _set("tasks", "weather", "min_confidence", 0.99))
    bundle = load_for_prediction(tagged)
    assert bundle["metadata"]["tasks"]["weather"]["min_confidence"] == 0.99


# ---- newstag info on the compact form ---------------------------------------------------------

def test_info_checks_the_compact_form_as_predict_does(tagged, capsys):
    from newstag.cli import main

    assert main(["info", str(tagged)]) == 0
    healthy = capsys.readouterr().out
    assert "- fast prediction (NumPy only, model.joblib.compact.npz): weather, other" in healthy

    target = compact_path(tagged)
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    assert main(["info", str(tagged)]) == 1  # info reports it all, and exits 1 so a script can tell
    shown = capsys.readouterr().out
    assert "- compact form: sha256 DOES NOT match model.joblib.compact.npz; predict will refuse it: " \
           "retrain" in shown
    assert "fast prediction (NumPy only" not in shown and "(matches the file)" in shown  # the model is fine
    with pytest.raises(NewstagError, match="compact.npz: sha256 does not match"):
        load_for_prediction(tagged)  # what info foretold

    target.unlink()
    assert main(["info", str(tagged)]) == 1
    assert "- fast prediction: model.joblib.compact.npz is missing; predict will refuse the model: " \
           "retrain" in capsys.readouterr().out


@pytest.mark.parametrize("card", [bytes(range(128, 256)) * 40, b"#" * ((1 << 20) + 1)],
                         ids=["not-utf8", "over-1-MiB"])
def test_info_reads_a_bounded_utf8_card_or_says_there_is_none(tagged, capsys, card):
    from newstag.card import card_path
    from newstag.cli import main

    card_path(tagged).write_bytes(card)
    assert main(["info", str(tagged)]) == 0  # the model itself is fine
    shown = capsys.readouterr().out
    assert shown.startswith("(no readable MODEL_CARD.md beside") and "retrain it to write one" in shown
    assert "## Bundle metadata" in shown and len(shown) < 10_000


@pytest.mark.parametrize("command", ["info", "explain"])
def test_a_file_that_is_not_a_bundle_is_named_as_such(tagged, capsys, command):
    from tests.code.test_bad_input import fails

    for given in (str(tagged) + ".json", "README.md"):
        (tagged.parent / "README.md").write_text("# not a model\n")
        fails(capsys, tagged.parent, command, given,
              match=r"not a model bundle; give the \.joblib or \.skops file training wrote")
