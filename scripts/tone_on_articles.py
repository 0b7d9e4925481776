"""Which tone model `experiments/news.yaml` composes: the evidence.

The news bundle tags any article with a tone (negative / neutral / positive). Two kinds of model
could fill that slot: one trained on whole articles (the economic news tone corpus, 1,420 rated
articles: narrow, US economy only) or the Financial PhraseBank sentence model, which never saw an
article. This script scores the sentence model on every economic news article (3 classes; none of
them is in its training data, so all are held out), to set beside the bench's cross-validated
figures for the article-trained models (`make bench`: econ_news_tone and econ_news_tone_lexicon).

    make models/financial_phrasebank/model.joblib data/processed/econ_news_tone/manifest.json
    .venv/bin/python scripts/tone_on_articles.py
"""

import sys

import pandas as pd
from sklearn.metrics import accuracy_score, f1_score

from newstag.config import load_config
from newstag.data.splits import load_split
from newstag.errors import NewstagError
from newstag.models.bundle import load_bundle

SENTENCE_MODEL = "models/financial_phrasebank/model.joblib"
ARTICLES = "experiments/econ_news_tone.yaml"


def main() -> int:
    try:
        config = load_config(ARTICLES)
        articles = pd.concat([load_split(config, split) for split in ("train", "validation", "test")])
        pipeline = load_bundle(SENTENCE_MODEL)["pipelines"]["tone"]
    except NewstagError as exc:
        print(f"tone_on_articles: {exc}", file=sys.stderr)
        return 1
    truth = articles["tone"].astype(str)
    predicted = pipeline.predict(articles["text"].tolist())
    print(f"Financial PhraseBank sentence model on {len(articles):,} economic news articles "
          f"(3 classes): accuracy {accuracy_score(truth, predicted):.4f}, "
          f"macro-F1 {f1_score(truth, predicted, average='macro'):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
