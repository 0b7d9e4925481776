"""The model bundle: one joblib file with every task's pipeline, plus a JSON sidecar.

joblib files are pickles and run code when loaded, so `load_bundle` checks the file's sha256
against the sidecar before unpickling. Load only bundles you or someone you trust made.
A bundle meant to be shared can be saved as `.skops` instead: skops loads it without running
code, and newstag accepts only the types a newstag pipeline is made of.
This module stays light (no pandas, no MLflow) because prediction imports it.
"""

import json
import logging
from pathlib import Path

import joblib
import sklearn

from newstag import __version__
from newstag.errors import NewstagError
from newstag.files import atomic_path, sha256_file, write_json

log = logging.getLogger(__name__)
BUNDLE_FORMAT = "newstag-bundle"
BUNDLE_VERSION = 1


def sidecar_path(path: str | Path) -> Path:
    """`models/x/model.joblib` -> `models/x/model.json`."""
    return Path(path).with_suffix(".json")


def save_bundle(path: str | Path, pipelines: dict, metadata: dict) -> dict:
    """Write the bundle and its sidecar atomically; return the sidecar's contents."""
    path = Path(path)
    metadata = {
        **metadata,
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_VERSION,
        "versions": {"newstag": __version__, "scikit-learn": sklearn.__version__},
    }
    with atomic_path(path) as tmp:
        _dump({"metadata": metadata, "pipelines": pipelines}, tmp, path.suffix)
        sidecar = {**metadata, "sha256": sha256_file(tmp), "file": path.name}
        write_json(sidecar_path(path), sidecar)
    return sidecar


def load_bundle(path: str | Path) -> dict:
    """Verify and load a bundle: {'metadata': {...}, 'pipelines': {task: Pipeline}}."""
    path = Path(path)
    if not path.is_file():
        raise NewstagError(f"{path}: model not found; train one with `make train` "
                           f"(or `newstag train experiments/<name>.yaml`)")
    expected = _read_sidecar(path).get("sha256")
    if sha256_file(path) != expected:
        raise NewstagError(f"{path}: sha256 does not match {sidecar_path(path).name}; the file was "
                           f"changed or truncated after saving. Refusing to load it; retrain it")
    try:
        bundle = _load(path)
    except NewstagError:
        raise
    except Exception as exc:  # a pickle can fail in many ways; all mean "not loadable"
        raise NewstagError(f"{path}: cannot load the model ({type(exc).__name__}); retrain it") from None
    if not isinstance(bundle, dict) or bundle.get("metadata", {}).get("format") != BUNDLE_FORMAT:
        raise NewstagError(f"{path}: not a newstag model bundle")
    _warn_on_version_change(path, bundle["metadata"])
    return bundle


def _dump(bundle: dict, target: Path, suffix: str) -> None:
    if suffix == ".skops":
        import skops.io

        skops.io.dump(bundle, target, compression=8)
    else:
        joblib.dump(bundle, target, compress=3)


# Types a newstag bundle may hold beyond those skops trusts by default. Anything else is refused.
SKOPS_TRUSTED = {"numpy.float32", "numpy.float64", "numpy.dtype", "builtins.NoneType"}


def _load(path: Path) -> dict:
    if path.suffix != ".skops":
        return joblib.load(path)
    import skops.io

    untrusted = set(skops.io.get_untrusted_types(file=path))
    if untrusted - SKOPS_TRUSTED:
        raise NewstagError(f"{path}: holds types newstag does not trust "
                           f"({', '.join(sorted(untrusted - SKOPS_TRUSTED))}); refusing to load it")
    return skops.io.load(path, trusted=sorted(untrusted))


def _read_sidecar(path: Path) -> dict:
    sidecar = sidecar_path(path)
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NewstagError(f"{sidecar}: missing; the model cannot be verified. Retrain it") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise NewstagError(f"{sidecar}: not valid JSON; the model cannot be verified") from None
    if not isinstance(data, dict):
        raise NewstagError(f"{sidecar}: not a newstag model sidecar")
    return data


def _warn_on_version_change(path: Path, metadata: dict) -> None:
    saved = metadata.get("versions", {}).get("scikit-learn")
    if saved and saved != sklearn.__version__:
        log.warning("%s was saved with scikit-learn %s but %s is installed; predictions may "
                    "differ. Retrain the model to be sure", path, saved, sklearn.__version__)
