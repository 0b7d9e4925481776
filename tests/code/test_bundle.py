import json
import logging

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
