import pytest

from newstag.config import TaskConfig
from newstag.errors import NewstagError
from newstag.explain import top_terms
from newstag.models.pipelines import build_pipeline

TEXTS = ["goal scored in the final", "the striker scored twice", "shares fell on the market",
         "the market rallied as shares rose"]
LABELS = ["sport", "sport", "business", "business"]


@pytest.mark.parametrize("classifier", ["logreg", "linear_svm", "sgd", "complement_nb"])
def test_every_classifier_fits_and_explains_itself(classifier):
    task = TaskConfig(name="topic", column="topic", classifier=classifier,
                      params={"vect__ngram_range": [1, 1]})
    pipeline = build_pipeline(task, seed=0).fit(TEXTS, LABELS)
    assert pipeline.named_steps["vect"].ngram_range == (1, 1)
    assert pipeline.predict(["a late goal by the striker"]).tolist() == ["sport"]
    terms = top_terms(pipeline, count=3)
    assert set(terms) == {"sport", "business"}
    business_only = set(" ".join(TEXTS[2:]).split()) - set(" ".join(TEXTS[:2]).split())
    assert {entry["term"] for entry in terms["business"]} <= business_only


def test_unknown_parameter_lists_valid_ones():
    task = TaskConfig(name="topic", column="topic", classifier="logreg", params={"clf__alpha": 1.0})
    with pytest.raises(NewstagError, match=r"tasks.topic.params.clf__alpha' is not a parameter.*clf__C"):
        build_pipeline(task, seed=0)


def test_grid_overrides_params():
    task = TaskConfig(name="tone", column="tone", classifier="logreg", params={"clf__C": 1.0})
    assert build_pipeline(task, 0, {"clf__C": 5.0}).get_params()["clf__C"] == 5.0
