"""The ranker service: a confluent-kafka consumer that publishes feeds.

Inputs (consumer group ``settings.kafka.ranker_group``, user-keyed, co-partitioned):
``user-states`` (a user's state changed → rebuild their feed) and
``feed-requests`` (someone asked → build it now). Broadcast inputs (every
partition, no group): ``flit-vectors`` into this process's index replica and
recent-flits list, and ``interactions`` into the engagement tracker (from
``popularity_window`` ago on start-up).

Restart rule: on partition assignment the user states of that partition are
brought up to the group's committed offset *without* publishing, so a restart
neither loses a user's state nor re-publishes feeds for updates that were
already served. They are kept in :mod:`.user_store` (``ranker_state_store``):
with RocksDB only the records after the offset the store applied are read from
the compacted ``user-states`` topic; in memory, or for a partition rebuilt, all
of them. Offsets are committed only after the feeds of a batch are delivered
(at-least-once feeds; every feed carries its ``trigger_id`` so consumers can
drop a repeat).

Batch-first: each poll of the group consumer (up to 200 messages) is one batch. Its state changes are
applied, its triggers coalesced into the feeds worth building (:mod:`.batching`: one feed per user's
state changes, answering all of them in ``covers``; one per request), the feeds built together
(:meth:`FeedPipeline.run_many`, one batched vector search) and handed to the publisher stage
(:mod:`.publisher`); then the producer is flushed and the offsets committed.

Single-threaded: one loop polls the broadcast readers and the group consumer.

Wiring: every Kafka client comes from an injected :class:`~flitfeed.kafka.clients.KafkaClients` (the CLI passes
the confluent ones; ``tests/unit/test_ranker_service_clients.py`` in-memory ones), the learners and each
version's pipeline from :func:`~flitfeed.ranker.core.build_ranker_core` (the evaluation builds the same), and
a batch's queries from the user states held by :class:`~flitfeed.ranker.query_hydrator.QueryHydrator`.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from flitfeed.index.base import MaintainedIndex, VectorIndex
from flitfeed.index.catalogue import VectorCatalogue
from flitfeed.index.edge import EdgeIndex
from flitfeed.index.factory import is_shared
from flitfeed.index.spaces import destroy_replica, held_versions
from flitfeed.index.versions import bare_version
from flitfeed.index.versions import VersionGate
from flitfeed.kafka.clients import KafkaClients, clients_for
from flitfeed.kafka.config import instance_headers, session_config
from flitfeed.kafka.reading import consume_available, read_partition
from flitfeed.monitoring.metrics import Metrics
from flitfeed.monitoring.monitors import RankerMonitors, start_lag_reporter
from flitfeed.ranker.batching import FeedJob, coalesce
from flitfeed.ranker.commits import CommitTracker, TrackedProducer
from flitfeed.ranker.core import CoreSizes, RankerCore, build_ranker_core
from flitfeed.ranker.feedback_loop import FeedbackLoop
from flitfeed.ranker.held import HeldState
from flitfeed.ranker.params import RankerParams
from flitfeed.ranker.pipeline import FeedPipeline, PipelineResult
from flitfeed.ranker.publisher import Built, FeedPublisher
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.query_hydrator import QueryHydrator, feed_query
from flitfeed.ranker.recent import RecentFlits
from flitfeed.ranker.scorers import ActionScorer
from flitfeed.ranker.user_store import apply_records, open_user_store, plan_recovery, put_until_stored, until_written
from flitfeed.settings import Settings
from flitfeed.streams.topics import (TOPIC_DEAD_LETTERS, TOPIC_FEED_REQUESTS, TOPIC_FEEDS, TOPIC_INTERACTIONS,
                                     TOPIC_MODEL_VERSIONS, TOPIC_USER_STATES)
from flitfeed.streams.dead_letter import dead_letter
from flitfeed.streams.embedding import indexed_flit
from flitfeed.streams.events import (DecodeError, FlitVector, Interaction, Reason, UserState, check_user_key,
                                     decode_feed_request, decode_internal, to_epoch)
from flitfeed.startup import is_transient, kafka_call
from flitfeed.streams.replicator import FlitVectorReplicator

# HeldState and feed_query moved to ranker/held.py and ranker/query_hydrator.py; still importable from here.
__all__ = ["HeldState", "OpenSpace", "RankerService", "RankerSpace", "feed_query"]

log = logging.getLogger(__name__)


@dataclass
class RankerSpace:
    """One embedding version the ranker holds: its index replica, its recent flits and its feed pipeline.

    The ranker serves one; the others (a version being built, the one kept for a rollback) follow the log
    beside it, so a switch or a rollback only changes which one feeds are built from.
    """

    index: VectorIndex
    offsets_path: Path | None
    recent: RecentFlits
    pipeline: FeedPipeline
    replicator: FlitVectorReplicator
    rebuilder: object | None = None

    @property
    def version(self) -> str | None:
        return self.replicator.gate.serving

    def close(self, destroy: bool = False) -> None:
        if self.rebuilder is not None:
            self.rebuilder.close()  # type: ignore[attr-defined]
        self.replicator.close()
        if destroy:
            destroy_replica(self.index, self.offsets_path)
        else:
            self.index.close()


#: Opens the index of a version the catalogue adds: (version, dim, the version keyed by bare flit id) →
#: (index, where its offsets are kept).
OpenSpace = Callable[[str, int, "str | None"], "tuple[VectorIndex, Path | None]"]


class RankerService:
    def __init__(self, settings: Settings, index: VectorIndex, offsets_path: Path | None, metrics: Metrics,
                 gate: VersionGate | None = None, open_space: OpenSpace | None = None,
                 catalog=None, clients: KafkaClients | None = None,  # noqa: ANN001 - VersionCatalog
                 core: RankerCore | None = None) -> None:
        """``gate``: the embedding version to serve (default: the one its index holds, else the first the
        workers publish); feeds are ranked with that version's vectors only. ``open_space``: with it, the
        ranker follows the version catalogue (``model-versions``): it keeps a replica of every version held,
        and switches the version it serves when the catalogue's live one changes. ``catalog``: the catalogue
        read at start-up (its versions are opened before the first user state is read).

        ``clients`` makes every Kafka client the ranker uses: its group consumer and producer, the interactions
        reader, each version's replicator, the catalogue follower and the feedback loop's readers (default:
        the confluent clients of ``settings.kafka``; a test passes in-memory ones). ``core``: the learners
        (default: :func:`~flitfeed.ranker.core.build_ranker_core` sized by ``settings.ranker``); it must learn
        (a model and affinities), as the feedback loop trains its model."""
        self.settings = settings
        self.metrics = metrics
        self._clients = clients_for(settings.kafka, clients)
        self.core = core if core is not None else build_ranker_core(
            settings.ranker, RankerParams.from_config(settings.ranker), CoreSizes.of(settings.ranker))
        self.params = self.core.params
        # Shortcuts to the shared learners, as the loop and the feedback loop use them.
        self.engagement, self.coengagement = self.core.engagement, self.core.coengagement
        self.affinity, self.model = self.core.affinity, self.core.model
        self.model_version = (gate.serving if gate is not None else None) or "unknown"
        self.monitors = RankerMonitors(settings.monitoring, metrics)
        self._next_export = 0.0
        self._next_freeze = float("inf")  # run() starts it, once the ranker is caught up
        # /readyz: group partitions assigned and the index replica caught up with flit-vectors.
        metrics.health.require("partitions_assigned", "flit_vectors_caught_up")
        #: Latest interaction time read (the clock when ``settings.ranker.ranker_clock == "event"``).
        self.event_now = float("-inf")
        self._t = {name: settings.kafka.topic(name) for name in
                   (TOPIC_USER_STATES, TOPIC_FEED_REQUESTS, TOPIC_FEEDS, TOPIC_DEAD_LETTERS, TOPIC_INTERACTIONS)}
        #: user states by partition (a revoked partition's users are dropped): RocksDB read on demand, or
        #: memory (``ranker_state_store``).
        self.user_store = open_user_store(settings, self._t[TOPIC_USER_STATES], metrics)
        self.query_hydrator = QueryHydrator(self.user_store)
        #: Per partition: records before this offset were applied to the store before the last stop but not
        #: committed; the group re-delivers them and their feeds are built (see :func:`plan_recovery`).
        self._replay_until: dict[int, int] = {}
        #: Set by :meth:`run`: a state write waiting for disk space gives up when it is.
        self._stop = threading.Event()
        # Every record a poll's inputs lead to counts towards that poll's batch; its offsets are committed
        # once they are all delivered (ranker/commits.py), without stopping the loop to flush.
        self.producer = TrackedProducer(self._clients.producer(**{"linger.ms": settings.ranker.ranker_producer_linger_ms}))
        self.commits = CommitTracker()
        self.instance = settings.kafka.instance()
        self._headers = instance_headers(settings.kafka)
        self.feedback = FeedbackLoop(settings, metrics, self.producer, self.model, self._headers, clients=self._clients)
        self.publisher = FeedPublisher(metrics, self.monitors, self.feedback, self._produce, self._t[TOPIC_FEEDS],
                                       lambda: self.model_version)
        self._open_space = open_space
        #: The versions held besides the one served (version → space).
        self.others: dict[str, RankerSpace] = {}
        self._serve(self._space(index, offsets_path, gate if gate is not None else VersionGate()))
        self._next_catalog = 0.0
        self.follower = None
        if open_space is not None:
            from flitfeed.streams.version_log import CatalogFollower

            self.follower = CatalogFollower(settings.kafka, self._clients)
        if catalog is not None:
            # The versions held are opened before any user state is read: a state's tastes in a version not
            # held yet would be dropped, and a switch would then serve those users as cold starts.
            self.apply_catalog(catalog)
        self.interactions = self._interactions_reader()
        # client.id = instance id: the group's member list (kafka-consumer-groups --describe, AdminClient)
        # then says which replica owns which partitions. The session timeout bounds how long a crashed
        # ranker's partitions wait for a new member.
        self.consumer = self._clients.consumer(settings.kafka.ranker_group, **{"client.id": self.instance},
                                               **session_config(settings.kafka))
        self.consumer.subscribe([self._t[TOPIC_USER_STATES], self._t[TOPIC_FEED_REQUESTS]],
                                on_assign=self._on_assign, on_revoke=self._on_revoke)

    # --- broadcast inputs ---------------------------------------------------
    def _space(self, index: VectorIndex, offsets_path: Path | None, gate: VersionGate) -> RankerSpace:
        """A version's replica: its index, recent flits and pipeline (the learners are shared by all)."""
        # The vector source searches this mirror of the replica exactly (index/catalogue.py), fed every record
        # the replica applies. Not for an index every process shares: the workers write it, not this log.
        catalogue = None if is_shared(self.settings.index) else VectorCatalogue(index.dim)
        view = self.core.view(index, catalogue)
        recent, pipeline = view.recent, view.pipeline
        replicator = FlitVectorReplicator(self.settings, index, offsets_path, self.metrics,
                                          on_flit=lambda record: self._on_flit(recent, record, catalogue),
                                          write_index=not is_shared(self.settings.index), gate=gate,
                                          clients=self._clients)
        rebuilder = None
        if self.settings.index.index_rebuild_interval_s > 0 and isinstance(index, EdgeIndex):  # rebuilt off-process
            from flitfeed.index.edge_optimizer import IndexRebuilder

            rebuilder = IndexRebuilder(index, replicator.position, replicator.rewind,
                                       min_unindexed=self.settings.index.index_optimize_min_points,
                                       interval_s=self.settings.index.index_rebuild_interval_s)
        return RankerSpace(index, offsets_path, recent, pipeline, replicator, rebuilder)

    def _serve(self, space: RankerSpace) -> None:
        """Build feeds from ``space`` from the next batch on (between polls: no feed mixes two versions)."""
        if getattr(self, "space", None) is not None:
            self.space.replicator.reports = False
        space.replicator.reports = True
        self.space = space
        self.index, self.recent, self.pipeline = space.index, space.recent, space.pipeline
        self.replicator, self.rebuilder = space.replicator, space.rebuilder
        self._scorer = next(s for s in self.pipeline.scorers if isinstance(s, ActionScorer))
        self._fallbacks = self._scorer.fallbacks

    def _on_flit(self, recent: RecentFlits, record: FlitVector, catalogue: VectorCatalogue | None = None) -> None:
        f = record.flit
        recent.add_one(f.flit_id, f.author_id, to_epoch(f.created_at), tuple(f.tags), f.lang, record.vector)
        if catalogue is not None:
            catalogue.upsert_many([indexed_flit(record)])  # the point the replica writes (or wrote before a restart)
        if recent is self.recent and record.model_version != self.model_version:
            self.model_version = record.model_version
            # The ranker has no encoder: the model it ranks with is the one that embedded the flits.
            self.metrics.model.info({"model_version": record.model_version, "dim": str(len(record.vector))})

    def _interactions_reader(self) -> Consumer:
        """All partitions of ``interactions`` from one popularity window back: popularity is global."""
        topic = self._t[TOPIC_INTERACTIONS]
        reader = self._clients.consumer(f"{self.settings.kafka.ranker_group}-engagement-unused")
        meta = kafka_call(lambda: reader.list_topics(topic, timeout=10), what=f"metadata of {topic}")
        since_ms = int((time.time() - 4 * self.settings.ranker.popularity_half_life_s) * 1000)
        wanted = [TopicPartition(topic, p, since_ms) for p in sorted(meta.topics[topic].partitions)]
        # Right after the topics are created (or the broker restarted) this answers "not leader" for a
        # while: retried, not fatal (it used to crash a ranker started on a fresh broker).
        starts = kafka_call(lambda: reader.offsets_for_times(wanted, timeout=10), what=f"start offsets of {topic}")
        reader.assign([TopicPartition(topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING)
                       for tp in starts])
        return reader

    def _poll_interactions(self) -> int:
        messages = self.interactions.consume(num_messages=1000, timeout=0)
        for m in messages:
            if m.error() is not None:
                continue
            try:
                event = decode_internal(m.value(), Interaction, self.settings.events.max_message_bytes)
            except DecodeError:
                continue  # the worker dead-letters invalid interactions; popularity just ignores them
            self.core.learn_interaction(event, self.recent)
            self.feedback.on_interaction(event)
            self.monitors.learn_interaction(event.user_id, event.flit_id, event.kind, to_epoch(event.ts))
            self.event_now = max(self.event_now, to_epoch(event.ts))
        return len(messages)

    # --- group membership ---------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        states_topic = self._t[TOPIC_USER_STATES]
        mine = [tp for tp in partitions if tp.topic == states_topic]
        committed = ({tp.partition: tp.offset for tp in kafka_call(lambda: consumer.committed(mine, timeout=10),
                                                                   what="committed offsets")} if mine else {})
        for tp in mine:
            # A full disk (a database cannot be created, or opened for writing, or take the records read):
            # wait for space, alive and not ready, rather than crash and crash again at every restart.
            if not until_written(lambda p=tp.partition: self._recover(consumer, p, committed.get(p, -1)),
                                 wait=self._stop.wait, metrics=self.metrics, beat=self.metrics.health.beat):
                return  # stopping
        self.feedback.rebuild([tp.partition for tp in mine], time.time())
        log.info("partitions assigned", extra={"partitions": len(partitions), "users": self.user_count()})
        consumer.assign(partitions)
        self.metrics.health.ready("partitions_assigned")

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # What was served for these partitions is committed before the next owner reads from the commit.
        try:
            self.producer.flush(10)
            self._commit_ready(asynchronous=False)
        except KafkaException as exc:
            log.warning("commit at revocation failed; the next owner may serve some inputs again",
                        extra={"error": str(exc)[:200]})
        for tp in partitions:
            if tp.topic == self._t[TOPIC_USER_STATES]:
                self.user_store.drop_partition(tp.partition)  # its files stay for when it comes back
                self._replay_until.pop(tp.partition, None)
        self.feedback.drop([tp.partition for tp in partitions if tp.topic == self._t[TOPIC_USER_STATES]])

    def _recover(self, consumer: Consumer, partition: int, committed: int) -> None:
        """Bring a user-states partition's stored states up to the group's ``committed`` offset without
        publishing feeds: the records after the offset the store applied (all of them for a memory store, a
        new or a rebuilt partition), as :func:`~flitfeed.ranker.user_store.plan_recovery` says."""
        topic = self._t[TOPIC_USER_STATES]
        applied = self.user_store.open_partition(partition)
        low, high = kafka_call(lambda: consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10),
                               what=f"offsets of {topic}[{partition}]")
        plan = plan_recovery(applied, committed, low, high)
        if plan.rebuild is not None:
            self.user_store.reset_partition(partition, plan.rebuild,
                                            f"applied {applied}, committed {committed}, log [{low}, {high})")
        self._replay_until[partition] = plan.replay_until
        read = 0
        if plan.until > plan.start:
            messages = read_partition(self.settings.kafka, topic, partition, start=plan.start, until=plan.until,
                                      timeout_s=120, group_id=f"{self.settings.kafka.ranker_group}-bootstrap-unused",
                                      clients=self._clients)
            read = apply_records(self.user_store, partition, ((m.offset(), m.value()) for m in messages),
                                 self._held_record)
            self.metrics.state_restored.labels(service=self.metrics.service).inc(read)
        log.info("user states recovered", extra={"partition": partition, "applied": applied, "committed": committed,
                                                  "read": read, "rebuild": plan.rebuild,
                                                  "replay_until": plan.replay_until})

    def _held_record(self, value: bytes | None) -> HeldState | None:
        try:
            return self._held(decode_internal(value, UserState))
        except DecodeError:
            return None  # dead-lettered when it was first consumed

    def _held(self, state: UserState) -> HeldState:
        return HeldState.of(state, self.replicator.gate.serving, held=tuple(self.others))

    def user_count(self) -> int:
        return self.user_store.count()

    # --- the loop -------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        log.info("ranker running", extra={"group": self.settings.kafka.ranker_group})
        self._stop = stop
        lag = start_lag_reporter(self.settings.kafka, self.settings.monitoring, self.metrics, self.settings.kafka.ranker_group,
                                 [self._t[TOPIC_USER_STATES], self._t[TOPIC_FEED_REQUESTS]])
        try:
            self.warm_index(stop)
            self._freeze_long_lived()
            while not stop.is_set():
                try:
                    self.step(timeout=0.02)
                except KafkaException as exc:
                    # A broker restarting: the clients reconnect by themselves; wait and go on.
                    if not is_transient(exc):
                        raise
                    log.warning("Kafka unavailable; retrying", extra={"error": str(exc)[:200]})
                    stop.wait(1.0)
        finally:
            lag.stop()
            self.close()

    def warm_index(self, stop: threading.Event) -> None:
        """Before serving: read the flit-vector log to its end, then build the HNSW graph if it pays.

        Unindexed points are searched by brute force (~1.5 ms per 10k per query): with a catalogue of
        100k, that is most of a feed's cost. Qdrant Edge's optimize holds the GIL, so it runs here, before
        the consumer group is joined, where it delays readiness and blocks no feed.
        """
        while not stop.is_set() and not self.replicator.caught_up:
            self.replicator.poll_once(max_messages=5000, timeout=0.2)
        for space in self.others.values():  # held for a switch or a rollback: ready before one comes
            while not stop.is_set() and not space.replicator.caught_up:
                space.replicator.poll_once(max_messages=5000, timeout=0.2)
        minimum = self.settings.index.index_optimize_min_points
        if isinstance(self.index, MaintainedIndex) and minimum > 0 and not stop.is_set():
            started = time.monotonic()
            if self.index.maybe_optimize(minimum):
                log.info("index optimized before serving",
                         extra={"seconds": round(time.monotonic() - started, 1), "points": self.index.count()})

    # --- embedding versions ---------------------------------------------------
    #: How often the catalogue is looked at (a switch reaches every ranker within about this).
    CATALOG_INTERVAL_S = 0.5
    #: Records of ``flit-vectors`` a version not served applies per step: it follows the log without
    #: holding up the feeds of the one served.
    OTHER_VERSION_BUDGET = 2000

    def follow_versions(self) -> None:
        """Keep a replica of every version the catalogue holds, and serve its live one."""
        for space in self.others.values():
            if space.rebuilder is not None:
                space.rebuilder.poll()  # type: ignore[attr-defined]
            space.replicator.poll_once(max_messages=self.OTHER_VERSION_BUDGET, timeout=0)
        if self.follower is None or time.monotonic() < self._next_catalog:
            return
        self._next_catalog = time.monotonic() + self.CATALOG_INTERVAL_S
        catalog = self.follower.poll(0)
        if catalog is not None:
            self.apply_catalog(catalog)

    def apply_catalog(self, catalog) -> None:  # noqa: ANN001 - VersionCatalog
        from flitfeed.index.versions import entry

        wanted, bare = held_versions(catalog), bare_version(catalog)
        if self.replicator.gate.serving is None:
            self.replicator.gate.serving = catalog.live  # no flit seen yet: serve what the catalogue says
        serving = self.replicator.gate.serving
        for version in [v for v in self.others if v not in wanted]:
            self.others.pop(version).close(destroy=True)
            log.info("dropped a version's replica", extra={"version": version})
        for version in wanted:
            if version != serving and version not in self.others and self._open_space is not None:
                held = entry(catalog, version)
                try:
                    index, offsets = self._open_space(version, held.dim, bare)
                    self.others[version] = self._space(index, offsets, VersionGate(version))
                    self.others[version].replicator.reports = False
                except Exception:  # keep serving the live version; the error is logged with its traceback
                    log.exception("cannot open a version's replica", extra={"version": version})
                    continue
                log.info("holding a replica of another version", extra={"version": version})
        if catalog.live != serving and catalog.live in self.others:
            self.switch_to(catalog.live)

    def switch_to(self, version: str, timeout_s: float = 120.0) -> None:
        """Serve ``version`` from the next batch on: its replica reads the log to its end first, the one served
        until now is kept (a rollback), and the switch is announced (feeds' ``model_version``, metrics, and a
        ``serving`` ack on ``model-versions`` that ``flitfeed versions switch`` waits for)."""
        from flitfeed.streams.version_log import ack_record

        space = self.others.pop(version)
        deadline = time.monotonic() + timeout_s
        while not space.replicator.caught_up and time.monotonic() < deadline:
            space.replicator.poll_once(max_messages=5000, timeout=0.2)
        space.replicator.catch_up(timeout=max(1.0, deadline - time.monotonic()))
        previous = self.space
        if previous.version is not None:
            self.others[previous.version] = previous
        self._serve(space)
        before, self.model_version = self.model_version, version
        self.metrics.model.info({"model_version": version, "dim": str(getattr(self.index, "dim", ""))})
        self.metrics.version_switches.labels(service=self.metrics.service).inc()
        self._produce(self.settings.kafka.topic(TOPIC_MODEL_VERSIONS), *ack_record(self.settings.kafka, version, kind="serving"))
        log.info("switched the embedding version served", extra={"version": version, "previous": before,
                                                                   "flits": len(self.recent)})

    def step(self, timeout: float = 0.02) -> int:
        """One iteration: refresh broadcast inputs, then handle a batch of user-states and requests."""
        if self.rebuilder is not None:
            self.rebuilder.poll()
        self.replicator.poll_once(timeout=0)
        self.follow_versions()
        self._poll_interactions()
        self.feedback.learn()
        self.feedback.expire(self.now())
        messages = consume_available(self.consumer, 200, timeout)
        consumed = [m for m in messages if m.error() is None]
        batch = self.commits.open({(m.topic(), m.partition()): m.offset() + 1 for m in consumed}) if consumed else None
        self.producer.batch = batch
        try:
            published = self._handle(messages)
        finally:
            self.producer.batch = None
            if batch is not None:
                self.commits.close(batch)
        self.producer.poll(0)  # delivery reports: they complete batches
        self._commit_ready()
        self.metrics.users.labels(service=self.metrics.service).set(self.user_count())
        self._monitor()
        return published

    def _commit_ready(self, asynchronous: bool = True) -> None:
        """Commit the offsets of the batches whose records are all delivered (raises DeliveryFailed at one
        that was refused: the ranker stops, and a restart reads those inputs again)."""
        offsets = self.commits.ready()
        if offsets:
            self.consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                                 asynchronous=asynchronous)

    def _handle(self, messages: list) -> int:
        """A poll's messages: apply the user states and requests, then build and publish their feeds."""
        jobs: list[FeedJob] = []
        for m in messages:
            err = m.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error", extra={"error": str(err)})
                continue
            self.metrics.consumed.labels(service=self.metrics.service, topic=m.topic()).inc()
            try:
                job = self._on_user_state(m) if m.topic() == self._t[TOPIC_USER_STATES] else self._on_feed_request(m)
            except Exception as exc:  # one bad message must not stop the ranker
                log.exception("message failed", extra={"topic": m.topic(), "offset": m.offset()})
                self._dead_letter(m, Reason.PROCESSING_ERROR, repr(exc))
                continue
            if job is not None:
                jobs.append(job)
        self._catch_up_for(jobs)
        return self._build_and_publish(coalesce(jobs))

    def _catch_up_for(self, jobs: list[FeedJob]) -> None:
        """Make sure the replica holds the flit each new user state was triggered by before building.

        The worker published that flit's vector before the state, so it is on its way; asking the broker
        for the log's end is a round trip (half the ranker's busy time at 25 interactions/s), done only
        when some triggering flit is not in the replica's recent flits yet.
        """
        triggered = [job for job in jobs if job.trigger_kind == "interaction"]
        states = self.user_store.get_many([(job.partition, job.user_id) for job in triggered])
        if all(state is not None and state.seen and state.seen[-1] in self.recent for state in states):
            return
        if not self.replicator.catch_up():
            log.warning("flit-vectors replica still behind; building feeds from what it has")

    #: How often what the ranker has come to hold since is frozen again (:meth:`_freeze_long_lived`).
    GC_FREEZE_INTERVAL_S = 600.0

    def _freeze_long_lived(self) -> None:
        """Take what the ranker holds now out of the cyclic garbage collector's full collections.

        What it holds once caught up (its catalogue's columns and their strings, the recent flits, the
        model) lives as long as the process, yet every full collection scanned it: at 100k flits each
        took 30-76 ms, in the middle of a batch of feeds (BENCHMARKS "Session 12"); frozen, 5-18 ms.
        New flits add to what is scanned, so it is done again every ``GC_FREEZE_INTERVAL_S``, after a
        collection, so that no garbage cycle is frozen with the rest (refcounting still frees frozen
        objects that are dropped: a deleted flit's strings go as before).
        """
        gc.collect()
        gc.freeze()
        self._next_freeze = time.monotonic() + self.GC_FREEZE_INTERVAL_S

    def _monitor(self) -> None:
        """Liveness beat every step; readiness and the slower gauges every ``monitoring_interval_s``."""
        health = self.metrics.health
        health.beat()
        now = time.monotonic()
        if now < self._next_export:
            return
        self._next_export = now + self.settings.monitoring.monitoring_interval_s
        health.ready("flit_vectors_caught_up", self.replicator.caught_up)
        self.monitors.export(catalog_size=len(self.recent))
        if self._scorer.fallbacks > self._fallbacks:
            self.metrics.model_fallbacks.inc(self._scorer.fallbacks - self._fallbacks)
            log.warning("ranking model gave non-finite scores; those feeds used the prior",
                        extra={"feeds": self._scorer.fallbacks - self._fallbacks})
            self._fallbacks = self._scorer.fallbacks
        self.feedback.maybe_snapshot(self.instance)
        if now >= self._next_freeze:
            self._freeze_long_lived()

    def _dead_letter(self, m, reason: Reason, detail: str) -> None:  # noqa: ANN001 - confluent Message
        key, value = dead_letter(self.metrics, topic=m.topic(), partition=m.partition(), offset=m.offset(),
                                 key=m.key(), value=m.value(), reason=reason, detail=detail)
        self._produce(self._t[TOPIC_DEAD_LETTERS], key, value)

    def _produce(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.producer.produce(topic, key=key, value=value, headers=self._headers)
        self.producer.poll(0)
        self.metrics.child(self.metrics.produced, self.metrics.service, topic).inc()

    def _on_user_state(self, m) -> FeedJob | None:  # noqa: ANN001 - confluent Message
        """Apply a user's new state; the feed it asks for (None for a bad message or a repeat)."""
        try:
            with self.metrics.time_stage("decode"):
                state = decode_internal(m.value(), UserState)
                check_user_key(m.key(), state.user_id)
        except DecodeError as exc:
            self._dead_letter(m, exc.reason, exc.detail)
            return None
        previous = self.user_store.get(m.partition(), state.user_id)
        held = self._held(state)
        if held.taste is None and state.taste is not None:
            self.metrics.vectors_skipped.labels(service=self.metrics.service, reason="taste_other_version").inc()
        if not put_until_stored(self.user_store, m.partition(), held, m.offset() + 1, wait=self._stop.wait,
                                metrics=self.metrics, beat=self.metrics.health.beat):
            return None  # stopping on a full disk: not applied, so the restart's tail read applies it
        # A record the store applied before the last stop but the group had not committed: its feed may not
        # have been delivered, so it is built even though the stored state already has its trigger id.
        replayed = m.offset() < self._replay_until.get(m.partition(), 0)
        if previous is not None and previous.trigger_id == state.trigger_id and not replayed:
            return None  # the worker re-published after a crash; this feed was already served
        return FeedJob(state.user_id, self.settings.ranker.feed_k, state.trigger_id, "interaction", state.trigger_ts,
                       m.partition(), sources=(m,))

    def _on_feed_request(self, m) -> FeedJob | None:  # noqa: ANN001
        try:
            with self.metrics.time_stage("decode"):
                request = decode_feed_request(m.value(), limits=self.settings.events)
                check_user_key(m.key(), request.user_id)
        except DecodeError as e:
            self._dead_letter(m, e.reason, e.detail)
            return None
        _, ts_ms = m.timestamp()
        return FeedJob(request.user_id, request.k, request.request_id, "request",
                       ts_ms / 1000.0 if ts_ms > 0 else time.time(), m.partition(), sources=(m,))

    def _build_and_publish(self, jobs: list[FeedJob]) -> int:
        """Build a poll's feeds as one batch (each from its user's newest state) and publish them.

        If building the batch fails, each feed is built alone, so one bad input costs only its own
        messages (dead-lettered), never the batch.
        """
        if not jobs:
            return 0
        queries = self.query_hydrator.hydrate(jobs, self.now(), version=self.replicator.gate.serving)
        self.metrics.ranker_batch.observe(len(jobs))
        try:
            results: list[PipelineResult | None] = list(self.pipeline.run_many(queries))
        except Exception:
            log.exception("feed batch failed; building its feeds one by one", extra={"feeds": len(jobs)})
            results = [self._run_alone(job, query) for job, query in zip(jobs, queries)]
        built = [Built(job, query, result) for job, query, result in zip(jobs, queries, results) if result is not None]
        failed = self.publisher.publish_all(built)
        for job, exc in failed:  # logged by the publisher
            for m in job.sources:
                self._dead_letter(m, Reason.PROCESSING_ERROR, repr(exc))
        return len(built) - len(failed)

    def _run_alone(self, job: FeedJob, query: FeedQuery) -> PipelineResult | None:
        try:
            return self.pipeline.run(query)
        except Exception as exc:
            log.exception("feed failed", extra={"user_id": job.user_id, "trigger_id": job.trigger_id})
            for m in job.sources:
                self._dead_letter(m, Reason.PROCESSING_ERROR, repr(exc))
            return None

    def now(self) -> float:
        """Ranking time: the wall clock, or the event clock for replays of historical data."""
        if self.settings.ranker.ranker_clock == "event" and self.event_now > float("-inf"):
            return self.event_now
        return time.time()

    def _final_commit(self) -> None:
        """On a graceful stop: deliver what is pending, then commit synchronously (the loop's commits
        are asynchronous and could still be in flight), so a restart re-reads nothing already served."""
        self.feedback.maybe_snapshot(self.instance, force=True)
        if self.producer.flush(10) != 0:
            log.error("feeds not delivered at shutdown; offsets left uncommitted")
        self._commit_ready(asynchronous=False)

    def close(self) -> None:
        closers = [self._final_commit, self.consumer.close, self.interactions.close, self.space.close,
                   self.feedback.close, lambda: self.producer.flush(10)]
        closers += [space.close for space in self.others.values()]
        closers.append(self.user_store.close)
        if self.follower is not None:
            closers.append(self.follower.close)
        for closer in closers:
            try:
                closer()
            except Exception:  # closing is best effort; the error is logged
                log.exception("error while closing")
