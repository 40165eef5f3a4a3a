"""Fills ``candidate.engagement`` from the engagement tracker."""

from __future__ import annotations

from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.engagement import EngagementTracker
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.stages import Hydrator


class EngagementHydrator(Hydrator):
    """``engagement`` = the flit's net decayed engagement at ``query.now`` (0 if untracked)."""

    name = "engagement"

    def __init__(self, engagement: EngagementTracker) -> None:
        self.engagement = engagement

    def hydrate(self, query: FeedQuery, candidates: list[Candidate]) -> None:
        for c in candidates:
            c.engagement = self.engagement.score(c.flit_id, query.now)
