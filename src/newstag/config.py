"""Experiment files: one declared schema gives the checks, the error messages and the JSON Schema.

Every key of an experiment YAML is declared once below (type, default, allowed values, a line of
documentation). `load_config` validates a file against it and turns pydantic's first complaint into
one line naming the key (`tasks.topic.classifier`); `json_schema()` is what `newstag schema` prints,
so editors can complete and check experiment files. A loaded experiment is immutable. Relative paths
in the YAML are relative to the directory newstag runs in (the project root when run through `make`).
"""

import math
import re
from dataclasses import asdict, field, fields, is_dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Strict,
    Tag,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass
from pydantic.types import AllowInfNan

from newstag.data.safe_yaml import load_yaml
from newstag.errors import NewstagError

Classifier = Literal["auto", "logreg", "linear_svm", "sgd", "complement_nb", "ridge", "nbsvm"]
Features = Literal["word", "char", "word+char"]
Format = Literal["auto", "csv", "tsv", "jsonl", "parquet", "folder"]
Protocol = Literal["split", "cv"]
CLASSIFIERS: tuple[str, ...] = get_args(Classifier)
SEARCHABLE_CLASSIFIERS = tuple(name for name in CLASSIFIERS if name != "auto")
FEATURES: tuple[str, ...] = get_args(Features)
FORMATS: tuple[str, ...] = get_args(Format)
PROTOCOLS: tuple[str, ...] = get_args(Protocol)

# Values are taken as written: "3" is not 3, 1 is not true, 2.0 is not an integer.
Int = Annotated[int, Strict()]
Number = Annotated[float, Strict(), AllowInfNan(False)]  # an integer is a number too; .nan is not
Str = Annotated[str, Strict()]
Bool = Annotated[bool, Strict()]

# Immutable dataclasses (so dataclasses.replace and asdict work on them) that reject unknown keys.
_schema = dataclass(frozen=True, kw_only=True, config=ConfigDict(extra="forbid"))


class _BadValue(ValueError):
    """A check's complaint; `key` names the part below the checked key it is about (e.g. "[2]")."""

    def __init__(self, message: str, key: str = ""):
        super().__init__(message)
        self.key = key


def _one_or_many(value):
    return [value] if isinstance(value, str) else value


def _labels_as_text(value):
    """YAML reads `1` or `true` as numbers or booleans; a label is text, so keep scalars as strings.
    An empty list would refuse every row, and a repeated label is a typo or a copy-paste slip."""
    if not isinstance(value, list):
        return value
    if not value:
        raise _BadValue("is empty; list the allowed labels, or remove labels to take whatever the "
                        "data holds")
    for index, label in enumerate(value):
        if not isinstance(label, str | int | float | bool):
            raise _BadValue(f"should be text, a number or true/false, got {_shown(label)}", f"[{index}]")
    labels = tuple(str(label) for label in value)
    for index, label in enumerate(labels):
        _check_label_text(label, index)
        if label in labels[:index]:
            raise _BadValue(f"repeats {label!r}; list each label once", f"[{index}]")
    return labels


def _check_label_text(label: str, index: int) -> None:
    """Labels in the data are read stripped, so an empty label or one with spaces around it could
    never match a row: the task would then refuse every row, or predict a label no row has."""
    if not label.strip():
        raise _BadValue(f"is {label!r}, an empty label; remove it or write the label's text",
                        f"[{index}]")
    if label != label.strip():
        raise _BadValue(f"is {label!r}, with spaces around it, which labels in the data never "
                        f"have (they are read stripped); write {label.strip()!r}", f"[{index}]")


TextColumns = Annotated[
    tuple[Str, ...], BeforeValidator(_one_or_many),
    WithJsonSchema({"anyOf": [{"type": "string"},
                              {"type": "array", "items": {"type": "string"}, "minItems": 1}]})]
Labels = Annotated[
    tuple[Str, ...] | None, BeforeValidator(_labels_as_text),
    WithJsonSchema({"anyOf": [{"type": "array", "items": {"type": ["string", "number", "boolean"],
                                                          "pattern": r"^\S([\s\S]*\S)?$"},
                               "minItems": 1, "uniqueItems": True},
                              {"type": "null"}]})]
Candidates = Annotated[list, Field(min_length=1)]


@dataclass(frozen=True, kw_only=True, config=ConfigDict(extra="forbid", json_schema_extra={
    "oneOf": [{"required": ["path"]}, {"required": ["dataset"]}]}))
class DataConfig:
    """Where the raw articles are (a file, a folder of class folders, or a known corpus by name)."""

    path: Str | None = Field(None, description=(
        "Your own data: a .csv/.tsv/.jsonl/.parquet file (also .gz), a folder of <class>/<file>.txt, "
        "or an archive of one. Set this or dataset."))
    dataset: Str | None = Field(None, description="A known public corpus by name, e.g. bbc_news. "
                                                  "Set this or path.")
    options: dict[Str, Any] = Field(default_factory=dict, description=(
        "Options of the known corpus, e.g. {agreement: 50} or {remove: [headers, footers, quotes]}."))
    format: Format = Field("auto", description="How to read path; auto: from the file name.")
    text_columns: TextColumns = Field(("text",), min_length=1, description=(
        "Column(s) holding the text; several are joined into one text."))
    id_column: Str | None = Field(None, description="Column with article ids; rows are numbered when absent.")
    split_column: Str | None = Field(None, description="Column marking rows train / validation / test.")
    encoding: Str = Field("utf-8", description="Text encoding of the file(s), e.g. latin-1.")
    on_invalid: Literal["error", "drop"] = Field("error", description=(
        "Rows with empty text or a bad label: error stops; drop skips and counts them."))
    deduplicate: Bool = Field(True, description="Remove exact duplicates (after cleaning) before splitting.")
    max_file_mb: Int = Field(64, gt=0, description="Largest file, or archive member, read (MB).")
    max_total_mb: Int = Field(8192, gt=0, description="Largest total unpacked from one archive (MB).")

    @model_validator(mode="after")
    def _one_source(self):
        if (self.path is None) == (self.dataset is None):
            raise _BadValue("should set exactly one of path (your own file or folder) and "
                            "dataset (a known corpus, e.g. bbc_news)")
        return self


@_schema
class SplitConfig:
    """Fractions held out for model selection and for the final score."""

    validation: Number = Field(0.15, gt=0, lt=1, description="Share used to choose among candidates.")
    test: Number = Field(0.15, gt=0, lt=1, description="Share held out for the final score (evaluate).")

    @model_validator(mode="after")
    def _leaves_training_data(self):
        if self.validation + self.test >= 0.9:
            raise _BadValue(f"should leave at least 10% for training; validation + test is "
                            f"{self.validation + self.test:g}")
        return self


@_schema
class Distribution:
    """A range to draw a parameter from in a search, instead of a list of candidates."""

    low: Number = Field(description="Smallest value.")
    high: Number = Field(description="Largest value; more than low.")
    log: Bool = Field(False, description="Draw on a log scale (low must be > 0), e.g. for C or alpha.")
    int: Bool = Field(False, description="Draw whole numbers, e.g. for min_df.")

    @model_validator(mode="after")
    def _valid_range(self):
        if self.low >= self.high:
            raise _BadValue(f"should have low < high, got low {self.low:g} and high {self.high:g}")
        if self.log and self.low <= 0:
            raise _BadValue(f"should have low > 0 with log: true, got low {self.low:g}")
        return self


def _space_kind(value) -> str | None:
    return "list" if isinstance(value, list) else "range" if isinstance(value, dict | Distribution) else None


SpaceValue = Annotated[
    Annotated[Candidates, Tag("list")] | Annotated[Distribution, Tag("range")],
    Discriminator(_space_kind, custom_error_type="space_value",
                  custom_error_message="should be a list of candidate values or a range {low, high}")]
SPACE_CHOICES = {"classifier": SEARCHABLE_CLASSIFIERS, "features": FEATURES}


@_schema
class SearchConfig:
    """A search over the pipeline's settings, scored by cross-validation on the training split."""

    space: dict[Str, SpaceValue] = Field(min_length=1, description=(
        "What to search: pipeline parameters (clf__C, vect__min_df, vect__word__ngram_range) or "
        "classifier / features, each a list of candidates or a range {low, high, log, int}."),
        json_schema_extra={"properties": {
            key: {"type": "array", "minItems": 1, "items": {"enum": list(choices)}}
            for key, choices in SPACE_CHOICES.items()}})
    n_iter: Int | None = Field(20, ge=1, description="Candidates to try; null: until the timeout.")
    timeout: Number | None = Field(None, gt=0, description="Stop searching after this many seconds.")
    folds: Int = Field(5, ge=2, description="Cross-validation folds scoring each candidate.")
    scoring: Literal["f1_macro", "accuracy"] = Field("f1_macro", description="What the search maximises.")

    @field_validator("space")
    @classmethod
    def _choices_known(cls, space: dict) -> dict:
        for key, choices in SPACE_CHOICES.items():
            values = space.get(key, [])
            if not isinstance(values, list):
                raise _BadValue(f"should be a list of choices from: {', '.join(choices)}", f".{key}")
            for index, value in enumerate(values):
                if value not in choices:
                    raise _BadValue(f"is {value!r}; choose one of: {', '.join(choices)}", f".{key}[{index}]")
        return space

    @model_validator(mode="after")
    def _has_a_limit(self):
        if self.n_iter is None and self.timeout is None:
            raise _BadValue("should set n_iter, timeout or both, so the search ends")
        return self


LEXICON_NAMES = ("vader",)  # kept in step with newstag.models.features.LEXICONS (a test checks)


def _known_lexicons(value):
    if isinstance(value, list | tuple):
        for index, name in enumerate(value):
            if isinstance(name, str) and name not in LEXICON_NAMES:
                raise _BadValue(f"names lexicon {name!r}, which does not exist; "
                                f"valid: {', '.join(LEXICON_NAMES)}", f"[{index}]")
    return value


Lexicons = Annotated[tuple[Str, ...], BeforeValidator(_known_lexicons),
                     WithJsonSchema({"type": "array", "items": {"enum": list(LEXICON_NAMES)}})]


@_schema
class OrdinalSettings:
    """An ordinal task: a linear regressor on a numeric score, its prediction cut into classes."""

    labels: Annotated[tuple[Str, ...], Field(min_length=2)] = Field(description=(
        "The classes, lowest score first, e.g. [negative, neutral, positive]."))
    cuts: Annotated[tuple[Number, ...], Field(min_length=1)] = Field(description=(
        "Increasing cut points on the score, one fewer than labels: a score at or below cuts[0] "
        "is labels[0], ... above the last cut the last label. E.g. [4.5, 5.5] on a 1-9 scale."))
    tune_cuts: Bool = Field(True, description=(
        "Re-tune the cut points on out-of-fold predictions of the training rows (macro-F1); "
        "false: predict with the cuts as written."))

    @model_validator(mode="after")
    def _cuts_fit_labels(self):
        if len(self.cuts) != len(self.labels) - 1:
            raise _BadValue(f"has {len(self.labels)} labels, so needs {len(self.labels) - 1} cut "
                            f"point(s), got {len(self.cuts)}", ".cuts")
        for left, right in zip(self.cuts, self.cuts[1:], strict=False):
            if not left < right:
                raise _BadValue(f"should increase, got {list(self.cuts)}", ".cuts")
        return self


@_schema
class TransferSettings:
    """Sentence tone model applied to each sentence of an article (sentence-to-article transfer)."""

    model: Str = Field(description=(
        "A trained sentence tone bundle, e.g. models/financial_phrasebank/model.joblib (train it "
        "first); it is copied into this model, so predict does not need it."))
    task: Str = Field("tone", description="The bundle's task to use; it must predict positive and negative.")
    stack: Bool = Field(True, description=(
        "Stack the article model's out-of-fold scores with the sentence features under a "
        "logistic regression; false: the sentence features (and any lexicon counts) alone."))


@_schema
class StreamSettings:
    """How a `streaming: true` task reads its splits and trains (out of core)."""

    epochs: Int = Field(5, ge=1, description=(
        "Passes over the training split; each one visits the chunks in a new shuffled order."))
    chunk_rows: Int = Field(20000, ge=100, description=(
        "Articles per chunk given to partial_fit: what bounds the memory, whatever the corpus size."))
    idf: Bool = Field(True, description=(
        "One pass over the training split first to count document frequencies (IDF weights on "
        "the hashed features); false: sublinear term frequencies only."))
    calibration_rows: Int = Field(20000, ge=100, description=(
        "Validation articles kept in memory (the first ones) to score each epoch and fit the "
        "calibrator; the whole validation split is still scored once at the end, chunk by chunk."))


STREAMING_CLASH = ("multi_label", "ordinal", "transfer", "search", "grid", "negation", "lexicons")


@_schema
class TaskSettings:
    """One tagging task, as written under tasks.<name>."""

    column: Str | None = Field(None, description="Label column; default: the task's name.")
    labels: Labels = Field(None, description=(
        "Allowed labels; rows with other labels are an error, and each needs an article in train "
        "+ validation. Default: whatever the data holds."))
    classifier: Classifier = Field("auto", description=(
        "The linear model; auto: chosen by a built-in search at train time."))
    features: Features = Field("word", description=(
        "TF-IDF on word n-grams, character n-grams, or both (then vect__word__... / vect__char__...)."))
    params: dict[Str, Any] = Field(default_factory=dict, description=(
        "Pipeline parameters by their scikit-learn names, e.g. vect__min_df: 2, clf__C: 1.0."))
    grid: dict[Str, Candidates] = Field(default_factory=dict, description=(
        "Candidate values per pipeline parameter, every combination scored on the validation split."))
    search: SearchConfig | None = Field(None, description="A search over parameters and classifiers.")
    calibration: Literal["auto", "sigmoid", "isotonic", "temperature", "top-label", "none"] = Field(
        "auto", description=(
            "How scores become probabilities: the classifier is wrapped in CalibratedClassifierCV "
            "(held-out folds); top-label is temperature scaling followed by an isotonic map of the "
            "winning label's probability. auto picks sigmoid, isotonic, temperature, top-label or "
            "(for a model with probabilities) none on the validation split by log-loss, and with "
            "classifier auto only temperature, top-label or none, which never change a decision; "
            "none keeps the raw scores."))
    min_confidence: Number | None = Field(None, gt=0, lt=1, description=(
        "Below this probability `newstag predict` answers \"uncertain\" for the task (and gives the "
        "best label as <task>_candidate). `newstag evaluate --target-precision` suggests one."))
    negation: Bool = Field(False, description=(
        "Add negation-scope features: words after not / no / never / n't / without ... until "
        "punctuation, marked not_<word> (word features are then vect__word__...)."))
    lexicons: Lexicons = Field((), description=(
        "Sentiment lexicons whose positive / negative word shares and mean valence are added as "
        "features, e.g. [vader] (word features are then vect__word__...)."))
    ordinal: OrdinalSettings | None = Field(None, description=(
        "Treat the label column as a numeric score: a ridge or sgd regressor, cut into these "
        "classes. The classifier must be ridge or sgd."))
    transfer: TransferSettings | None = Field(None, description=(
        "Add the tones of the article's sentences from a sentence tone model."))
    multi_label: Bool = Field(False, description=(
        "Each article may have several labels (a JSON list, or text joined by label_separator): "
        "one linear model per label (auto: LinearSVC), each with its own threshold tuned on the "
        "validation split; predictions are a list of labels with their probabilities."))
    label_separator: Str = Field(";", description=(
        "With multi_label: what separates the labels in a text cell, e.g. sport;business."))
    streaming: Bool = Field(False, description=(
        "Train out of core: the splits are read in chunks, features are hashed (HashingVectorizer, "
        "IDF from one pass over the stream), an SGDClassifier learns by partial_fit over shuffled "
        "chunks (classifier auto or sgd), calibrated on the validation split. Preprocessing then "
        "de-duplicates and splits the data file in one pass by hashing. For corpora larger than memory."))
    stream: StreamSettings = Field(default_factory=StreamSettings, description=(
        "Epochs, chunk size, IDF and calibration sample of a streaming task."))

    @model_validator(mode="before")
    @classmethod
    def _separator_only_with_multi_label(cls, data):
        """label_separator has a default, so whether the file sets it shows only in its raw keys
        (construction from keyword arguments, as `replace` does, passes no dict and is not checked)."""
        if isinstance(data, dict) and "label_separator" in data and not data.get("multi_label"):
            raise _BadValue("is set, but only a multi_label task splits its labels; remove "
                            "label_separator or set multi_label: true", ".label_separator")
        return data

    @field_validator("label_separator")
    @classmethod
    def _separator_not_empty(cls, value: str) -> str:
        if not value:
            raise _BadValue("is empty; give the text that separates labels, e.g. ';'")
        return value

    @model_validator(mode="after")
    def _named_model_for_ordinal_and_transfer(self):
        if self.ordinal is not None and self.classifier not in ("ridge", "sgd"):
            raise _BadValue(f"is {self.classifier!r}, but an ordinal task needs a regressor: "
                            f"set classifier: ridge or sgd", ".classifier")
        if self.transfer is not None and self.ordinal is not None:
            raise _BadValue("and ordinal are both set; a transfer task predicts classes, so "
                            "remove one of them", ".transfer")
        if self.multi_label:  # multi-label: one-vs-rest with thresholds (newstag.models.multilabel)
            _check_multi_label(self)
        if self.streaming:  # out of core: newstag.models.streaming
            _check_streaming(self)
        if self.transfer is not None and self.classifier == "auto":
            raise _BadValue("is auto, which a transfer task cannot search; name a classifier "
                            "(e.g. logreg) and tune it with grid", ".classifier")
        if (self.negation or self.lexicons) and self.classifier == "auto" and self.search is None:
            raise _BadValue("is auto, whose members use word features only; with negation or "
                            "lexicons, name a classifier (e.g. logreg) or add a search section",
                            ".classifier")
        return self


def _check_multi_label(task: "TaskSettings") -> None:
    """Options a multi-label task cannot have: it predicts a set of labels, not one class, from
    single-word TF-IDF alone, each label with its own threshold and Platt sigmoid
    (newstag.models.multilabel); these would be ignored or break its pipeline at train time."""
    clash = {"ordinal": task.ordinal is not None, "transfer": task.transfer is not None,
             "search": task.search is not None, "min_confidence": task.min_confidence is not None}
    for key, present in clash.items():
        if present:
            raise _BadValue(f"is set, but a multi_label task cannot use it (each label has its own "
                            f"threshold); remove {key} or multi_label", f".{key}")
    if task.features != "word":
        raise _BadValue(f"is {task.features!r}, but a multi_label task uses word features only: "
                        f"remove features or set it to word", ".features")
    for key in ("negation", "lexicons"):
        if getattr(task, key):
            raise _BadValue(f"is set, but a multi_label task uses word features only; remove {key} "
                            f"or multi_label", f".{key}")
    if task.calibration != "auto":
        raise _BadValue(f"is {task.calibration!r}, but a multi_label task calibrates each label by "
                        f"its own Platt sigmoid; remove calibration or multi_label", ".calibration")
    _check_separator_not_in_labels(task)


SEPARATORS = ("|", ";", ",", "/", "+", "#")


def _check_separator_not_in_labels(task: "TaskSettings") -> None:
    """A declared label holding the label_separator would be one label in a JSONL list but two in
    a CSV cell: the same data would mean different things by format."""
    separator = task.label_separator
    for index, label in enumerate(task.labels or ()):
        if separator in label:
            other = next((s for s in SEPARATORS if s != separator
                          and not any(s in name for name in task.labels)), "::")
            raise _BadValue(f"is {label!r}, which holds the label_separator {separator!r}, so a "
                            f"CSV cell would split it into several labels; rename the label or "
                            f"set label_separator to another text, e.g. {other!r}", f".labels[{index}]")


def _check_streaming(task: "TaskSettings") -> None:
    """Options a streaming task cannot have: its learner is SGD trained chunk by chunk on hashed
    words, and these need the whole training set in memory or other features."""
    if task.classifier not in ("auto", "sgd"):
        raise _BadValue(f"is {task.classifier!r}, but a streaming task trains an SGDClassifier "
                        f"by partial_fit: set classifier: sgd (or leave it auto)", ".classifier")
    if task.features != "word":
        raise _BadValue(f"is {task.features!r}, but a streaming task hashes word n-grams: remove "
                        f"features or set it to word", ".features")
    for key in STREAMING_CLASH:
        if getattr(task, key) not in (False, None, {}, ()):
            raise _BadValue(f"is set, but a streaming task cannot use it; remove {key} or "
                            f"streaming", f".{key}")


@_schema
class TaskConfig(TaskSettings):
    """A task as the code uses it: its settings, its name, and its label column filled in."""

    name: Str
    column: Str


@_schema
class MlflowConfig:
    """How runs are filed in MLflow."""

    experiment: Str = Field("newstag", description="MLflow experiment the runs go to.")
    register: Bool = Field(True, description=(
        "Register the model (every task in one) as newstag-<experiment>; a new version only "
        "when the data or the config changed."))


@_schema
class BenchConfig:
    """How `make bench` scores this experiment: the held-out split, or repeated stratified k-fold."""

    protocol: Protocol = Field("split", description="split: the test split; cv: k-fold.")
    folds: Int = Field(5, ge=2, description="Folds with protocol cv.")
    repeats: Int = Field(1, ge=1, description="Repetitions of the k folds with protocol cv.")


@_schema
class _Common:
    """The keys every experiment file may have."""

    description: Str = Field("", description="One line saying what this experiment is.")
    seed: Int = Field(42, description="Seed of the splits and of every classifier.")
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig, description="How runs are filed in MLflow.")


@_schema
class ExperimentFile(_Common):
    """An experiment file: data, how to split it, and the tasks to train on it."""

    data: DataConfig = Field(description="Where the raw articles are.")
    tasks: dict[Str, TaskSettings | None] = Field(min_length=1, description=(
        "The tagging tasks by name (the key in predictions), e.g. topic, tone."))
    split: SplitConfig = Field(default_factory=SplitConfig, description="Validation and test fractions.")
    bench: BenchConfig = Field(default_factory=BenchConfig, description="How `make bench` scores it.")


@_schema
class ComposedFile(_Common):
    """An experiment whose tasks each come, with their data, from another experiment file."""

    compose: dict[Str, Str] = Field(min_length=1, description=(
        "Task name -> the experiment (file name without .yaml, same folder) that trains it."))


@_schema
class ExperimentConfig(_Common):
    """A loaded experiment: the file's settings, its name (the file name) and its tasks in order."""

    name: Str
    data: DataConfig | None
    tasks: tuple[TaskConfig, ...]
    split: SplitConfig = SplitConfig()
    bench: BenchConfig = BenchConfig()
    compose: dict[Str, Str] = field(default_factory=dict)
    path: Str = field(default="", compare=False)

    def to_dict(self) -> dict:
        """A plain, JSON-friendly dict shaped like the YAML (tasks keyed by name)."""
        data = plain(asdict(self))
        data.pop("path")
        data["tasks"] = {task.pop("name"): task for task in data["tasks"]}
        return data

    @property
    def processed_dir(self) -> Path:
        return Path("data/processed") / self.name

    @property
    def model_dir(self) -> Path:
        return Path("models") / self.name

    @property
    def report_dir(self) -> Path:
        return Path("reports") / self.name

    @property
    def task_names(self) -> list[str]:
        return [task.name for task in self.tasks]


def plain(value):
    """Tuples to lists and NumPy scalars to Python numbers, however nested: what YAML, JSON and
    MLflow params can hold (a search's chosen parameters come back as NumPy scalars)."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value.item() if type(value).__module__ == "numpy" and hasattr(value, "item") else value


def json_schema() -> dict:
    """The JSON Schema of experiment files, for editors; `newstag schema` prints it."""
    schema = TypeAdapter(ExperimentFile | ComposedFile).json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "newstag experiment",
            "description": "An experiment file (experiments/*.yaml): its data and tasks, or `compose`.",
            **schema}


def load_config(path: str | Path) -> ExperimentConfig:
    """Read an experiment YAML; raise NewstagError naming the file and key on any mistake."""
    path = Path(path)
    raw = _read_yaml(path)
    if not isinstance(raw, dict):
        raise NewstagError(f"{path}: expected a mapping of keys at the top level")
    try:
        return _composed(raw, path) if "compose" in raw else _experiment(raw, path)
    except NewstagError as exc:
        raise NewstagError(f"{path}: {exc}") from None


def task_source(config: ExperimentConfig, task: str) -> ExperimentConfig:
    """The experiment whose data a task trains on: itself, or the one a composed experiment names."""
    if task not in config.compose:
        return config
    return load_config(Path(config.path).parent / f"{config.compose[task]}.yaml")


def _read_yaml(path: Path):
    """The file's YAML as plain data: the one place experiment files are parsed (bounded, with
    duplicate keys and alias bombs refused; see safe_yaml)."""
    return load_yaml(path)


def _experiment(raw: dict, path: Path) -> ExperimentConfig:
    file = _validate(ExperimentFile, raw)
    tasks = tuple(_task(name, settings or TaskSettings()) for name, settings in file.tasks.items())
    return ExperimentConfig(**{**_values(file), "tasks": tasks}, name=path.stem, path=str(path))


def _task(name: str, settings: TaskSettings) -> TaskConfig:
    return TaskConfig(**{**_values(settings), "column": settings.column or name}, name=name)


def _values(instance) -> dict:
    """A dataclass's field values, not converted (asdict would turn nested settings into dicts)."""
    return {item.name: getattr(instance, item.name) for item in fields(instance)}


def _composed(raw: dict, path: Path) -> ExperimentConfig:
    file = _validate(ComposedFile, raw)
    tasks = []
    for task, source in file.compose.items():
        source_config = load_config(path.parent / f"{source}.yaml")
        match = [t for t in source_config.tasks if t.name == task]
        if not match:
            raise NewstagError(f"compose.{task}: experiment {source} has no task {task!r} "
                               f"(it has: {', '.join(source_config.task_names)})")
        tasks.append(match[0])
    return ExperimentConfig(**_values(file), name=path.stem, data=None, tasks=tuple(tasks), path=str(path))


def _validate(model: type, raw: dict):
    try:
        return TypeAdapter(model).validate_python(raw)
    except ValidationError as exc:
        raise NewstagError(_one_line(exc, model)) from None


# ---- pydantic's errors as one line naming the key --------------------------------------------

KINDS = {"int": "an integer", "float": "a number", "string": "a string", "bool": "true or false",
         "dict": "a mapping", "dataclass": "a mapping", "list": "a list", "tuple": "a list"}
BOUNDS = {"greater_than": ("gt", "greater than"), "greater_than_equal": ("ge", "at least"),
          "less_than": ("lt", "less than"), "less_than_equal": ("le", "at most")}


def _one_line(exc: ValidationError, model: type) -> str:
    """The first error (unknown keys first: a typo also makes its key look missing), as one line."""
    errors = exc.errors(include_url=False)
    unknown = [error for error in errors if error["type"] == "unexpected_keyword_argument"]
    if unknown:
        return _unknown_keys(unknown, model)
    error = errors[0]
    where, kind, declared = _follow(model, error["loc"])
    got = f"got {_shown(error['input'])}"
    name = error["type"]
    if kind in (int, float) and (number := _number_error(error, where, kind, declared)):
        return number
    if name == "missing":
        return f"missing required key '{where}'"
    if name == "value_error":
        cause = error["ctx"]["error"]
        where += getattr(cause, "key", "")
        return f"'{where}' {cause}" if where else str(cause)
    if name == "literal_error":
        choices = get_args(kind) if get_origin(kind) is Literal else (error["ctx"]["expected"],)
        return f"'{where}' is {error['input']!r}; choose one of: {', '.join(map(str, choices))}"
    if name.endswith("_type") and name.removesuffix("_type") in KINDS:
        return f"'{where}' should be {KINDS[name.removesuffix('_type')]}, {got}"
    if name in BOUNDS:
        key, words = BOUNDS[name]
        return f"'{where}' should be {words} {error['ctx'][key]:g}, {got}"
    if name == "too_short":
        return f"'{where}' is empty; give at least one entry"
    message = error["msg"].removeprefix("Input ")
    return f"'{where}' {message[0].lower()}{message[1:]}, {got}"


def _number_error(error: dict, where: str, kind: type, declared) -> str | None:
    """A number field's error worded for what the user wrote: .nan or .inf (which bound checks
    let through or misname: every comparison with .nan is false) and a number YAML read as text."""
    value = error["input"]
    if kind is float and isinstance(value, float) and not math.isfinite(value):
        if math.isnan(value):
            return f"'{where}' should be {_number_range(declared)}, got .nan (not a number)"
        infinite = f"{'-' if value < 0 else ''}.inf"
        return f"'{where}' should be {_number_range(declared, 'a finite number')}, got {infinite}"
    if error["type"] in ("int_type", "float_type") and isinstance(value, str):
        fix = _number_fix(value, whole=kind is int)
        return f"'{where}' should be {KINDS[kind.__name__]}, got the text {value!r}{fix}" if fix else None
    return None


def _number_range(declared, noun: str = "a number") -> str:
    """`a number in (0, 1)`, `a number greater than 0` or `a number`, from the key's bounds."""
    bounds = {name: getattr(item, name) for item in getattr(declared, "metadata", ())
              for name in ("gt", "ge", "lt", "le") if hasattr(item, name)}
    low = ("(", bounds["gt"]) if "gt" in bounds else ("[", bounds["ge"]) if "ge" in bounds else None
    high = (")", bounds["lt"]) if "lt" in bounds else ("]", bounds["le"]) if "le" in bounds else None
    if low and high:
        return f"{noun} in {low[0]}{low[1]:g}, {high[1]:g}{high[0]}"
    if low or high:
        words = {"(": "greater than", "[": "at least", ")": "less than", "]": "at most"}
        mark, bound = low or high
        return f"{noun} {words[mark]} {bound:g}"
    return noun


# YAML 1.1 (PyYAML) reads a float only with a dot and a signed exponent: 1e-9 and 1.0e9 are text.
_EXPONENT = re.compile(r"([-+]?)([0-9]+)(?:\.([0-9]*))?[eE]([-+]?)([0-9]+)")


def _number_fix(text: str, whole: bool) -> str:
    """How to write a number that YAML read as text so that it reads a number (an integer for
    an integer key); "" when the text is no such number."""
    try:
        value = float(text)
    except ValueError:
        return ""
    written = _EXPONENT.fullmatch(text.strip())
    if not math.isfinite(value) or (whole and not (value.is_integer() and (written or _is_int(text)))):
        return ""
    fix = str(int(value)) if whole and written else text.strip()
    if written and not whole:
        sign, digits, decimals, exponent_sign, exponent = written.groups()
        fix = f"{sign}{digits}.{decimals or '0'}e{exponent_sign or '+'}{exponent}"
    if fix == text.strip():  # YAML would have read it as a number: it was quoted
        return f" (it is quoted: write {fix} without quotes)"
    return f" (YAML 1.1 reads {text} as text: write {fix})"


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _unknown_keys(errors: list[dict], model: type) -> str:
    parent = errors[0]["loc"][:-1]
    keys = sorted(str(error["loc"][-1]) for error in errors if error["loc"][:-1] == parent)
    where, kind, _ = _follow(model, parent)
    place = f"in {where}" if where else "beside 'compose'" if model is ComposedFile else "in top level"
    valid = sorted(kind.__pydantic_fields__) if is_dataclass(kind) else []
    return (f"unknown key {', '.join(map(repr, keys))} {place}; "
            f"valid keys are: {', '.join(valid)}")


def _follow(model: type, loc: tuple) -> tuple[str, Any, Any]:
    """The key path an error location names (`tasks.topic.labels[1]`), the declared type there,
    and the last key's declaration (its FieldInfo, with bounds such as gt=0), if it has one.

    Union members show up in pydantic's locations as tags; they are not keys, so they are skipped.
    """
    where, kind, declared = "", model, None
    for item in loc:
        kind = _bare(kind)
        if get_origin(kind) in (Union, UnionType):
            kind = next((_bare(m) for m in get_args(kind) if _tag(m) == item), None)
            continue
        if item == "[key]":  # pydantic's mark for a mapping's key (not its value) being wrong
            where += " (the key)"
        elif isinstance(item, int) and get_origin(kind) is not dict:
            where += f"[{item}]"
        else:
            where += f".{item}" if where else str(item)
        if is_dataclass(kind):
            declared = kind.__pydantic_fields__.get(str(item))
            kind = declared.annotation if declared else None
        elif get_origin(kind) in (dict, list, tuple):
            kind = [arg for arg in get_args(kind) if arg is not Ellipsis][-1] if get_args(kind) else None
            declared = None
        else:
            kind = declared = None
    return where, _bare(kind), declared


def _bare(kind):
    """The type without Annotated metadata, and without `| None`."""
    while get_origin(kind) is Annotated:
        kind = get_args(kind)[0]
    if get_origin(kind) in (Union, UnionType):
        members = [m for m in get_args(kind) if m is not type(None)]
        if len(members) == 1:
            return _bare(members[0])
    return kind


def _tag(kind) -> str | None:
    if get_origin(kind) is Annotated:
        return next((m.tag for m in get_args(kind)[1:] if isinstance(m, Tag)), None)
    return None


def _shown(value) -> str:
    return f"{type(value).__name__} {value!r}"
