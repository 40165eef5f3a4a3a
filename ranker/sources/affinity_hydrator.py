"""Fills ``candidate.author_affinity`` and ``candidate.tag_affinity`` from the user's engagement history."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from flitfeed.ranker.affinity import Affinity
from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.candidates import CandidateBatch
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.stages import Hydrator


#: Rows from which a batch is looked up column-wise: numbering the batch's authors and tags costs ~90 us
#: up front, and per feed lookups ~0.25 us a row against ~0.17; they cross at ~2,000 rows (ten feeds of
#: 200 candidates; one core, users holding 64 authors).
COLUMNS_FROM_ROWS = 2000


class AffinityHydrator(Hydrator):
    """Both affinities for every candidate, in one pass per request (0 for unknown users)."""

    name = "affinity"

    def __init__(self, affinity: Affinity) -> None:
        self.affinity = affinity

    def hydrate(self, query: FeedQuery, candidates: list[Candidate]) -> None:
        if not candidates:
            return
        authors, tags = self.affinity.pair_many(query.user_id, [c.author_id for c in candidates],
                                                [c.tags for c in candidates])
        for c, a, t in zip(candidates, authors, tags):
            c.author_affinity, c.tag_affinity = a, t

    def hydrate_batch(self, queries: Sequence[FeedQuery], batch: CandidateBatch) -> None:
        """Computed before anything is written. A batch of at least :data:`COLUMNS_FROM_ROWS` rows in one
        :meth:`Affinity.pair_columns` call; a smaller one (a feed or a few: low traffic) one
        :meth:`Affinity.pair_arrays` per feed, which costs less there. Both give the same numbers."""
        n = len(batch)
        if n == 0:
            return
        if n >= COLUMNS_FROM_ROWS:
            a, t = self.affinity.pair_columns([q.user_id for q in queries], batch.query, batch.author,
                                              batch.author_ids, batch.flit, len(batch.flit_ids), batch.tags)
        else:
            a, t = np.zeros(n), np.zeros(n)
            starts = batch.bounds()
            for i, query in enumerate(queries):
                lo, hi = int(starts[i]), int(starts[i + 1])
                if lo < hi:
                    a[lo:hi], t[lo:hi] = self.affinity.pair_arrays(query.user_id, batch.author_id[lo:hi].tolist(),
                                                                   batch.tags[lo:hi].tolist())
        batch.author_affinity[:] = a
        batch.tag_affinity[:] = t
