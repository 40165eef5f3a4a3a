"""Recency: newer flits score higher."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.candidates import CandidateBatch
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

    def score_batch(self, queries: Sequence[FeedQuery], batch: CandidateBatch) -> None:
        now = batch.per_query(np.array([q.now for q in queries], dtype=np.float64))
        batch.components[self.name] = freshness(now - batch.created_at, self.half_life_s)


def freshness(age: np.ndarray, half_life_s: float) -> np.ndarray:
    """``2^(-max(age, 0) / half_life_s)``: a flit loses half its freshness per half-life, and one dated in
    the future (clock skew) counts as brand new, never as fresher than new.

    >>> freshness(np.array([0.0, 3600.0, -60.0]), 3600.0).tolist()
    [1.0, 0.5, 1.0]
    """
    return np.power(2.0, -np.maximum(age, 0.0) / half_life_s)
