"""Fills ``candidate.author_affinity`` and ``candidate.tag_affinity`` from the user's engagement history."""

from __future__ import annotations

from flitfeed.ranker.affinity import Affinity
from flitfeed.ranker.candidate import Candidate
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
