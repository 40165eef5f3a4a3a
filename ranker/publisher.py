"""The side effects of a built feed, as a stage of their own: publish, record, measure, monitor.

The feed pipeline (:mod:`.pipeline`) only computes. What happens to its result is here, in one place:
the feed is produced to ``feeds``, recorded as an impression for the feedback loop, counted and timed
(metrics), and shown to the quality and drift monitors. The service's loop calls :meth:`publish_all` once
per batch; everything it needs is injected, so it is tested with fakes.

Every feed of a batch leaves before the bookkeeping of any: a feed's Kafka timestamp is when it left, and
otherwise each feed would also wait for the impressions, metrics and monitors of the feeds before it (0.5–0.85
ms a feed: BENCHMARKS.md, session 21).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Protocol, Sequence

from flitfeed.monitoring.metrics import Metrics
from flitfeed.monitoring.monitors import RankerMonitors
from flitfeed.ranker.batching import FeedJob
from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.pipeline import PipelineResult
from flitfeed.ranker.query import FeedQuery
from flitfeed.streams.events import Feed


log = logging.getLogger(__name__)


class ImpressionRecorder(Protocol):
    def record(self, query: FeedQuery, items: Sequence[Candidate], partition: int, impression_id: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Built:
    """A feed the pipeline built, with what asked for it."""

    job: FeedJob
    query: FeedQuery
    result: PipelineResult


def make_feed(query: FeedQuery, result: PipelineResult, *, model_version: str, trigger_id: str,
              trigger_kind: str, impression_id: str | None = None, covers: Sequence[str] = ()) -> Feed:
    """The ``feeds`` record of a pipeline result (``covers``: every trigger it answers; default just ``trigger_id``).

    Validated from plain values in one call, as :func:`~flitfeed.ranker.feedback.impression_for` does: a
    constructor call per item runs Python per item (a ten-item feed: 22 against 15 us).
    """
    return Feed.model_validate({
        "user_id": query.user_id,
        "items": [{"flit_id": c.flit_id, "author_id": c.author_id, "score": round(float(c.score), 6),
                   "reason": c.source} for c in result.items],
        "generated_at": datetime.now(timezone.utc), "model_version": model_version, "trigger_id": trigger_id,
        "trigger_kind": trigger_kind, "cold_start": query.cold_start, "impression_id": impression_id,
        "covers": list(covers) or [trigger_id]})


class FeedPublisher:
    """Publishes built feeds and does everything that follows from one.

    :param produce: ``(topic, key, value)`` → the service's producer (counted there).
    :param feeds_topic: the full name of the ``feeds`` topic.
    :param model_version: the embedding model the feeds are ranked with, asked per feed (it changes when
        the flit vectors announce another one).
    """

    def __init__(self, metrics: Metrics, monitors: RankerMonitors, impressions: ImpressionRecorder,
                 produce: Callable[[str, bytes | None, bytes], None], feeds_topic: str,
                 model_version: Callable[[], str]) -> None:
        self.metrics = metrics
        self.monitors = monitors
        self.impressions = impressions
        self.produce = produce
        self.feeds_topic = feeds_topic
        self.model_version = model_version

    def publish_all(self, built: Sequence[Built]) -> list[tuple[FeedJob, Exception]]:
        """Produce every feed of a batch, then do what follows from each; returns the jobs whose feed could not
        be produced (the caller dead-letters their inputs).

        A feed that left is answered: if its bookkeeping fails (an impression not recorded, a monitor's error),
        that is logged and the next feed's goes on; nothing is dead-lettered for it.
        """
        failed: list[tuple[FeedJob, Exception]] = []
        sent: list[tuple[Built, Feed, float]] = []
        for b in built:
            try:
                sent.append((b, self.send(b), time.time()))
            except Exception as exc:
                log.exception("feed failed", extra={"user_id": b.job.user_id, "trigger_id": b.job.trigger_id})
                failed.append((b.job, exc))
        for b, feed, sent_at in sent:
            try:
                self.follow_up(b, feed, sent_at)
            except Exception:
                log.exception("a published feed's bookkeeping failed", extra={"user_id": b.job.user_id,
                                                                              "trigger_id": b.job.trigger_id})
        return failed

    def send(self, b: Built) -> Feed:
        """Produce the feed (its impression id made here, so that the feed can leave before the impression)."""
        feed = make_feed(b.query, b.result, model_version=self.model_version(), trigger_id=b.job.trigger_id,
                         trigger_kind=b.job.trigger_kind, impression_id=uuid.uuid4().hex, covers=b.job.covers)
        self.produce(self.feeds_topic, b.job.user_id.encode(), feed.to_bytes())
        return feed

    def follow_up(self, b: Built, feed: Feed, sent_at: float) -> None:
        """Everything that follows from a feed that left at ``sent_at``: impression, metrics, monitors."""
        job, query, result = b.job, b.query, b.result
        assert feed.impression_id is not None
        self.impressions.record(query, result.items, job.partition, feed.impression_id)
        self._record(result)
        m = self.metrics
        m.child(m.feeds, job.trigger_kind, str(query.cold_start).lower()).inc()
        m.feed_items.observe(len(feed.items))
        latency = m.child(m.feed_latency, job.trigger_kind)
        for ts in job.covered_ts:  # every covered trigger waited until its feed left
            latency.observe(max(0.0, sent_at - ts))
        if len(job.covers) > 1:
            m.coalesced.inc(len(job.covers) - 1)
        self.monitors.learn_feed(job.user_id, [(c.flit_id, c.author_id) for c in result.items],
                                 [c.similarity for c in result.items], personalised=not query.cold_start,
                                 now=sent_at)

    def _record(self, result: PipelineResult) -> None:
        m = self.metrics
        sources = 0.0
        rest = 0.0
        for (kind, component), seconds in result.timings.items():
            m.child(m.component_seconds, kind, component).observe(seconds)
            if kind == "source":
                sources += seconds
            else:
                rest += seconds
        m.child(m.stage_seconds, m.service, "candidate_query").observe(sources)
        m.child(m.stage_seconds, m.service, "rank").observe(rest)
        for name, n in result.removed.items():
            m.child(m.filter_removed, name).inc(n)
