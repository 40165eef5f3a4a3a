"""Fills ``candidate.similarity`` for candidates that came without one."""

from __future__ import annotations

import numpy as np

from flitfeed.index.base import VectorIndex
from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.stages import Hydrator


class SimilarityHydrator(Hydrator):
    """Cosine similarity to the taste for candidates whose similarity is still 0.

    Fresh and popular candidates do not come from a vector search, so without
    this they would compete with similar ones at similarity 0. Their vectors
    are fetched in one batched ``retrieve_many`` call. Does nothing for
    cold-start users (no taste to compare with). A candidate whose true
    cosine is exactly 0 is looked up again harmlessly; flits missing from the
    index keep 0.
    """

    name = "similarity"

    def __init__(self, index: VectorIndex) -> None:
        self.index = index

    def hydrate(self, query: FeedQuery, candidates: list[Candidate]) -> None:
        if query.cold_start or query.taste is None:
            return
        missing = [c for c in candidates if c.similarity == 0.0]
        if not missing:
            return
        stored = self.index.retrieve_many(list(dict.fromkeys(c.flit_id for c in missing)))
        found = [c for c in missing if c.flit_id in stored]
        if not found:
            return
        vectors = np.stack([stored[c.flit_id].vector for c in found]).astype(np.float32, copy=False)
        sims = vectors @ np.asarray(query.taste, dtype=np.float32)
        for c, s in zip(found, np.clip(sims, -1.0, 1.0).tolist()):
            c.similarity = s
