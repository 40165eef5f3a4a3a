"""Relevance: how close a flit is to the user's taste."""

from __future__ import annotations

from flitfeed.ranker.candidate import Candidate
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
