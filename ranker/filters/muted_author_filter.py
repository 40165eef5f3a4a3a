"""Drops flits by authors the user muted (hid or reported)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.candidates import CandidateBatch
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.stages import Filter, FilterResult, partition


class MutedAuthorFilter(Filter):
    name = "muted_author"
    #: Decides each row on its own (the pipeline need not compact the batch before it).
    row_local = True

    def enable(self, query: FeedQuery) -> bool:
        return bool(query.muted_authors)

    def filter(self, query: FeedQuery, candidates: list[Candidate]) -> FilterResult:
        return partition(candidates, lambda c: c.author_id in query.muted_authors)

    def filter_batch(self, queries: Sequence[FeedQuery], batch: CandidateBatch) -> np.ndarray:
        """Muted (feed, author) pairs as integer keys; one ``np.isin`` over the batch's rows."""
        code = batch.author_index()
        A = len(code)
        muted = [i * A + code[a] for i, q in enumerate(queries) for a in q.muted_authors if a in code]
        if not muted:
            return np.ones(len(batch), dtype=bool)
        return ~np.isin(batch.query * A + batch.author, np.array(muted, dtype=np.int64))
