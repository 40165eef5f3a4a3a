"""Fills ``candidate.similarity`` for candidates that came without one."""

from __future__ import annotations

import numpy as np

from flitfeed.index.base import SearchFilter, VectorIndex
from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.recent import RecentFlits
from flitfeed.ranker.stages import Hydrator


class SimilarityHydrator(Hydrator):
    """Cosine similarity to the taste for candidates whose similarity is still 0.

    Fresh, popular and co-engaged candidates do not come from a vector search,
    so without this they would compete with similar ones at similarity 0.
    They are all recent flits, so they are scored against the vectors the
    recent-flit store holds, in one matrix product. Any that store has no
    vector for are scored by one vector search restricted to their ids
    (``SearchFilter.only_flit_ids``): the engine computes the cosines, so no
    vector crosses into Python. Profiles behind this: fetching vectors with
    ``retrieve_many`` and converting them was 46% of the ranker's time; the
    id-restricted search for every candidate, 27% of a feed. Does nothing for
    cold-start users (no taste to compare with). A candidate whose true
    cosine is exactly 0 is looked up again harmlessly; flits missing from
    both keep 0.
    """

    name = "similarity"

    def __init__(self, index: VectorIndex, recent: RecentFlits | None = None) -> None:
        self.index = index
        self.recent = recent

    def hydrate(self, query: FeedQuery, candidates: list[Candidate]) -> None:
        if query.cold_start or query.taste is None:
            return
        missing = [c for c in candidates if c.similarity == 0.0]
        if not missing:
            return
        # A flit another source already scored keeps that score in every copy: the memory and the
        # engine cosines can differ in the last bits, and the duplicate filter, which keeps the copy
        # with the higher similarity, must not be decided by rounding.
        scores = {c.flit_id: c.similarity for c in candidates if c.similarity != 0.0}
        if self.recent is not None:
            unscored = [c.flit_id for c in missing if c.flit_id not in scores]
            scores.update(self.recent.similarities(query.taste, unscored))
        ids = frozenset(c.flit_id for c in missing if c.flit_id not in scores)
        if ids:
            hits = self.index.search(np.asarray(query.taste, dtype=np.float32), len(ids),
                                     SearchFilter(only_flit_ids=ids))
            scores.update((h.flit_id, min(1.0, max(-1.0, h.score))) for h in hits)
        for c in missing:
            if c.flit_id in scores:
                c.similarity = scores[c.flit_id]
