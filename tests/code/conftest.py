"""Fixtures shared by the unit tests."""

import pytest

from newstag.config import TaskConfig
from newstag.models.pipelines import build_pipeline

TEXTS = ["goal scored in the final", "the striker scored twice", "shares fell on the market",
         "the market rallied as shares rose"]


@pytest.fixture(scope="module")
def bundle():
    """A two-task bundle (topic by logistic regression, tone by a linear SVM) fitted on four texts."""
    pipelines = {}
    for name, classifier, labels in (("topic", "logreg", ["sport", "sport", "biz", "biz"]),
                                     ("tone", "linear_svm", ["pos", "pos", "neg", "pos"])):
        task = TaskConfig(name=name, column=name, classifier=classifier)
        pipelines[name] = build_pipeline(task, seed=0).fit(TEXTS, labels)
    return {"pipelines": pipelines, "metadata": {}}
