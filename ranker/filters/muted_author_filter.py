"""Drops flits by authors the user muted (hid or reported)."""

from __future__ import annotations

from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.stages import Filter, FilterResult, partition


class MutedAuthorFilter(Filter):
    name = "muted_author"

    def enable(self, query: FeedQuery) -> bool:
        return bool(query.muted_authors)

    def filter(self, query: FeedQuery, candidates: list[Candidate]) -> FilterResult:
        return partition(candidates, lambda c: c.author_id in query.muted_authors)
