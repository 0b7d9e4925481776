"""Experiment files: load a YAML, check every key and type, and say where each stage writes.

An experiment is immutable once loaded; nothing writes it back. Relative paths in the YAML are
relative to the directory newstag runs in (the project root when run through `make`).
"""

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from newstag.errors import NewstagError
from newstag.safe_yaml import load_yaml

CLASSIFIERS = ("auto", "logreg", "linear_svm", "sgd", "complement_nb", "ridge", "nbsvm")
SCORINGS = ("f1_macro", "accuracy")
FORMATS = ("auto", "csv", "tsv", "jsonl", "parquet", "folder")
PROTOCOLS = ("split", "cv")
FEATURES = ("word", "char", "word+char")


@dataclass(frozen=True)
class DataConfig:
    """Where the raw articles are (a file, a folder of class folders, or a known corpus by name)."""

    path: str | None = None
    dataset: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    format: str = "auto"
    text_columns: tuple[str, ...] = ("text",)
    id_column: str | None = None
    split_column: str | None = None
    encoding: str = "utf-8"
    on_invalid: str = "error"
    deduplicate: bool = True
    max_file_mb: int = 64
    max_total_mb: int = 8192


@dataclass(frozen=True)
class SplitConfig:
    """Fractions held out for model selection and for the final score."""

    validation: float = 0.15
    test: float = 0.15


@dataclass(frozen=True)
class Distribution:
    """A numeric range to search: uniform, or log-uniform (for C and alpha) when `log`."""

    low: float
    high: float
    log: bool = False
    int: bool = False


@dataclass(frozen=True)
class SearchConfig:
    """A task's search: the space of pipeline settings, the budget, the folds and the score."""

    space: dict[str, Any] = field(default_factory=dict)
    n_iter: int | None = 20
    timeout: float | None = None
    folds: int = 5
    scoring: str = "f1_macro"


@dataclass(frozen=True)
class TaskConfig:
    """One tagging task: a label column, its allowed labels, a classifier and its grid."""

    name: str
    column: str
    labels: tuple[str, ...] | None = None
    classifier: str = "auto"
    features: str = "word"
    params: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list] = field(default_factory=dict)
    search: SearchConfig | None = None


@dataclass(frozen=True)
class MlflowConfig:
    """How runs are filed in MLflow."""

    experiment: str = "newstag"
    register: bool = True


@dataclass(frozen=True)
class BenchConfig:
    """How `make bench` scores this experiment: the held-out split, or repeated stratified k-fold."""

    protocol: str = "split"
    folds: int = 5
    repeats: int = 1


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment, as read from its YAML file."""

    name: str
    data: DataConfig | None
    tasks: tuple[TaskConfig, ...]
    seed: int = 42
    split: SplitConfig = SplitConfig()
    mlflow: MlflowConfig = MlflowConfig()
    bench: BenchConfig = BenchConfig()
    description: str = ""
    compose: dict[str, str] = field(default_factory=dict)
    path: str = field(default="", compare=False)

    def to_dict(self) -> dict:
        """A plain, JSON-friendly dict shaped like the YAML (tasks keyed by name)."""
        plain = _plain(asdict(self))
        plain.pop("path")
        plain["tasks"] = {task.pop("name"): task for task in plain["tasks"]}
        return plain

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


def _plain(value):
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def load_config(path: str | Path) -> ExperimentConfig:
    """Read an experiment YAML; raise NewstagError naming the file and key on any mistake."""
    path = Path(path)
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise NewstagError(f"{path}: expected a mapping of keys at the top level")
    try:
        if "compose" in raw:
            return _build_composed(raw, path)
        return replace(_build_experiment(raw, path.stem), path=str(path))
    except NewstagError as exc:
        raise NewstagError(f"{path}: {exc}") from None


def task_source(config: ExperimentConfig, task: str) -> ExperimentConfig:
    """The experiment whose data a task trains on: itself, or the one a composed experiment names."""
    if task not in config.compose:
        return config
    return load_config(Path(config.path).parent / f"{config.compose[task]}.yaml")


def _build_composed(raw: dict, path: Path) -> ExperimentConfig:
    """An experiment whose tasks each come, with their data, from another experiment file."""
    allowed = {"compose", "seed", "mlflow", "description"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise NewstagError(f"unknown key {', '.join(map(repr, unknown))} beside 'compose'; "
                           f"valid keys are: {', '.join(sorted(allowed))}")
    compose = _expect(raw["compose"], dict, "compose")
    if not compose:
        raise NewstagError("'compose' is empty; map each task to the experiment that trains it")
    tasks = []
    for task, source in compose.items():
        source_config = load_config(path.parent / f"{_expect(source, str, f'compose.{task}')}.yaml")
        match = [t for t in source_config.tasks if t.name == task]
        if not match:
            raise NewstagError(f"compose.{task}: experiment {source} has no task {task!r} "
                               f"(it has: {', '.join(source_config.task_names)})")
        tasks.append(match[0])
    return ExperimentConfig(
        name=path.stem, data=None, tasks=tuple(tasks), compose=dict(compose), path=str(path),
        seed=_expect(raw.get("seed", 42), int, "seed"),
        mlflow=_build_mlflow(_expect(raw.get("mlflow", {}), dict, "mlflow")),
        description=_expect(raw.get("description", ""), str, "description"))


def _build_experiment(raw: dict, name: str) -> ExperimentConfig:
    _check_keys(raw, ExperimentConfig, "top level", exclude={"name", "path"})
    for required in ("data", "tasks"):
        if required not in raw:
            raise NewstagError(f"missing required key '{required}'")
    tasks_raw = _expect(raw["tasks"], dict, "tasks")
    if not tasks_raw:
        raise NewstagError("'tasks' is empty; declare at least one task, e.g. topic")
    return ExperimentConfig(
        name=name,
        data=_build_data(_expect(raw["data"], dict, "data")),
        tasks=tuple(_build_task(key, value) for key, value in tasks_raw.items()),
        seed=_expect(raw.get("seed", 42), int, "seed"),
        split=_build_split(_expect(raw.get("split", {}), dict, "split")),
        mlflow=_build_mlflow(_expect(raw.get("mlflow", {}), dict, "mlflow")),
        bench=_build_bench(_expect(raw.get("bench", {}), dict, "bench")),
        description=_expect(raw.get("description", ""), str, "description"),
    )


def _build_data(raw: dict) -> DataConfig:
    _check_keys(raw, DataConfig, "data")
    if ("path" in raw) == ("dataset" in raw):
        raise NewstagError("set exactly one of 'data.path' (your own file or folder) and "
                           "'data.dataset' (a known corpus, e.g. bbc_news)")
    columns = raw.get("text_columns", ["text"])
    columns = [columns] if isinstance(columns, str) else _expect(columns, list, "data.text_columns")
    data = DataConfig(
        path=_optional_str(raw.get("path"), "data.path"),
        dataset=_optional_str(raw.get("dataset"), "data.dataset"),
        options=_expect(raw.get("options", {}), dict, "data.options"),
        format=_expect(raw.get("format", "auto"), str, "data.format"),
        text_columns=tuple(_expect(column, str, "data.text_columns[]") for column in columns),
        id_column=_optional_str(raw.get("id_column"), "data.id_column"),
        split_column=_optional_str(raw.get("split_column"), "data.split_column"),
        encoding=_expect(raw.get("encoding", "utf-8"), str, "data.encoding"),
        on_invalid=_expect(raw.get("on_invalid", "error"), str, "data.on_invalid"),
        deduplicate=_expect(raw.get("deduplicate", True), bool, "data.deduplicate"),
        max_file_mb=_expect(raw.get("max_file_mb", 64), int, "data.max_file_mb"),
        max_total_mb=_expect(raw.get("max_total_mb", 8192), int, "data.max_total_mb"),
    )
    _check_choice(data.format, FORMATS, "data.format")
    _check_choice(data.on_invalid, ("error", "drop"), "data.on_invalid")
    if data.max_file_mb < 1 or data.max_total_mb < 1:
        raise NewstagError("'data.max_file_mb' and 'data.max_total_mb' are sizes in MB, at least 1")
    if not data.text_columns:
        raise NewstagError("'data.text_columns' is empty; name the column(s) holding the text")
    return data


def _build_split(raw: dict) -> SplitConfig:
    _check_keys(raw, SplitConfig, "split")
    split = SplitConfig(
        validation=_fraction(raw.get("validation", 0.15), "split.validation"),
        test=_fraction(raw.get("test", 0.15), "split.test"),
    )
    if split.validation + split.test >= 0.9:
        raise NewstagError("split.validation + split.test must leave at least 10% for training")
    return split


def _build_task(name: str, raw) -> TaskConfig:
    where = f"tasks.{name}"
    raw = _expect(raw if raw is not None else {}, dict, where)
    _check_keys(raw, TaskConfig, where, exclude={"name"})
    labels = raw.get("labels")
    if labels is not None:
        labels = tuple(_plain_label(label, f"{where}.labels")
                       for label in _expect(labels, list, f"{where}.labels"))
    grid = _expect(raw.get("grid", {}), dict, f"{where}.grid")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise NewstagError(f"'{where}.grid.{key}' must be a non-empty list of candidate values")
    task = TaskConfig(
        name=name,
        column=_expect(raw.get("column", name), str, f"{where}.column"),
        labels=labels,
        classifier=_expect(raw.get("classifier", "auto"), str, f"{where}.classifier"),
        features=_expect(raw.get("features", "word"), str, f"{where}.features"),
        params=_expect(raw.get("params", {}), dict, f"{where}.params"),
        grid=grid,
        search=_build_search(raw["search"], f"{where}.search") if raw.get("search") is not None else None,
    )
    _check_choice(task.classifier, CLASSIFIERS, f"{where}.classifier")
    _check_choice(task.features, FEATURES, f"{where}.features")
    return task


def _plain_label(value, where: str) -> str:
    """A label is one plain value; a nested list or mapping would become an unmatchable string."""
    if value is None or isinstance(value, list | dict):
        raise NewstagError(f"'{where}' should hold plain labels (strings or numbers), "
                           f"got {type(value).__name__} {value!r}")
    return str(value)


def _build_search(raw, where: str) -> SearchConfig:
    """Stand-in reader of a task's `search:` section; the search itself checks the values."""
    raw = _expect(raw, dict, where)
    _check_keys(raw, SearchConfig, where)
    space = {}
    for key, value in _expect(raw.get("space", {}), dict, f"{where}.space").items():
        if isinstance(value, dict):
            _check_keys(value, Distribution, f"{where}.space.{key}")
            value = Distribution(**value)
        space[key] = value
    search = SearchConfig(
        space=space,
        n_iter=raw.get("n_iter", 20),
        timeout=raw.get("timeout"),
        folds=_expect(raw.get("folds", 5), int, f"{where}.folds"),
        scoring=_expect(raw.get("scoring", "f1_macro"), str, f"{where}.scoring"),
    )
    _check_choice(search.scoring, SCORINGS, f"{where}.scoring")
    return search


def _build_mlflow(raw: dict) -> MlflowConfig:
    _check_keys(raw, MlflowConfig, "mlflow")
    return MlflowConfig(
        experiment=_expect(raw.get("experiment", "newstag"), str, "mlflow.experiment"),
        register=_expect(raw.get("register", True), bool, "mlflow.register"),
    )


def _build_bench(raw: dict) -> BenchConfig:
    _check_keys(raw, BenchConfig, "bench")
    bench = BenchConfig(
        protocol=_expect(raw.get("protocol", "split"), str, "bench.protocol"),
        folds=_expect(raw.get("folds", 5), int, "bench.folds"),
        repeats=_expect(raw.get("repeats", 1), int, "bench.repeats"),
    )
    _check_choice(bench.protocol, PROTOCOLS, "bench.protocol")
    if bench.folds < 2 or bench.repeats < 1:
        raise NewstagError("bench.folds must be at least 2 and bench.repeats at least 1")
    return bench


def _check_keys(raw: dict, cls, where: str, exclude: frozenset | set = frozenset()) -> None:
    valid = sorted(f.name for f in fields(cls) if f.name not in exclude)
    unknown = sorted(str(key) for key in raw if key not in valid)
    if unknown:
        raise NewstagError(
            f"unknown key {', '.join(repr(k) for k in unknown)} in {where}; "
            f"valid keys are: {', '.join(valid)}"
        )


def _expect(value, kind, where: str):
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise NewstagError(
            f"'{where}' should be {_kind_name(kind)}, got {type(value).__name__} {value!r}"
        )
    return value


def _kind_name(kind) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", int: "an integer", bool: "true or false"}
    return names.get(kind, kind.__name__)


def _optional_str(value, where: str) -> str | None:
    return None if value is None else _expect(value, str, where)


def _fraction(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise NewstagError(f"'{where}' should be a fraction between 0 and 1, got {value!r}")
    return float(value)


def _check_choice(value: str, choices: tuple[str, ...], where: str) -> None:
    if value not in choices:
        raise NewstagError(f"'{where}' is {value!r}; choose one of: {', '.join(choices)}")
