"""What each service computes beside its work: drift, quality proxies, lag — and how it is exported.

The services call these with plain values (vectors, feeds, interactions); the
statistics live in :mod:`flitfeed.monitoring.drift` and
:mod:`flitfeed.monitoring.quality`, the Prometheus metrics in
:mod:`flitfeed.monitoring.metrics`. ``export()`` runs on the services' timers,
not per event, because the MMD costs a few milliseconds.

>>> import numpy as np
>>> from prometheus_client import CollectorRegistry
>>> from flitfeed.settings import MonitoringConfig
>>> from flitfeed.monitoring.metrics import Metrics
>>> m = Metrics("worker", CollectorRegistry())
>>> w = WorkerMonitors(MonitoringConfig(drift_reference_size=3, drift_window_size=3), m, dim=2)
>>> w.learn_flits(np.array([[1.0, 0.0]] * 6)); w.export()
>>> m.value("flitfeed_drift_score", service="worker", signal="embedding_centroid")
0.0
>>> m.value("flitfeed_drift_threshold", service="worker", signal="embedding_centroid")
0.05
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from flitfeed.kafka.config import consumer_config
from flitfeed.monitoring.drift import DriftThresholds, EmbeddingDrift, ScalarDrift, UserVectorDrift
from flitfeed.monitoring.lag import LagReporter
from flitfeed.monitoring.metrics import Metrics
from flitfeed.monitoring.quality import FeedQuality, diversity
from flitfeed.settings import KafkaConfig, MonitoringConfig

__all__ = ["RankerMonitors", "WorkerMonitors", "drift_thresholds", "start_lag_reporter"]


def drift_thresholds(cfg: MonitoringConfig) -> DriftThresholds:
    return DriftThresholds(
        embedding_centroid=cfg.drift_threshold_embedding_centroid,
        embedding_mmd=cfg.drift_threshold_embedding_mmd,
        embedding_psi=cfg.drift_threshold_embedding_psi,
        user_vector=cfg.drift_threshold_user_vector,
        feed_score_psi=cfg.drift_threshold_feed_score_psi,
    )


def start_lag_reporter(kafka: KafkaConfig, cfg: MonitoringConfig, metrics: Metrics, group: str,
                       topics: Sequence[str]) -> LagReporter:
    """Report ``group``'s lag on ``topics`` (real names) into ``flitfeed_consumer_lag_messages``."""

    def report(topic: str, partition: int, lag: int) -> None:
        metrics.lag.labels(service=metrics.service, topic=topic, partition=str(partition)).set(lag)

    return LagReporter(consumer_config(kafka, group_id=group), topics, report,
                       interval_s=cfg.monitoring_interval_s).start()


class WorkerMonitors:
    """Embedding drift of new flits and user-vector drift, in one worker process."""

    def __init__(self, cfg: MonitoringConfig, metrics: Metrics, dim: int) -> None:
        self.metrics = metrics
        self.thresholds = drift_thresholds(cfg)
        self.embedding = EmbeddingDrift(dim, cfg.drift_reference_size, cfg.drift_window_size,
                                        projections=cfg.drift_projections, bins=cfg.drift_bins)
        self.users = UserVectorDrift(cfg.drift_reference_size, cfg.drift_window_size)
        self.dim = dim

    def learn_flits(self, vectors: np.ndarray) -> None:
        # Vectors of another space (a batch embedded just before a version switch) are not this space's
        # drift: left out, never an error that would cost the flits they came with.
        if len(vectors) and vectors.shape[-1] == self.dim:
            self.embedding.learn_many(vectors)

    def learn_taste(self, before: np.ndarray | None, after: np.ndarray | None) -> None:
        if any(v is not None and v.shape[-1] != self.dim for v in (before, after)):
            return  # a move across a version switch is not a move within one space
        move = self.users.learn_one(before, after)
        if move is not None:
            self.metrics.user_movement.labels(service=self.metrics.service).inc(move)
            self.metrics.user_moves.labels(service=self.metrics.service).inc()

    def export(self) -> None:
        m, t, e = self.metrics, self.thresholds, self.embedding
        scores = e.scores()
        for signal in ("embedding_centroid", "embedding_mmd", "embedding_psi"):
            m.set_drift(signal, scores.get(signal), getattr(t, signal))
            m.set_drift_windows(signal, (e.n_reference, e.reference_size), (e.n_window, e.window_size))
        m.set_drift("user_vector", self.users.score(), t.user_vector)


class RankerMonitors:
    """Score drift and the online quality proxies, in one ranker process."""

    def __init__(self, cfg: MonitoringConfig, metrics: Metrics) -> None:
        self.metrics = metrics
        self.thresholds = drift_thresholds(cfg)
        self.scores = ScalarDrift(cfg.drift_reference_size, cfg.drift_window_size, cfg.drift_bins)
        self.quality = FeedQuality(window_s=cfg.quality_window_s)

    def learn_feed(self, user_id: str, items: Sequence[tuple[str, str]], similarities: Sequence[float],
                   personalised: bool, now: float) -> None:
        """A published feed: ``(flit_id, author_id)`` items and their taste similarities."""
        m = self.metrics
        m.items_served.inc(len(items))
        m.diversity.observe(diversity(items))
        self.quality.learn_feed(user_id, items, now)
        if personalised and similarities:
            top = float(max(similarities))
            m.top_similarity.observe(top)
            self.scores.learn_one(top)

    def learn_interaction(self, user_id: str, flit_id: str, kind: str, ts: float) -> None:
        feedback = self.quality.learn_interaction(user_id, flit_id, kind, ts)
        if feedback is not None:
            self.metrics.feedback.labels(feedback=feedback).inc()

    def export(self, catalog_size: int) -> None:
        self.metrics.coverage.set(self.quality.coverage(catalog_size))
        self.metrics.set_drift("feed_score_psi", self.scores.score(), self.thresholds.feed_score_psi)
        s = self.scores
        self.metrics.set_drift_windows("feed_score_psi",
                                       (s.n_reference, s.reference_size), (s.n_window, s.window_size))
