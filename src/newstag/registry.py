"""The model registry: one registered model per experiment (`newstag-<experiment>`), a version per
new data or config, and the `champion` alias moved only on evidence.

Only the MLflow paths import this module (train and evaluate with tracking, promote, and predict
with a `models:/` URI).
"""

import getpass
import json
import logging
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from newstag.errors import NewstagError
from newstag.tracking import MAIN_METRIC  # the mean over tasks of the test macro-F1

log = logging.getLogger(__name__)
CHAMPION = "champion"
RESAMPLES = 2000
ALPHA = 0.05


def registered_name(experiment: str) -> str:
    return f"newstag-{experiment}"


# ---- registering --------------------------------------------------------------------------------

def register(client, config, model, run_id: str, sidecar: dict):
    """Register the run's logged model as a new version, unless a version was trained on the same
    data (sha256) with the same config: then say so and point at it."""
    import mlflow

    from newstag.tracking import config_sha256, git_commit

    name = registered_name(config.name)
    settings = config_sha256(config)
    same = same_version(client, name, sidecar["data_sha256"], settings)
    if same is not None:
        log.info("no new version of %s: the data sha256 and the config are those of version %s "
                 "(models:/%s/%s)", name, same.version, name, same.version)
        mlflow.set_tag("registered_version", f"{name}/{same.version} (unchanged, not registered again)")
        return same
    first = not client.search_registered_models(f"name = '{name}'")
    tags = {"data_sha256": sidecar["data_sha256"], "config_sha256": settings,
            "git_commit": git_commit(), "run_id": run_id, "experiment_file": config.name,
            "config": json.dumps(config.to_dict(), sort_keys=True, default=str),
            **validation_metrics(sidecar)}
    version = mlflow.register_model(model.model_uri, name, tags=tags)  # also links the logged model
    if first:  # registered by register_model, so that MLflow does not say it "already exists"
        client.update_registered_model(name, description=f"newstag taggers of experiments/"
                                                         f"{config.name}.yaml: {config.description}")
    client.update_model_version(name, version.version, description=version_description(config, sidecar, {}))
    mlflow.set_tag("registered_version", f"{name}/{version.version}")
    log.info("registered %s version %s (models:/%s/%s)", name, version.version, name, version.version)
    return version


def same_version(client, name: str, data_sha256: str, settings: str):
    for version in client.search_model_versions(f"name = '{name}'"):
        tags = version.tags or {}
        if tags.get("data_sha256") == data_sha256 and tags.get("config_sha256") == settings:
            return version
    return None


def validation_metrics(sidecar: dict) -> dict[str, str]:
    from newstag.tracking import metric_name

    return {metric_name("val", task, key): f"{value:.4f}"
            for task, meta in sidecar.get("tasks", {}).items()
            for key, value in (meta.get("validation") or {}).items()
            if key in ("accuracy", "f1_macro", "f1_micro") and isinstance(value, int | float)}


def version_description(config, sidecar: dict, test: dict[str, float]) -> str:
    """What a person reads on the version's page: what it is, its scores, data and code."""
    lines = [config.description or f"newstag taggers of {config.name}", ""]
    for task, meta in sidecar.get("tasks", {}).items():
        validation = meta.get("validation") or {}
        scores = [f"validation macro-F1 {validation['f1_macro']:.3f}"] if "f1_macro" in validation else []
        for key in ("accuracy", "f1_macro"):
            if f"test/{task}/{key}" in test:
                scores.append(f"test {key.replace('f1_macro', 'macro-F1')} {test[f'test/{task}/{key}']:.3f}")
        lines.append(f"- **{task}** ({', '.join(meta.get('labels', []))}): {', '.join(scores)}")
    if MAIN_METRIC in test:
        lines.append(f"- main metric {MAIN_METRIC}: {test[MAIN_METRIC]:.4f}")
    lines += ["", f"data sha256 `{sidecar['data_sha256']}`, bundle sha256 `{sidecar['sha256']}`, "
                  f"scikit-learn {sidecar.get('versions', {}).get('scikit-learn')}; the config and "
                  f"the git commit are in this version's tags."]
    return "\n".join(lines)


def record_test_metrics(client, config, sidecar: dict, run_id: str, metrics: dict[str, float]) -> None:
    """evaluate's test scores on the version this run registered (none if it registered none)."""
    name = registered_name(config.name)
    versions = [v for v in client.search_model_versions(f"name = '{name}'") if v.run_id == run_id]
    keep = {key: value for key, value in metrics.items()
            if key == MAIN_METRIC or key.rsplit("/", 1)[-1] in ("accuracy", "f1_macro")}
    for version in versions:
        for key, value in keep.items():
            client.set_model_version_tag(name, version.version, key, f"{value:.4f}")
        client.update_model_version(name, version.version,
                                    description=version_description(config, sidecar, metrics))


# ---- loading ------------------------------------------------------------------------------------

def load_registered(uri: str) -> dict:
    """A bundle from the registry (`models:/newstag-default@champion`, `models:/name/3`), loaded
    by newstag's verified loader from the model's own bundle folder."""
    from newstag.tracking import mlflow_errors, quiet_downloads, tracking_uri

    store = tracking_uri()
    quiet_downloads()
    with mlflow_errors(store):
        import mlflow
        from mlflow.exceptions import MlflowException

        mlflow.set_tracking_uri(store)
        with tempfile.TemporaryDirectory(prefix="newstag-registry-") as folder:
            try:
                local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=folder)
            except MlflowException as exc:
                raise NewstagError(f"{uri}: not found in {store} ({_first_line(exc)}); list the "
                                   f"versions in the MLflow UI, or run `make promote`") from None
            return _load_from(Path(local), uri)


def _load_from(folder: Path, uri: str) -> dict:
    from newstag import serving
    from newstag.models.bundle import load_bundle

    bundle_folder = folder / "artifacts" / serving.BUNDLE_ARTIFACT
    if not bundle_folder.is_dir():
        raise NewstagError(f"{uri}: not a newstag model (no {serving.BUNDLE_ARTIFACT} artifact)")
    return load_bundle(serving.bundle_in(bundle_folder))


def _first_line(exc) -> str:
    return str(getattr(exc, "message", exc)).splitlines()[0][:200]


# ---- promotion ----------------------------------------------------------------------------------

def promote(config, force: bool = False, reason: str | None = None, alpha: float = ALPHA,
            resamples: int = RESAMPLES) -> str:
    """Move `champion` to the newest version when it beats the champion on the main metric in a
    paired bootstrap on the current test split (or with force); return what was decided and why."""
    from mlflow import MlflowClient

    from newstag.tracking import check_reachable, mlflow_errors, tracking_uri

    store = tracking_uri()
    check_reachable(store)
    with mlflow_errors(store):
        client = MlflowClient(store)
        name = registered_name(config.name)
        versions = client.search_model_versions(f"name = '{name}'")
        if not versions:
            raise NewstagError(f"no registered model {name} in {store}; train it first "
                               f"(`make train EXP={config.path or config.name}`)")
        newest = max(versions, key=lambda v: int(v.version))
        champion = _champion(client, name)
        if champion is not None and str(champion.version) == str(newest.version):
            return f"{name}: version {newest.version} (the newest) is already the champion; nothing to do"
        comparison = compare(config, name, str(newest.version),
                             str(champion.version) if champion else None, alpha, resamples)
        wins = champion is None or (comparison["difference"] > 0 and comparison["p_value"] < alpha)
        if not wins and not force:
            return f"{name}: version {newest.version} not promoted: {comparison['summary']}; " \
                   f"to promote it anyway: `newstag promote --force` (`make promote FORCE=1`)"
        why = reason or ("forced: " if not wins else "") + comparison["summary"]
        client.set_registered_model_alias(name, CHAMPION, newest.version)
        for key, value in {"promoted_by": getpass.getuser(), "promoted_at": _now(),
                           "promotion_reason": why, "promotion_forced": str(bool(force and not wins)),
                           "promotion_comparison": json.dumps(comparison["numbers"])}.items():
            client.set_model_version_tag(name, newest.version, key, value)
        return f"{name}: version {newest.version} is now the champion (models:/{name}@{CHAMPION}): {why}"


def champion_uri(config) -> str:
    """models:/newstag-<exp>@champion when the alias is set (what `make serve` serves), else a
    one-line error that says how to set it, before MLflow's own longer failure."""
    from mlflow import MlflowClient

    from newstag.tracking import check_reachable, mlflow_errors, tracking_uri

    store = tracking_uri()
    check_reachable(store)
    name = registered_name(config.name)
    with mlflow_errors(store):
        champion = _champion(MlflowClient(store), name)
    if champion is None:
        raise NewstagError(f"{name} has no {CHAMPION} in {store}; promote a version first "
                           f"(`make promote EXP={config.path or config.name}`, after `make evaluate`)")
    return f"models:/{name}@{CHAMPION} (version {champion.version})"


def _champion(client, name: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def compare(config, name: str, newest: str, champion: str | None, alpha: float, resamples: int) -> dict:
    """Both versions re-scored on the experiment's current test split, paired article by article."""
    from newstag.data.splits import read_manifest, trained_on

    bundles = {"newest": load_registered(f"models:/{name}/{newest}")}
    if champion is not None:
        bundles["champion"] = load_registered(f"models:/{name}/{champion}")
    manifest = read_manifest(config)
    if not trained_on(bundles["newest"]["metadata"], manifest):
        raise NewstagError(f"{name} version {newest} was trained on other splits than "
                           f"{config.processed_dir} holds now; retrain (`make train EXP="
                           f"{config.path or config.name}`), then promote")
    if champion is not None and not trained_on(bundles["champion"]["metadata"], manifest):
        return {"difference": float("nan"), "p_value": 1.0,
                "numbers": {"newest": newest, "champion": champion, "comparable": False},
                "summary": f"champion version {champion} was trained on other splits than the "
                           f"current ones, so the current test split can hold its own training "
                           f"articles and the two cannot be compared fairly"}
    predictions = task_predictions(config, bundles)
    if champion is None:
        score = main_score(predictions["newest"])
        return {"difference": float("inf"), "p_value": 0.0,
                "numbers": {"newest": newest, MAIN_METRIC: score},
                "summary": f"no champion yet; version {newest} scores {MAIN_METRIC} {score:.4f} "
                           f"on the current test split"}
    result = paired_bootstrap(predictions["newest"], predictions["champion"], resamples)
    rows = max(len(truth) for _, _, truth, _ in predictions["newest"].values())
    verdict = "beats" if result["difference"] > 0 and result["p_value"] < alpha else "does not beat"
    summary = (f"version {newest} {verdict} champion version {champion} on {MAIN_METRIC} over the "
               f"current test split ({rows} articles): {result['newest']:.4f} against "
               f"{result['champion']:.4f} (difference {result['difference']:+.4f}, 95% interval "
               f"[{result['low']:+.4f}, {result['high']:+.4f}], paired bootstrap p = "
               f"{result['p_value']:.3f} over {resamples} resamples; needs > 0 with p < {alpha:g})")
    return {**result, "summary": summary,
            "numbers": {"newest": newest, "champion": champion, "metric": MAIN_METRIC,
                        "test": "paired bootstrap", **{k: round(v, 6) for k, v in result.items()}}}


def task_predictions(config, bundles: dict[str, dict]) -> dict[str, dict]:
    """{bundle: {task: (split, labels, truth, predicted)}}: each task's test labels and each
    bundle's predictions (label-indicator matrices for a multi-label task). Each source's test
    split is read once, a chunk at a time, for every bundle: only the labels are kept."""
    from newstag.data.splits import CHUNK_ROWS, by_source, split_chunks

    tasks = list(dict.fromkeys(task for bundle in bundles.values() for task in bundle["pipelines"]))
    for task in tasks:
        if task not in config.task_names:
            raise NewstagError(f"the model has task {task!r}, which the experiment's test split "
                               f"lacks; promote a model of this experiment")
    parts: dict = {name: {} for name in bundles}
    for source, members in by_source(config, tasks):
        pairs = [(name, task) for name, bundle in bundles.items() for task in members
                 if task in bundle["pipelines"]]
        for chunk in split_chunks(source, "test", CHUNK_ROWS).in_order():
            texts = chunk["text"].tolist()
            for name, task in pairs:
                labels, truth, predicted = _chunk_predictions(bundles[name]["pipelines"][task],
                                                              chunk[task], texts)
                entry = parts[name].setdefault(task, (str(source.processed_dir), labels, [], []))
                entry[2].append(truth)
                entry[3].append(predicted)
    return {name: {task: (split, labels, _joined(truths), _joined(predicted))
                   for task, (split, labels, truths, predicted) in tasks.items()}
            for name, tasks in parts.items()}


def _chunk_predictions(pipeline, raw, texts: list[str]) -> tuple:
    from newstag.models import multilabel
    from newstag.models.ordinal import truth_for

    if multilabel.is_multilabel(pipeline):
        clf = pipeline.named_steps["clf"]
        truth = clf.binarize(multilabel.label_lists(raw))
        return clf.labels, truth.astype(bool), pipeline.predict(texts).astype(bool)
    return None, list(truth_for(pipeline, raw.tolist())), [str(label) for label in pipeline.predict(texts)]


def _joined(parts: list):
    """One split's chunks put back together: rows of a matrix, or items of a list."""
    if parts and isinstance(parts[0], np.ndarray):
        return np.vstack(parts)
    return [item for part in parts for item in part]


def paired_bootstrap(new: dict, old: dict, resamples: int, seed: int = 0) -> dict:
    """The main metric of both models on the test split, and the distribution of its difference
    over bootstrap resamples of the articles (the same resample for both models, and for every
    task scored on the same split). p is the share of resamples where the newest is not ahead.
    Resamples are drawn in blocks, so memory stays bounded on a large test split."""
    rng = np.random.default_rng(seed)
    tasks = [(frame, *_indicators(labels, truth, predicted, old[task][3]))
             for task, (frame, labels, truth, predicted) in new.items()]
    sizes = {frame: len(truth) for frame, truth, _, _ in tasks}
    block = max(1, BLOCK_CELLS // max(sizes.values()))
    differences = []
    for start in range(0, resamples, block):
        weights = {frame: _resample_counts(rng, size, min(block, resamples - start))
                   for frame, size in sizes.items()}
        differences.append(sum(_macro_f1(weights[frame], truth, a) - _macro_f1(weights[frame], truth, b)
                               for frame, truth, a, b in tasks) / len(tasks))
    differences = np.concatenate(differences)
    newest, champion = main_score(new), main_score(old)
    return {"newest": newest, "champion": champion, "difference": newest - champion,
            "low": float(np.percentile(differences, 2.5)), "high": float(np.percentile(differences, 97.5)),
            "p_value": float(np.mean(differences <= 0))}


BLOCK_CELLS = 4_000_000  # resamples x articles drawn at once (16 MB of float32 weights)


def main_score(predictions: dict) -> float:
    """The main metric of one model's predictions: the mean over tasks of the macro-F1."""
    scores = []
    for _, labels, truth, predicted in predictions.values():
        truth_matrix, matrix, _ = _indicators(labels, truth, predicted, predicted)
        scores.append(_macro_f1(np.ones((1, len(truth_matrix)), np.float32), truth_matrix, matrix)[0])
    return float(np.mean(scores))


def _resample_counts(rng, size: int, resamples: int) -> np.ndarray:
    """How often each article is drawn in each resample (resamples x articles)."""
    return rng.multinomial(size, np.full(size, 1 / size), size=resamples).astype(np.float32)


def _indicators(labels, truth, new_predicted, old_predicted):
    if labels is not None:  # multi-label: already indicator matrices
        return truth, new_predicted, old_predicted
    names = sorted(set(truth) | set(new_predicted) | set(old_predicted))
    index = {name: i for i, name in enumerate(names)}

    def one_hot(values):
        matrix = np.zeros((len(values), len(names)), dtype=bool)
        matrix[np.arange(len(values)), [index[value] for value in values]] = True
        return matrix

    return one_hot(truth), one_hot(new_predicted), one_hot(old_predicted)


def _macro_f1(weights: np.ndarray, truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Macro-F1 for each row of article weights: F1 = 2TP / (2TP + FP + FN) per label (0 when a
    label is neither true nor predicted), averaged over labels."""
    tp = weights @ (truth & predicted).astype(np.float32)
    fp = weights @ (~truth & predicted).astype(np.float32)
    fn = weights @ (truth & ~predicted).astype(np.float32)
    denominator = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return f1.mean(axis=1)
