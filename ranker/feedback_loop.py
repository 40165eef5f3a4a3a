"""The ranker's feedback loop on Kafka: impressions out, examples joined and learned, the model shared.

A thin adapter around the plain parts (:mod:`.join`, :mod:`.feedback`, :mod:`.model`):

* every served feed is produced to ``impressions`` (key: user id, so co-partitioned with
  ``interactions``) and held by this ranker's :class:`~flitfeed.ranker.join.ImpressionJoin`;
* interactions (the ranker already reads them all) complete examples; windows that close turn
  ignored items into negatives; every example is produced to ``examples`` (key: user id);
* every ranker replica reads *all* of ``examples`` and learns each once (positions per partition,
  plus example ids), so all replicas hold the same model; a replica publishes the model with the
  positions it has learned up to on the compacted ``ranker-model`` topic every
  ``model_snapshot_interval_s``, and a starting replica loads the latest snapshot and reads
  ``examples`` on from its positions;
* when the ranker is assigned a partition, it rebuilds that partition's join from the log: the
  impressions of the last window, minus those already labelled in ``examples``, then the
  interactions of the window (so a restart loses no label and emits none twice).

A corrupt or missing snapshot means starting from the prior (logged, counted in
``flitfeed_ranker_model_snapshots_total``).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Iterator, Sequence

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition

from flitfeed.kafka.clients import KafkaClients, clients_for
from flitfeed.kafka.reading import read_partition
from flitfeed.monitoring.metrics import Metrics
from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.feedback import ExampleLearner, impression_for
from flitfeed.ranker.join import ImpressionJoin
from flitfeed.ranker.model import ActionModel
from flitfeed.ranker.query import FeedQuery
from flitfeed.settings import Settings
from flitfeed.streams.topics import TOPIC_EXAMPLES, TOPIC_IMPRESSIONS, TOPIC_INTERACTIONS, TOPIC_RANKER_MODEL
from flitfeed.startup import kafka_call
from flitfeed.streams.events import (DecodeError, Example, Impression, Interaction, ModelSnapshot, decode_internal,
                                     to_epoch)
from flitfeed.streams.vocabulary import ACTIONS

log = logging.getLogger(__name__)

MODEL_KEY = b"model"
#: Room for clock differences between the services when the join is rebuilt from the log.
REBUILD_SLACK_S = 30.0


class FeedbackLoop:
    def __init__(self, settings: Settings, metrics: Metrics, producer: Producer, model: ActionModel,
                 headers: list[tuple[str, bytes]] | None = None, clients: KafkaClients | None = None) -> None:
        """``clients`` makes the readers of the logs it learns from and rebuilds from (default: the confluent
        clients of ``settings.kafka``); ``producer`` is the ranker's, so its records count towards its batches."""
        self.settings = settings
        self._clients = clients_for(settings.kafka, clients)
        self.metrics = metrics
        self.producer = producer
        self.model = model
        self.learner = ExampleLearner(model)
        self.join = ImpressionJoin(window_s=settings.ranker.feedback_window_s)
        self._headers = headers or []
        self._t = {name: settings.kafka.topic(name) for name in
                   (TOPIC_IMPRESSIONS, TOPIC_EXAMPLES, TOPIC_RANKER_MODEL, TOPIC_INTERACTIONS)}
        #: user → partition, for the users whose impressions this ranker holds (to drop them on revoke).
        self._partition_of: dict[str, int] = {}
        self._positions: dict[int, int] = {}
        self._served = 0
        self._explored = 0
        self._next_snapshot = time.monotonic() + settings.ranker.model_snapshot_interval_s
        self._snapshot_examples = -1
        self._partition_cache: dict[str, set[int]] = {}
        self.examples_reader: Consumer | None = None
        if settings.ranker.ranker_learning:
            self._load_snapshot()
            self.examples_reader = self._examples_reader()

    # --- impressions ---------------------------------------------------------------------------
    def record(self, query: FeedQuery, items: Sequence[Candidate], partition: int, impression_id: str) -> None:
        """Produce and hold the impression of a feed just served (``impression_id``: the one its feed carries)."""
        impression = impression_for(query, items, impression_id)
        self._produce(TOPIC_IMPRESSIONS, query.user_id.encode(), impression.to_bytes())
        self.join.add(impression)
        self._partition_of[query.user_id] = partition
        explored = sum(1 for i in impression.items if i.explore)
        self.metrics.impressions.labels(placement="explore").inc(explored)
        self.metrics.impressions.labels(placement="ranked").inc(len(impression.items) - explored)
        self._served += len(impression.items)
        self._explored += explored
        if self._served:
            self.metrics.exploration_share.set(self._explored / self._served)

    # --- the join ------------------------------------------------------------------------------
    def on_interaction(self, event: Interaction) -> None:
        # Labels only: the examples are emitted when their windows close (see ranker/join.py for why).
        self.join.learn_one(event.user_id, event.flit_id, event.kind, to_epoch(event.ts), event.dwell_ms)

    def expire(self, now: float) -> None:
        self._emit(self.join.expire(now))

    def _emit(self, examples: list[Example]) -> None:
        emitted: Counter[str] = Counter("+".join(ex.actions) or "ignored" for ex in examples)
        self._produce_all(TOPIC_EXAMPLES, [(ex.user_id.encode(), ex.to_bytes()) for ex in examples])
        # Counted once per label, not per example: a feed releases ~10 examples.
        for label, n in emitted.items():
            self.metrics.examples.labels(stage="emitted", label=label).inc(n)

    def rebuild(self, partitions: Sequence[int], now: float) -> None:
        """Rebuild the join of newly assigned partitions from the log (see the module docstring)."""
        since_ms = int((now - self.settings.ranker.feedback_window_s - REBUILD_SLACK_S) * 1000)
        for p in partitions:
            held = 0
            for m in self._read(TOPIC_IMPRESSIONS, p, since_ms):
                try:
                    impression = decode_internal(m.value(), Impression)
                except DecodeError:
                    self.metrics.examples_dropped.labels(reason="malformed").inc()
                    continue
                self.join.add(impression)
                self._partition_of[impression.user_id] = p
                held += 1
            for m in self._read(TOPIC_EXAMPLES, p, since_ms):
                try:
                    ex = decode_internal(m.value(), Example)
                except DecodeError:
                    continue  # counted by the learner's reader, which reads it too
                self.join.forget(ex.user_id, ex.impression_id, ex.flit_id)
            for m in self._read(TOPIC_INTERACTIONS, p, since_ms):
                try:
                    event = decode_internal(m.value(), Interaction, self.settings.events.max_message_bytes)
                except DecodeError:
                    continue  # the worker dead-letters it
                self.on_interaction(event)
            if held:
                log.info("feedback join rebuilt", extra={"partition": p, "impressions": held,
                                                        "pending": len(self.join)})

    def drop(self, partitions: Sequence[int]) -> None:
        """Forget the users of partitions this ranker no longer serves."""
        gone = {u for u, p in self._partition_of.items() if p in set(partitions)}
        self.join.drop_users(gone)
        for u in gone:
            del self._partition_of[u]

    # --- learning ------------------------------------------------------------------------------
    def learn(self, max_messages: int = 2000) -> int:
        """Learn the examples that arrived (every partition); returns how many were read."""
        if self.examples_reader is None:
            return 0
        messages = self.examples_reader.consume(num_messages=max_messages, timeout=0)
        batch: list[Example] = []
        for m in messages:
            if m.error() is not None:
                continue
            self._positions[m.partition()] = m.offset() + 1
            try:
                batch.append(decode_internal(m.value(), Example))
            except DecodeError as exc:
                self.metrics.examples_dropped.labels(reason="malformed").inc()
                log.warning("malformed example dropped", extra={"partition": m.partition(), "offset": m.offset(),
                                                                "reason": str(exc.reason)})
        if batch:
            learned, dropped = self.learner.learn_many(batch)
            self.metrics.examples.labels(stage="learned", label="all").inc(learned)
            for reason, n in dropped.items():
                self.metrics.examples_dropped.labels(reason=reason).inc(n)
                if reason != "duplicate":
                    log.warning("examples dropped", extra={"reason": reason, "examples": n})
            self._export()
        return len(messages)

    def _export(self) -> None:
        m = self.metrics
        m.model_examples.set(self.model.examples)
        calibration = self.model.calibration()
        for j, action in enumerate(ACTIONS):
            m.model_logloss.labels(action=action).set(float(self.model.logloss[j]))
            if calibration[j] == calibration[j]:  # not nan: the action has been observed
                m.model_calibration.labels(action=action).set(float(calibration[j]))

    def maybe_snapshot(self, instance: str, force: bool = False) -> bool:
        """Publish the model when it learned something since the last snapshot and the interval passed."""
        if self.examples_reader is None or self.model.examples == self._snapshot_examples:
            return False
        if not force and time.monotonic() < self._next_snapshot:
            return False
        self._next_snapshot = time.monotonic() + self.settings.ranker.model_snapshot_interval_s
        snapshot = ModelSnapshot(model=self.model.to_dict(), positions=dict(self._positions),
                                 written_at=datetime.now(timezone.utc), written_by=instance)
        self._produce(TOPIC_RANKER_MODEL, MODEL_KEY, snapshot.to_bytes())
        self._snapshot_examples = self.model.examples
        self.metrics.model_snapshots.labels(outcome="written").inc()
        return True

    def close(self) -> None:
        if self.examples_reader is not None:
            self.examples_reader.close()

    # --- Kafka plumbing ------------------------------------------------------------------------
    def _produce(self, name: str, key: bytes, value: bytes) -> None:
        self._produce_all(name, [(key, value)])

    def _produce_all(self, name: str, records: Sequence[tuple[bytes, bytes]]) -> None:
        """Produce ``(key, value)`` records, then one producer poll and one count: a feed releases ~10
        examples, and a poll and a count per record were a visible share of the ranker's loop."""
        if not records:
            return
        topic = self._t[name]
        for key, value in records:
            self.producer.produce(topic, key=key, value=value, headers=self._headers)
        self.producer.poll(0)
        self.metrics.child(self.metrics.produced, self.metrics.service, topic).inc(len(records))

    def _load_snapshot(self) -> None:
        """The newest readable snapshot of the model, with its positions; the prior when there is none."""
        topic = self._t[TOPIC_RANKER_MODEL]
        latest: ModelSnapshot | None = None
        corrupt = 0
        for p in sorted(self._partitions(TOPIC_RANKER_MODEL)):
            for m in self._read(TOPIC_RANKER_MODEL, p, None):
                try:
                    snap = decode_internal(m.value(), ModelSnapshot)
                    ActionModel.from_dict(snap.model)  # checks the layout and the numbers
                except (DecodeError, ValueError, KeyError, TypeError) as exc:
                    corrupt += 1
                    log.warning("model snapshot unreadable; skipped", extra={"topic": topic, "offset": m.offset(),
                                                                           "error": str(exc)[:200]})
                    continue
                if latest is None or snap.written_at >= latest.written_at:
                    latest = snap
        if latest is None:
            outcome = "corrupt" if corrupt else "missing"
            self.metrics.model_snapshots.labels(outcome=outcome).inc()
            log.warning("no model snapshot; ranking from the prior", extra={"outcome": outcome})
            return
        loaded = ActionModel.from_dict(latest.model, learning_rate=self.model.learning_rate, l2=self.model.l2)
        self.model.__dict__.update(loaded.__dict__)  # the pipeline's scorer holds this very object
        self._positions = dict(latest.positions)
        self.metrics.model_snapshots.labels(outcome="loaded").inc()
        log.info("model snapshot loaded", extra={"examples": self.model.examples, "written_by": latest.written_by})

    def _examples_reader(self) -> Consumer:
        topic = self._t[TOPIC_EXAMPLES]
        reader = self._clients.consumer(f"{self.settings.kafka.ranker_group}-examples-unused")
        reader.assign([TopicPartition(topic, p, self._positions.get(p, OFFSET_BEGINNING))
                       for p in sorted(self._partitions(TOPIC_EXAMPLES))])
        return reader

    def _partitions(self, name: str) -> set[int]:
        """The partitions a topic has; none (logged once) when it does not exist: a broker whose topics were
        created by an older flitfeed (``flitfeed topics create`` adds them) serves feeds, without learning."""
        if name not in self._partition_cache:
            topic = self._t[name]
            probe = self._clients.consumer(f"{self.settings.kafka.ranker_group}-meta-unused")
            try:
                meta = kafka_call(lambda: probe.list_topics(topic, timeout=10), what=f"metadata of {topic}")
            except Exception as exc:  # a Kafka error, or start-up's give-up after retrying one for a minute
                log.warning("topic metadata unavailable", extra={"topic": topic, "error": str(exc)[:200]})
                return set()  # not cached: asked again next time
            finally:
                probe.close()
            found = meta.topics.get(topic)
            if found is None or found.error is not None or not found.partitions:
                log.error("topic missing; run `flitfeed topics create`", extra={"topic": topic})
                self._partition_cache[name] = set()
            else:
                self._partition_cache[name] = set(found.partitions)
        return self._partition_cache[name]

    def _read(self, name: str, partition: int, since_ms: int | None, timeout_s: float = 60.0) -> Iterator[Message]:
        """The messages of one partition from ``since_ms`` (None: its start) to its end as of now.

        Never raises: the rebuild runs inside the consumer group's assignment callback, and a broker
        that is restarting answers "unknown partition" for a while (test_broker_faults crashed the ranker
        there). What could not be read is logged: that window's labels are not rebuilt, feeds go on.
        """
        try:
            yield from self._read_or_raise(name, partition, since_ms, timeout_s)
        except Exception as exc:  # a Kafka error, or start-up's give-up after retrying one for a minute
            self.metrics.examples_dropped.labels(reason="unreadable_log").inc()
            log.warning("could not read the log for the feedback loop; going on without it",
                        extra={"topic": self._t[name], "partition": partition, "error": str(exc)[:200]})

    def _read_or_raise(self, name: str, partition: int, since_ms: int | None,
                       timeout_s: float) -> Iterator[Message]:
        if partition not in self._partitions(name):
            return
        yield from read_partition(self.settings.kafka, self._t[name], partition, since_ms=since_ms, timeout_s=timeout_s,
                                  group_id=f"{self.settings.kafka.ranker_group}-rebuild-unused", clients=self._clients)
