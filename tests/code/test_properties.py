"""Property tests: cleaning and prediction never raise, keep order and count, and are deterministic."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newstag.config import TaskConfig
from newstag.data.clean import clean_text
from newstag.data.records import Record
from newstag.models.pipelines import build_pipeline
from newstag.predict import predict_records

TEXTS = ["goal scored in the final", "the striker scored twice", "shares fell on the market",
         "the market rallied as shares rose"]


@pytest.fixture(scope="module")
def bundle():
    pipelines = {}
    for name, classifier in (("topic", "logreg"), ("tone", "linear_svm")):
        task = TaskConfig(name=name, column=name, classifier=classifier)
        pipelines[name] = build_pipeline(task, seed=0).fit(TEXTS, ["s", "s", "b", "b"])
    return {"pipelines": pipelines, "metadata": {}}


@given(st.text())
def test_clean_text_never_raises_and_is_idempotent(text):
    cleaned = clean_text(text)
    assert isinstance(cleaned, str)
    assert clean_text(cleaned) == cleaned
    assert cleaned == cleaned.strip() and "  " not in cleaned


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(), max_size=20))
def test_prediction_never_raises_keeps_order_and_count_and_is_deterministic(bundle, texts):
    records = [Record(id=i, text=text) for i, text in enumerate(texts)]
    first = list(predict_records(bundle, records))
    second = list(predict_records(bundle, [Record(id=i, text=text) for i, text in enumerate(texts)]))
    assert [row["id"] for row in first] == list(range(len(texts)))
    assert first == second
    for row, text in zip(first, texts, strict=True):
        assert ("error" in row) == (clean_text(text) == "")
