import json
import logging

import pytest
from sklearn.dummy import DummyClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import Pipeline

from newstag.errors import NewstagError
from newstag.models.bundle import load_bundle, save_bundle, sidecar_path


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
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.joblib", "model.joblib.json"]


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
