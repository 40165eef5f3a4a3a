"""Drops flits the user has already seen."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.candidates import CandidateBatch
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.stages import Filter, FilterResult, partition


class SeenFilter(Filter):
    name = "seen"
    #: Decides each row on its own (the pipeline need not compact the batch before it).
    row_local = True

    def enable(self, query: FeedQuery) -> bool:
        return bool(query.seen)

    def filter(self, query: FeedQuery, candidates: list[Candidate]) -> FilterResult:
        return partition(candidates, lambda c: c.flit_id in query.seen)

    def filter_batch(self, queries: Sequence[FeedQuery], batch: CandidateBatch) -> np.ndarray:
        """Per feed, whichever is shorter: its seen set looked up in the batch's flit codes (then one
        integer ``np.isin`` over its rows), or its rows looked up in its seen set."""
        keep = np.ones(len(batch), dtype=bool)
        starts = batch.bounds()
        F = len(batch.flit_ids)
        seen_keys: list[int] = []  # (feed, flit) keys of the seen flits of the feeds looked up by code
        code_of = None
        for i, query in enumerate(queries):
            lo, hi = int(starts[i]), int(starts[i + 1])
            seen = query.seen
            if lo == hi or not seen:
                continue
            if len(seen) < hi - lo:
                code_of = code_of if code_of is not None else batch.flit_index()
                seen_keys.extend(i * F + c for c in map(code_of.get, seen) if c is not None)
            else:
                keep[lo:hi] = np.fromiter((f not in seen for f in batch.flit_id[lo:hi].tolist()), dtype=bool,
                                          count=hi - lo)
        if seen_keys:
            keys = batch.query * F + batch.flit
            if len(queries) * F <= _MAX_TABLE:
                # A mark per (feed, flit) read at every row: linear, where isin sorts (a third of this filter).
                seen_table = np.zeros(len(queries) * F, dtype=bool)
                seen_table[seen_keys] = True
                keep &= ~seen_table[keys]
            else:
                keep &= ~np.isin(keys, np.array(seen_keys, dtype=np.int64))
        return keep


#: The most (feed, flit) marks the filter allocates (bytes) rather than sorting: ~140k for a batch of 32.
_MAX_TABLE = 1 << 22
