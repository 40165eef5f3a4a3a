"""Fills ``candidate.collaborative`` from the co-engagement model."""

from __future__ import annotations

from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.coengagement import CoEngagement
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.stages import Hydrator


class CollaborativeHydrator(Hydrator):
    """``collaborative`` = the user's co-engagement score of each candidate (0 for unknown flits).

    One vectorised score computation per request covers every candidate,
    whichever source produced it.
    """

    name = "collaborative"

    def __init__(self, coengagement: CoEngagement) -> None:
        self.coengagement = coengagement

    def hydrate(self, query: FeedQuery, candidates: list[Candidate]) -> None:
        if not candidates or query.positives == 0:
            return
        scores = self.coengagement.score_many(query.user_id, [c.flit_id for c in candidates])
        for c, s in zip(candidates, scores.tolist()):
            c.collaborative = s
