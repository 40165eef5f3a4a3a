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
    recur in every feed), then decayed with one array expression: once per distinct flit when the
    batch's feeds share one ``now`` (the service's), else to each row's ``now``.
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
        nows = np.array([q.now for q in queries], dtype=np.float64)
        if (nows == nows[0]).all():  # the service ranks a batch at one time: decay each distinct flit once
            batch.engagement[:] = decayed(net, ref, nows[0], self.engagement.half_life_s)[batch.flit]
        else:
            batch.engagement[:] = decayed(net[batch.flit], ref[batch.flit], batch.per_query(nows),
                                          self.engagement.half_life_s)
