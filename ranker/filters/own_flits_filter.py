"""Drops the user's own flits."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.candidates import CandidateBatch
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.stages import Filter, FilterResult, partition


class OwnFlitsFilter(Filter):
    name = "own_flits"
    #: Decides each row on its own (the pipeline need not compact the batch before it).
    row_local = True

    def filter(self, query: FeedQuery, candidates: list[Candidate]) -> FilterResult:
        return partition(candidates, lambda c: c.author_id == query.user_id)

    def filter_batch(self, queries: Sequence[FeedQuery], batch: CandidateBatch) -> np.ndarray:
        """Each feed's user as an author code (-1 when no candidate is theirs): one integer comparison."""
        code = batch.author_index()
        user = np.array([code.get(q.user_id, -1) for q in queries], dtype=np.int64)
        return batch.author != batch.per_query(user)
