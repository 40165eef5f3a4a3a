"""The base score: a weighted sum of the other scorers' components."""

from __future__ import annotations

from typing import Mapping

from typing import Sequence

import numpy as np

from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.candidates import CandidateBatch
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.stages import Scorer


class WeightedScorer(Scorer):
    """``score = Σ weights[name] · components[name]`` (a missing component counts 0).

    Runs after every scorer it combines. Sets ``candidate.score`` (the base the
    selector starts from) and records it as the ``"weighted"`` component.
    Range: ``[-Σ|w|, Σ|w|]``.
    """

    name = "weighted"

    def __init__(self, weights: Mapping[str, float]) -> None:
        self.weights = dict(weights)

    def score(self, query: FeedQuery, candidates: list[Candidate]) -> None:
        for c in candidates:
            total = sum(w * c.components.get(name, 0.0) for name, w in self.weights.items())
            c.components[self.name] = total
            c.score = total

    def score_batch(self, queries: Sequence[FeedQuery], batch: CandidateBatch) -> None:
        # Summed in the weights' order, from 0, as sum() does: the same floating-point result.
        total = np.zeros(len(batch))
        for name, w in self.weights.items():
            component = batch.components.get(name)
            total = total + (w * component if component is not None else w * 0.0)
        batch.components[self.name] = total
        batch.score[:] = total
