"""Reading and writing the catalogue of embedding versions (the compacted ``model-versions`` topic).

A thin adapter: the catalogue's logic is :mod:`flitfeed.index.versions`. The topic holds the catalogue
(key ``catalog``; the latest record is the catalogue, written by operator commands such as
``flitfeed reembed``, one at a time) and the services' acknowledgements (:class:`VersionAck`), keyed
``<kind>|<tag>|<instance>``: ``ack|…`` "this worker embeds new flits with this version too",
``tastes|…`` "this worker has rebuilt every owned user's taste in it", ``serving|…`` "this ranker ranks
with it since ``at``". A running service follows it with :class:`CatalogFollower`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from flitfeed.index.versions import ACK_KINDS, AckKind
from flitfeed.kafka.clients import KafkaClients, clients_for
from flitfeed.kafka.config import consumer_config, instance_headers
from flitfeed.kafka.reading import consume_available, read_partition
from flitfeed.settings import KafkaConfig
from flitfeed.streams.topics import TOPIC_MODEL_VERSIONS
from flitfeed.startup import kafka_call
from flitfeed.streams.events import DecodeError, VersionAck, VersionCatalog, decode_internal
from flitfeed.streams.topics import INTERNAL_MAX_BYTES

__all__ = ["CATALOG_KEY", "CatalogFollower", "VersionsLog", "ack_record", "read_catalog", "read_versions_log",
           "write_catalog"]

CATALOG_KEY = b"catalog"


@dataclass
class VersionsLog:
    """What the ``model-versions`` topic says: the latest catalogue, and what each service said about each version.

    >>> from datetime import timezone
    >>> from flitfeed.index.versions import ack_key
    >>> at = datetime(2026, 11, 26, tzinfo=timezone.utc)
    >>> log = VersionsLog()
    >>> ack = VersionAck(version="b", instance="w0", at=at, kind="tastes")
    >>> log.apply(ack_key("b", "w0", "tastes"), ack.to_bytes())
    False
    >>> log.tastes["b"]["w0"] == at, log.without_tastes("b", {"w0", "w1"})
    (True, {'w1'})
    >>> log.apply(ack_key("b", "w0", "tastes"), None)    # a tombstone (the version was dropped)
    False
    >>> log.tastes, log.without_tastes("b", {"w0"})
    ({'b': {}}, {'w0'})
    """

    catalog: VersionCatalog | None = None
    #: version → workers that embed new flits with it too (``embedding`` acks)
    acks: dict[str, set[str]] = field(default_factory=dict)
    #: version → worker → when it had rebuilt the taste of every user it owns in that version
    tastes: dict[str, dict[str, datetime]] = field(default_factory=dict)
    #: version → ranker → when it started ranking with that version (its latest switch to it)
    serving: dict[str, dict[str, datetime]] = field(default_factory=dict)
    #: ack key → (kind, version, instance): what a tombstone of that key takes back (the key holds only a tag)
    _keys: dict[bytes, tuple[str, str, str]] = field(default_factory=dict, repr=False)

    def apply(self, key: bytes | None, value: bytes | None) -> bool:
        """Take one record in; True when it was a (newer) catalogue."""
        if key is None:
            return False
        if value is None:
            self._forget(key)
            return False
        try:
            if key == CATALOG_KEY:
                found = decode_internal(value, VersionCatalog, INTERNAL_MAX_BYTES)
                if self.catalog is None or found.written_at >= self.catalog.written_at:
                    self.catalog = found
                    return True
            elif key.split(b"|", 1)[0] in _ACK_PREFIXES:
                ack = decode_internal(value, VersionAck, INTERNAL_MAX_BYTES)
                if _ACK_PREFIXES[key.split(b"|", 1)[0]] != ack.kind:
                    return False  # the key's kind and the value's disagree: not written by flitfeed
                self._forget(key)
                self._keys[key] = (ack.kind, ack.version, ack.instance)
                if ack.kind == "embedding":
                    self.acks.setdefault(ack.version, set()).add(ack.instance)
                else:
                    # Same key, same partition: the latest record of a key is its service's latest word.
                    self._by_kind(ack.kind).setdefault(ack.version, {})[ack.instance] = ack.at
        except DecodeError:
            pass  # only flitfeed writes it; a bad record is skipped and the previous catalogue stands
        return False

    def _by_kind(self, kind: str) -> dict[str, dict[str, datetime]]:
        return self.tastes if kind == "tastes" else self.serving

    def _forget(self, key: bytes) -> None:
        known = self._keys.pop(key, None)
        if known is None:
            return
        kind, version, instance = known
        if kind == "embedding":
            self.acks.get(version, set()).discard(instance)
        else:
            self._by_kind(kind).get(version, {}).pop(instance, None)

    def without_tastes(self, version: str, workers: Iterable[str]) -> set[str]:
        """The ``workers`` that have not said they rebuilt their users' tastes in ``version``."""
        return set(workers) - set(self.tastes.get(version, {}))

    def not_serving(self, version: str, rankers: Iterable[str], since: datetime) -> set[str]:
        """The ``rankers`` that have not said they rank with ``version`` from ``since`` on or later.

        An acknowledgement older than ``since`` is from an earlier switch to the same version (the ranker
        has since ranked with another): it does not count.
        """
        acked = self.serving.get(version, {})
        return {r for r in rankers if r not in acked or acked[r] < since}

    def serving_now(self) -> dict[str, str]:
        """Ranker → the version it said it switched to last."""
        latest: dict[str, tuple[datetime, str]] = {}
        for version, rankers in self.serving.items():
            for ranker, at in rankers.items():
                if ranker not in latest or at > latest[ranker][0]:
                    latest[ranker] = (at, version)
        return {ranker: version for ranker, (_, version) in latest.items()}


#: The first part of an acknowledgement's key → its kind.
_ACK_PREFIXES = {prefix.encode(): kind for kind, prefix in ACK_KINDS.items()}


def _partitions(kafka: KafkaConfig, consumer: Consumer) -> list[int]:
    topic = kafka.topic(TOPIC_MODEL_VERSIONS)
    # All topics, not list_topics(topic): asking for one by name may auto-create it, uncompacted.
    meta = kafka_call(lambda: consumer.list_topics(timeout=10), what="topic metadata")
    return sorted(meta.topics[topic].partitions) if topic in meta.topics else []


def read_catalog(kafka: KafkaConfig, *, timeout_s: float = 30.0) -> VersionCatalog | None:
    """The latest catalogue, or None when no version was ever registered (every deployment before versions)."""
    return read_versions_log(kafka, timeout_s=timeout_s).catalog


def read_versions_log(kafka: KafkaConfig, *, timeout_s: float = 30.0) -> VersionsLog:
    """Everything on ``model-versions`` up to its end now."""
    topic = kafka.topic(TOPIC_MODEL_VERSIONS)
    probe = Consumer(consumer_config(kafka, group_id=f"{kafka.app_id}-versions-unused"))
    try:
        partitions = _partitions(kafka, probe)
    finally:
        probe.close()
    log = VersionsLog()
    for p in partitions:
        for m in read_partition(kafka, topic, p, group_id=f"{kafka.app_id}-versions-unused",
                                timeout_s=timeout_s):
            log.apply(m.key(), m.value())
    return log


class CatalogFollower:
    """Follows ``model-versions`` from its start (blocking calls: run it off an event loop).

    >>> follower = CatalogFollower(kafka)        # doctest: +SKIP
    >>> follower.poll(timeout=0.5)                  # a newer catalogue, or None  # doctest: +SKIP
    """

    def __init__(self, kafka: KafkaConfig, clients: KafkaClients | None = None) -> None:
        """``clients`` makes its consumer (default: the confluent clients of ``kafka``)."""
        self.log = VersionsLog()
        self._consumer = clients_for(kafka, clients).consumer(f"{kafka.app_id}-versions-unused")
        topic = kafka.topic(TOPIC_MODEL_VERSIONS)
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in _partitions(kafka, self._consumer)])

    def poll(self, timeout: float = 0.0) -> VersionCatalog | None:
        """A newer catalogue than the last one returned, if one arrived within ``timeout`` s."""
        newer = False
        for m in consume_available(self._consumer, 100, timeout):
            if m.error() is None:
                newer = self.log.apply(m.key(), m.value()) or newer
        return self.log.catalog if newer else None

    def close(self) -> None:
        self._consumer.close()


def ack_record(kafka: KafkaConfig, version: str, kind: AckKind = "embedding", *,
               at: datetime | None = None) -> tuple[bytes, bytes]:
    """The (key, value) of this service's acknowledgement of ``version``: a worker's ``embedding`` (it embeds
    new flits with it too) or ``tastes`` (it rebuilt every owned user's taste in it), a ranker's ``serving``
    (it ranks with it from ``at`` on: when it switched; default now)."""
    from datetime import timezone

    from flitfeed.index.versions import ack_key

    instance = kafka.instance()
    return ack_key(version, instance, kind), VersionAck(version=version, instance=instance, kind=kind,
                                                        at=at or datetime.now(timezone.utc)).to_bytes()


def write_catalog(kafka: KafkaConfig, producer: Producer, catalog: VersionCatalog) -> None:
    """Publish ``catalog`` and wait until the broker has it (a switch must be durable before it is announced)."""
    record = catalog.model_copy(update={"written_by": kafka.instance()})
    producer.produce(kafka.topic(TOPIC_MODEL_VERSIONS), key=CATALOG_KEY, value=record.to_bytes(),
                     headers=instance_headers(kafka))
    remaining = producer.flush(30)
    if remaining:
        raise TimeoutError("the version catalogue was not acknowledged by the broker within 30 s")
