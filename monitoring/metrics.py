"""Every Prometheus metric flitfeed exports, defined once.

A service builds one :class:`Metrics` (on its own registry, never the global
one, so tests can build as many as they like) and serves it with
:meth:`Metrics.serve`. Labels are bounded: service, topic, stage, reason,
component — never user or flit ids.

>>> from prometheus_client import CollectorRegistry
>>> m = Metrics("worker", CollectorRegistry())
>>> m.consumed.labels(service="worker", topic="flits").inc()
>>> m.value("flitfeed_events_consumed_total", service="worker", topic="flits")
1.0
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Iterator

from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector

from flitfeed.monitoring.server import Health, MetricsServer

#: 1 ms … 10 s, roughly ×2 per bucket: resolves both a 3 ms index query and a 5 s catch-up.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
#: Cosine similarities and ratios in [0, 1].
UNIT_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


class Metrics:
    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.service = service
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.consumed = Counter("flitfeed_events_consumed_total", "Messages consumed, by topic.",
                                ["service", "topic"], registry=r)
        self.produced = Counter("flitfeed_events_produced_total", "Messages produced, by topic.",
                                ["service", "topic"], registry=r)
        self.processed = Counter("flitfeed_events_processed_total",
                                 "Input events applied successfully, by topic.", ["service", "topic"], registry=r)
        self.dead_lettered = Counter("flitfeed_events_dead_lettered_total",
                                     "Messages sent to the dead-letter topic, by source topic and reason.",
                                     ["service", "topic", "reason"], registry=r)
        self.duplicates = Counter("flitfeed_events_duplicate_total",
                                  "Events skipped because their id was already applied.", ["service", "topic"],
                                  registry=r)
        self.parked = Counter("flitfeed_events_parked_total",
                              "Interactions parked because their flit was not yet in the index.", ["service"],
                              registry=r)
        self.retried = Counter("flitfeed_events_retried_total",
                               "Parked interactions taken up again, by outcome (applied, reparked, expired).",
                               ["service", "outcome"], registry=r)
        self.refetched = Counter("flitfeed_skipped_offsets_total",
                                 "Offsets Faust skipped without processing during a rebalance, by outcome: "
                                 "refetch (fetched again), no_message (a transaction marker), stall_refetch "
                                 "(a partition behind its log end without progress fetched again) or "
                                 "changelog_refetch (a stalled table recovery's changelog fetched again).",
                                 ["service", "topic", "outcome"], registry=r)
        self.stage_seconds = Histogram("flitfeed_stage_duration_seconds",
                                       "Time spent in one processing stage (decode, embed, index_write, "
                                       "user_update, settle, candidate_query, rank, publish).",
                                       ["service", "stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.component_seconds = Histogram("flitfeed_ranker_component_duration_seconds",
                                           "Time spent in one ranker pipeline component.",
                                           ["kind", "component"], buckets=LATENCY_BUCKETS, registry=r)
        self.filter_removed = Counter("flitfeed_ranker_filter_removed_total",
                                      "Candidates removed by each ranker filter.", ["filter"], registry=r)
        self.feed_latency = Histogram("flitfeed_feed_latency_seconds",
                                      "From the triggering message entering Kafka to its feed being published, "
                                      "by trigger (interaction, request).",
                                      ["trigger"], buckets=LATENCY_BUCKETS, registry=r)
        self.freshness = Histogram("flitfeed_flit_freshness_seconds",
                                   "From a flit's created_at to it being searchable in this process's index.",
                                   ["service"], buckets=LATENCY_BUCKETS, registry=r)
        self.feeds = Counter("flitfeed_feeds_published_total", "Feeds published, by trigger and cold start.",
                             ["trigger", "cold_start"], registry=r)
        self.feed_items = Histogram("flitfeed_feed_items", "Items per published feed.",
                                    buckets=(0, 1, 2, 5, 10, 20, 50, 100), registry=r)
        self.ranker_batch = Histogram("flitfeed_ranker_batch_feeds", "Feeds built per ranker batch (one poll).",
                                      buckets=BATCH_BUCKETS, registry=r)
        self.coalesced = Counter("flitfeed_ranker_coalesced_triggers_total",
                                 "User-state changes answered by a feed built for a newer change of the same "
                                 "user in the same batch (listed in the feed's covers).", registry=r)
        self.batch_size = Histogram("flitfeed_embed_batch_size", "Flits embedded per batch.",
                                    buckets=BATCH_BUCKETS, registry=r)
        self.interaction_batch = Histogram("flitfeed_interaction_batch_size",
                                           "Interactions applied per batch by the worker (valid ones).",
                                           buckets=BATCH_BUCKETS, registry=r)
        self.index_retries = Counter("flitfeed_index_retries_total",
                                     "Calls to a Qdrant server retried because it did not answer, by operation "
                                     "(upsert, search, retrieve, delete, count).", ["service", "operation"],
                                     registry=r)
        self.vectors_skipped = Counter("flitfeed_index_vectors_skipped_total",
                                       "Vectors kept apart from the version this process serves, by reason "
                                       "(other_version: a flit-vectors record kept out of its index; "
                                       "taste_other_version: a user taste dropped, served as a cold start).",
                                       ["service", "reason"], registry=r)
        self.reembed_flits = Counter("flitfeed_reembed_flits_total",
                                     "Flits of the log re-embedded into a new embedding version, by outcome "
                                     "(embedded; skipped: not a valid flit).", ["version", "outcome"], registry=r)
        self.reembed_progress = Gauge("flitfeed_reembed_progress_ratio",
                                      "Share of the flits log a re-embedding has read (1 = done).", ["version"],
                                      registry=r)
        self.index_points = Gauge("flitfeed_index_points", "Points in this process's vector index.",
                                  ["service"], registry=r)
        self.users = Gauge("flitfeed_users_in_state", "Users whose state this process holds.",
                           ["service"], registry=r)
        # The worker's and the ranker's on-disk user state (streams/state_store.py, ranker/user_store.py;
        # README "User state" and "The ranker's users").
        self.state_rebuilds = Counter("flitfeed_state_rebuilds_total",
                                      "User-state partitions rebuilt from their topic (the worker's changelog, the "
                                      "ranker's user-states) because their local database could not be used, by "
                                      "reason.", ["service", "reason"], registry=r)
        self.state_restored = Counter("flitfeed_state_restored_records_total",
                                      "Records of the topic applied to the local user state on recovery "
                                      "(a restart with local state reads only the tail).", ["service"], registry=r)
        self.state_write_errors = Counter("flitfeed_state_write_errors_total",
                                          "User-state writes (a profile, a ranker's user state, a database opened for "
                                          "writing) that failed and were retried, by reason (disk_full).",
                                          ["service", "reason"], registry=r)
        self.model = Info("flitfeed_model", "The embedding model in use.", registry=r)
        self.version_switches = Counter("flitfeed_version_switches_total",
                                        "Switches of the embedding version served or embedded live (flitfeed "
                                        "versions switch / rollback), by service.", ["service"], registry=r)

        # --- health of the process and its consumers --------------------------------------------------
        ProcessCollector(registry=r)  # process_resident_memory_bytes, process_cpu_seconds_total, ...
        self.lag = Gauge("flitfeed_consumer_lag_messages",
                         "Messages in a partition not yet committed by this service's consumer group.",
                         ["service", "topic", "partition"], registry=r)

        # --- drift (monitoring/drift.py) ----------------------------------------------------------------
        self.drift = Gauge("flitfeed_drift_score",
                           "Drift statistic of one signal (embedding_centroid, embedding_mmd, embedding_psi, "
                           "user_vector, feed_score_psi): current window vs reference window.",
                           ["service", "signal"], registry=r)
        self.drift_threshold = Gauge("flitfeed_drift_threshold", "Alert threshold of each drift signal.",
                                     ["service", "signal"], registry=r)
        self.drift_window = Gauge("flitfeed_drift_window_samples",
                                  "Samples in a drift signal's reference and current windows (filled / size).",
                                  ["service", "signal", "window", "of"], registry=r)
        self.user_movement = Counter("flitfeed_user_vector_movement_total",
                                     "Sum of cosine distances users' tastes moved per update (rate = movement "
                                     "per second).", ["service"], registry=r)
        self.user_moves = Counter("flitfeed_user_vector_updates_total",
                                  "Taste updates that had a previous direction (the movement's denominator).",
                                  ["service"], registry=r)

        # --- online quality proxies (monitoring/quality.py) ---------------------------------------------
        self.top_similarity = Histogram("flitfeed_feed_top_similarity",
                                        "Highest taste similarity among a personalised feed's items.",
                                        buckets=UNIT_BUCKETS, registry=r)
        self.items_served = Counter("flitfeed_feed_items_served_total", "Items published in feeds.",
                                    registry=r)
        self.feedback = Counter("flitfeed_feed_feedback_total",
                                "Served items that received feedback from their user within the quality window, "
                                "by feedback (positive: like/reflit/reply; negative: hide/report).",
                                ["feedback"], registry=r)
        self.coverage = Gauge("flitfeed_feed_catalog_coverage_ratio",
                              "Share of the recent catalog shown in the latest feeds.", registry=r)
        self.diversity = Histogram("flitfeed_feed_author_diversity_ratio",
                                   "Distinct authors / items of each published feed.", buckets=UNIT_BUCKETS,
                                   registry=r)

        # --- the learned ranking model (ranker/model.py, feedback.py, join.py) -------------------------------
        self.impressions = Counter("flitfeed_ranker_impressions_total",
                                   "Feed items recorded as impressions, by how they were placed (ranked, explore).",
                                   ["placement"], registry=r)
        self.examples = Counter("flitfeed_ranker_examples_total",
                                "Labelled examples: emitted by this ranker's join (by label: engage, dwell, "
                                "negative, ignored, superseded) and learned.", ["stage", "label"], registry=r)
        self.examples_dropped = Counter("flitfeed_ranker_examples_dropped_total",
                                        "Examples never learned, by reason (malformed, duplicate, feature_set, "
                                        "bad_features, unknown_action).", ["reason"], registry=r)
        self.model_examples = Gauge("flitfeed_ranker_model_examples",
                                    "Examples the ranking model has learned in all (from its snapshot on).",
                                    registry=r)
        self.model_logloss = Gauge("flitfeed_ranker_model_logloss",
                                   "Running log loss of the ranking model per action (on each example before "
                                   "learning it).", ["action"], registry=r)
        self.model_calibration = Gauge("flitfeed_ranker_model_calibration_ratio",
                                       "Running mean predicted probability / observed rate per action (1 = calibrated).",
                                       ["action"], registry=r)
        self.model_fallbacks = Counter("flitfeed_ranker_model_fallback_total",
                                       "Feeds scored by the prior because the model gave non-finite scores.",
                                       registry=r)
        self.model_snapshots = Counter("flitfeed_ranker_model_snapshots_total",
                                       "Model snapshots: written, loaded, missing (started from the prior), "
                                       "corrupt (started from the prior).", ["outcome"], registry=r)
        # Known label values start at 0, so a dashboard shows "none" rather than "no data".
        for reason in ("malformed", "duplicate", "feature_set", "bad_features", "unknown_action", "unreadable_log"):
            self.examples_dropped.labels(reason=reason)
        for outcome in ("written", "loaded", "missing", "corrupt"):
            self.model_snapshots.labels(outcome=outcome)
        # Known label sets start at 0, so a dashboard shows "none" rather than "no data".
        for operation in ("upsert", "search", "retrieve", "delete", "count"):
            self.index_retries.labels(service=service, operation=operation)
        for reason in ("other_version", "taste_other_version"):
            self.vectors_skipped.labels(service=service, reason=reason)
        self.version_switches.labels(service=service)
        self.exploration_share = Gauge("flitfeed_ranker_exploration_share_ratio",
                                       "Share of served feed items placed by exploration (since start).",
                                       registry=r)
        #: Set by :meth:`serve`; the service's loop calls ``health.beat()`` and clears readiness conditions.
        self.health = Health()
        self.server: MetricsServer | None = None
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, kept: ``labels()`` validates and takes a lock on every call, which the
        ranker paid ~13 times a feed for its timings and once per produced record (BENCHMARKS.md "Session 13").

        >>> m = Metrics("ranker")
        >>> m.child(m.produced, "ranker", "t-feeds").inc(2)
        >>> m.child(m.produced, "ranker", "t-feeds") is m.produced.labels("ranker", "t-feeds"), m.value(
        ...     "flitfeed_events_produced_total", service="ranker", topic="t-feeds")
        (True, 2.0)
        """
        key = (id(metric), values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    @contextlib.contextmanager
    def time_stage(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.stage_seconds.labels(service=self.service, stage=stage).observe(time.perf_counter() - start)

    def serve(self, host: str, port: int, targets_dir: Path | None = None,
              liveness_timeout_s: float = 30.0) -> MetricsServer | None:
        """Serve /metrics, /livez and /readyz (port 0 = do not serve); announce the address in ``targets_dir``."""
        self.health.liveness_timeout_s = liveness_timeout_s
        if not port:
            return None
        self.server = MetricsServer(self.service, self.registry, self.health, targets_dir).start(host, port)
        return self.server

    def set_drift(self, signal: str, score: float | None, threshold: float) -> None:
        """Export a drift score (nothing until its windows are full) and its threshold."""
        self.drift_threshold.labels(service=self.service, signal=signal).set(threshold)
        if score is not None:
            self.drift.labels(service=self.service, signal=signal).set(score)

    def set_drift_windows(self, signal: str, reference: tuple[int, int], current: tuple[int, int]) -> None:
        """Window fill as ``(filled, size)`` pairs."""
        for window, (filled, size) in (("reference", reference), ("current", current)):
            self.drift_window.labels(service=self.service, signal=signal, window=window, of="filled").set(filled)
            self.drift_window.labels(service=self.service, signal=signal, window=window, of="size").set(size)

    def value(self, name: str, **labels: str) -> float:
        """Current value of a sample (tests and the demo read metrics through this)."""
        v = self.registry.get_sample_value(name, labels)
        return 0.0 if v is None else v
