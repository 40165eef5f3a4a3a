"""Reading and writing the catalogue of embedding versions (the compacted ``model-versions`` topic).

A thin adapter: the catalogue's logic is :mod:`flitfeed.index.versions`. The topic holds the catalogue
(key ``catalog``; the latest record is the catalogue, written by operator commands such as
``flitfeed reembed``, one at a time) and the workers' acknowledgements (key ``ack|<tag>|<instance>``:
"I embed new flits with this version too"). A running worker follows it with :class:`CatalogFollower`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from flitfeed.kafka.config import consumer_config, instance_headers
from flitfeed.kafka.reading import consume_available, read_partition
from flitfeed.settings import TOPIC_MODEL_VERSIONS, Settings
from flitfeed.startup import kafka_call
from flitfeed.streams.events import DecodeError, VersionAck, VersionCatalog, decode_internal
from flitfeed.streams.topics import INTERNAL_MAX_BYTES

__all__ = ["CATALOG_KEY", "CatalogFollower", "VersionsLog", "read_catalog", "read_versions_log", "write_catalog"]

CATALOG_KEY = b"catalog"


@dataclass
class VersionsLog:
    """What the ``model-versions`` topic says: the latest catalogue, and which workers embed which version."""

    catalog: VersionCatalog | None = None
    #: version → instances that acknowledged it
    acks: dict[str, set[str]] = field(default_factory=dict)

    def apply(self, key: bytes | None, value: bytes | None) -> bool:
        """Take one record in; True when it was a (newer) catalogue."""
        if value is None or key is None:
            return False
        try:
            if key == CATALOG_KEY:
                found = decode_internal(value, VersionCatalog, INTERNAL_MAX_BYTES)
                if self.catalog is None or found.written_at >= self.catalog.written_at:
                    self.catalog = found
                    return True
            elif key.startswith(b"ack|"):
                ack = decode_internal(value, VersionAck, INTERNAL_MAX_BYTES)
                self.acks.setdefault(ack.version, set()).add(ack.instance)
        except DecodeError:
            pass  # only flitfeed writes it; a bad record is skipped and the previous catalogue stands
        return False


def _partitions(settings: Settings, consumer: Consumer) -> list[int]:
    topic = settings.topic(TOPIC_MODEL_VERSIONS)
    # All topics, not list_topics(topic): asking for one by name may auto-create it, uncompacted.
    meta = kafka_call(lambda: consumer.list_topics(timeout=10), what="topic metadata")
    return sorted(meta.topics[topic].partitions) if topic in meta.topics else []


def read_catalog(settings: Settings, *, timeout_s: float = 30.0) -> VersionCatalog | None:
    """The latest catalogue, or None when no version was ever registered (every deployment before versions)."""
    return read_versions_log(settings, timeout_s=timeout_s).catalog


def read_versions_log(settings: Settings, *, timeout_s: float = 30.0) -> VersionsLog:
    """Everything on ``model-versions`` up to its end now."""
    topic = settings.topic(TOPIC_MODEL_VERSIONS)
    probe = Consumer(consumer_config(settings, group_id=f"{settings.app_id}-versions-unused"))
    try:
        partitions = _partitions(settings, probe)
    finally:
        probe.close()
    log = VersionsLog()
    for p in partitions:
        for m in read_partition(settings, topic, p, group_id=f"{settings.app_id}-versions-unused",
                                timeout_s=timeout_s):
            log.apply(m.key(), m.value())
    return log


class CatalogFollower:
    """Follows ``model-versions`` from its start (blocking calls: run it off an event loop).

    >>> follower = CatalogFollower(settings)        # doctest: +SKIP
    >>> follower.poll(timeout=0.5)                  # a newer catalogue, or None  # doctest: +SKIP
    """

    def __init__(self, settings: Settings) -> None:
        self.log = VersionsLog()
        self._consumer = Consumer(consumer_config(settings, group_id=f"{settings.app_id}-versions-unused"))
        topic = settings.topic(TOPIC_MODEL_VERSIONS)
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in _partitions(settings, self._consumer)])

    def poll(self, timeout: float = 0.0) -> VersionCatalog | None:
        """A newer catalogue than the last one returned, if one arrived within ``timeout`` s."""
        newer = False
        for m in consume_available(self._consumer, 100, timeout):
            if m.error() is None:
                newer = self.log.apply(m.key(), m.value()) or newer
        return self.log.catalog if newer else None

    def close(self) -> None:
        self._consumer.close()


def ack_record(settings: Settings, version: str) -> tuple[bytes, bytes]:
    """The (key, value) of this worker's acknowledgement that it embeds new flits with ``version`` too."""
    from datetime import datetime, timezone

    from flitfeed.index.versions import ack_key

    instance = settings.instance()
    return ack_key(version, instance), VersionAck(version=version, instance=instance,
                                                  at=datetime.now(timezone.utc)).to_bytes()


def write_catalog(settings: Settings, producer: Producer, catalog: VersionCatalog) -> None:
    """Publish ``catalog`` and wait until the broker has it (a switch must be durable before it is announced)."""
    record = catalog.model_copy(update={"written_by": settings.instance()})
    producer.produce(settings.topic(TOPIC_MODEL_VERSIONS), key=CATALOG_KEY, value=record.to_bytes(),
                     headers=instance_headers(settings))
    remaining = producer.flush(30)
    if remaining:
        raise TimeoutError("the version catalogue was not acknowledged by the broker within 30 s")
