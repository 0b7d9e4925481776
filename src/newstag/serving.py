"""The bundle as one MLflow pyfunc model, so the registry, `mlflow models serve` and
`mlflow.pyfunc.load_model` give the same answers as `newstag predict`.

The logged model holds the joblib bundle and its sidecar, nothing else: `load_context` loads
them with newstag's own verified loader (sha256 checked before unpickling), and `predict` builds
its rows with predict.py's functions. Only the MLflow paths import this module.
"""

import math
from pathlib import Path

import mlflow.pyfunc
import pandas as pd

from newstag.data.records import Record
from newstag.models.bundle import load_bundle, sidecar_path
from newstag.predict import finite, min_confidences, predict_records

BUNDLE_ARTIFACT = "bundle"  # the artifact folder holding model.joblib and model.joblib.json
MODEL_CODE = str(Path(__file__).with_name("mlflow_model.py"))  # what MLflow loads the model from


class NewstagModel(mlflow.pyfunc.PythonModel):
    """Input: a DataFrame with a `text` column (and optionally `id`). Output: one row per
    article with each task's label and probability (`uncertain` and `<task>_candidate` below a
    task's min_confidence), `error` for a row that cannot be tagged, and with
    params={"explain": True} each task's top terms."""

    def load_context(self, context):
        self.path = bundle_in(Path(context.artifacts[BUNDLE_ARTIFACT]))
        self.bundle = load_bundle(self.path)
        self.explainers = None

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        explain = bool((params or {}).get("explain"))
        rows = predict_records(self.bundle, frame_records(model_input),
                               explainers=self._explainers() if explain else None)
        return rows_frame([finite(row) for row in rows], output_columns(self.bundle))

    def _explainers(self) -> dict:
        if self.explainers is None:
            from newstag.explain import explainers_for

            self.explainers = explainers_for(self.bundle["pipelines"], self.path,
                                             "call it without params={'explain': True}")
        return self.explainers


def bundle_in(folder: Path) -> Path:
    """The bundle file in a logged model's bundle folder: the one its sidecar names."""
    sidecars = sorted(folder.glob("model.*.json"))
    return sidecars[0].with_suffix("") if sidecars else folder / "model.joblib"


def frame_records(frame) -> list[Record]:
    """The articles of a DataFrame (or anything pandas makes one of): its `text` column, its
    `id` column when given (else the row's position from 1). predict makes an empty text an
    error row."""
    frame = frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(frame)
    if "text" not in frame.columns:
        raise ValueError(f"the input has no 'text' column (columns: {', '.join(map(str, frame.columns))})")
    ids = frame["id"].tolist() if "id" in frame.columns else [None] * len(frame)
    return [Record(id=_plain_id(ident, number), text=_text(text))
            for number, (ident, text) in enumerate(zip(ids, frame["text"].tolist(), strict=True), start=1)]


def _text(value) -> str:
    """A missing text (null in JSON, an empty CSV cell read as NaN) is an empty one, as in predict."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value if isinstance(value, str) else str(value)


def _plain_id(ident, number: int):
    if ident is None or (isinstance(ident, float) and math.isnan(ident)) or ident == "":
        return number
    if hasattr(ident, "item"):  # a NumPy scalar from a CSV or integer column
        ident = ident.item()
    if isinstance(ident, float) and ident.is_integer():  # integer ids beside a missing one
        ident = int(ident)
    return ident if isinstance(ident, int | str) else str(ident)


def output_columns(bundle: dict) -> list[str]:
    """The columns every answer has, whatever its rows: id, each task's fields, error."""
    columns = ["id"]
    thresholds = min_confidences(bundle)
    for task, pipeline in bundle["pipelines"].items():
        columns += [task, f"{task}_scores" if _multi_label(pipeline) else f"{task}_score"]
        if task in thresholds:
            columns += [f"{task}_candidate", f"{task}_candidate_score"]
    return columns + ["error"]


def _multi_label(pipeline) -> bool:
    from newstag.models import multilabel

    return multilabel.is_multilabel(pipeline)


def rows_frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    """Rows as a DataFrame, None (JSON null) where a field does not apply, never NaN."""
    extra = [key for row in rows for key in row if key not in columns]
    ordered = columns[:-1] + list(dict.fromkeys(extra)) + columns[-1:]
    frame = pd.DataFrame([[row.get(column) for column in ordered] for row in rows],
                         columns=ordered, dtype=object)
    return frame.where(frame.notna(), None)


# ---- what is logged with the model --------------------------------------------------------------

def signature(bundle: dict):
    """Named input columns (`text`, optional `id`), the output columns, and `explain` as a param."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, Array, ColSpec, ParamSchema, ParamSpec, Schema

    # `id` is text: MLflow reads a CSV's columns by their declared type, which must be a plain one
    inputs = Schema([ColSpec("string", "text"), ColSpec("string", "id", required=False)])
    outputs = [ColSpec(AnyType(), "id")]
    thresholds = min_confidences(bundle)
    for task, pipeline in bundle["pipelines"].items():
        if _multi_label(pipeline):
            outputs.append(ColSpec(Array("string"), task))
            continue
        outputs += [ColSpec("string", task), ColSpec("double", f"{task}_score")]
        if task in thresholds:
            outputs += [ColSpec("string", f"{task}_candidate", required=False),
                        ColSpec("double", f"{task}_candidate_score", required=False)]
    outputs.append(ColSpec("string", "error", required=False))
    return ModelSignature(inputs=inputs, outputs=Schema(outputs),
                          params=ParamSchema([ParamSpec("explain", "boolean", False)]))


def input_example(texts: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"example-{i}" for i in range(1, len(texts) + 1)], "text": texts})


def requirements(bundle_versions: dict) -> list[str]:
    """Pinned to what trained the model: scikit-learn from the bundle, the rest as installed."""
    from importlib.metadata import PackageNotFoundError, version

    pins = {"scikit-learn": bundle_versions.get("scikit-learn")}
    for package in ("newstag", "numpy", "scipy", "joblib", "pandas", "mlflow"):
        try:
            pins[package] = version(package)
        except PackageNotFoundError:
            continue
    return [f"{package}=={pinned}" for package, pinned in pins.items() if pinned]


def bundle_folder(bundle_path: Path, folder: Path) -> Path:
    """A folder holding only the bundle and its sidecar (hard links where possible): what the
    logged model carries, so its size is the bundle's, not the model folder's."""
    import os
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    for source in (bundle_path, sidecar_path(bundle_path)):
        try:
            os.link(source, folder / source.name)
        except OSError:
            shutil.copy2(source, folder / source.name)
    return folder
