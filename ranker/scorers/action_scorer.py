"""The learned score: ``Σ value · P(action)`` from the ranking model, over the other scorers' components."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from flitfeed.ranker.affinity import Affinity
from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.candidates import CandidateBatch
from flitfeed.ranker.features import feature_matrix
from flitfeed.ranker.model import ActionModel
from flitfeed.ranker.params import COLLABORATIVE, ENGAGEMENT, FRESHNESS, SIMILARITY
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.stages import Scorer

#: Raw co-engagement at which its absolute feature reaches 0.5.
CO_ENGAGEMENT_SATURATION = 1.0


class ActionScorer(Scorer):
    """Builds each candidate's feature row (:mod:`~flitfeed.ranker.features`) and scores it with the model.

    Runs after the component scorers (similarity, freshness, engagement, collaborative) whose
    components are features. Sets ``candidate.score`` (the selector's base) and ``candidate.features``
    (logged with the impression). The model is shared and learns
    between requests; a model whose scores are not finite is not used for that request: the prior
    scores it instead and :attr:`fallbacks` counts it (the service exports the count).
    """

    name = "model"

    def __init__(self, model: ActionModel, affinity: Affinity | None = None) -> None:
        self.model = model
        self.affinity = affinity
        self.fallbacks = 0

    def score(self, query: FeedQuery, candidates: list[Candidate]) -> None:
        n = len(candidates)
        if n == 0:
            return

        # One pass over the candidates gathers every per-candidate input (the profile: passes per field
        # and the component dicts' lookups were most of this scorer's time).
        cols = np.array([(c.components.get(SIMILARITY, 0.0), c.author_affinity, c.tag_affinity,
                          c.components.get(FRESHNESS, 0.0), c.components.get(ENGAGEMENT, 0.0),
                          c.components.get(COLLABORATIVE, 0.0), c.collaborative) for c in candidates],
                        dtype=np.float64).reshape(n, 7)
        raw_co = np.maximum(cols[:, 6], 0.0)
        activity, mainstream = self.affinity.user_stats(query.user_id) if self.affinity else (0.0, 0.0)
        X = feature_matrix(
            similarity=cols[:, 0], author_affinity=cols[:, 1], tag_affinity=cols[:, 2], freshness=cols[:, 3],
            popularity=cols[:, 4], co_engagement=cols[:, 5],
            co_engagement_abs=raw_co / (raw_co + CO_ENGAGEMENT_SATURATION),
            cold_start=query.cold_start, activity=activity, mainstream=mainstream)
        scores = self.model.score_many(X)
        if not np.isfinite(scores).all():
            self.fallbacks += 1
            X = np.nan_to_num(X, nan=0.0, posinf=0.0, neginf=0.0)  # a bad input feature counts as absent
            scores = self.model.score_many(X, prior=True)
        for c, row, s in zip(candidates, list(X), scores.tolist()):
            c.features = row
            c.score = s

    def score_batch(self, queries: Sequence[FeedQuery], batch: CandidateBatch) -> None:
        """The whole batch's feature matrix (the user-level features spread over each feed's rows) and
        one model product. A feed with a non-finite score is scored by the prior, as :meth:`score`
        does per request (and counted once per feed)."""
        n = len(batch)
        if n == 0:
            return
        zero = np.zeros(n)
        comp = batch.components
        stats = [self.affinity.user_stats(q.user_id) if self.affinity else (0.0, 0.0) for q in queries]
        activity = batch.per_query(np.array([a for a, _ in stats], dtype=np.float64))
        mainstream = batch.per_query(np.array([m for _, m in stats], dtype=np.float64))
        cold = batch.per_query(np.fromiter((q.cold_start for q in queries), dtype=bool, count=len(queries)))
        raw_co = np.maximum(batch.collaborative, 0.0)
        X = feature_matrix(
            similarity=comp.get(SIMILARITY, zero), author_affinity=batch.author_affinity,
            tag_affinity=batch.tag_affinity, freshness=comp.get(FRESHNESS, zero), popularity=comp.get(ENGAGEMENT, zero),
            co_engagement=comp.get(COLLABORATIVE, zero), co_engagement_abs=raw_co / (raw_co + CO_ENGAGEMENT_SATURATION),
            cold_start=cold, activity=activity, mainstream=mainstream)
        scores = self.model.score_many(X)
        bad_rows = ~np.isfinite(scores)
        if bad_rows.any():
            bad = np.zeros(len(queries), dtype=bool)
            bad[batch.query[bad_rows]] = True
            self.fallbacks += int(bad.sum())
            rows = bad[batch.query]
            X[rows] = np.nan_to_num(X[rows], nan=0.0, posinf=0.0, neginf=0.0)  # a bad input feature counts as absent
            scores[rows] = self.model.score_many(X[rows], prior=True)
        batch.features = X
        batch.score[:] = scores
