"""The real corpora load with their documented counts and label sets (see the datasets README)."""

import pytest

from newstag.data.corpora import load_corpus

from ..conftest import corpora_dir, need_corpus

NEWSGROUPS = {"alt.atheism", "comp.graphics", "comp.os.ms-windows.misc", "comp.sys.ibm.pc.hardware",
              "comp.sys.mac.hardware", "comp.windows.x", "misc.forsale", "rec.autos",
              "rec.motorcycles", "rec.sport.baseball", "rec.sport.hockey", "sci.crypt",
              "sci.electronics", "sci.med", "sci.space", "soc.religion.christian",
              "talk.politics.guns", "talk.politics.mideast", "talk.politics.misc",
              "talk.religion.misc"}


def load(name, folder, **options):
    need_corpus(folder)
    return load_corpus(name, corpora_dir(), options).frame


def test_bbc_news():
    frame = load("bbc_news", "bbc_news")
    assert len(frame) == 2225
    assert frame["topic"].value_counts().to_dict() == {
        "sport": 511, "business": 510, "politics": 417, "tech": 401, "entertainment": 386}
    assert "\u00a3" in frame.loc[frame["id"] == "sport/199.txt", "text"].iloc[0]  # the Latin-1 file
    assert frame["title"].iloc[0] == "Ad sales boost Time Warner profit"


def test_20newsgroups():
    frame = load("20newsgroups", "20newsgroups")
    assert frame["split"].value_counts().to_dict() == {"train": 11314, "test": 7532}
    assert set(frame["topic"]) == NEWSGROUPS


def test_ag_news():
    frame = load("ag_news", "ag_news")
    assert len(frame) == 7600 and set(frame["topic"].value_counts()) == {1900}
    assert not frame["text"].str.contains("#39;|quot;|#36;", regex=True).any()


@pytest.mark.parametrize(("agreement", "rows", "counts"), [
    (50, 4846, {"neutral": 2879, "positive": 1363, "negative": 604}),
    (66, 4217, {"neutral": 2535, "positive": 1168, "negative": 514}),
    (75, 3453, {"neutral": 2146, "positive": 887, "negative": 420}),
    ("all", 2264, {"neutral": 1391, "positive": 570, "negative": 303}),
])
def test_financial_phrasebank(agreement, rows, counts):
    frame = load("financial_phrasebank", "financial_phrasebank", agreement=agreement)
    assert len(frame) == rows and frame["tone"].value_counts().to_dict() == counts


def test_hyperpartisan():
    frame = load("hyperpartisan", "hyperpartisan_byarticle")
    assert len(frame) == 645
    assert frame["hyperpartisan"].value_counts().to_dict() == {"false": 407, "true": 238}
    assert frame["text"].str.len().min() > 0


def test_econ_news_tone():
    frame = load("econ_news_tone", "econ_news_tone")
    assert len(frame) == 1420
    assert frame["positivity"].value_counts().to_dict() == {
        "3": 343, "7": 295, "4": 255, "6": 214, "5": 205, "8": 71, "2": 35, "9": 2}
    assert frame["tone"].value_counts().to_dict() == {"negative": 633, "positive": 582, "neutral": 205}
    assert (frame["title"] != "").mean() > 0.99
