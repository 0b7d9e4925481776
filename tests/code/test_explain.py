"""Explanations: each term's contribution is its coefficient times its TF-IDF value, checked by hand
for every kind of model; leaks are flagged; predict --explain and newstag explain on good and bad input."""

import io
import json

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import ComplementNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from newstag.cli import main
from newstag.config import TaskConfig
from newstag.data.records import read_records
from newstag.errors import NewstagError
from newstag.explain import Explainer, base_classifier, explainers_for, leaks, top_terms
from newstag.models.bundle import save_bundle
from newstag.models.pipelines import NBSVMClassifier, build_pipeline
from newstag.predict import predict_records, write_table

TEXTS = ["the striker scored a late goal in the final", "the coach praised the striker and the club",
         "the club won the league title", "shares fell as the market slid",
         "the market rallied and shares rose on profits", "investors sold shares in the bank",
         "the minister called a snap vote", "parliament passed the vote on the budget",
         "the minister lost the vote in parliament"]
TOPICS = ["sport"] * 3 + ["business"] * 3 + ["politics"] * 3
TONES = ["pos", "pos", "pos", "neg", "pos", "neg", "neg", "pos", "neg"]
ARTICLE = "the striker scored as the club won the league"


def fitted(clf, labels=TOPICS, texts=TEXTS):
    return Pipeline([("vect", TfidfVectorizer(sublinear_tf=True)), ("clf", clf)]).fit(texts, labels)


def by_hand(pipeline, text: str, weights: np.ndarray, top: int = 5) -> list[list]:
    """The positive coef × TF-IDF products of the text's features, largest first, as predict gives them."""
    vect = pipeline.named_steps["vect"]
    x = vect.transform([text]).toarray()[0]
    names = vect.get_feature_names_out()
    products = sorted(((float(weights[j] * x[j]), str(names[j])) for j in np.flatnonzero(x)),
                      key=lambda pair: -pair[0])
    return [[name, round(value, 4)] for value, name in products if value > 0][:top]


def explained(pipeline, text=ARTICLE, label=None):
    label = label or pipeline.predict([text])[0]
    return Explainer(pipeline).explain([text], [label])[0]


def test_binary_linear_svm_is_coef_times_tfidf_with_the_row_negated_for_the_first_class():
    pipeline = fitted(LinearSVC(random_state=0), TONES)
    coef = pipeline.named_steps["clf"].coef_[0]  # + for classes_[1] == "pos"
    assert explained(pipeline, label="pos") == by_hand(pipeline, ARTICLE, coef)
    assert explained(pipeline, label="neg") == by_hand(pipeline, ARTICLE, -coef)
    assert explained(pipeline, label="pos")  # the toy article has terms toward "pos"


@pytest.mark.parametrize("clf", [LinearSVC(random_state=0), LogisticRegression(C=10, max_iter=1000)],
                         ids=["linear_svm", "logreg"])
def test_multiclass_linear_model_is_coef_times_tfidf_and_sums_to_the_margin(clf):
    pipeline = fitted(clf)
    model = pipeline.named_steps["clf"]
    for k, label in enumerate(model.classes_):
        assert explained(pipeline, label=label) == by_hand(pipeline, ARTICLE, model.coef_[k])
    labels = pipeline.predict(TEXTS)
    contributions = Explainer(pipeline).contributions(TEXTS, labels)
    k = np.searchsorted(model.classes_, labels)
    margins = pipeline.decision_function(TEXTS)[np.arange(len(TEXTS)), k]
    assert np.asarray(contributions.sum(axis=1)).ravel() + model.intercept_[k] == pytest.approx(margins)


def test_complement_nb_uses_log_probabilities_relative_to_their_mean_over_labels():
    pipeline = fitted(ComplementNB(alpha=0.3))
    log_prob = pipeline.named_steps["clf"].feature_log_prob_
    relative = log_prob - log_prob.mean(axis=0)
    assert explained(pipeline, label="sport") == by_hand(pipeline, ARTICLE, relative[2])
    # the contributions add up to the label's score minus the mean score over labels
    score = pipeline.named_steps["vect"].transform([ARTICLE]) @ log_prob.T
    total = Explainer(pipeline).contributions([ARTICLE], ["sport"]).sum()
    assert total == pytest.approx(score[0, 2] - score[0].mean())


@pytest.mark.parametrize("labels", [TOPICS, TONES], ids=["one-vs-rest", "binary"])
def test_nbsvm_is_svm_weight_times_ratio_times_tfidf(labels):
    pipeline = fitted(NBSVMClassifier(random_state=0), labels)
    model = pipeline.named_steps["clf"]
    for k, label in enumerate(model.classes_):
        row = 0 if len(model.classes_) == 2 else k
        weights = model.estimators_[row].coef_[0] * model.ratios_[row]
        if len(model.classes_) == 2 and k == 0:
            weights = -weights
        assert explained(pipeline, label=label) == by_hand(pipeline, ARTICLE, weights)


def test_word_and_char_union_names_each_term_with_its_kind():
    task = TaskConfig(name="topic", column="topic", classifier="linear_svm", features="word+char")
    pipeline = build_pipeline(task, seed=0).fit(TEXTS, TOPICS)
    union = pipeline.named_steps["vect"]
    word, char = (part for _, part in union.transformer_list)
    coef = pipeline.named_steps["clf"].coef_[2]  # sport
    terms = Explainer(pipeline).explain([ARTICLE], ["sport"], top=50)[0]
    kinds = {name.split(":", 1)[0] for name, _ in terms}
    assert kinds == {"word", "char"}
    x = union.transform([ARTICLE]).toarray()[0]
    offset = len(word.vocabulary_)
    for name, value in terms:
        kind, term = name.split(":", 1)
        column = word.vocabulary_[term] if kind == "word" else offset + char.vocabulary_[term]
        assert value == round(float(coef[column] * x[column]), 4)


def test_calibrated_pipeline_explains_as_its_base_model():
    plain = fitted(LinearSVC(random_state=0))
    calibrated = fitted(CalibratedClassifierCV(LinearSVC(random_state=0), ensemble=False, cv=3))
    assert isinstance(base_classifier(calibrated), LinearSVC)
    assert base_classifier(plain) is plain.named_steps["clf"]
    for label in ("sport", "business", "politics"):
        assert explained(calibrated, label=label) == explained(plain, label=label)
    assert top_terms(calibrated, count=4) == top_terms(plain, count=4)


def test_calibrated_ensemble_and_unknown_models_are_refused_in_one_line():
    ensemble = fitted(CalibratedClassifierCV(LinearSVC(random_state=0), ensemble=True, cv=3))
    neighbours = fitted(KNeighborsClassifier(n_neighbors=1))
    with pytest.raises(NewstagError, match=r"m.joblib: task 'topic': a model calibrated as an ensemble"):
        explainers_for({"topic": ensemble}, "m.joblib")
    with pytest.raises(NewstagError, match=r"task 'tone': a KNeighborsClassifier model cannot be "
                                           r"explained; explanations work with logreg, .*; drop it"):
        explainers_for({"tone": neighbours}, "m.joblib", "drop it")


LEAK_TEXTS = ["the striker scored a late goal", "the coach praised the club", "the league title race",
              "rain stopped play at the test match",
              "shares fell as the market slid (Reuters)", "the bank raised interest rates (Reuters)",
              "profits rose at the carmaker (Reuters)", "investors sold bonds after the results (Reuters)",
              "the minister called a snap vote", "parliament passed the budget",
              "the senator lost her seat", "voters went to the polls in the rain"]
LEAK_TOPICS = ["sport"] * 4 + ["business"] * 4 + ["politics"] * 4


def test_explaining_toward_a_label_the_model_does_not_know_names_it():
    with pytest.raises(NewstagError, match="unknown label.*weather; the model knows business, politics"):
        Explainer(fitted(LinearSVC(random_state=0))).explain([ARTICLE], ["weather"])


def test_a_term_in_all_of_one_labels_articles_and_none_of_the_others_is_a_leak():
    texts, topics = LEAK_TEXTS * 13, LEAK_TOPICS * 13  # 52 articles a label, 104 others
    pipeline = fitted(LinearSVC(random_state=0), topics, texts)
    report = top_terms(pipeline, count=5, texts=texts, labels=topics)
    reuters = next(entry for entry in report["business"] if entry["term"] == "reuters")
    assert reuters == {"term": "reuters", "weight": reuters["weight"], "in_label": 1.0,
                       "in_others": 0.0, "leak": True}
    assert leaks(report) == {"business": [reuters]}  # the topics' own words are spread out
    rain = [entry for entry in report["sport"] + report["politics"] if entry["term"] == "rain"]
    assert all(not entry["leak"] and entry["in_others"] > 0 for entry in rain)
    assert top_terms(pipeline, count=5)["business"][0].keys() == {"term", "weight"}  # no data: no flag


def test_too_few_articles_to_judge_flag_no_leak():
    """4 articles a label, 8 others: 'under 1% of the others' cannot be told from chance."""
    pipeline = fitted(LinearSVC(random_state=0), LEAK_TOPICS, LEAK_TEXTS)
    report = top_terms(pipeline, count=5, texts=LEAK_TEXTS, labels=LEAK_TOPICS)
    reuters = next(entry for entry in report["business"] if entry["term"] == "reuters")
    assert (reuters["in_label"], reuters["in_others"], reuters["leak"]) == (1.0, 0.0, False)
    assert leaks(report) == {}


def test_predict_explain_adds_top_five_positive_terms_per_task(bundle):
    explainers = explainers_for(bundle["pipelines"], "model.joblib")
    records = read_records(["the striker scored a goal in the final", "   "], [])
    rows = list(predict_records(bundle, records, explainers=explainers))
    tagged, error = rows
    assert set(tagged) == {"id", "topic", "topic_score", "tone", "tone_score", "topic_terms", "tone_terms"}
    assert set(error) == {"id", "error"}
    for task in ("topic", "tone"):
        terms = tagged[f"{task}_terms"]
        assert 0 < len(terms) <= 5
        assert all(isinstance(term, str) and value > 0 for term, value in terms)
        assert [value for _, value in terms] == sorted((value for _, value in terms), reverse=True)
        pipeline = bundle["pipelines"][task]
        assert terms == Explainer(pipeline).explain(["the striker scored a goal in the final"],
                                                    [tagged[task]])[0]
    plain = list(predict_records(bundle, read_records(["the striker scored"], [])))
    assert "topic_terms" not in plain[0]


def test_table_shows_the_three_strongest_terms_per_task():
    row = {"id": 1, "topic": "world", "topic_score": 0.8, "tone": "negative", "tone_score": 0.6,
           "topic_terms": [["gaza", 0.41], ["ceasefire", 0.33], ["yemen", 0.2], ["aid", 0.1], ["un", 0.05]],
           "tone_terms": []}
    out = io.StringIO()
    write_table([row], ["topic", "tone"], out)
    terms_line = out.getvalue().splitlines()[2]
    assert terms_line.strip() == "topic: gaza 0.41, ceasefire 0.33, yemen 0.20; tone: -"


@pytest.fixture
def saved(tmp_path, bundle):
    """The toy bundle on disk, and one whose tone task is a nearest-neighbours model."""
    good, bad = tmp_path / "good.joblib", tmp_path / "bad.joblib"
    save_bundle(good, bundle["pipelines"], {"experiment": "toy"})
    odd = fitted(KNeighborsClassifier(n_neighbors=1), TONES)
    save_bundle(bad, {**bundle["pipelines"], "tone": odd}, {"experiment": "toy"})
    return good, bad


def test_cli_predict_explain_and_explain_command(saved, capsys):
    good, _ = saved
    assert main(["predict", "--explain", "-m", str(good), "the striker scored twice"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["topic"] == "sport" and row["topic_terms"][0][0] in {"striker", "scored", "twice"}
    assert main(["explain", str(good), "--task", "topic", "--top", "2"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["task"], line["label"], len(line["terms"])) for line in lines] == \
        [("topic", "biz", 2), ("topic", "sport", 2)]


@pytest.mark.parametrize("argv, message", [
    (["predict", "--explain", "-m", "{bad}", "some text"],
     "bad.joblib: task 'tone': a KNeighborsClassifier model cannot be explained; explanations work "
     "with logreg, linear_svm, sgd, ridge, complement_nb and nbsvm (calibrated or not), and "
     "multi-label tasks; retrain it, or drop --explain"),
    (["predict", "--explain", "-f", "table", "-m", "{bad}", "some text"], "cannot be explained"),
    (["explain", "{bad}"], "task 'tone': a KNeighborsClassifier model cannot be explained"),
    (["explain", "{good}", "--task", "nope"], "good.joblib: no task 'nope'; its tasks are: topic, tone"),
    (["explain", "{good}", "--top", "0"], "--top is 0; give 1 or more"),
])
def test_bad_explain_input_is_one_line_and_writes_nothing(saved, capsys, argv, message):
    good, bad = saved
    argv = [arg.format(good=good, bad=bad) for arg in argv]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    problems = [line for line in captured.err.splitlines() if not line.startswith("INFO ")]
    assert len(problems) == 1 and message in problems[0]  # (and a note on a task without compact form)
    assert main(["predict", "-m", str(bad), "some text"]) == 0  # without --explain it still tags
