"""Candidates that need no taste: the most engaged and the newest recent flits."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.candidates import CandidateBatch, source_code
from flitfeed.ranker.engagement import EngagementTracker
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.recent import RecentFlit, RecentFlits
from flitfeed.ranker.stages import Source

POPULAR = "popular"
FRESH = "fresh"


class FreshPopularSource(Source):
    """Most-engaged recent flits (``source="popular"``) then newest ones (``"fresh"``).

    Always enabled: it is the whole feed of a cold-start user and the
    exploration supply for everyone else. ``popular_share`` of ``limit`` goes
    to popular flits; whatever they leave unused goes to fresh ones. A flit
    that is both is emitted once, as popular. Similarity is left at 0; the
    similarity hydrator fills it for users with a taste.

    What it returns depends on nothing but ``query.now``, so :meth:`fetch_batch` fetches once per
    distinct ``now`` of the batch (once, in the service: a batch is ranked at one time) and repeats
    the rows for each feed.
    """

    name = "fresh_popular"

    def __init__(self, recent: RecentFlits, engagement: EngagementTracker, limit: int,
                 max_age_s: float | None = None, popular_share: float = 0.5) -> None:
        self.recent = recent
        self.engagement = engagement
        self.limit = limit
        self.max_age_s = max_age_s
        self.popular_share = popular_share

    def fetch(self, query: FeedQuery) -> list[Candidate]:
        return [_candidate(flit, source) for flit, source in self._flits(query.now)]

    def fetch_batch(self, queries: Sequence[FeedQuery]) -> CandidateBatch:
        parts = []
        for now in dict.fromkeys(q.now for q in queries):
            flits = self._flits(now)
            of_now = np.array([i for i, q in enumerate(queries) if q.now == now], dtype=np.int64)
            m = len(flits)
            one = CandidateBatch.build(
                query=np.zeros(m, dtype=np.int64), flit_id=[f.flit_id for f, _ in flits],
                author_id=[f.author_id for f, _ in flits], created_at=[f.created_at for f, _ in flits],
                source=np.array([source_code(source) for _, source in flits], dtype=np.int64),
                tags=[f.tags for f, _ in flits], lang=[f.lang for f, _ in flits], n_queries=1)
            # The same rows for every feed at this `now`: repeated by indexing, not rebuilt.
            part = one.take(np.tile(np.arange(m), len(of_now)))
            part.query = np.repeat(of_now, m)
            part.n_queries = len(queries)
            parts.append(part)
        return CandidateBatch.concat(parts, len(queries))

    def _flits(self, now: float) -> list[tuple[RecentFlit, str]]:
        """The flits and their source (popular, fresh) for a feed at ``now``."""
        min_created_at = None if self.max_age_s is None else now - self.max_age_s

        def eligible(flit_id: str) -> bool:
            # Popular flits must be in the recent store: it is where their
            # author and creation time come from.
            f = self.recent.get(flit_id)
            return f is not None and (min_created_at is None or f.created_at >= min_created_at)

        n_popular = math.ceil(self.limit * self.popular_share)
        out: list[tuple[RecentFlit, str]] = []
        taken: set[str] = set()
        for flit_id, _ in self.engagement.top(n_popular, now, where=eligible):
            flit = self.recent.get(flit_id)
            assert flit is not None
            out.append((flit, POPULAR))
            taken.add(flit_id)
        # Asking for the full limit leaves room for the newest flits that
        # popular already took and that are skipped here.
        for flit in self.recent.newest(self.limit, min_created_at):
            if len(out) >= self.limit:
                break
            if flit.flit_id not in taken:
                out.append((flit, FRESH))
        return out


def _candidate(flit: RecentFlit, source: str) -> Candidate:
    return Candidate(
        flit_id=flit.flit_id,
        author_id=flit.author_id,
        created_at=flit.created_at,
        source=source,
        tags=flit.tags,
        lang=flit.lang,
    )
