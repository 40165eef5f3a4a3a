"""Candidates that users with similar behaviour engaged with (the collaborative source)."""

from __future__ import annotations

from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.coengagement import CoEngagement
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.recent import RecentFlits
from flitfeed.ranker.stages import Source

CO_ENGAGED = "co_engaged"


class CoEngagedSource(Source):
    """The flits most co-engaged with the user's recent positives (``source="co_engaged"``).

    Seen flits are excluded before the top-``limit`` cut, so heavy users still
    get ``limit`` unseen candidates. Flits must be in the recent store (where
    their author and creation time come from), like the popular ones. Enabled
    once the user has positive feedback; a flit nobody engaged with never
    comes from here (cold start is the similarity source's job).
    """

    name = CO_ENGAGED

    def __init__(self, coengagement: CoEngagement, recent: RecentFlits, limit: int) -> None:
        self.coengagement = coengagement
        self.recent = recent
        self.limit = limit

    def enable(self, query: FeedQuery) -> bool:
        return query.positives > 0

    def fetch(self, query: FeedQuery) -> list[Candidate]:
        out: list[Candidate] = []
        for flit_id, score in self.coengagement.top(query.user_id, self.limit, exclude=query.seen):
            flit = self.recent.get(flit_id)
            if flit is None:
                continue
            out.append(Candidate(flit_id=flit.flit_id, author_id=flit.author_id, created_at=flit.created_at,
                                 source=self.name, collaborative=score, tags=flit.tags, lang=flit.lang))
        return out
