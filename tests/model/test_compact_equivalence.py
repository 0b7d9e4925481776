"""The compact form predicts what the scikit-learn pipeline predicts: the same labels, probabilities
within 1e-6, the same explanation terms and the same multi-label answers, on every bench corpus
and on generated text. It reproduces scikit-learn's tokenisation and scoring by hand, so any change
in the installed scikit-learn that moves a score (a new token rule, say) fails here."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.model_selection import train_test_split

from newstag.config import load_config
from newstag.data.clean import clean_text
from newstag.data.corpora import load_corpus
from newstag.errors import NewstagError
from newstag.explain import CompactExplainer, Explainer
from newstag.models import compact
from newstag.models.calibrate import calibrated, class_scores
from newstag.models.multilabel import is_multilabel
from newstag.models.multilabel import tag_texts as tag_multilabel
from newstag.models.pipelines import build_pipeline
from newstag.train import fit_task

from ..conftest import ROOT, SAMPLE, corpora_dir, need_corpus

EXPERIMENTS = {"20newsgroups": "20newsgroups", "20newsgroups_stripped": "20newsgroups",
               "bbc_news": "bbc_news", "ag_news": "ag_news", "financial_phrasebank": "financial_phrasebank",
               "financial_phrasebank_with_duplicates": "financial_phrasebank",
               "econ_news_tone": "econ_news_tone", "hyperpartisan": "hyperpartisan_byarticle"}
ROWS = 500  # per corpus: 300 to fit, 100 to validate, 100 to compare on
LONGEST = 1500  # characters of an article kept: enough for its vocabulary, and quick to fit
TRICKY = ["", " ", "Ünïcödé café naïve — résumé, façade; Æsir Øresund ß İstanbul ǅ ﬁnance",
          "ÉCONOMIE: l'État a dit «non» !!! ... ?!", "x" * 5000, "the " * 3000, "a b c d e f g",
          "Straße STRASSE straße", "日本の経済 は 成長 した", "e\u0301e\u0301 cafe\u0301",
          "$5bn -3.2% 10,000",
          "don't won't can't isn't", "tab\there\nnew line\r\nand  spaces", "\u00a0\u2009\u3000 odd spaces",
          "emoji 📈📉 rise fall 🚀", "\ud800 lone surrogate"]


def export_and_load(pipeline, folder: Path) -> compact.Task:
    """The pipeline's compact form, written to a file and read back as predict reads it."""
    meta, arrays = compact.export(pipeline)
    folder.mkdir(parents=True, exist_ok=True)
    written = compact.write(folder / "model.compact.npz", {"task": pipeline})
    assert written["tasks"] == ["task"], written
    task = compact.load(folder / "model.compact.npz")["task"]
    assert task.meta["classes"] == meta["classes"] and set(task.arrays) == set(arrays)
    return task


def compare(pipeline, task: compact.Task, texts: list[str]) -> None:
    """Labels identical, probabilities within 1e-6, explanations the same (or multi-label answers)."""
    if is_multilabel(pipeline):
        answers = compact.tag_texts({"task": task}, texts)["task"]
        assert answers == tag_multilabel(pipeline, texts)
        compare_explanations(pipeline, task, texts, [next(iter(answer)) for answer in answers])
        return
    expected = class_scores(pipeline, texts)
    labels, scores = compact.tag_texts({"task": task}, texts)["task"]
    got = task.probabilities(task.features())
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert labels == [str(pipeline.classes_[i]) for i in expected.argmax(axis=1)]
    np.testing.assert_allclose(scores, expected.max(axis=1), rtol=0, atol=1e-6)
    compare_explanations(pipeline, task, texts, labels)


def compare_explanations(pipeline, task: compact.Task, texts: list[str], labels: list[str]) -> None:
    expected = Explainer(pipeline).explain(texts, labels)
    got = CompactExplainer(task).explain(texts, labels)
    for mine, theirs in zip(got, expected, strict=True):
        assert [term for term, _ in mine] == [term for term, _ in theirs]
        np.testing.assert_allclose([v for _, v in mine], [v for _, v in theirs], rtol=0, atol=1.01e-4)


def corpus_rows(experiment: str) -> tuple:
    config = load_config(ROOT / "experiments" / f"{experiment}.yaml")
    need_corpus(EXPERIMENTS[experiment])
    frame = load_corpus(config.data.dataset, corpora_dir(), dict(config.data.options)).frame
    task = config.tasks[0]
    columns = [c for c in (config.data.text_columns or ["text"]) if c in frame]
    texts = frame[columns].fillna("").astype(str).agg(" ".join, axis=1).map(clean_text).str[:LONGEST]
    rows = pd.DataFrame({"text": texts, task.name: frame[task.column].astype(str)})
    rows = rows[rows["text"] != ""]
    if len(rows) > ROWS:
        rows, _ = train_test_split(rows, train_size=ROWS, stratify=rows[task.name], random_state=0)
    train, rest = train_test_split(rows, train_size=0.6, stratify=rows[task.name], random_state=0)
    validation, held_out = train_test_split(rest, train_size=0.5, stratify=rest[task.name], random_state=0)
    return config, replace(task, grid={}), train, validation, held_out


@pytest.mark.parametrize("experiment", list(EXPERIMENTS))
def test_bench_corpus_models_match_scikit_learn(experiment, tmp_path):
    config, task, train, validation, held_out = corpus_rows(experiment)
    pipeline = fit_task(task, train, validation, config.seed).pipeline
    compare(pipeline, export_and_load(pipeline, tmp_path), held_out["text"].tolist() + TRICKY)


# ---- every classifier, feature set and calibration, on the sample corpus ----------------------

CLASSIFIERS = ("logreg", "linear_svm", "ridge", "complement_nb", "nbsvm", "sgd")


@pytest.fixture(scope="module")
def sample_models(tmp_path_factory):
    """Small models of every kind the compact form covers, fitted on the sample corpus."""
    frame = pd.read_json(SAMPLE, lines=True)
    frame["text"] = (frame["title"] + ". " + frame["text"]).map(clean_text)
    train, validation = train_test_split(frame, test_size=0.3, stratify=frame["topic"], random_state=0)
    config = load_config(ROOT / "experiments" / "default.yaml")
    base = replace(config.tasks[0], grid={}, params={}, min_confidence=None)
    texts, labels = frame["text"].tolist(), frame["topic"].tolist()
    kinds = [("logreg", "word", "sigmoid"), ("linear_svm", "char", "isotonic"),
             ("ridge", "word+char", "sigmoid"), ("complement_nb", "word", "isotonic"),
             ("nbsvm", "word", "sigmoid"), ("sgd", "word", "isotonic"), ("linear_svm", "word", "none"),
             ("logreg", "word", "none"), ("complement_nb", "word", "none"), ("nbsvm", "char", "none")]
    kinds += [(classifier, "word", method) for classifier in CLASSIFIERS
              for method in ("temperature", "top-label")]
    binary = ["sport" if label == "sport" else "other" for label in labels]
    models = {}
    for classifier, features, calibration in kinds:
        pipeline = build_pipeline(replace(base, classifier=classifier, features=features), 0)
        if calibration != "none":
            pipeline = calibrated(pipeline, calibration, 3)
        models[(classifier, features, calibration)] = pipeline.fit(texts, labels)
    for classifier in CLASSIFIERS:  # two labels: one margin or one probability per article
        for method in ("temperature", "top-label"):
            pipeline = calibrated(build_pipeline(replace(base, classifier=classifier), 0), method, 3)
            models[(classifier, "binary", method)] = pipeline.fit(texts, binary)
    odd_settings = {"vect__ngram_range": (1, 2), "vect__stop_words": "english", "vect__binary": True,
                    "vect__strip_accents": "unicode", "vect__sublinear_tf": False, "vect__norm": "l1"}
    tone = replace(config.tasks[1], grid={}, labels=None, params=odd_settings, classifier="logreg",
                   min_confidence=None, negation=False)
    models[("logreg", "binary tone", "auto")] = fit_task(
        tone, train.assign(tone=np.where(train["tone"] == "negative", "negative", "other")),
        validation.assign(tone=np.where(validation["tone"] == "negative", "negative", "other")), 0).pipeline
    for kind, pipeline in negation_models(config, train, validation).items():
        models[kind] = pipeline
    multi = replace(base, name="topics", column="topics", multi_label=True, labels=None, classifier="auto")
    models[("linear_svm", "word", "multi-label")] = fit_task(multi, two_labels(train), two_labels(validation),
                                                             0).pipeline
    folder = tmp_path_factory.mktemp("compact")
    exported = {kind: export_and_load(pipeline, folder / "-".join(kind).replace(" ", "_"))
                for kind, pipeline in models.items()}
    return models, exported, frame["text"].tolist()


def negation_models(config, train: pd.DataFrame, validation: pd.DataFrame) -> dict:
    """Tone models with negation-scope features: the default experiment's tone task as it is
    configured, and unions with other members, weights, windows and vectoriser settings."""
    tone = replace(config.tasks[1], grid={}, min_confidence=None)
    models = {("logreg", "default tone", "auto"): fit_task(tone, train, validation, 0).pipeline}
    texts, labels = train["text"].tolist(), train["tone"].tolist()
    variants = {
        ("sgd", "word+char+negation", "temperature"): (
            {"features": "word+char", "classifier": "sgd"},
            {"vect__transformer_weights": {"negation": 2, "char": 0.5}, "vect__negation__mark__window": 2}),
        ("linear_svm", "word+negation unweighted", "sigmoid"): (
            {"classifier": "linear_svm"},
            {"vect__negation__tfidf__ngram_range": (1, 2), "vect__negation__tfidf__binary": True,
             "vect__negation__tfidf__min_df": 1, "vect__negation__tfidf__norm": "l1"}),
        ("complement_nb", "word+negation", "isotonic"): (
            {"classifier": "complement_nb"}, {"vect__transformer_weights": {"negation": 0.35}}),
    }
    for (classifier, features, calibration), (change, params) in variants.items():
        task = replace(tone, params={}, **change)
        pipeline = build_pipeline(task, 0, params)
        models[(classifier, features, calibration)] = calibrated(pipeline, calibration, 3).fit(texts, labels)
    return models


def two_labels(part: pd.DataFrame) -> pd.DataFrame:
    """Every third article also carries the label 'news', for a multi-label task."""
    return part.assign(topics=[[t, "news"] if i % 3 else [t] for i, t in enumerate(part["topic"])])


def test_every_model_kind_matches_scikit_learn(sample_models):
    models, exported, texts = sample_models
    for kind, pipeline in models.items():
        compare(pipeline, exported[kind], texts + TRICKY)


@pytest.mark.parametrize("change, reason", [
    ({"lexicons": ["vader"]}, "lexicon or sentence features"),
    ({"classifier": "sgd", "calibration": "none"}, "the uncalibrated probabilities of a SGDClassifier"),
])
def test_what_it_cannot_reproduce_is_named(change, reason):
    frame = pd.read_json(SAMPLE, lines=True)
    task = replace(load_config(ROOT / "experiments" / "default.yaml").tasks[1], grid={}, params={}, **change)
    pipeline = build_pipeline(task, 0).fit(frame["text"], frame["tone"])
    with pytest.raises(compact.NotCompact, match=reason):
        compact.export(pipeline)


WORDS = st.sampled_from(["shares", "fell", "goal", "striker", "minister", "vote", "not", "profit",
                         "no", "never", "didn't", "ISN'T", "isn\u2019t", "without", "cannot", "but", "and",
                         "or", "Or", ",", ".", ";", ":", "rise", "growth", "good", "bad", "not_good",
                         "Café", "naïve", "élection", "ÉTAT", "straße", "the", "a", "I", "n't", "£5bn",
                         "3.2%", "—", "«", "»", "!", "?", "...", "\t", "\n", " ", "日本", "📈"])
TEXTS = st.one_of(st.text(max_size=400), st.lists(WORDS, max_size=300).map(" ".join),
                  st.lists(st.text(alphabet=st.characters(categories=("L", "M", "N", "P", "Z")), max_size=12),
                           max_size=100).map(" ".join))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(TEXTS, min_size=1, max_size=8))
def test_generated_text_matches_scikit_learn(sample_models, texts):
    models, exported, _ = sample_models
    for kind in [("ridge", "word+char", "sigmoid"), ("complement_nb", "word", "isotonic"),
                 ("logreg", "binary tone", "auto"), ("linear_svm", "word", "multi-label"),
                 ("logreg", "default tone", "auto"), ("sgd", "word+char+negation", "temperature"),
                 ("linear_svm", "word+negation unweighted", "sigmoid"), ("logreg", "word", "temperature"),
                 ("complement_nb", "binary", "temperature"), ("linear_svm", "word", "top-label"),
                 ("complement_nb", "binary", "top-label")]:
        compare(models[kind], exported[kind], texts)


def test_the_default_tone_task_is_compact_with_negation_terms(sample_models):
    models, exported, _ = sample_models
    pipeline, task = models[("logreg", "default tone", "auto")], exported[("logreg", "default tone", "auto")]
    assert task.meta["scales"] == [None, 0.35]
    assert any(name.startswith("negation:not_") for name in task.names())
    known = [term.removeprefix("not_") for term in task.vectorizers[1].terms[:2]]
    texts = [f"Profits did not {known[0]}, but {known[1]} and jobs were not cut.",
             f"No {known[1]}; {known[0]} or hope.", f"Never {known[0]} {known[1]}!"]
    compare(pipeline, task, texts)
    compact.count_texts(texts, task.vectorizers)
    negated = task.features()[1]  # the negation member: not_x before the scope ends, never after
    assert [len(np.flatnonzero(negated.row == i)) for i in range(3)] == [1, 1, 2]


@pytest.mark.parametrize("version, readable",
                         [(1, True), (compact.VERSION, True), (compact.VERSION + 1, False)])
def test_files_of_older_versions_are_read_and_newer_ones_refused(tmp_path, version, readable):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    pipeline = Pipeline([("vect", TfidfVectorizer()), ("clf", LogisticRegression())])
    pipeline.fit(["shares rose", "shares fell", "goal scored", "match won"], ["b", "b", "s", "s"])
    path = tmp_path / "model.compact.npz"
    compact.write(path, {"task": pipeline})
    with np.load(path) as data:
        arrays = dict(data)
    meta = json.loads(bytes(arrays["meta"]))
    arrays["meta"] = np.frombuffer(json.dumps({**meta, "version": version}).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    if readable:
        assert list(compact.load(path)) == ["task"]
    else:
        with pytest.raises(NewstagError, match="not a compact model file of this version"):
            compact.load(path)
