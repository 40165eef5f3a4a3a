"""Fills ``candidate.engagement`` from the engagement tracker."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.candidates import CandidateBatch
from flitfeed.ranker.engagement import EngagementTracker, decayed
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.stages import Hydrator


class EngagementHydrator(Hydrator):
    """``engagement`` = the flit's net decayed engagement at ``query.now`` (0 if untracked).

    Batched: the tracker is read once per distinct flit of the batch (the fresh and popular flits
    recur in every feed), then decayed to each row's ``now`` with one array expression.
    """

    name = "engagement"

    def __init__(self, engagement: EngagementTracker) -> None:
        self.engagement = engagement

    def hydrate(self, query: FeedQuery, candidates: list[Candidate]) -> None:
        for c in candidates:
            c.engagement = self.engagement.score(c.flit_id, query.now)

    def hydrate_batch(self, queries: Sequence[FeedQuery], batch: CandidateBatch) -> None:
        if not len(batch):
            return
        net, ref = self.engagement.state_many(batch.flit_ids.tolist())
        now = batch.per_query(np.array([q.now for q in queries], dtype=np.float64))
        batch.engagement[:] = decayed(net[batch.flit], ref[batch.flit], now, self.engagement.half_life_s)
