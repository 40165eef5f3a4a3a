"""The base score: a weighted sum of the other scorers' components."""

from __future__ import annotations

from typing import Mapping

from flitfeed.ranker.candidate import Candidate
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
