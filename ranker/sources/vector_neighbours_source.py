"""Candidates that are close to the user's taste in embedding space."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from flitfeed.index.base import Hit, SearchFilter, VectorIndex
from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.candidates import CandidateBatch, source_code
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.stages import Source


class VectorNeighboursSource(Source):
    """Nearest flits to ``query.taste``; candidates carry ``source="similar"``.

    Exclusions the index can apply cheaply are pushed down (muted authors, the
    user's own flits, too-old flits, seen flits) so the ``limit`` hits are not
    spent on flits the filters would drop anyway. The filters still run: the
    push-down is an optimisation, not the guarantee.
    """

    name = "similar"

    def __init__(self, index: VectorIndex, limit: int, max_age_s: float | None = None,
                 max_pushed_seen: int = 1000) -> None:
        self.index = index
        self.limit = limit
        self.max_age_s = max_age_s
        self.max_pushed_seen = max_pushed_seen

    def enable(self, query: FeedQuery) -> bool:
        return not query.cold_start

    def fetch(self, query: FeedQuery) -> list[Candidate]:
        return self.fetch_many([query])[0]

    def fetch_many(self, queries: Sequence[FeedQuery]) -> list[list[Candidate]]:
        """One batched search for the whole batch (one round trip to a Qdrant server instead of one each)."""
        return [[Candidate(flit_id=h.flit_id, author_id=h.author_id, created_at=h.created_at, source=self.name,
                           similarity=float(h.score), tags=tuple(h.tags), lang=h.lang) for h in hits]
                for hits in self._search(queries)]

    def fetch_batch(self, queries: Sequence[FeedQuery]) -> CandidateBatch:
        """The same batched search, its hits turned straight into columns (no ``Candidate`` objects)."""
        results = self._search(queries)
        hits = [h for found in results for h in found]
        n = len(hits)
        return CandidateBatch.build(
            query=np.repeat(np.arange(len(results)), [len(found) for found in results]),
            flit_id=[h.flit_id for h in hits], author_id=[h.author_id for h in hits],
            created_at=np.fromiter((h.created_at for h in hits), dtype=np.float64, count=n),
            source=np.full(n, source_code(self.name), dtype=np.int64), tags=[tuple(h.tags) for h in hits],
            lang=[h.lang for h in hits], similarity=np.fromiter((h.score for h in hits), dtype=np.float64, count=n),
            n_queries=len(results))

    def _search(self, queries: Sequence[FeedQuery]) -> list[list[Hit]]:
        tastes = []
        for query in queries:
            assert query.taste is not None  # enable() guarantees it
            tastes.append(query.taste)
        filters = [SearchFilter(exclude_authors=q.muted_authors | {q.user_id},
                                exclude_flit_ids=self._pushed_seen(q.seen),
                                min_created_at=None if self.max_age_s is None else q.now - self.max_age_s)
                   for q in queries]
        return self.index.search_many(tastes, self.limit, filters)

    def _pushed_seen(self, seen: frozenset[str]) -> frozenset[str]:
        if len(seen) <= self.max_pushed_seen:
            return seen
        # The seen set carries no recency order; a sorted slice at least keeps
        # the pushed subset stable between requests (cache-friendly).
        return frozenset(sorted(seen)[: self.max_pushed_seen])
