"""Each scorer on hand-made cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.params import RankerParams
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.scorers import EngagementScorer, FreshnessScorer, SimilarityScorer, WeightedScorer

NOW = 1_000_000.0
TASTE = np.array([1.0, 0.0], dtype=np.float32)


def cand(**kw) -> Candidate:
    kw.setdefault("flit_id", "f")
    kw.setdefault("author_id", "a")
    kw.setdefault("created_at", NOW)
    kw.setdefault("source", "similar")
    return Candidate(**kw)


def warm() -> FeedQuery:
    return FeedQuery("u", 10, NOW, taste=TASTE, positives=3)


def cold() -> FeedQuery:
    return FeedQuery("u", 10, NOW)


def test_similarity_scorer_passes_cosine_and_zeroes_cold_start():
    cs = [cand(similarity=0.8), cand(similarity=-0.3), cand(similarity=1.0000001)]
    SimilarityScorer().score(warm(), cs)
    assert [c.components["similarity"] for c in cs] == [0.8, -0.3, 1.0]
    SimilarityScorer().score(cold(), cs)
    assert all(c.components["similarity"] == 0.0 for c in cs)


def test_freshness_scorer_halves_per_half_life():
    cs = [cand(created_at=NOW), cand(created_at=NOW - 100.0), cand(created_at=NOW - 300.0),
          cand(created_at=NOW + 50.0)]
    FreshnessScorer(half_life_s=100.0).score(warm(), cs)
    assert [c.components["freshness"] for c in cs] == [1.0, 0.5, 0.125, 1.0]


def test_engagement_scorer_saturates_and_goes_negative():
    cs = [cand(engagement=0.0), cand(engagement=5.0), cand(engagement=15.0), cand(engagement=-5.0),
          cand(engagement=1e9)]
    EngagementScorer(saturation=5.0).score(warm(), cs)
    got = [c.components["engagement"] for c in cs]
    assert got[:4] == [0.0, 0.5, 0.75, -0.5]
    assert 0.99 < got[4] < 1.0


def test_weighted_scorer_sums_weighted_components():
    c = cand(components={"similarity": 0.5, "freshness": 1.0, "engagement": -0.5, "other": 9.0})
    p = RankerParams(similarity_weight=2.0, freshness_weight=1.0, engagement_weight=0.5)
    WeightedScorer(p.weights()).score(warm(), [c])
    assert c.score == pytest.approx(2.0 * 0.5 + 1.0 + 0.5 * -0.5)
    assert c.components["weighted"] == c.score


def test_weighted_scorer_counts_a_missing_component_as_zero():
    c = cand(components={"freshness": 1.0})
    WeightedScorer({"similarity": 1.0, "freshness": 0.25}).score(warm(), [c])
    assert c.score == 0.25


@pytest.mark.parametrize("scorer", [SimilarityScorer(), FreshnessScorer(10.0), EngagementScorer(1.0),
                                    WeightedScorer({"similarity": 1.0})], ids=lambda s: s.name)
def test_scorers_accept_an_empty_list(scorer):
    scorer.score(warm(), [])


def test_scorers_reject_bad_configuration():
    with pytest.raises(ValueError):
        FreshnessScorer(0.0)
    with pytest.raises(ValueError):
        EngagementScorer(-1.0)
