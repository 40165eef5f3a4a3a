"""Keeps one candidate per flit when several sources returned it."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.candidates import SOURCE_NAMES, CandidateBatch
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.stages import Filter, FilterResult

#: Which source's copy wins a tie on similarity: the earlier in this list, then
#: any unlisted source, then the earlier in the input.
DEFAULT_SOURCE_PRIORITY: tuple[str, ...] = ("similar", "co_engaged", "popular", "fresh")


class DuplicateFilter(Filter):
    """Of the candidates sharing a ``flit_id`` keep the one with the highest
    similarity, then the most preferred source, then the first; it stays at
    its own position, so the kept list is still a subsequence of the input.
    """

    name = "duplicate"

    def __init__(self, source_priority: Sequence[str] = DEFAULT_SOURCE_PRIORITY) -> None:
        self._rank = {s: i for i, s in enumerate(source_priority)}

    def filter(self, query: FeedQuery, candidates: list[Candidate]) -> FilterResult:
        unlisted = len(self._rank)
        best: dict[str, int] = {}
        for i, c in enumerate(candidates):
            j = best.get(c.flit_id)
            if j is None:
                best[c.flit_id] = i
                continue
            other = candidates[j]
            mine = (c.similarity, -self._rank.get(c.source, unlisted))
            theirs = (other.similarity, -self._rank.get(other.source, unlisted))
            if mine > theirs:
                best[c.flit_id] = i
        winners = set(best.values())
        kept = [c for i, c in enumerate(candidates) if i in winners]
        removed = [c for i, c in enumerate(candidates) if i not in winners]
        return FilterResult(kept, removed)

    def filter_batch(self, queries: Sequence[FeedQuery], batch: CandidateBatch) -> np.ndarray:
        """One sort of the whole batch by (feed, flit, similarity descending, source rank, position):
        the first row of each (feed, flit) group is the copy :meth:`filter` keeps."""
        n = len(batch)
        if n == 0:
            return np.ones(0, dtype=bool)
        # Only rows whose (feed, flit) occurs more than once need a decision (mostly none, or the few
        # flits both the similar and the fresh/popular source returned).
        key = batch.query * len(batch.flit_ids) + batch.flit
        dup = np.bincount(key)[key] > 1
        if not dup.any():
            return np.ones(n, dtype=bool)
        keep = ~dup
        rows = np.flatnonzero(dup)
        unlisted = len(self._rank)
        rank_of = np.array([self._rank.get(name, unlisted) for name in SOURCE_NAMES], dtype=np.int64)
        # np.lexsort sorts by the last key first.
        order = rows[np.lexsort((rows, rank_of[batch.source[rows]], -batch.similarity[rows], key[rows]))]
        k = key[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = k[1:] != k[:-1]
        keep[order[first]] = True
        return keep
