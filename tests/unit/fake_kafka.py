"""An in-memory Kafka behind :class:`~flitfeed.kafka.clients.KafkaClients`, for driving services without a broker.

Only what flitfeed's confluent-kafka callers use is here, with the semantics they rely on: partitioned
logs with offsets, assignment by offset / ``OFFSET_BEGINNING`` / committed offset, a consumer group whose
every partition goes to the one member (``subscribe`` calls ``on_assign`` at the first poll), commits per
group, end-of-partition events when asked for (``enable.partition.eof``), and a producer whose records
reach the log (and whose delivery callbacks run) only when it is polled or flushed, as librdkafka's do.
``FakeProducer.hold`` keeps records undelivered, to test what waits for delivery.
"""

from __future__ import annotations

import zlib
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaError, TopicPartition


class FakeError:
    """What ``Message.error()`` returns for an event (only end-of-partition here)."""

    def __init__(self, code: int) -> None:
        self._code = code

    def code(self) -> int:
        return self._code

    def __str__(self) -> str:
        return f"fake kafka error {self._code}"


@dataclass
class FakeMessage:
    _topic: str
    _partition: int
    _offset: int
    _key: bytes | None
    _value: bytes | None
    _headers: list[tuple[str, bytes]] | None = None
    _timestamp_ms: int = 0
    _error: FakeError | None = None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return (1, self._timestamp_ms)  # TIMESTAMP_CREATE_TIME

    def error(self) -> FakeError | None:
        return self._error


@dataclass
class _TopicMeta:
    partitions: dict[int, None]
    error: None = None


@dataclass
class _Metadata:
    topics: dict[str, _TopicMeta]


@dataclass
class FakeBroker:
    """The logs (topic → partition → messages) and every group's committed offsets."""

    logs: dict[str, list[list[FakeMessage]]] = field(default_factory=dict)
    #: (group, topic, partition) → next offset to read
    committed: dict[tuple[str, str, int], int] = field(default_factory=dict)
    #: Every commit, in order: (group, {(topic, partition): offset})
    commits: list[tuple[str, dict[tuple[str, int], int]]] = field(default_factory=list)
    clock_ms: int = 1_800_000_000_000

    def create(self, topic: str, partitions: int) -> None:
        self.logs.setdefault(topic, [[] for _ in range(partitions)])

    def partition_for(self, topic: str, key: bytes | None) -> int:
        return 0 if key is None else zlib.crc32(key) % len(self.logs[topic])

    def append(self, topic: str, key: bytes | None, value: bytes | None, headers: Any = None,
               partition: int | None = None) -> FakeMessage:
        p = self.partition_for(topic, key) if partition is None else partition
        log = self.logs[topic][p]
        self.clock_ms += 1
        m = FakeMessage(topic, p, len(log), key, value, list(headers or []), self.clock_ms)
        log.append(m)
        return m

    def read(self, topic: str) -> list[FakeMessage]:
        """Every message of ``topic``, partition by partition."""
        return [m for log in self.logs.get(topic, []) for m in log]

    def end(self, topic: str, partition: int) -> int:
        return len(self.logs[topic][partition])


class FakeConsumer:
    def __init__(self, broker: FakeBroker, group_id: str, config: dict[str, Any]) -> None:
        self.broker = broker
        self.group_id = group_id
        self.config = config
        self._eof = bool(config.get("enable.partition.eof"))
        self._positions: dict[tuple[str, int], int] = {}
        self._eof_sent: set[tuple[str, int, int]] = set()
        self._subscription: tuple[list[str], Callable | None, Callable | None] | None = None
        self._joined = False
        self.closed = False

    # --- metadata and offsets -----------------------------------------------------------------
    def list_topics(self, topic: str | None = None, timeout: float = -1) -> _Metadata:
        names = [topic] if topic is not None else list(self.broker.logs)
        return _Metadata({t: _TopicMeta({p: None for p in range(len(self.broker.logs[t]))})
                          for t in names if t in self.broker.logs})

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float = -1, cached: bool = False) -> tuple[int, int]:
        return 0, self.broker.end(tp.topic, tp.partition)

    def offsets_for_times(self, tps: list[TopicPartition], timeout: float = -1) -> list[TopicPartition]:
        out = []
        for tp in tps:
            found = next((m.offset() for m in self.broker.logs[tp.topic][tp.partition]
                          if m.timestamp()[1] >= tp.offset), -1)
            out.append(TopicPartition(tp.topic, tp.partition, found))
        return out

    def committed(self, tps: list[TopicPartition], timeout: float = -1) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.broker.committed.get((self.group_id, tp.topic, tp.partition),
                                                                                -1001)) for tp in tps]

    def position(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self._positions.get((tp.topic, tp.partition), -1001))
                for tp in tps]

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t, p in self._positions]

    # --- assignment ---------------------------------------------------------------------------
    def assign(self, tps: Iterable[TopicPartition]) -> None:
        self._positions = {}
        for tp in tps:
            if tp.offset == OFFSET_BEGINNING:
                offset = 0
            elif tp.offset == OFFSET_END:
                offset = self.broker.end(tp.topic, tp.partition)
            elif tp.offset < 0:  # OFFSET_INVALID / STORED: the group's commit, else auto.offset.reset=earliest
                offset = self.broker.committed.get((self.group_id, tp.topic, tp.partition), 0)
            else:
                offset = tp.offset
            self._positions[(tp.topic, tp.partition)] = offset

    def subscribe(self, topics: list[str], on_assign: Callable | None = None, on_revoke: Callable | None = None) -> None:
        self._subscription = (topics, on_assign, on_revoke)

    def _join(self) -> None:
        """The group's only member: every partition of the subscribed topics is this consumer's."""
        topics, on_assign, _ = self._subscription  # type: ignore[misc]
        self._joined = True
        tps = [TopicPartition(t, p) for t in topics for p in range(len(self.broker.logs[t]))]
        if on_assign is not None:
            on_assign(self, tps)
        else:
            self.assign(tps)

    # --- reading ------------------------------------------------------------------------------
    def poll(self, timeout: float | None = None) -> FakeMessage | None:
        got = self.consume(1, timeout or 0)
        return got[0] if got else None

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[FakeMessage]:
        if self._subscription is not None and not self._joined:
            self._join()
        out: list[FakeMessage] = []
        for (topic, p), at in list(self._positions.items()):
            log = self.broker.logs[topic][p]
            while at < len(log) and len(out) < num_messages:
                out.append(log[at])
                at += 1
            self._positions[(topic, p)] = at
            if self._eof and at >= len(log) and (topic, p, at) not in self._eof_sent and len(out) < num_messages:
                self._eof_sent.add((topic, p, at))
                out.append(FakeMessage(topic, p, at, None, None, _error=FakeError(KafkaError._PARTITION_EOF)))
        return out

    def commit(self, message: Any = None, offsets: list[TopicPartition] | None = None,
               asynchronous: bool = True) -> None:
        done = {(tp.topic, tp.partition): tp.offset for tp in offsets or []}
        for (topic, p), offset in done.items():
            self.broker.committed[(self.group_id, topic, p)] = offset
        self.broker.commits.append((self.group_id, done))

    def close(self) -> None:
        self.closed = True


@dataclass
class _Offset:
    offset: int


class FakeAdmin:
    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker

    def list_offsets(self, specs: dict[TopicPartition, Any], request_timeout: float = -1, **_: Any
                     ) -> dict[TopicPartition, Future]:
        out = {}
        for tp in specs:  # only OffsetSpec.latest() is asked for
            f: Future = Future()
            f.set_result(_Offset(self.broker.end(tp.topic, tp.partition)))
            out[tp] = f
        return out


class FakeProducer:
    """Records reach the log, and their delivery callbacks run, when the producer is polled or flushed."""

    def __init__(self, broker: FakeBroker, config: dict[str, Any] | None = None) -> None:
        self.broker = broker
        #: The librdkafka overrides it was made with (``KafkaClients.producer(**overrides)``).
        self.config = dict(config or {})
        self._pending: list[tuple[str, bytes | None, bytes | None, Any, Callable | None]] = []
        #: While True nothing is delivered (a slow broker): what waits for delivery must wait.
        self.hold = False

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None, headers: Any = None,
                on_delivery: Callable | None = None, **_: Any) -> None:
        self._pending.append((topic, key, value, headers, on_delivery))

    def poll(self, timeout: float = 0) -> int:
        if self.hold:
            return 0
        pending, self._pending = self._pending, []
        for topic, key, value, headers, on_delivery in pending:
            m = self.broker.append(topic, key, value, headers)
            if on_delivery is not None:
                on_delivery(None, m)
        return len(pending)

    def flush(self, timeout: float = -1) -> int:
        self.poll(0)
        return len(self._pending)

    def __len__(self) -> int:
        return len(self._pending)


@dataclass
class FakeClients:
    """:class:`~flitfeed.kafka.clients.KafkaClients` over one :class:`FakeBroker`; keeps what it made."""

    broker: FakeBroker = field(default_factory=FakeBroker)
    consumers: list[FakeConsumer] = field(default_factory=list)
    producers: list[FakeProducer] = field(default_factory=list)

    def consumer(self, group_id: str, **overrides: Any) -> FakeConsumer:
        c = FakeConsumer(self.broker, group_id, overrides)
        self.consumers.append(c)
        return c

    def producer(self, **overrides: Any) -> FakeProducer:
        p = FakeProducer(self.broker, overrides)
        self.producers.append(p)
        return p

    def admin(self, **overrides: Any) -> FakeAdmin:
        return FakeAdmin(self.broker)
