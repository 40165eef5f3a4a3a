"""Drops flits the user has already seen."""

from __future__ import annotations

from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.stages import Filter, FilterResult, partition


class SeenFilter(Filter):
    name = "seen"

    def enable(self, query: FeedQuery) -> bool:
        return bool(query.seen)

    def filter(self, query: FeedQuery, candidates: list[Candidate]) -> FilterResult:
        return partition(candidates, lambda c: c.flit_id in query.seen)
