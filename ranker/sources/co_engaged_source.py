"""Candidates that users with similar behaviour engaged with (the collaborative source)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.candidates import CandidateBatch, source_code
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

    def fetch_batch(self, queries: Sequence[FeedQuery]) -> CandidateBatch:
        """Each user's top flits (one score vector each), as columns."""
        rows: list[tuple[int, str, float]] = []
        for i, query in enumerate(queries):
            for flit_id, score in self.coengagement.top(query.user_id, self.limit, exclude=query.seen):
                if flit_id in self.recent:
                    rows.append((i, flit_id, score))
        flits = [self.recent.get(f) for _, f, _ in rows]
        n = len(rows)
        return CandidateBatch.build(
            query=np.fromiter((i for i, _, _ in rows), dtype=np.int64, count=n),
            flit_id=[f.flit_id for f in flits], author_id=[f.author_id for f in flits],  # type: ignore[union-attr]
            created_at=np.fromiter((f.created_at for f in flits), dtype=np.float64, count=n),  # type: ignore[union-attr]
            source=np.full(n, source_code(self.name), dtype=np.int64),
            tags=[f.tags for f in flits], lang=[f.lang for f in flits],  # type: ignore[union-attr]
            collaborative=np.fromiter((s for _, _, s in rows), dtype=np.float64, count=n), n_queries=len(queries))
