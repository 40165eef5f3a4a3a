"""Fills ``candidate.collaborative`` from the co-engagement model."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.candidates import CandidateBatch
from flitfeed.ranker.coengagement import CoEngagement
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.stages import Hydrator


class CollaborativeHydrator(Hydrator):
    """``collaborative`` = the user's co-engagement score of each candidate (0 for unknown flits).

    One vectorised score computation per request covers every candidate,
    whichever source produced it.
    """

    name = "collaborative"

    def __init__(self, coengagement: CoEngagement) -> None:
        self.coengagement = coengagement

    def hydrate(self, query: FeedQuery, candidates: list[Candidate]) -> None:
        if not candidates or query.positives == 0:
            return
        scores = self.coengagement.score_many(query.user_id, [c.flit_id for c in candidates])
        for c, s in zip(candidates, scores.tolist()):
            c.collaborative = s

    def hydrate_batch(self, queries: Sequence[FeedQuery], batch: CandidateBatch) -> None:
        """One score vector per user with positives (a small matrix product each), read at the slots of
        the batch's distinct flits with array indexing."""
        if not len(batch):
            return
        slots = self.coengagement.slots_of(batch.flit_ids.tolist())
        starts = batch.bounds()
        for i, query in enumerate(queries):
            lo, hi = int(starts[i]), int(starts[i + 1])
            if lo == hi or query.positives == 0:
                continue
            scores = self.coengagement.user_scores(query.user_id)
            if scores is None:
                batch.collaborative[lo:hi] = 0.0
                continue
            slot = slots[batch.flit[lo:hi]]
            # float32 scores, as score_many returns them; 0 for a flit without a slot.
            batch.collaborative[lo:hi] = np.where(slot >= 0, scores[np.maximum(slot, 0)], np.float32(0.0))
