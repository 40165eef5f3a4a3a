"""Behaviour: how strongly the user's recent engagement points at a flit."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.candidates import CandidateBatch
from flitfeed.ranker.params import COLLABORATIVE
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.stages import Scorer


class CollaborativeScorer(Scorer):
    """Component in [0, 1]: the co-engagement score relative to the best candidate of this request.

    Raw co-engagement scores grow with the user's history and the flits'
    popularity; scaling by the request's maximum makes the weight mean the
    same for every user. 0 for all candidates when none has a score (new
    users, brand-new flits: text similarity decides there).
    """

    name = COLLABORATIVE

    def score(self, query: FeedQuery, candidates: list[Candidate]) -> None:
        top = max((c.collaborative for c in candidates), default=0.0)
        for c in candidates:
            c.components[self.name] = c.collaborative / top if top > 0 else 0.0

    def score_batch(self, queries: Sequence[FeedQuery], batch: CandidateBatch) -> None:
        # Each feed's best, over its rows: maximum.at scatters the rows' values into per-feed slots.
        top = np.zeros(len(queries))
        np.maximum.at(top, batch.query, batch.collaborative)
        top_row = batch.per_query(top)
        batch.components[self.name] = np.where(top_row > 0, batch.collaborative / np.where(top_row > 0, top_row, 1.0),
                                               0.0)
