"""Candidates that are close to the user's taste in embedding space."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from flitfeed.index.base import HitColumns, SearchFilter, VectorIndex
from flitfeed.index.catalogue import VectorCatalogue
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

    With a ``catalogue`` (the index's points mirrored in memory, :mod:`flitfeed.index.catalogue`) a
    batch is searched there, exactly, by one matrix product, instead of by the engine: at the ranker's
    sizes that is several times cheaper and finds every true neighbour. The index stays the source of
    truth: the catalogue is only used while it is usable and holds as many points as the index (a
    mirror that missed a write, or an index swapped for an older copy, sends the batch to the index).
    Every query reads the whole catalogue from memory while the graph reads a few thousand points, so
    the catalogue is searched only while it holds at most ``max_scan_per_query`` points per query of
    the batch (default: at 20k points always; at 50k from batches of two queries). Otherwise the index's
    graph is searched for point ids and scores only, and a current catalogue fills in the hits' fields
    (:meth:`~flitfeed.index.catalogue.VectorCatalogue.columns_of`; at 100k flits the payloads' turn into
    objects was a third of the search), and the pushed-down filters lose the conditions no point held
    could fail (:meth:`~flitfeed.index.catalogue.VectorCatalogue.narrowed`). Without a current catalogue
    the index answers with payloads.
    """

    name = "similar"

    def __init__(self, index: VectorIndex, limit: int, max_age_s: float | None = None,
                 max_pushed_seen: int = 1000, catalogue: VectorCatalogue | None = None,
                 max_scan_per_query: int = 25_000) -> None:
        self.index = index
        self.limit = limit
        self.max_age_s = max_age_s
        self.max_pushed_seen = max_pushed_seen
        self.catalogue = catalogue
        self.max_scan_per_query = max_scan_per_query

    def enable(self, query: FeedQuery) -> bool:
        return not query.cold_start

    def fetch(self, query: FeedQuery) -> list[Candidate]:
        return self.fetch_many([query])[0]

    def fetch_many(self, queries: Sequence[FeedQuery]) -> list[list[Candidate]]:
        """One batched search for the whole batch (one round trip to a Qdrant server instead of one each)."""
        return [[Candidate(flit_id=h.flit_id, author_id=h.author_id, created_at=h.created_at, source=self.name,
                           similarity=float(h.score), tags=tuple(h.tags), lang=h.lang) for h in hits]
                for hits in self._search(queries).hits()]

    def fetch_batch(self, queries: Sequence[FeedQuery]) -> CandidateBatch:
        """The same batched search, its hits turned straight into columns (no ``Candidate`` objects)."""
        found = self._search(queries)
        n = len(found.flit_id)
        return CandidateBatch.build(
            query=np.repeat(np.arange(len(queries)), found.counts), flit_id=found.flit_id,
            author_id=found.author_id, created_at=found.created_at,
            source=np.full(n, source_code(self.name), dtype=np.int64), tags=found.tags, lang=found.lang,
            similarity=found.score, n_queries=len(queries), flit_key=found.flit_key, author_key=found.author_key)

    def _search(self, queries: Sequence[FeedQuery]) -> HitColumns:
        tastes = []
        for query in queries:
            assert query.taste is not None  # enable() guarantees it
            tastes.append(query.taste)
        filters = [SearchFilter(exclude_authors=q.muted_authors | {q.user_id},
                                exclude_flit_ids=self._pushed_seen(q.seen),
                                min_created_at=None if self.max_age_s is None else q.now - self.max_age_s)
                   for q in queries]
        catalogue = self.catalogue
        if self._catalogue_current():
            assert catalogue is not None
            if catalogue.exact and len(catalogue) <= self.max_scan_per_query * len(queries):
                return catalogue.search_columns(tastes, self.limit, filters)
            # The engine checks every condition at every point it visits; those no point could fail go.
            narrowed = [catalogue.narrowed(f) for f in filters]
            found = catalogue.columns_of(self.index.search_points_many(tastes, self.limit, narrowed))
            if found is not None:
                return found
        return HitColumns.from_hits(self.index.search_many(tastes, self.limit, filters))

    def _catalogue_current(self) -> bool:
        """Whether the catalogue mirrors the index now: same number of points (one cheap count per batch)."""
        catalogue = self.catalogue
        return catalogue is not None and catalogue.usable and len(catalogue) == self.index.count(approximate=True)

    def _pushed_seen(self, seen: frozenset[str]) -> frozenset[str]:
        if len(seen) <= self.max_pushed_seen:
            return seen
        # The seen set carries no recency order; a sorted slice at least keeps
        # the pushed subset stable between requests (cache-friendly).
        return frozenset(sorted(seen)[: self.max_pushed_seen])
