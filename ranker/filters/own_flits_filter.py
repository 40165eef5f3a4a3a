"""Drops the user's own flits."""

from __future__ import annotations

from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.stages import Filter, FilterResult, partition


class OwnFlitsFilter(Filter):
    name = "own_flits"

    def filter(self, query: FeedQuery, candidates: list[Candidate]) -> FilterResult:
        return partition(candidates, lambda c: c.author_id == query.user_id)
