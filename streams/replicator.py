"""Keeping a process's embedded index a replica of the ``flit-vectors`` log.

Users are partitioned but flits are replicated: every process that searches or
looks up flits reads *all* partitions of ``flit-vectors`` (no consumer group)
into its own index. Progress is stored beside the index
(``<data_dir>/index/<service>.offsets.json``, written after the points are upserted), so a
restart resumes where it stopped; a missing or corrupt index is rebuilt by
replaying the log from the start. Records already applied before the stored
offset are still passed to ``on_flit`` (cheap: no embedding, no index write) so
in-memory views such as the ranker's recent-flits list come back after a
restart.

A replica serves one embedding version (:class:`~flitfeed.index.versions.VersionGate`): vectors of any
other version are counted (``flitfeed_index_vectors_skipped_total``) and kept out of its index, and the
version is stored with the offsets, so a restart knows what its index holds (:func:`stored_version`).

Single-threaded by design: the owner calls :meth:`poll_once` from its own loop (the ranker), or
uses :class:`AsyncFlitVectorReplicator` from an asyncio loop (the worker), which runs the blocking
Kafka calls on a thread of their own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec

from flitfeed.index.base import VectorIndex
from flitfeed.index.versions import VersionGate
from flitfeed.kafka.clients import KafkaClients, clients_for
from flitfeed.kafka.config import INSTANCE_HEADER
from flitfeed.kafka.reading import consume_available
from flitfeed.monitoring.metrics import Metrics
from flitfeed.settings import Settings
from flitfeed.streams.topics import TOPIC_FLIT_VECTORS
from flitfeed.startup import kafka_call
from flitfeed.streams.embedding import indexed_flit
from flitfeed.streams.events import DecodeError, FlitVector, decode_internal, to_epoch
from flitfeed.streams.topics import INTERNAL_MAX_BYTES

log = logging.getLogger(__name__)

T = TypeVar("T")


def _read_offsets_file(path: Path | None) -> tuple[str | None, dict[int, int]]:
    """``(version, offsets)`` stored beside an index; ``(None, {})`` when absent. Raises on a corrupt file."""
    if path is None or not path.exists():
        return None, {}
    data = json.loads(path.read_text())
    if "offsets" not in data:  # written before versions: a flat {partition: offset}
        return None, {int(k): int(v) for k, v in data.items()}
    return data.get("version"), {int(k): int(v) for k, v in data["offsets"].items()}


def stored_version(offsets_path: Path | None) -> str | None:
    """The embedding version the index beside ``offsets_path`` holds (None: unknown, or a fresh index)."""
    try:
        return _read_offsets_file(offsets_path)[0]
    except (ValueError, OSError):
        return None


class FlitVectorReplicator:
    #: Whether this replica's figures are the process's (index points, freshness): the version served.
    #: A process holding other versions too (a re-embedding, a rollback kept) reports one version only.
    reports = True

    def __init__(self, settings: Settings, index: VectorIndex, offsets_path: Path | None, metrics: Metrics,
                 on_flit: Callable[[FlitVector], None] | None = None, write_index: bool = True,
                 gate: VersionGate | None = None, clients: KafkaClients | None = None) -> None:
        """``write_index=False`` for an index shared by every process (a Qdrant server): the worker that
        embedded a flit wrote it there before publishing its vector, so replicas only follow the log
        (``on_flit``, :meth:`catch_up`) instead of writing every vector once per process.

        ``gate`` says which version this replica serves (default: the version its index holds, else the
        first the workers publish); the caller makes sure the index holds no other (``flitfeed/cli.py``).
        ``clients`` makes its consumer and admin client (default: the confluent clients of ``settings.kafka``)."""
        self._topic = settings.kafka.topic(TOPIC_FLIT_VECTORS)
        self.gate = gate if gate is not None else VersionGate()
        self._index = index
        self._write_index = write_index
        self._metrics = metrics
        self._on_flit = on_flit
        self._offsets_path = offsets_path
        self._applied = self._load_offsets()
        self._saved_at = 0.0
        # The group id is never used for commits (we assign and store offsets ourselves);
        # librdkafka just requires one.
        clients = clients_for(settings.kafka, clients)
        self._consumer = clients.consumer(f"{settings.kafka.app_id}-replica-unused", **{"enable.partition.eof": True})
        self._admin = clients.admin()
        meta = kafka_call(lambda: self._consumer.list_topics(self._topic, timeout=10),
                          what=f"metadata of {self._topic}")
        partitions = sorted(meta.topics[self._topic].partitions)
        self._consumer.assign([TopicPartition(self._topic, p, OFFSET_BEGINNING) for p in partitions])
        self._at_end: set[int] = set()
        self._n_partitions = len(partitions)
        # One index write per flit per process: a record this very process published (its instance, at an
        # offset past the log end when it started) was written to its index by the agent that embedded it.
        # Records of an earlier life of the same instance are applied: the index may have been rebuilt since.
        self._instance = settings.kafka.instance().encode()
        self._born = self.log_end() if write_index else {}

    def log_end(self) -> dict[int, int]:
        """The log's end offset per partition now (blocking: one request on the admin connection)."""
        def ask() -> dict[int, int]:
            futures = self._admin.list_offsets({TopicPartition(self._topic, p): OffsetSpec.latest()
                                                for p in range(self._n_partitions)}, request_timeout=30)
            return {tp.partition: f.result().offset for tp, f in futures.items()}

        return kafka_call(ask, what=f"end offsets of {self._topic}")

    def _own(self, m: Any) -> bool:
        """Whether this process published ``m`` (so its agent already wrote the point)."""
        if m.offset() < self._born.get(m.partition(), 1 << 62):
            return False
        return any(k == INSTANCE_HEADER and v == self._instance for k, v in (m.headers() or ()))

    def _load_offsets(self) -> dict[int, int]:
        try:
            version, offsets = _read_offsets_file(self._offsets_path)
        except (ValueError, OSError) as exc:
            log.warning("replica offsets unreadable; replaying the whole log", extra={"error": str(exc)})
            return {}
        if self.gate.serving is None:
            self.gate.serving = version
        elif version is not None and version != self.gate.serving:
            # The caller should have dropped an index of another version; replaying is the safe side.
            log.warning("replica offsets are of another version; replaying the whole log",
                        extra={"stored": version, "serving": self.gate.serving})
            return {}
        return offsets

    #: The offsets file is rewritten at most this often. Saving after every poll was 7% of the worker's
    #: CPU in the end-to-end profile; a crash now replays at most this much of the log, and replayed
    #: upserts are idempotent.
    SAVE_INTERVAL_S = 1.0

    def _save_offsets(self, force: bool = False) -> None:
        if self._offsets_path is None:
            return
        if not force and time.monotonic() - self._saved_at < self.SAVE_INTERVAL_S:
            return
        self._saved_at = time.monotonic()
        tmp = self._offsets_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": self.gate.serving,
                                   "offsets": {str(k): v for k, v in self._applied.items()}}))
        os.replace(tmp, self._offsets_path)  # atomic: a crash leaves the old or the new file, never half

    @property
    def caught_up(self) -> bool:
        """True once every partition has been read to the end at least once."""
        return len(self._at_end) >= self._n_partitions

    def poll_once(self, max_messages: int = 500, timeout: float = 0.0) -> int:
        """Apply what is available now; returns the number of new points written to the index."""
        return self.apply_many(self.fetch_many(max_messages, timeout))

    def fetch_many(self, max_messages: int = 500, timeout: float = 0.0) -> list[Any]:
        """Read up to ``max_messages`` records of the log, waiting at most ``timeout`` s (blocking)."""
        return consume_available(self._consumer, max_messages, timeout)

    def apply_many(self, messages: list[Any]) -> int:
        """Apply what :meth:`fetch_many` read; returns the number of new points written to the index."""
        if not messages:
            return 0
        fresh = []
        own = 0
        # Freshness is a live figure: a replay after a restart would report the age of the whole log.
        live = self.caught_up
        for m in messages:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self._at_end.add(m.partition())
                else:
                    log.warning("flit-vectors consumer error", extra={"error": str(err)})
                continue
            fresh_offset = m.offset() >= self._applied.get(m.partition(), 0)
            if fresh_offset:
                self._applied[m.partition()] = m.offset() + 1
            if m.value() is None:
                continue  # a tombstone: a dropped version's vector, deleted from the log (never in this index)
            try:
                record = decode_internal(m.value(), FlitVector, INTERNAL_MAX_BYTES)
            except DecodeError as exc:
                # Only the worker writes this topic; a bad record is a bug, not input. Skip it loudly (every
                # replica reads every record, so dead-lettering it here would write one letter per process).
                log.error("undecodable flit-vectors record", extra={
                    "partition": m.partition(), "offset": m.offset(), "reason": str(exc.reason), "error": exc.detail})
                continue
            if not self.gate.admits_record(record, m.key()):
                # Another version's vector (a re-embedding in progress, or a worker on another model): it
                # must never meet this version's vectors in one index.
                if fresh_offset:
                    self._metrics.vectors_skipped.labels(service=self._metrics.service, reason="other_version").inc()
                continue
            if self._on_flit is not None:
                self._on_flit(record)
            if fresh_offset and self._own(m):
                own += 1  # its agent wrote the point already
            elif fresh_offset:
                fresh.append(record)
        if own and not fresh and self._write_index and self.reports:
            # Only this process's own flits: the index grew without a write here; the gauge follows the log.
            self._set_points_gauge()
        if fresh and not self._write_index:
            return 0
        if fresh:
            self._index.upsert_many([indexed_flit(r) for r in fresh])
            self._save_offsets()
            if self.reports:
                done = time.time()
                for r in fresh if live else ():
                    self._metrics.freshness.labels(service=self._metrics.service).observe(
                        max(0.0, done - to_epoch(r.flit.created_at)))
                self._set_points_gauge()
        return len(fresh)

    def _set_points_gauge(self) -> None:
        # The engine's estimate: an exact count walks every point (21% of a worker's samples and 13% of a
        # ranker's at 100k flits and 100 interactions/s, once per replicated batch); a gauge needs no more.
        self._metrics.index_points.labels(service=self._metrics.service).set(self._index.count(approximate=True))

    def catch_up(self, timeout: float = 2.0) -> bool:
        """Apply everything written to ``flit-vectors`` up to now; False if ``timeout`` ran out first.

        The ranker calls this before building feeds for new user states: the worker published the
        vectors of the flits a user interacted with before it published the user's state, so after
        this the replica knows every flit that state refers to.
        """
        deadline = time.monotonic() + timeout
        # One ListOffsets request on the admin connection: the consumer's own watermark query would
        # queue behind its in-flight fetch, once per partition.
        futures = self._admin.list_offsets({TopicPartition(self._topic, p): OffsetSpec.latest()
                                            for p in range(self._n_partitions)}, request_timeout=timeout)
        try:
            targets = {tp.partition: f.result().offset for tp, f in futures.items()}
        except KafkaException as exc:
            # Best effort by contract (the caller goes on with what the replica has); raising here
            # would drop the batch the caller already consumed, e.g. while the broker restarts.
            log.warning("cannot read flit-vectors end offsets", extra={"error": str(exc)[:200]})
            return False
        targets = {p: high for p, high in targets.items() if high > 0}
        while time.monotonic() < deadline:
            positions = {tp.partition: tp.offset for tp in self._consumer.position(self._consumer.assignment())}
            if all(positions.get(p, 0) >= high for p, high in targets.items()):
                return True
            self.poll_once(timeout=0.05)
        return False

    def position(self) -> dict[int, int]:
        """The next offset to apply per partition: everything before it is in the index."""
        return dict(self._applied)

    def rewind(self, position: dict[int, int]) -> None:
        """Re-apply the log from ``position`` (e.g. after an index copy taken there was swapped in)."""
        self._applied = dict(position)
        self._consumer.assign([TopicPartition(self._topic, p, position.get(p, OFFSET_BEGINNING))
                               for p in range(self._n_partitions)])
        self._save_offsets(force=True)

    def close(self) -> None:
        self._save_offsets(force=True)
        self._consumer.close()


class AsyncFlitVectorReplicator:
    """A :class:`FlitVectorReplicator` for an asyncio loop (the worker's): its blocking Kafka calls --
    opening (a metadata request retried for up to a minute), fetching, closing -- run one at a time on
    a thread of their own, so the loop keeps serving agents and timers meanwhile. What was fetched is
    applied on the loop, so the index is written from the loop's thread only, as the agents write it.
    """

    def __init__(self, replicator: FlitVectorReplicator, thread: ThreadPoolExecutor) -> None:
        self._replicator = replicator
        self._thread = thread

    @classmethod
    async def open(cls, make: Callable[[], FlitVectorReplicator]) -> "AsyncFlitVectorReplicator":
        """Build the replicator with ``make()`` off the loop (its constructor waits for the topic's metadata)."""
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flit-vector-replica")
        try:
            replicator = await asyncio.get_running_loop().run_in_executor(thread, make)
        except BaseException:
            thread.shutdown(wait=False)
            raise
        return cls(replicator, thread)

    async def _off_loop(self, call: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, call, *args)

    @property
    def caught_up(self) -> bool:
        return self._replicator.caught_up

    @property
    def reports(self) -> bool:
        return self._replicator.reports

    @reports.setter
    def reports(self, value: bool) -> None:
        self._replicator.reports = value

    def position(self) -> dict[int, int]:
        return self._replicator.position()

    def log_end(self) -> dict[int, int]:
        """Blocking: call it off the loop."""
        return self._replicator.log_end()

    async def poll_once(self, max_messages: int = 500, timeout: float = 0.0) -> int:
        """Fetch (off the loop, waiting at most ``timeout`` s) and apply (on it) what is available."""
        messages = await self._off_loop(self._replicator.fetch_many, max_messages, timeout)
        return self._replicator.apply_many(messages)

    async def close(self) -> None:
        """Store the final read position and close the consumer (after any fetch still under way)."""
        try:
            await self._off_loop(self._replicator.close)
        finally:
            self._thread.shutdown(wait=False)
