"""Popularity: how much positive attention a flit is getting, with diminishing returns."""

from __future__ import annotations

from typing import Sequence

from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.candidates import CandidateBatch
from flitfeed.ranker.engagement import saturated
from flitfeed.ranker.params import ENGAGEMENT
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.stages import Scorer


class EngagementScorer(Scorer):
    """Component in (-1, 1): ``e / (|e| + saturation)`` of the hydrated net engagement.

    Saturating, so a viral flit is only somewhat better than a well-liked
    one; negative when hides and reports outweigh positive signals.
    """

    name = ENGAGEMENT

    def __init__(self, saturation: float) -> None:
        if not saturation > 0:
            raise ValueError(f"saturation must be > 0, got {saturation}")
        self.saturation = saturation

    def score(self, query: FeedQuery, candidates: list[Candidate]) -> None:
        for c in candidates:
            c.components[self.name] = float(saturated(c.engagement, self.saturation))

    def score_batch(self, queries: Sequence[FeedQuery], batch: CandidateBatch) -> None:
        batch.components[self.name] = saturated(batch.engagement, self.saturation)
