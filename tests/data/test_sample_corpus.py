"""The bundled sample corpus is the default training data: check it is what its data card says."""

import json
import re
from collections import Counter

import pandas as pd
import pytest

from ..conftest import SAMPLE
from ..model.test_behaviour import COUNTRIES, PEOPLE, SWAP_TARGET, SWAPPED_IN_ARTICLES

TOPICS = {"politics", "world", "business", "technology", "sport", "health"}
TONES = {"negative", "neutral", "positive"}
SWAPPED_COUNTRIES = COUNTRIES + SWAPPED_IN_ARTICLES + [SWAP_TARGET]


@pytest.fixture(scope="module")
def articles():
    return [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]


def test_schema_and_allowed_labels(articles):
    assert len(articles) >= 360
    for article in articles:
        assert set(article) == {"id", "title", "text", "topic", "tone"}, article["id"]
        assert article["topic"] in TOPICS and article["tone"] in TONES, article["id"]


def test_every_topic_tone_cell_has_at_least_18(articles):
    cells = Counter((a["topic"], a["tone"]) for a in articles)
    assert set(cells) == {(topic, tone) for topic in TOPICS for tone in TONES}
    assert min(cells.values()) >= 18, cells


def test_text_is_present_and_40_to_150_words(articles):
    for article in articles:
        assert article["title"].strip(), article["id"]
        assert 40 <= len(article["text"].split()) <= 150, article["id"]


def test_ids_and_texts_are_unique(articles):
    assert len({a["id"] for a in articles}) == len(articles)
    assert len({a["text"].casefold() for a in articles}) == len(articles)


def test_no_text_shared_between_train_and_test(trained_sample):
    processed = trained_sample["dir"] / "data" / "processed" / "default"
    train = pd.read_parquet(processed / "train.parquet")
    test = pd.read_parquet(processed / "test.parquet")
    assert not set(train["text"].str.casefold()) & set(test["text"].str.casefold())
    assert not set(train["id"]) & set(test["id"])


def tone_counts(articles, name: str) -> list[int]:
    """How many articles of each tone (negative, neutral, positive) mention `name` as a word."""
    pattern = re.compile(rf"\b{re.escape(name)}\b")
    counts = Counter(a["tone"] for a in articles if pattern.search(a["title"] + " " + a["text"]))
    return [counts[tone] for tone in sorted(TONES)]


@pytest.mark.parametrize("name", SWAPPED_COUNTRIES + sorted({part for person in PEOPLE
                                                               for part in person.split()}))
def test_names_the_model_is_checked_against_are_spread_evenly_over_the_tones(articles, name):
    """The behaviour tests swap these countries and people and expect no label to move; a name
    that appears more often in one tone than another would teach the model that it is a cue."""
    counts = tone_counts(articles, name)
    assert max(counts) - min(counts) <= 1, f"{name}: negative/neutral/positive {counts}"
