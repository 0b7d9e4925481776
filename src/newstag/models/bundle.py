"""The model bundle: one joblib file with every task's pipeline, plus a JSON sidecar.

joblib files are pickles and run code when loaded, so `load_bundle` checks the file's sha256
against the sidecar before unpickling. Load only bundles you or someone you trust made.
A bundle meant to be shared can be saved as `.skops` instead: skops loads it without running
code, and newstag accepts only the types a newstag pipeline is made of. The loader is chosen
from the file's bytes (a skops file is a zip archive), never from its name.

Each bundle file has its own sidecar (`model.joblib` -> `model.joblib.json`), so saving one
format never invalidates another. The old sidecar is removed before the new model is renamed
into place, so a crash at any point leaves either the previous consistent pair or a model
without a sidecar, which `load_bundle` refuses and Make rebuilds.

Beside the model, `save_bundle` writes each task's compact form (`model.joblib.compact.npz`,
newstag.models.compact) with its own sha256 in the sidecar: `load_for_prediction` predicts from it
with NumPy alone, and unpickles the scikit-learn model only for tasks that have none.
This module stays light (no scikit-learn, joblib, pandas or MLflow at import time) because
prediction imports it.
"""

import json
import logging
from pathlib import Path

from newstag import __version__
from newstag.data.files import publish, read_capped, sha256_file, signals_deferred, temporary_path
from newstag.errors import NewstagError

log = logging.getLogger(__name__)
BUNDLE_FORMAT = "newstag-bundle"
BUNDLE_VERSION = 1


SIDECAR_LIMIT = 1 << 20
ZIP_MAGIC = b"PK\x03\x04"
# How joblib files begin: a bare pickle, or one of joblib's compressors (zlib, gzip, bz2, xz, lzma).
JOBLIB_MAGICS = (b"\x80", b"\x78", b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"\x5d\x00\x00")


def sidecar_path(path: str | Path) -> Path:
    """`models/x/model.joblib` -> `models/x/model.joblib.json` (one sidecar per bundle file)."""
    path = Path(path)
    return path.with_name(f"{path.name}.json")


def compact_path(path: str | Path) -> Path:
    """`models/x/model.joblib` -> `models/x/model.joblib.compact.npz` (its compact form)."""
    path = Path(path)
    return path.with_name(f"{path.name}.compact.npz")


def save_bundle(path: str | Path, pipelines: dict, metadata: dict) -> dict:
    """Write the bundle, its compact form and its sidecar atomically; return the sidecar's contents.

    The old sidecar goes first and the new one comes last, so a crash leaves a model without a
    sidecar (refused, rebuilt by Make), never a sidecar that vouches for another save's files."""
    import sklearn

    from newstag.models import compact

    path = Path(path)
    metadata = {
        **metadata,
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_VERSION,
        "versions": {"newstag": __version__, "scikit-learn": sklearn.__version__},
    }
    with temporary_path(path) as model_tmp, temporary_path(sidecar_path(path)) as sidecar_tmp, \
            temporary_path(compact_path(path)) as compact_tmp:
        _dump({"metadata": metadata, "pipelines": pipelines}, model_tmp, path.suffix.lower())
        covered = compact.write(compact_tmp, pipelines)
        sidecar = {**metadata, "sha256": sha256_file(model_tmp), "file": path.name,
                   "compact": {**covered, "order": list(pipelines), "file": compact_path(path).name,
                               "sha256": sha256_file(compact_tmp)}}
        sidecar_tmp.write_text(json.dumps(sidecar, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        with signals_deferred():
            sidecar_path(path).unlink(missing_ok=True)  # never an old sidecar beside a new model
            publish(model_tmp, path)
            publish(compact_tmp, compact_path(path))
            publish(sidecar_tmp, sidecar_path(path))
    return sidecar


def load_bundle(path: str | Path) -> dict:
    """Verify and load a bundle: {'metadata': {...}, 'pipelines': {task: Pipeline}}."""
    path = Path(path)
    _verified_sidecar(path)
    return _unpickle(path)


def _verified_sidecar(path: Path) -> dict:
    """The sidecar of a model file whose bytes match the sha256 it records."""
    if not path.exists():
        raise NewstagError(f"{path}: model not found; train one with `make train` "
                           f"(or `newstag train experiments/<name>.yaml`)")
    if not path.is_file():
        raise NewstagError(f"{path}: not a regular file; --model takes a .joblib or .skops file")
    sidecar = read_sidecar(path)
    if sha256_file(path) != sidecar.get("sha256"):
        raise NewstagError(f"{path}: sha256 does not match {sidecar_path(path).name}; the file was "
                           f"changed or truncated after saving. Refusing to load it; retrain it")
    return sidecar


def load_for_prediction(path: str | Path) -> dict:
    """Verify and load a bundle for `newstag predict`: {'metadata', 'pipelines': {task: model}},
    each model a newstag.models.compact.Task where the bundle has its compact form (NumPy only,
    no unpickling), else the scikit-learn pipeline, with a note on stderr saying which and why."""
    path = Path(path)
    sidecar = _verified_sidecar(path)
    metadata = {key: value for key, value in sidecar.items() if key not in ("sha256", "file", "compact")}
    entry = sidecar.get("compact") if isinstance(sidecar.get("compact"), dict) else {}
    fast = _compact_tasks(path, entry)
    slow, tasks = entry.get("fallback") or {}, entry.get("order") or []
    if fast is None or not tasks or set(tasks) != set(fast) | set(slow):
        log.info("%s has no compact form (saved by an older newstag); predicting with scikit-learn, "
                 "which takes longer to start. Retrain the model to predict faster", path)
        return _unpickle(path)
    if slow:
        for task, why in slow.items():
            log.info("task %r is predicted with scikit-learn (%s has no compact form: %s)",
                     task, path.name, why)
        pipelines = _unpickle(path)["pipelines"]
        fast.update({task: pipelines[task] for task in slow})
    return {"metadata": metadata, "pipelines": {task: fast[task] for task in tasks}}


def _compact_tasks(path: Path, entry: dict | None) -> dict | None:
    """The compact tasks the sidecar vouches for, checked against its sha256; None if it has none."""
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
        return None
    from newstag.models import compact

    compact_file = path.with_name(Path(entry["file"]).name)
    try:
        actual = sha256_file(compact_file)
    except FileNotFoundError:
        raise NewstagError(f"{compact_file}: missing; it belongs to {path.name}. Retrain the "
                           f"model") from None
    if actual != entry.get("sha256"):
        raise NewstagError(f"{compact_file}: sha256 does not match {sidecar_path(path).name}; the "
                           f"file was changed or truncated after saving. Refusing to load it; "
                           f"retrain it")
    return compact.load(compact_file)


def _unpickle(path: Path) -> dict:
    """The bundle itself (imports scikit-learn), checked for structure; the sidecar is verified."""
    try:
        bundle = _load(path)
    except NewstagError:
        raise
    except Exception as exc:  # a pickle can fail in many ways; all mean "not loadable"
        raise NewstagError(f"{path}: cannot load the model ({type(exc).__name__}); retrain it") from None
    _check_structure(path, bundle)
    _warn_on_version_change(path, bundle["metadata"])
    return bundle


def _check_structure(path: Path, bundle) -> None:
    """A bundle is {'metadata': {...}, 'pipelines': {task: fitted estimator}}; refuse anything else
    now rather than fail with a traceback at the first prediction."""
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    metadata = bundle.get("metadata") if isinstance(bundle, dict) else None
    pipelines = bundle.get("pipelines") if isinstance(bundle, dict) else None
    if not isinstance(metadata, dict) or metadata.get("format") != BUNDLE_FORMAT \
            or not isinstance(pipelines, dict) or not pipelines:
        raise NewstagError(f"{path}: not a newstag model bundle")
    for task, pipeline in pipelines.items():
        if not hasattr(pipeline, "predict") or not hasattr(pipeline, "get_params"):
            raise NewstagError(f"{path}: task {task!r} holds no classifier; retrain the model")
        try:
            check_is_fitted(pipeline)
        except NotFittedError:
            raise NewstagError(f"{path}: task {task!r} holds an unfitted model; retrain it") from None
        if not hasattr(pipeline, "classes_"):
            raise NewstagError(f"{path}: task {task!r} holds no classifier; retrain the model")


def _dump(bundle: dict, target: Path, suffix: str) -> None:
    import joblib

    try:
        if suffix == ".skops":
            import skops.io

            skops.io.dump(bundle, target, compression=8)
        else:
            joblib.dump(bundle, target, compress=3)
    except OSError as exc:  # a full disk can surface on close(), where no file name is attached
        if exc.filename is None:
            raise OSError(exc.errno, exc.strerror, str(target.parent)) from None
        raise


# Types a newstag bundle may hold beyond those skops trusts by default. Anything else is refused.
SKOPS_TRUSTED = {"numpy.float32", "numpy.float64", "numpy.dtype", "builtins.NoneType",
                 "newstag.models.pipelines.NBSVMClassifier",
                 # CalibratedClassifierCV's fitted parts (IsotonicRegression is trusted already)
                 "sklearn.calibration._CalibratedClassifier", "sklearn.calibration._SigmoidCalibration",
                 "sklearn.calibration._TemperatureScaling",
                 "newstag.models.toplabel.TopLabelCalibratedClassifierCV",
                 # the tone features and models (newstag.models.features, newstag.models.ordinal)
                 "newstag.models.features.NegationMarker", "newstag.models.features.LexiconCounts",
                 "newstag.models.features.SentenceTone", "newstag.models.features.OutOfFoldScores",
                 "newstag.models.ordinal.OrdinalClassifier",
                 # multi-label tasks: one linear model per label (newstag.models.multilabel)
                 "newstag.models.multilabel.MultiLabelLinear", "sklearn.multiclass.OneVsRestClassifier",
                 "sklearn.multiclass._ConstantPredictor", "sklearn.preprocessing._label.LabelBinarizer",
                 # streaming tasks: hashed features, the learner frozen under its calibrator
                 "newstag.models.streaming.HashedFeatures", "sklearn.frozen._frozen.FrozenEstimator"}


def _load(path: Path) -> dict:
    """Pick the loader from what the file is: a zip archive is skops; anything named skops that
    is not a zip, and anything that is neither skops nor joblib, is refused."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head.startswith(ZIP_MAGIC):
        return _load_skops(path)
    if path.suffix.lower() == ".skops":
        raise NewstagError(f"{path}: named .skops but is not a skops file (a zip archive); "
                           f"refusing to load it")
    if not head.startswith(JOBLIB_MAGICS):
        raise NewstagError(f"{path}: neither a joblib nor a skops model file; check --model")
    import joblib

    return joblib.load(path)


def _load_skops(path: Path) -> dict:
    import skops.io

    untrusted = set(skops.io.get_untrusted_types(file=path))
    if untrusted - SKOPS_TRUSTED:
        raise NewstagError(f"{path}: holds types newstag does not trust "
                           f"({', '.join(sorted(untrusted - SKOPS_TRUSTED))}); refusing to load it")
    return skops.io.load(path, trusted=sorted(untrusted))


def read_sidecar(path: str | Path) -> dict:
    """The sidecar of a bundle file, read and checked for shape (check_sidecar); every reader of a
    sidecar goes through here, so a damaged one fails the same way everywhere."""
    if Path(path).suffix.lower() not in (".joblib", ".skops"):  # e.g. the sidecar itself, a README
        raise NewstagError(f"{path}: not a model bundle; give the .joblib or .skops file training "
                           f"wrote (e.g. models/default/model.joblib)")
    sidecar = sidecar_path(path)
    try:
        data = json.loads(read_capped(sidecar, SIDECAR_LIMIT, "model sidecar").decode("utf-8"))
    except FileNotFoundError:
        raise NewstagError(f"{sidecar}: missing; the model cannot be verified. Retrain it") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise NewstagError(f"{sidecar}: not valid JSON; the model cannot be verified. Restore it "
                           f"or retrain the model") from None
    if not isinstance(data, dict):
        raise NewstagError(f"{sidecar}: not a newstag model sidecar")
    return check_sidecar(data, sidecar)


def check_sidecar(data: dict, sidecar: Path) -> dict:
    """`data` if each field the readers use has the type (and min_confidence the range) training
    writes, else a one-line NewstagError naming the sidecar file and the field. Fields an older
    newstag did not write may be absent. Plain checks only: predict runs this at every start."""
    _field(data, sidecar, "sha256", str, required=True)
    for name in ("data_sha256", "splits_sha256"):
        _field(data, sidecar, name, str)
    for name in ("versions", "config"):
        _field(data, sidecar, name, dict)
    _field(data, sidecar, "mlflow", dict, none=True)
    tasks = _field(data, sidecar, "tasks", dict) or {}
    for task, meta in tasks.items():
        where = f"tasks.{task}"
        if not isinstance(meta, dict):
            _refuse(sidecar, where, meta, "an object")
        labels = _field(meta, sidecar, "labels", list, where=where) or []
        if not all(isinstance(label, str | int | float) and not isinstance(label, bool) for label in labels):
            _refuse(sidecar, f"{where}.labels", labels, "a list of label names")
        for name in ("best_params", "model", "validation", "calibration"):
            _field(meta, sidecar, name, dict, where=where, none=True)
        _field(meta, sidecar, "history", list, where=where, none=True)
        calibration = meta.get("calibration") or {}
        _field(calibration, sidecar, "method", str, where=f"{where}.calibration")
        _field(calibration, sidecar, "validation_log_loss", dict, where=f"{where}.calibration", none=True)
        threshold = meta.get("min_confidence")
        if threshold is not None:
            if isinstance(threshold, bool) or not isinstance(threshold, int | float) \
                    or not 0 < threshold < 1:
                _refuse(sidecar, f"{where}.min_confidence", threshold,
                        "a number between 0 and 1 (exclusive), or null")
            if (meta.get("model") or {}).get("multi_label"):
                _refuse(sidecar, f"{where}.min_confidence", threshold,
                        "null (a multi-label task has a threshold per label instead)")
    compact = _field(data, sidecar, "compact", dict, none=True)
    if compact is not None:
        for name in ("file", "sha256"):
            _field(compact, sidecar, name, str, where="compact", required=True)
        for name in ("tasks", "order"):
            names = _field(compact, sidecar, name, list, where="compact") or []
            if not all(isinstance(item, str) for item in names):
                _refuse(sidecar, f"compact.{name}", names, "a list of task names")
        fallback = _field(compact, sidecar, "fallback", dict, where="compact", none=True) or {}
        if not all(isinstance(why, str) for why in fallback.values()):
            _refuse(sidecar, "compact.fallback", fallback, "an object of task: reason")
    return data


_KINDS = {str: "a string", dict: "an object", list: "a list"}


def _field(data: dict, sidecar: Path, name: str, kind: type, where: str = "", required: bool = False,
           none: bool = False):
    """data[name] if it is of `kind` (absent is fine unless required; null only when `none`)."""
    field = f"{where}.{name}" if where else name
    if name not in data:
        if required:
            _refuse(sidecar, field, None, _KINDS[kind], missing=True)
        return None
    value = data[name]
    if value is None and none:
        return None
    if not isinstance(value, kind):
        _refuse(sidecar, field, value, _KINDS[kind] + (" or null" if none else ""))
    return value


def _refuse(sidecar: Path, field: str, value, wanted: str, missing: bool = False):
    shown = f"missing (it should be {wanted})" if missing else f"{_short(value)}, not {wanted}"
    raise NewstagError(f"{sidecar}: field '{field}' is {shown}; the sidecar was changed or damaged "
                       f"after saving. Restore it or retrain the model")


def _short(value) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _warn_on_version_change(path: Path, metadata: dict) -> None:
    import sklearn

    saved = metadata.get("versions", {}).get("scikit-learn")
    if saved and saved != sklearn.__version__:
        log.warning("%s was saved with scikit-learn %s but %s is installed; predictions may "
                    "differ. Retrain the model to be sure", path, saved, sklearn.__version__)
