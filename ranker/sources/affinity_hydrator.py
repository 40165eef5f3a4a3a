"""Fills ``candidate.author_affinity`` and ``candidate.tag_affinity`` from the user's engagement history."""

from __future__ import annotations

from typing import Sequence

from flitfeed.ranker.affinity import Affinity
from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.candidates import CandidateBatch
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.stages import Hydrator


class AffinityHydrator(Hydrator):
    """Both affinities for every candidate, in one pass per request (0 for unknown users)."""

    name = "affinity"

    def __init__(self, affinity: Affinity) -> None:
        self.affinity = affinity

    def hydrate(self, query: FeedQuery, candidates: list[Candidate]) -> None:
        if not candidates:
            return
        authors, tags = self.affinity.pair_many(query.user_id, [c.author_id for c in candidates],
                                                [c.tags for c in candidates])
        for c, a, t in zip(candidates, authors, tags):
            c.author_affinity, c.tag_affinity = a, t

    def hydrate_batch(self, queries: Sequence[FeedQuery], batch: CandidateBatch) -> None:
        """Every row at once (:meth:`Affinity.pair_columns`), computed before anything is written."""
        if len(batch) == 0:
            return
        a, t = self.affinity.pair_columns([q.user_id for q in queries], batch.query, batch.author, batch.author_ids,
                                          batch.flit, len(batch.flit_ids), batch.tags)
        batch.author_affinity[:] = a
        batch.tag_affinity[:] = t
