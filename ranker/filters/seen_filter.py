"""Drops flits the user has already seen."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.candidates import CandidateBatch
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.stages import Filter, FilterResult, partition


class SeenFilter(Filter):
    name = "seen"

    def enable(self, query: FeedQuery) -> bool:
        return bool(query.seen)

    def filter(self, query: FeedQuery, candidates: list[Candidate]) -> FilterResult:
        return partition(candidates, lambda c: c.flit_id in query.seen)

    def filter_batch(self, queries: Sequence[FeedQuery], batch: CandidateBatch) -> np.ndarray:
        """One set lookup per row of the feeds that have a seen set (each feed's set is its own)."""
        keep = np.ones(len(batch), dtype=bool)
        starts = batch.bounds()
        for i, query in enumerate(queries):
            lo, hi = int(starts[i]), int(starts[i + 1])
            if lo < hi and query.seen:
                seen = query.seen
                keep[lo:hi] = np.fromiter((f not in seen for f in batch.flit_id[lo:hi].tolist()), dtype=bool,
                                          count=hi - lo)
        return keep
