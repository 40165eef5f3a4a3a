"""Drops flits that are too old, or dated implausibly far in the future."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.candidates import CandidateBatch
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.stages import Filter, FilterResult, partition


class MaxAgeFilter(Filter):
    """Keeps ``now - max_age_s <= created_at <= now + future_skew_s``.

    The small future allowance absorbs authors' clock skew; anything beyond
    it would otherwise sit at the top of every feed as "brand new".
    """

    name = "max_age"
    #: Decides each row on its own (the pipeline need not compact the batch before it).
    row_local = True

    def __init__(self, max_age_s: float, future_skew_s: float = 300.0) -> None:
        self.max_age_s = max_age_s
        self.future_skew_s = future_skew_s

    def filter(self, query: FeedQuery, candidates: list[Candidate]) -> FilterResult:
        oldest = query.now - self.max_age_s
        newest = query.now + self.future_skew_s
        return partition(candidates, lambda c: not (oldest <= c.created_at <= newest))

    def filter_batch(self, queries: Sequence[FeedQuery], batch: CandidateBatch) -> np.ndarray:
        now = batch.per_query(np.array([q.now for q in queries], dtype=np.float64))
        # The same bounds as filter(), computed per row; a NaN time fails both comparisons and is dropped.
        return (now - self.max_age_s <= batch.created_at) & (batch.created_at <= now + self.future_skew_s)
