"""Tone features and models: negation scopes, lexicon counts, ordinal cut points, stacking out of
fold, sentence-to-article transfer, and the bad inputs each refuses in one line."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier

from newstag.config import LEXICON_NAMES, TaskConfig, load_config
from newstag.errors import NewstagError
from newstag.explain import top_terms
from newstag.models.bundle import SKOPS_TRUSTED, load_bundle, save_bundle
from newstag.models.features import (
    LEXICONS,
    LexiconCounts,
    NegationMarker,
    OutOfFoldScores,
    SentenceTone,
    mark_negation,
    negation_scopes,
    sentences,
    tokens,
    transfer_predict,
)
from newstag.models.ordinal import OrdinalClassifier, classes_of, tune_cuts
from newstag.models.pipelines import build_pipeline, task_truth

TEXTS = ["Profits rose strongly and the outlook is good.", "Sales did not grow, and costs rose.",
         "The market never recovered; losses mounted.", "Growth was strong, jobs were added.",
         "Output fell without any sign of recovery.", "Hiring improved and wages gained."] * 3
TONES = ["positive", "negative", "negative", "positive", "negative", "positive"] * 3
SCORES = ["8", "3", "2", "7", "3", "6"] * 3


# ---- negation -------------------------------------------------------------------------------

def test_negation_marks_the_words_after_a_negator_until_punctuation():
    assert mark_negation("Profits did not rise much, but sales grew.") == ["not_rise", "not_much"]


def test_contractions_and_without_open_a_scope_and_each_punctuation_ends_it():
    assert mark_negation("It isn't good; growth is fine") == ["not_good"]
    assert mark_negation("Sales fell without a rebound. Jobs rose") == ["not_a", "not_rebound"]
    assert mark_negation("Never again! Fine") == ["not_again"]
    assert mark_negation("Shares didn\u2019t fall") == ["not_fall"]  # a typographic apostrophe


def test_but_and_or_end_a_scope_and_are_never_marked():
    assert mark_negation("The strike did not end and workers stayed out") == ["not_end"]
    assert mark_negation("Talks did not fail but resumed") == ["not_fail"]
    assert mark_negation("No deal or truce was agreed") == ["not_deal"]
    assert mark_negation("Not only profits but also sales rose") == ["not_only", "not_profits"]


def test_a_window_limits_the_scope_and_negators_do_not_mark_themselves():
    words = tokens("not very good at all")
    assert negation_scopes(words) == [False, True, True, True, True]
    assert negation_scopes(words, window=2) == [False, True, True, False, False]


def _marked_word_by_word(text: str, window: int) -> list[str]:
    """The rule stated plainly, token by token, to check mark_negation's shortcuts against."""
    from newstag.models.negation import CLAUSE_BREAKS, NEGATORS, SCOPE_ENDS

    marked, left = [], 0
    for word in tokens(text):
        if word in SCOPE_ENDS or word in CLAUSE_BREAKS:
            left = 0
        elif word in NEGATORS or word.endswith("n't"):
            left = window or -1
        else:
            if left != 0:
                marked.append(f"not_{word}")
            left = left - 1 if left > 0 else left
    return marked


WORDS = ["not", "No", "never", "isn't", "didn\u2019t", "n't", "don't's", "nothing", "lacking",
         "and", "but", "or", ".", ",", "!", "?", ";", ":", "good", "Fell", "rise", "5", "x'not",
         "notice", "know", "'", " "]


@given(st.lists(st.sampled_from(WORDS), max_size=40), st.integers(min_value=0, max_value=3),
       st.sampled_from([" ", "", "  "]))
def test_negation_marking_equals_the_rule_applied_word_by_word(words, window, glue):
    text = glue.join(words)
    assert mark_negation(text, window) == _marked_word_by_word(text, window)


def test_negation_marker_gives_texts_of_marked_tokens_and_rejects_a_bad_window():
    marked = NegationMarker().fit(["x"]).transform(["no deal was done.", "a deal"])
    assert marked == ["not_deal not_was not_done", ""]
    with pytest.raises(ValueError, match="window"):
        NegationMarker(window=-1).fit(["x"])


# ---- lexicons -------------------------------------------------------------------------------

def test_lexicon_counts_are_shares_of_the_tokens_with_vader_valences():
    counts = LexiconCounts(("vader",), negation=False).fit()
    good, bad = counts.valences_["vader"]["good"], counts.valences_["vader"]["bad"]
    row = counts.transform(["good good bad day"])[0]  # 4 tokens: 2 positive, 1 negative
    assert row == pytest.approx([2 / 4, 1 / 4, (2 * good + bad) / 4])
    assert list(counts.get_feature_names_out()) == ["vader_positive", "vader_negative", "vader_valence"]


def test_a_negated_lexicon_word_counts_with_its_polarity_flipped():
    counts = LexiconCounts(("vader",), negation=True).fit()
    positive, negative, valence = counts.transform(["not good."])[0]
    assert (positive, negative) == (0, 1 / 2) and valence < 0  # punctuation is not a token


def test_an_unknown_lexicon_is_one_line_naming_the_key_and_the_valid_names(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("data: {path: x.csv}\ntasks:\n  tone: {classifier: logreg, lexicons: [vader, afinn]}\n")
    with pytest.raises(NewstagError, match=r"'tasks\.tone\.lexicons\[1\]' names lexicon 'afinn', "
                                           r"which does not exist; valid: vader$"):
        load_config(path)
    with pytest.raises(ValueError, match="'afinn', which does not exist; valid: vader"):
        LexiconCounts(("afinn",)).fit()
    assert LEXICON_NAMES == LEXICONS


def test_negation_and_lexicons_join_the_tfidf_and_show_in_the_top_terms():
    task = TaskConfig(name="tone", column="tone", classifier="logreg", negation=True, lexicons=("vader",))
    pipeline = build_pipeline(task, seed=0).fit(TEXTS, TONES)
    names = set(pipeline.named_steps["vect"].get_feature_names_out())
    assert {"word__good", "negation__not_grow", "lexicon__vader_valence"} <= names
    assert set(top_terms(pipeline, count=3)) == {"negative", "positive"}


# ---- ordinal --------------------------------------------------------------------------------

def test_tuned_cut_points_increase_and_beat_the_given_ones_on_shrunk_predictions():
    rng = np.random.default_rng(0)
    true = rng.integers(1, 10, 600).astype(float)
    predicted = 5 + 0.3 * (true - 5) + rng.normal(0, 0.2, true.size)  # shrunk towards the mean
    start = np.array([4.5, 5.5])
    classes = np.searchsorted(start, true)
    cuts = tune_cuts(predicted, classes, start)
    assert cuts[0] < cuts[1]
    assert np.mean(np.searchsorted(cuts, predicted) == classes) > \
        np.mean(np.searchsorted(start, predicted) == classes)


def test_ordinal_classifier_tunes_its_cuts_out_of_fold_and_predicts_class_labels():
    X = np.linspace(1, 9, 90)[:, None]
    y = [str(round(v)) for v in X.ravel()]
    model = OrdinalClassifier(Ridge(alpha=1.0), cuts=(4.5, 5.5), cut_folds=3, random_state=0).fit(X, y)
    assert np.all(np.diff(model.cuts_) > 0)
    assert model.predict(np.array([[2.0], [5.0], [8.0]])).tolist() == ["negative", "neutral", "positive"]
    assert model.decision_function(np.array([[8.0]])).argmax() == 2
    assert model.coef_.shape == (3, 1)
    untuned = OrdinalClassifier(Ridge(), cuts=(4.5, 5.5), tune_cuts=False).fit(X, y)
    assert untuned.cuts_.tolist() == [4.5, 5.5]


def test_ordinal_truth_is_the_class_of_the_score_by_the_task_cuts():
    task = TaskConfig(name="tone", column="positivity", classifier="ridge",
                      ordinal={"labels": ("negative", "neutral", "positive"), "cuts": (4.5, 5.5)})
    assert task_truth(task, ["2", "5", "6"]) == ["negative", "neutral", "positive"]
    assert classes_of(np.array([4.5]), [4.5, 5.5], ["a", "b", "c"]).tolist() == ["a"]  # at a cut
    with pytest.raises(NewstagError, match=r"^task 'tone': an ordinal task needs numeric labels"):
        task_truth(task, ["2", "positive"])


def test_an_ordinal_pipeline_fits_on_scores_and_predicts_tones():
    task = TaskConfig(name="tone", column="positivity", classifier="ridge",
                      ordinal={"labels": ("negative", "neutral", "positive"), "cuts": (4.5, 5.5)})
    pipeline = build_pipeline(task, seed=0).fit(TEXTS, SCORES)
    assert set(pipeline.predict(TEXTS)) <= {"negative", "neutral", "positive"}
    with pytest.raises(ValueError, match="numeric labels"):
        build_pipeline(task, seed=0).fit(TEXTS, TONES)


@pytest.mark.parametrize("ordinal, message", [
    ("{labels: [neg, neu, pos], cuts: [5.5, 4.5]}",
     r"'tasks\.tone\.ordinal\.cuts' should increase, got \[5\.5, 4\.5\]"),
    ("{labels: [neg, pos], cuts: [4, 6]}", r"'tasks\.tone\.ordinal\.cuts' has 2 labels, so needs 1 cut"),
])
def test_bad_cut_points_are_one_line(tmp_path, ordinal, message):
    path = tmp_path / "exp.yaml"
    path.write_text(f"data: {{path: x.csv}}\ntasks:\n  tone: {{classifier: ridge, ordinal: {ordinal}}}\n")
    with pytest.raises(NewstagError, match=message):
        load_config(path)


def test_an_ordinal_task_needs_a_regressor(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("data: {path: x.csv}\ntasks:\n  tone: {ordinal: {labels: [a, b], cuts: [5]}}\n")
    with pytest.raises(NewstagError, match=r"'tasks\.tone\.classifier' is 'auto', but an ordinal task "
                                           r"needs a regressor: set classifier: ridge or sgd"):
        load_config(path)


# ---- stacking and transfer ----------------------------------------------------------------

def test_stacked_scores_are_out_of_fold_never_from_a_model_that_saw_the_row():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = np.array(["a", "b"] * 30)[rng.permutation(60)]  # labels unrelated to X: nothing to learn
    memoriser = KNeighborsClassifier(n_neighbors=1)  # recalls every training row perfectly
    stacked = OutOfFoldScores(memoriser, folds=5, random_state=0)
    out_of_fold = stacked.fit_transform(X, y)
    in_sample = stacked.transform(X)
    assert np.mean(in_sample.argmax(axis=1) == (y == "b")) == 1.0  # seen rows: remembered
    assert np.mean(out_of_fold.argmax(axis=1) == (y == "b")) < 0.75  # out of fold: chance
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    expected = cross_val_predict(memoriser, X, y, cv=folds, method="predict_proba")
    assert np.array_equal(out_of_fold, expected)


def _sentence_model():
    sentences_ = ["profits rose", "sales grew strongly", "losses widened", "shares fell sharply",
                  "the meeting is on monday", "the report was published"] * 2
    labels = ["positive", "positive", "negative", "negative", "neutral", "neutral"] * 2
    task = TaskConfig(name="tone", column="tone", classifier="linear_svm")
    return build_pipeline(task, seed=0).fit(sentences_, labels)


def test_sentences_split_on_ends_and_a_one_line_article_is_one_sentence():
    assert sentences("Profits rose. Losses widened! Why?") == ["Profits rose.", "Losses widened!", "Why?"]
    assert sentences("one long line with no end " * 50) == [("one long line with no end " * 50).strip()]
    assert sentences("") == [""]
    assert len(sentences("A. " * 500, limit=200)) == 200


def test_sentence_tone_features_and_the_label_free_transfer_prediction():
    tones = SentenceTone(_sentence_model()).fit()
    features = tones.transform(["Profits rose. Sales grew strongly. The report was published.",
                                "Losses widened and shares fell sharply with no full stop at all", ""])
    assert features.shape == (3, 7)
    share_positive, share_negative = features[:, 0], features[:, 1]
    assert share_positive[0] == pytest.approx(2 / 3) and share_negative[1] == 1.0
    assert transfer_predict(features[:2], ["negative", "positive"]).tolist() == ["positive", "negative"]
    with pytest.raises(ValueError, match="should predict positive and negative"):
        SentenceTone(build_pipeline(TaskConfig(name="t", column="t", classifier="logreg"), 0)
                     .fit(["ab cd", "ef gh"], ["x", "y"])).fit()


@pytest.mark.parametrize("fmt", ["joblib", "skops"])
def test_tone_pipelines_save_and_load_with_joblib_and_skops(tmp_path, fmt):
    sentence_bundle = tmp_path / "sentences.joblib"
    save_bundle(sentence_bundle, {"tone": _sentence_model()}, {"experiment": "s"})
    stacked = TaskConfig(name="tone", column="tone", classifier="logreg", negation=True,
                         lexicons=("vader",), transfer={"model": str(sentence_bundle)},
                         params={"vect__word__min_df": 1})
    ordinal = TaskConfig(name="score", column="score", classifier="ridge", negation=True,
                         lexicons=("vader",), ordinal={"labels": ("negative", "neutral", "positive"),
                                                       "cuts": (4.5, 5.5)})
    pipelines = {"tone": build_pipeline(stacked, seed=0).fit(TEXTS, TONES),
                 "score": build_pipeline(ordinal, seed=0).fit(TEXTS, SCORES)}
    path = tmp_path / f"model.{fmt}"
    save_bundle(path, pipelines, {"experiment": "tone"})
    loaded = load_bundle(path)["pipelines"]  # skops: every type must be in SKOPS_TRUSTED
    for name, pipeline in pipelines.items():
        assert loaded[name].predict(TEXTS).tolist() == pipeline.predict(TEXTS).tolist()
    assert {"newstag.models.features.OutOfFoldScores",
            "newstag.models.ordinal.OrdinalClassifier"} <= SKOPS_TRUSTED
    terms = top_terms(pipelines["tone"])
    names = {entry["term"] for label in ("positive", "negative") for entry in terms[label]}
    assert any("score_positive" in name for name in names), names


def test_a_stacked_model_is_logistic_regression_over_article_scores_and_sentence_tones(tmp_path):
    sentence_bundle = tmp_path / "sentences.joblib"
    save_bundle(sentence_bundle, {"tone": _sentence_model()}, {"experiment": "s"})
    task = TaskConfig(name="tone", column="tone", classifier="logreg",
                      transfer={"model": str(sentence_bundle)})
    pipeline = build_pipeline(task, seed=0)
    assert isinstance(pipeline.named_steps["clf"], LogisticRegression)
    pipeline.fit(TEXTS, TONES)
    assert pipeline.named_steps["vect"].get_feature_names_out()[0] == "article__score_negative"
    wrong_task = TaskConfig(name="tone", column="tone", classifier="logreg",
                            transfer={"model": str(sentence_bundle), "task": "topic"})
    with pytest.raises(NewstagError, match=r"'tasks\.tone\.transfer\.task' is 'topic', but .* has: tone"):
        build_pipeline(wrong_task, seed=0)


def test_a_transfer_task_is_calibrated_and_its_clones_share_the_sentence_model(tmp_path):
    """Calibration clones the pipeline; a clone of SentenceTone keeps the fitted sentence model
    (scikit-learn's clone would copy it unfitted), so transfer tasks are calibrated like others."""
    import pandas as pd
    from sklearn.base import clone

    from newstag.train import fit_task

    sentence_bundle = tmp_path / "sentences.joblib"
    save_bundle(sentence_bundle, {"tone": _sentence_model()}, {"experiment": "s"})
    task = TaskConfig(name="tone", column="tone", classifier="logreg",
                      transfer={"model": str(sentence_bundle)}, params={"vect__min_df": 1})
    tones = SentenceTone(_sentence_model())
    assert clone(tones).model is tones.model
    train = pd.DataFrame({"text": TEXTS * 2, "tone": TONES * 2})
    validation = pd.DataFrame({"text": TEXTS, "tone": TONES})
    result = fit_task(task, train, validation, seed=0)
    assert len(result.calibration["validation_log_loss"]) == 5  # every method competed
    proba = result.pipeline.predict_proba(TEXTS)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_a_search_can_switch_the_tone_features_off_by_weight():
    from newstag.config import Distribution, SearchConfig
    from newstag.search import check_search, run_search

    space = {"vect__transformer_weights": [None, {"negation": 0, "lexicon": 0}],
             "clf__C": Distribution(low=0.1, high=10, log=True)}
    task = TaskConfig(name="tone", column="tone", classifier="logreg", negation=True,
                      lexicons=("vader",), params={"vect__word__min_df": 1})
    search = SearchConfig(space=space, n_iter=3, folds=2)
    check_search(task, search, "tasks.tone.search")
    result = run_search(task, search, TEXTS, TONES, seed=0)
    assert result.best.state == "complete"


def test_the_bench_gives_ordinal_and_transfer_tasks_the_methods_that_can_score_them():
    from newstag.bench import methods_for

    ordinal = TaskConfig(name="tone", column="positivity", classifier="ridge",
                         ordinal={"labels": ("negative", "neutral", "positive"), "cuts": (4.5, 5.5)})
    transfer = TaskConfig(name="tone", column="tone", classifier="logreg", transfer={"model": "m.joblib"})
    assert methods_for({"negative", "neutral", "positive"}, ordinal) == ["newstag", "vader", "majority"]
    assert methods_for({"negative", "positive"}, transfer) == ["newstag", "transfer", "vader", "majority"]
