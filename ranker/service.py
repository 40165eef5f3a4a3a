"""The ranker service: a confluent-kafka consumer that publishes feeds.

Inputs (consumer group ``settings.ranker_group``, user-keyed, co-partitioned):
``user-states`` (a user's state changed → rebuild their feed) and
``feed-requests`` (someone asked → build it now). Broadcast inputs (every
partition, no group): ``flit-vectors`` into this process's index replica and
recent-flits list, and ``interactions`` into the engagement tracker (from
``popularity_window`` ago on start-up).

Restart rule: on partition assignment the user states of that partition are
re-read from the compacted ``user-states`` topic up to the group's committed
offset *without* publishing, so a restart neither loses a user's state nor
re-publishes feeds for updates that were already served. Offsets are committed
only after the feeds of a batch are delivered (at-least-once feeds; every feed
carries its ``trigger_id`` so consumers can drop a repeat).

Single-threaded: one loop polls the broadcast readers and the group consumer.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from flitfeed.index.base import VectorIndex
from flitfeed.index.factory import is_shared
from flitfeed.kafka.config import consumer_config, instance_headers, producer_config, session_config
from flitfeed.monitoring.metrics import Metrics
from flitfeed.ranker.engagement import EngagementTracker
from flitfeed.ranker.feeds import build_feed_pipeline
from flitfeed.ranker.params import RankerParams
from flitfeed.ranker.pipeline import FeedPipeline, PipelineResult
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.recent import RecentFlits
from flitfeed.settings import (TOPIC_DEAD_LETTERS, TOPIC_FEED_REQUESTS, TOPIC_FEEDS, TOPIC_INTERACTIONS,
                               TOPIC_USER_STATES, Settings)
from flitfeed.streams.dead_letter import dead_letter
from flitfeed.streams.events import (DecodeError, Feed, FeedItem, FlitVector, Interaction, Reason, UserState,
                                     check_user_key, decode_feed_request, to_epoch)
from flitfeed.streams.replicator import FlitVectorReplicator

log = logging.getLogger(__name__)


def feed_query(state: UserState | None, user_id: str, k: int, now: float) -> FeedQuery:
    """The pipeline's view of a user; an unknown user is a cold-start query."""
    if state is None:
        return FeedQuery(user_id=user_id, k=k, now=now)
    taste = None if state.taste is None else np.asarray(state.taste, dtype=np.float32)
    return FeedQuery(user_id=user_id, k=k, now=now, taste=taste, seen=frozenset(state.seen),
                     muted_authors=frozenset(state.muted_authors), positives=state.positives)


def make_feed(query: FeedQuery, result: PipelineResult, *, model_version: str, trigger_id: str,
              trigger_kind: str) -> Feed:
    return Feed(user_id=query.user_id,
                items=[FeedItem(flit_id=c.flit_id, author_id=c.author_id, score=round(float(c.score), 6),
                                reason=c.source) for c in result.items],
                generated_at=datetime.now(timezone.utc), model_version=model_version, trigger_id=trigger_id,
                trigger_kind=trigger_kind, cold_start=query.cold_start)


class RankerService:
    def __init__(self, settings: Settings, index: VectorIndex, offsets_path: Path | None, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.index = index
        self.params = RankerParams.from_settings(settings)
        self.engagement = EngagementTracker(half_life_s=settings.popularity_half_life_s,
                                            capacity=max(10 * settings.recent_flits_capacity, 10_000))
        self.recent = RecentFlits(capacity=settings.recent_flits_capacity)
        self.pipeline: FeedPipeline = build_feed_pipeline(index, self.engagement, self.recent, self.params)
        self.model_version = "unknown"
        #: user states by partition, so a revoked partition's users can be dropped.
        self.states: dict[int, dict[str, UserState]] = {}
        self._t = {name: settings.topic(name) for name in
                   (TOPIC_USER_STATES, TOPIC_FEED_REQUESTS, TOPIC_FEEDS, TOPIC_DEAD_LETTERS, TOPIC_INTERACTIONS)}
        self.producer = Producer(producer_config(settings))
        self.replicator = FlitVectorReplicator(settings, index, offsets_path, metrics, on_flit=self._on_flit,
                                               write_index=not is_shared(settings))
        self.interactions = self._interactions_reader()
        self.instance = settings.instance()
        self._headers = instance_headers(settings)
        # client.id = instance id: the group's member list (kafka-consumer-groups --describe, AdminClient)
        # then says which replica owns which partitions.
        self.consumer = Consumer(consumer_config(settings, group_id=settings.ranker_group,
                                                 **{"client.id": self.instance}, **session_config(settings)))
        self.consumer.subscribe([self._t[TOPIC_USER_STATES], self._t[TOPIC_FEED_REQUESTS]],
                                on_assign=self._on_assign, on_revoke=self._on_revoke)

    # --- broadcast inputs ---------------------------------------------------
    def _on_flit(self, record: FlitVector) -> None:
        f = record.flit
        self.recent.add_one(f.flit_id, f.author_id, to_epoch(f.created_at), tuple(f.tags), f.lang)
        self.model_version = record.model_version

    def _interactions_reader(self) -> Consumer:
        """All partitions of ``interactions`` from one popularity window back: popularity is global."""
        topic = self._t[TOPIC_INTERACTIONS]
        reader = Consumer(consumer_config(self.settings, group_id=f"{self.settings.ranker_group}-engagement-unused"))
        meta = reader.list_topics(topic, timeout=10)
        since_ms = int((time.time() - 4 * self.settings.popularity_half_life_s) * 1000)
        wanted = [TopicPartition(topic, p, since_ms) for p in sorted(meta.topics[topic].partitions)]
        starts = reader.offsets_for_times(wanted, timeout=10)
        reader.assign([TopicPartition(topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING)
                       for tp in starts])
        return reader

    def _poll_interactions(self) -> int:
        messages = self.interactions.consume(num_messages=1000, timeout=0)
        for m in messages:
            if m.error() is not None:
                continue
            try:
                event = Interaction.model_validate_json(m.value())
            except ValueError:
                continue  # the worker dead-letters invalid interactions; popularity just ignores them
            self.engagement.learn_one(event.flit_id, event.kind, to_epoch(event.ts))
        return len(messages)

    # --- group membership ---------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        states_topic = self._t[TOPIC_USER_STATES]
        mine = [tp for tp in partitions if tp.topic == states_topic]
        committed = {tp.partition: tp.offset for tp in consumer.committed(mine, timeout=10)} if mine else {}
        for tp in mine:
            self.states[tp.partition] = self._bootstrap_states(tp.partition, committed.get(tp.partition, -1))
        log.info("partitions assigned", extra={"partitions": len(partitions), "users": self.user_count()})
        consumer.assign(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            if tp.topic == self._t[TOPIC_USER_STATES]:
                self.states.pop(tp.partition, None)

    def _bootstrap_states(self, partition: int, until: int) -> dict[str, UserState]:
        """Latest state per user in [0, until) of a user-states partition, without publishing feeds."""
        states: dict[str, UserState] = {}
        if until <= 0:
            return states
        reader = Consumer(consumer_config(self.settings, group_id=f"{self.settings.ranker_group}-bootstrap-unused"))
        try:
            reader.assign([TopicPartition(self._t[TOPIC_USER_STATES], partition, OFFSET_BEGINNING)])
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                batch = reader.consume(num_messages=1000, timeout=1.0)
                for m in batch:
                    if m.error() is not None or m.offset() >= until:
                        continue
                    try:
                        state = UserState.model_validate_json(m.value())
                    except ValueError:
                        continue
                    states[state.user_id] = state
                position = reader.position([TopicPartition(self._t[TOPIC_USER_STATES], partition)])[0].offset
                if position >= until:
                    return states
            raise TimeoutError(f"user-states partition {partition} not re-read up to {until} within 120 s")
        finally:
            reader.close()

    def user_count(self) -> int:
        return sum(len(users) for users in self.states.values())

    # --- the loop -------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        log.info("ranker running", extra={"group": self.settings.ranker_group})
        try:
            while not stop.is_set():
                self.step(timeout=0.02)
        finally:
            self.close()

    def step(self, timeout: float = 0.02) -> int:
        """One iteration: refresh broadcast inputs, then handle a batch of user-states and requests."""
        self.replicator.poll_once(timeout=0)
        self._poll_interactions()
        messages = self.consumer.consume(num_messages=200, timeout=timeout)
        if any(m.error() is None and m.topic() == self._t[TOPIC_USER_STATES] for m in messages):
            if not self.replicator.catch_up():
                log.warning("flit-vectors replica still behind; building feeds from what it has")
        published = 0
        for m in messages:
            err = m.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error", extra={"error": str(err)})
                continue
            self.metrics.consumed.labels(service=self.metrics.service, topic=m.topic()).inc()
            try:
                if m.topic() == self._t[TOPIC_USER_STATES]:
                    published += self._on_user_state(m)
                else:
                    published += self._on_feed_request(m)
            except Exception as exc:  # one bad message must not stop the ranker
                log.exception("message failed", extra={"topic": m.topic(), "offset": m.offset()})
                self._dead_letter(m, Reason.PROCESSING_ERROR, repr(exc))
        if messages:
            with self.metrics.time_stage("publish"):
                undelivered = self.producer.flush(10)
            if undelivered:
                # Not committing means these inputs are consumed again after a restart: no feed is lost.
                log.error("feeds not delivered; offsets not committed", extra={"undelivered": undelivered})
            else:
                self.consumer.commit(asynchronous=True)
        self.metrics.users.labels(service=self.metrics.service).set(self.user_count())
        return published

    def _dead_letter(self, m, reason: Reason, detail: str) -> None:  # noqa: ANN001 - confluent Message
        key, value = dead_letter(self.metrics, topic=m.topic(), partition=m.partition(), offset=m.offset(),
                                 key=m.key(), value=m.value(), reason=reason, detail=detail)
        self._produce(self._t[TOPIC_DEAD_LETTERS], key, value)

    def _produce(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.producer.produce(topic, key=key, value=value, headers=self._headers)
        self.producer.poll(0)
        self.metrics.produced.labels(service=self.metrics.service, topic=topic).inc()

    def _on_user_state(self, m) -> int:  # noqa: ANN001
        try:
            state = UserState.model_validate_json(m.value())
            check_user_key(m.key(), state.user_id)
        except (ValueError, DecodeError) as exc:
            reason = exc.reason if isinstance(exc, DecodeError) else Reason.SCHEMA_VIOLATION
            self._dead_letter(m, reason, str(exc)[:500])
            return 0
        users = self.states.setdefault(m.partition(), {})
        previous = users.get(state.user_id)
        users[state.user_id] = state
        if previous is not None and previous.trigger_id == state.trigger_id:
            return 0  # the worker re-published after a crash; this feed was already served
        self._publish_feed(state.user_id, state, self.settings.feed_k, state.trigger_id, "interaction",
                           state.trigger_ts)
        return 1

    def _on_feed_request(self, m) -> int:  # noqa: ANN001
        try:
            request = decode_feed_request(m.value(), max_k=self.settings.max_feed_k)
            check_user_key(m.key(), request.user_id)
        except DecodeError as e:
            self._dead_letter(m, e.reason, e.detail)
            return 0
        state = self.states.get(m.partition(), {}).get(request.user_id)
        _, ts_ms = m.timestamp()
        self._publish_feed(request.user_id, state, request.k, request.request_id, "request",
                           ts_ms / 1000.0 if ts_ms > 0 else time.time())
        return 1

    def _publish_feed(self, user_id: str, state: UserState | None, k: int, trigger_id: str, trigger_kind: str,
                      trigger_ts: float) -> None:
        query = feed_query(state, user_id, k, time.time())
        result = self.pipeline.run(query)
        self._record(result)
        feed = make_feed(query, result, model_version=self.model_version, trigger_id=trigger_id,
                         trigger_kind=trigger_kind)
        self._produce(self._t[TOPIC_FEEDS], user_id.encode(), feed.to_bytes())
        self.metrics.feeds.labels(trigger=trigger_kind, cold_start=str(query.cold_start).lower()).inc()
        self.metrics.feed_items.observe(len(feed.items))
        self.metrics.feed_latency.labels(trigger=trigger_kind).observe(max(0.0, time.time() - trigger_ts))

    def _record(self, result: PipelineResult) -> None:
        m = self.metrics
        sources = 0.0
        rest = 0.0
        for (kind, component), seconds in result.timings.items():
            m.component_seconds.labels(kind=kind, component=component).observe(seconds)
            if kind == "source":
                sources += seconds
            else:
                rest += seconds
        m.stage_seconds.labels(service=m.service, stage="candidate_query").observe(sources)
        m.stage_seconds.labels(service=m.service, stage="rank").observe(rest)
        for name, n in result.removed.items():
            m.filter_removed.labels(filter=name).inc(n)

    def close(self) -> None:
        for closer in (self.consumer.close, self.interactions.close, self.replicator.close,
                       lambda: self.producer.flush(10)):
            try:
                closer()
            except Exception:  # closing is best effort; the error is logged
                log.exception("error while closing")
