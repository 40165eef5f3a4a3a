"""Relevance: how close a flit is to the user's taste."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.candidates import CandidateBatch
from flitfeed.ranker.params import SIMILARITY
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.stages import Scorer


class SimilarityScorer(Scorer):
    """Component in [-1, 1]: the cosine similarity, or 0 for a cold-start user.

    Zeroing it for cold start keeps the similarity weight inert there rather
    than rewarding whatever similarity a half-formed taste happens to give.
    """

    name = SIMILARITY

    def score(self, query: FeedQuery, candidates: list[Candidate]) -> None:
        cold = query.cold_start
        for c in candidates:
            c.components[self.name] = 0.0 if cold else min(1.0, max(-1.0, c.similarity))

    def score_batch(self, queries: Sequence[FeedQuery], batch: CandidateBatch) -> None:
        cold = np.fromiter((q.cold_start for q in queries), dtype=bool, count=len(queries))
        batch.components[self.name] = np.where(batch.per_query(cold), 0.0, np.clip(batch.similarity, -1.0, 1.0))
