"""Behaviour of the trained sample model (CheckList-style: minimum function, direction, invariance)."""

import re

import numpy as np
import pandas as pd
import pytest

SPORT_REPORTS = [
    "The visitors came from two goals down to win 3-2, with the captain scoring the winner in "
    "stoppage time to send his side top of the league table.",
    "She broke her own national record in the 400 metres final and will now head to the world "
    "championships as one of the favourites for a medal.",
]

NEGATION_PAIRS = [
    ("The ceasefire held and aid convoys reached the city.",
     "The ceasefire never held and aid convoys never reached the city."),
    ("The team won the final.", "The team did not win the final."),
    ("The new treatment worked and patients recovered.",
     "The new treatment did not work and patients did not recover."),
    ("The talks produced an agreement.", "The talks produced no agreement."),
    ("Exports grew and the factory hired more workers.",
     "Exports did not grow and the factory hired no more workers."),
]

COUNTRIES = ["Kenya", "Brazil", "Germany", "Indonesia", "Canada", "Pakistan"]
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


def test_negation_moves_tone_towards_negative_and_can_flip_it(sample_bundle):
    tone = sample_bundle["pipelines"]["tone"]
    negative = list(tone.classes_).index("negative")
    originals, negated = zip(*NEGATION_PAIRS, strict=True)
    p_original = tone.predict_proba(list(originals))[:, negative]
    p_negated = tone.predict_proba(list(negated))[:, negative]
    assert (p_negated > p_original).all(), list(zip(p_original, p_negated, strict=True))
    flips = sum(a != "negative" and b == "negative"
                for a, b in zip(tone.predict(list(originals)), tone.predict(list(negated)),
                                strict=True))
    assert flips >= 3, f"only {flips} of {len(NEGATION_PAIRS)} negations flipped the tone"


@pytest.mark.parametrize("template", TEMPLATES)
def test_swapping_country_or_person_changes_neither_label(sample_bundle, template):
    texts = [template.format(country=c, person=p) for c in COUNTRIES for p in PEOPLE]
    labels = tag(sample_bundle, texts)
    for task, values in labels.items():
        assert len(set(values)) == 1, f"{task} changed with the names: {sorted(set(values))}"


def test_swapping_countries_in_real_test_articles_rarely_changes_a_label(sample_bundle,
                                                                         trained_sample):
    test = pd.read_parquet(trained_sample["dir"] / "data/processed/default/test.parquet")
    pattern = re.compile(r"\b(" + "|".join(COUNTRIES + ["France", "India", "Nigeria", "Japan"]) + r")\b")
    texts = [t for t in test["text"] if pattern.search(t)] or list(test["text"])
    swapped = [pattern.sub("Chile", t) for t in texts]
    before, after = tag(sample_bundle, texts), tag(sample_bundle, swapped)
    for task in before:
        agreement = np.mean(np.array(before[task]) == np.array(after[task]))
        assert agreement >= 0.9, f"{task}: only {agreement:.0%} of labels survived the swap"
