"""CI-sized streaming evaluation: on a time slice of ml-latest-small the shipped model beats
recency-decayed popularity (1-day half-life, the issue's baseline) and the content-only model.

The slice: the first ``EVENTS`` ratings over the films they touch, every event
learned in order, positives scored from ``SCORE_FROM`` on (warm start). The real
MiniLM encoder embeds the slice's catalog once (cached under var/eval-cache).
The full evaluation is ``flitfeed evaluate`` (README, docs/evaluation). On this
small catalog undecayed popularity is stronger than the shipped model; that is
reported in docs/evaluation, not hidden here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flitfeed.encoders.sentence_transformer import SentenceTransformerEncoder
from flitfeed.evaluation.catalog import embed_catalog
from flitfeed.evaluation.dataset import load_movielens
from flitfeed.evaluation.methods import FlitfeedMethod, PopularityMethod, eval_settings
from flitfeed.evaluation.replay import replay
from flitfeed.evaluation.run import DAY, content_params
from flitfeed.ranker.params import RankerParams

REPO = Path(__file__).resolve().parents[3]
DATA = REPO.parent / "shared" / "data" / "ml-latest-small"
EVENTS = 6000
SCORE_FROM = 4000


@pytest.mark.skipif(not DATA.exists(), reason="../shared/data/ml-latest-small not present")
def test_shipped_model_beats_popularity_on_a_slice() -> None:
    dataset = load_movielens(DATA).small(EVENTS)
    vectors = embed_catalog(dataset, SentenceTransformerEncoder(), REPO / "var" / "eval-cache")
    settings = eval_settings()
    n = len(dataset.items)
    shipped = FlitfeedMethod(dataset, vectors, RankerParams.from_config(settings.ranker), settings, name="flitfeed")
    baselines = [PopularityMethod(n, DAY, name="popularity-1d"),
                 FlitfeedMethod(dataset, vectors, content_params(RankerParams.from_config(settings.ranker)), settings,
                                collaborative=False, name="content", learned=False)]
    runs = replay(dataset, [shipped, *baselines], vectors, score_from=SCORE_FROM, progress_every=0)
    recall = {name: run.log.summary(n)["recall"] for name, run in runs.items()}
    assert runs["flitfeed"].log.summary(n)["events"] > 500
    assert recall["flitfeed"] > recall["popularity-1d"] and recall["flitfeed"] > recall["content"], recall
