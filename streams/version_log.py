"""Reading and writing the catalogue of embedding versions (the compacted ``model-versions`` topic).

A thin adapter: the catalogue's logic is :mod:`flitfeed.index.versions`. The topic holds one key
(``catalog``); the latest record is the catalogue. Writers are operator commands (``flitfeed reembed``),
one at a time.
"""

from __future__ import annotations

from confluent_kafka import Producer

from flitfeed.kafka.config import consumer_config, instance_headers
from flitfeed.kafka.reading import read_partition
from flitfeed.settings import TOPIC_MODEL_VERSIONS, Settings
from flitfeed.startup import kafka_call
from flitfeed.streams.events import DecodeError, VersionCatalog, decode_internal
from flitfeed.streams.topics import INTERNAL_MAX_BYTES

__all__ = ["CATALOG_KEY", "read_catalog", "write_catalog"]

CATALOG_KEY = b"catalog"


def read_catalog(settings: Settings, *, timeout_s: float = 30.0) -> VersionCatalog | None:
    """The latest catalogue, or None when no version was ever registered (every deployment before versions)."""
    from confluent_kafka import Consumer

    topic = settings.topic(TOPIC_MODEL_VERSIONS)
    probe = Consumer(consumer_config(settings, group_id=f"{settings.app_id}-versions-unused"))
    try:
        # All topics, not list_topics(topic): asking for one by name may auto-create it, uncompacted.
        meta = kafka_call(lambda: probe.list_topics(timeout=10), what="topic metadata")
        partitions = sorted(meta.topics[topic].partitions) if topic in meta.topics else []
    finally:
        probe.close()
    latest: VersionCatalog | None = None
    for p in partitions:
        for m in read_partition(settings, topic, p, group_id=f"{settings.app_id}-versions-unused",
                                timeout_s=timeout_s):
            if m.key() != CATALOG_KEY or m.value() is None:
                continue
            try:
                found = decode_internal(m.value(), VersionCatalog, INTERNAL_MAX_BYTES)
            except DecodeError:
                continue  # only flitfeed's commands write it; a bad record is skipped, the previous one stands
            if latest is None or found.written_at >= latest.written_at:
                latest = found
    return latest


def write_catalog(settings: Settings, producer: Producer, catalog: VersionCatalog) -> None:
    """Publish ``catalog`` and wait until the broker has it (a switch must be durable before it is announced)."""
    record = catalog.model_copy(update={"written_by": settings.instance()})
    producer.produce(settings.topic(TOPIC_MODEL_VERSIONS), key=CATALOG_KEY, value=record.to_bytes(),
                     headers=instance_headers(settings))
    remaining = producer.flush(30)
    if remaining:
        raise TimeoutError("the version catalogue was not acknowledged by the broker within 30 s")
