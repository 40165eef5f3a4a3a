"""The recommenders the evaluator compares, behind one small interface.

Every method sees the same stream: :meth:`Method.recommend` is asked for a
user's top-``k`` *before* the user's next positive is revealed, and
:meth:`Method.learn` then receives every event (positive, view or hide).
Items are catalog indices (positions in ``Dataset.items``).

* :class:`FlitfeedMethod` — the production code: the real
  :class:`~flitfeed.encoders.user_vector.UserProfile` update rule
  (:func:`~flitfeed.streams.user_updates.apply_interaction`), the real vector
  index (embedded Qdrant Edge), the ranker's state (engagement, recent flits,
  co-engagement, affinity, the ranking model) built by the service's own
  :func:`~flitfeed.ranker.core.build_ranker_core` and fed exactly as the
  ranker service feeds it, and the feed pipeline it builds. With
  ``collaborative=False`` and content-only weights it is the design card's
  content-only model.
* :class:`RandomMethod`, :class:`PopularityMethod` (recency-decayed counts of
  positives) and :class:`ALSMethod` (``implicit`` ALS retrained periodically
  on everything seen so far) — the baselines.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from flitfeed.evaluation.dataset import Dataset
from flitfeed.index.base import IndexedFlit, VectorIndex
from flitfeed.index.catalogue import VectorCatalogue
from flitfeed.index.memory import MemoryIndex
from flitfeed.ranker.core import CoreSizes, build_ranker_core
from flitfeed.ranker.feedback import ExampleLearner, impression_for
from flitfeed.ranker.join import ImpressionJoin
from flitfeed.ranker.params import RankerParams
from flitfeed.ranker.query_hydrator import feed_query
from flitfeed.settings import Settings
from flitfeed.streams.events import Interaction, from_epoch
from flitfeed.streams.user_updates import apply_interaction, taste_params, user_state
from flitfeed.encoders.user_vector import UserProfile

log = logging.getLogger(__name__)

#: Author id of a catalog item: every item is its own author, so author
#: diversity and "new author" exploration stay neutral on a catalog without authors.
AUTHOR_PREFIX = "item:"


@dataclass(frozen=True, slots=True)
class Event:
    event_id: str
    user: str
    item: int
    kind: str  # like | view | hide
    ts: float


class Method(Protocol):
    name: str

    def recommend(self, user: str, now: float, k: int, seen: set[int]) -> list[int]:
        """The user's top-``k`` items at time ``now``, none of them in ``seen``."""

    def learn(self, event: Event) -> None:
        """Apply one event (after any test on it)."""


def top_k_unseen(scores: np.ndarray, k: int, seen: set[int]) -> list[int]:
    """Indices of the ``k`` highest scores outside ``seen``; ties broken by lower index.

    >>> top_k_unseen(np.array([0.1, 0.9, 0.5, 0.9]), 2, seen={1})
    [3, 2]
    """
    s = np.asarray(scores, dtype=np.float64).copy()
    if seen:
        s[np.fromiter(seen, dtype=np.int64)] = -np.inf
    m = min(k, len(s))
    idx = np.argpartition(-s, m - 1)[:m]
    idx = idx[np.lexsort((idx, -s[idx]))]
    return [int(i) for i in idx if np.isfinite(s[i])]


class RandomMethod:
    """Uniformly random unseen items (seeded)."""

    def __init__(self, n_items: int, seed: int = 0, name: str = "random") -> None:
        self.name = name
        self.n_items = n_items
        self.rng = np.random.default_rng(seed)

    def recommend(self, user: str, now: float, k: int, seen: set[int]) -> list[int]:
        out: list[int] = []
        taken: set[int] = set()
        while len(out) < k and len(seen) + len(taken) < self.n_items:
            for i in self.rng.integers(0, self.n_items, size=2 * k).tolist():
                if i not in seen and i not in taken and len(out) < k:
                    out.append(i)
                    taken.add(i)
        return out

    def learn(self, event: Event) -> None:
        return None


class PopularityMethod:
    """Most positives, each weighted ``2^(-age / half_life_s)`` (plain counts when ``half_life_s`` is None).

    Kept in the log domain, ``log2 Σ_j 2^(t_j / half_life)``: the ranking at any
    later time is the same, and it survives gaps of years in the stream that
    would underflow decayed counts to zero (after a long quiet spell the most
    recently engaged items lead, ordered by their history).
    """

    def __init__(self, n_items: int, half_life_s: float | None, name: str = "popularity") -> None:
        self.name = name
        self.half_life_s = half_life_s
        self.scores = np.full(n_items, -np.inf, dtype=np.float64)
        self.t0: float | None = None

    def recommend(self, user: str, now: float, k: int, seen: set[int]) -> list[int]:
        return top_k_unseen(self.scores, k, seen)

    def learn(self, event: Event) -> None:
        if event.kind != "like":
            return
        if self.half_life_s is None:
            self.scores[event.item] = np.log2(np.exp2(self.scores[event.item]) + 1.0)
            return
        if self.t0 is None:
            self.t0 = event.ts
        self.scores[event.item] = np.logaddexp2(self.scores[event.item], (event.ts - self.t0) / self.half_life_s)


class ALSMethod:
    """``implicit`` ALS on the positives seen so far, retrained every ``retrain_every`` positives.

    Users the last model has not seen get the (undecayed) most popular items,
    the usual fallback; the first model is trained after ``retrain_every`` positives.
    """

    def __init__(self, n_items: int, retrain_every: int = 2500, factors: int = 64, regularization: float = 0.05,
                 iterations: int = 15, alpha: float = 10.0, seed: int = 0, name: str = "als") -> None:
        self.name = name
        self.n_items = n_items
        self.retrain_every = retrain_every
        self.factors, self.regularization, self.iterations, self.alpha = factors, regularization, iterations, alpha
        self.seed = seed
        self.user_row: dict[str, int] = {}
        self.rows: list[int] = []
        self.cols: list[int] = []
        self.since = 0
        self.user_factors: np.ndarray | None = None
        self.item_factors: np.ndarray | None = None
        self.trained_users: dict[str, int] = {}
        self.popular = np.zeros(n_items, dtype=np.float64)
        self.train_seconds: list[float] = []

    def recommend(self, user: str, now: float, k: int, seen: set[int]) -> list[int]:
        row = self.trained_users.get(user)
        if row is None or self.user_factors is None or self.item_factors is None:
            return top_k_unseen(self.popular, k, seen)
        return top_k_unseen(self.item_factors @ self.user_factors[row], k, seen)

    def learn(self, event: Event) -> None:
        if event.kind != "like":
            return
        row = self.user_row.setdefault(event.user, len(self.user_row))
        self.rows.append(row)
        self.cols.append(event.item)
        self.popular[event.item] += 1.0
        self.since += 1
        if self.since >= self.retrain_every:
            self._train()

    def _train(self) -> None:
        import implicit
        from scipy.sparse import csr_matrix

        start = time.perf_counter()
        data = np.full(len(self.rows), self.alpha, dtype=np.float32)
        matrix = csr_matrix((data, (self.rows, self.cols)), shape=(len(self.user_row), self.n_items))
        matrix.sum_duplicates()
        model = implicit.als.AlternatingLeastSquares(factors=self.factors, regularization=self.regularization,
                                                     iterations=self.iterations, random_state=self.seed,
                                                     num_threads=1)
        model.fit(matrix, show_progress=False)
        self.user_factors = np.asarray(model.user_factors)
        self.item_factors = np.asarray(model.item_factors)
        self.trained_users = dict(self.user_row)
        self.since = 0
        self.train_seconds.append(time.perf_counter() - start)


@dataclass
class StageTimes:
    """Seconds per pipeline stage, summed over requests (for the latency plot)."""

    total: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, name: str, seconds: float) -> None:
        self.total[name] += seconds
        self.calls[name] += 1

    def mean_ms(self) -> dict[str, float]:
        return {name: 1000.0 * self.total[name] / self.calls[name] for name in self.total if self.calls[name]}


def eval_settings(base: Settings | None = None, **overrides: object) -> Settings:
    """Settings for replaying a historical dataset through the product.

    A dataset spans years and its items have no creation time worth ranking
    by: flit age limits are lifted, every catalog item fits in the ranker's
    recent store and co-engagement model, and the per-user seen memory holds
    a whole history (the protocol excludes every item the user saw, as
    production does within its bounded memory). Popularity's half-life is
    scaled from a day (short posts) to a year (films rated over 22 years:
    measured best for popularity on ml-latest-small, see docs/evaluation), and the
    feedback window from a minute (a feed scrolled past) to a day (a rating session).
    """
    s = base or Settings()
    values = dict(max_flit_age_s=1e11, recent_flits_capacity=10**6, seen_capacity=100_000,
                  dedup_capacity=8, coengagement_capacity=10**6, popularity_half_life_s=365 * 86400.0,
                  feedback_window_s=86400.0)
    values.update(overrides)
    return s.replace(**values)


class FlitfeedMethod:
    """The production user-state update, index, ranker state and feed pipeline, driven in-process.

    ``index``: by default the exact in-memory backend
    (:class:`~flitfeed.index.memory.MemoryIndex`, same answers as the services'
    exact-search Qdrant Edge replica, ~20× faster per query); ``"edge"`` runs the
    embedded Qdrant Edge engine itself; or pass any open :class:`VectorIndex`.
    """

    def __init__(self, dataset: Dataset, vectors: np.ndarray, params: RankerParams, settings: Settings,
                 collaborative: bool = True, name: str = "flitfeed",
                 index: VectorIndex | Literal["edge"] | None = None, learned: bool = True) -> None:
        self.name = name
        self.settings = settings
        self.params = params
        self.taste = taste_params(settings.worker)
        self.item_ids = dataset.item_ids()
        self.position = {fid: i for i, fid in enumerate(self.item_ids)}
        t0 = float(dataset.timestamps[0]) - 1.0 if len(dataset) else 0.0
        self.points = {
            fid: IndexedFlit(flit_id=fid, author_id=AUTHOR_PREFIX + fid, created_at=t0, vector=vectors[i],
                             tags=dataset.items[i].genres)
            for i, fid in enumerate(self.item_ids)
        }
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if index is None:
            index = MemoryIndex(vectors.shape[1])
        elif index == "edge":
            from flitfeed.index.edge import EdgeIndex

            self._tmp = tempfile.TemporaryDirectory(prefix="flitfeed-eval-")
            index = EdgeIndex(Path(self._tmp.name) / "flits", vectors.shape[1])
        self.index: VectorIndex = index
        # The catalog is published before the replay: every flit is in the index and the recent store.
        self.index.upsert_many(list(self.points.values()))
        # The in-memory mirror the services' vector source searches while it mirrors the index (as the ranker).
        self.catalogue = VectorCatalogue(vectors.shape[1], max_points=max(50_000, len(self.item_ids)))
        self.catalogue.upsert_many(list(self.points.values()))
        # The service's core, sized to the catalog: every item fits (no eviction) and the co-engagement
        # model's dense matrix is no larger than needed. learned: the service's ranking model, learning from
        # each feed computed here as an impression, joined with the user's later events exactly as the ranker
        # joins them (ranker/feedback.py, join.py).
        self.core = build_ranker_core(settings.ranker, params, CoreSizes.for_catalog(settings.ranker, len(self.item_ids)),
                                      collaborative=collaborative, learned=learned)
        view = self.core.view(self.index, self.catalogue)
        self.recent, self.pipeline = view.recent, view.pipeline
        for p in self.points.values():
            self.recent.add_one(p.flit_id, p.author_id, p.created_at, p.tags, vector=p.vector)
        self.engagement, self.coengagement = self.core.engagement, self.core.coengagement
        self.model, self.affinity = self.core.model, self.core.affinity
        self.join = ImpressionJoin(window_s=settings.ranker.feedback_window_s)
        # With learning off (settings.ranker.ranker_learning, as in the services) the model ranks with its prior.
        self.learner = None if self.model is None or not settings.ranker.ranker_learning else ExampleLearner(self.model)
        self.profiles: dict[str, UserProfile] = {}
        self._impressions = 0
        self.stage_times = StageTimes()

    def close(self) -> None:
        self.index.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def recommend(self, user: str, now: float, k: int, seen: set[int]) -> list[int]:
        profile = self.profiles.get(user)
        start = time.perf_counter()
        state = None if profile is None else user_state(profile, trigger_id="eval", trigger_ts=now)
        self._impressions += 1
        query = feed_query(state, user, k, now, trigger_id=f"eval-{self._impressions}")
        self.stage_times.add("user_state", time.perf_counter() - start)
        result = self.pipeline.run(query)
        for (kind, name), seconds in result.timings.items():
            self.stage_times.add(f"{kind}:{name}", seconds)
        if self.learner is not None:
            self.join.add(impression_for(query, result.items, f"imp-{self._impressions}"))
        return [self.position[c.flit_id] for c in result.items]

    def learn(self, event: Event) -> None:
        fid = self.item_ids[event.item]
        profile = self.profiles.get(event.user)
        if profile is None:
            profile = self.profiles[event.user] = UserProfile(event.user)
        start = time.perf_counter()
        interaction = Interaction(event_id=event.event_id, user_id=event.user, flit_id=fid, kind=event.kind,
                                  ts=from_epoch(event.ts))
        # The worker's rule, with the lookup the index gives it.
        apply_interaction(interaction, profile, self.points.get, self.taste)
        self.stage_times.add("learn:user_update", time.perf_counter() - start)
        if self.learner is not None:
            start = time.perf_counter()
            self.join.learn_one(event.user, fid, event.kind, event.ts)
            self.learner.learn_many(self.join.expire(event.ts))
            self.stage_times.add("learn:model", time.perf_counter() - start)
        start = time.perf_counter()
        self.core.learn_interaction(interaction, self.recent)
        self.stage_times.add("learn:ranker_signals", time.perf_counter() - start)

