"""Recency: newer flits score higher."""

from __future__ import annotations

from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.params import FRESHNESS
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.stages import Scorer


class FreshnessScorer(Scorer):
    """Component in (0, 1]: ``2^(-age / half_life_s)``; future-dated flits count as age 0."""

    name = FRESHNESS

    def __init__(self, half_life_s: float) -> None:
        if not half_life_s > 0:
            raise ValueError(f"half_life_s must be > 0, got {half_life_s}")
        self.half_life_s = half_life_s

    def score(self, query: FeedQuery, candidates: list[Candidate]) -> None:
        for c in candidates:
            age = max(0.0, query.now - c.created_at)
            c.components[self.name] = 2.0 ** (-age / self.half_life_s)
