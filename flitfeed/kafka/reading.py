"""Reading one partition of a topic up to a point, outside any consumer group.

The ranker re-reads logs when it is assigned a partition: the user states up to its group's committed
offset (without publishing), and the feedback loop's impressions, examples and interactions of the last
window. Both are "from here to there, then stop": :func:`read_partition` is that loop, once.
"""

from __future__ import annotations

import time
from typing import Iterator

from confluent_kafka import Consumer, Message, TopicPartition

from flitfeed.kafka.clients import KafkaClients, clients_for
from flitfeed.settings import KafkaConfig
from flitfeed.startup import kafka_call


def consume_available(consumer: Consumer, num_messages: int, timeout: float) -> list[Message]:
    """Up to ``num_messages`` messages: waits at most ``timeout`` s for the first, then takes only what is
    already there.

    confluent-kafka's ``consume(n, timeout)`` waits until ``n`` messages arrived *or* the timeout passed,
    so at a low rate every message waited most of the timeout (measured: 29 ms p50 from produce to a
    consumer polling with ``consume(100, 0.05)``, 4 ms with this).
    """
    first = consumer.poll(timeout)
    if first is None:
        return []
    return [first, *consumer.consume(num_messages - 1, timeout=0)] if num_messages > 1 else [first]


def watermarks(kafka: KafkaConfig, topic: str) -> dict[int, tuple[int, int]]:
    """partition → ``(low, high)`` offsets of ``topic`` now; ``{}`` when the topic does not exist (asked through
    the cluster's topic list: asking for one topic by name may auto-create it)."""
    probe = clients_for(kafka).consumer(f"{kafka.app_id}-watermarks-unused")
    try:
        meta = kafka_call(lambda: probe.list_topics(timeout=10), what="the cluster's topics")
        if topic not in meta.topics:
            return {}
        return {p: kafka_call(lambda p=p: probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10),
                              what=f"offsets of {topic}[{p}]")
                for p in sorted(meta.topics[topic].partitions)}
    finally:
        probe.close()


def read_partition(kafka: KafkaConfig, topic: str, partition: int, *, group_id: str,
                   since_ms: int | None = None, until: int | None = None, start: int | None = None,
                   timeout_s: float = 60.0, clients: KafkaClients | None = None) -> Iterator[Message]:
    """The messages of ``topic[partition]`` from its start (or the first at or after ``since_ms``, epoch ms,
    or from offset ``start``) up to offset ``until`` (exclusive; default: the end of the log as it is now),
    in order.

    ``group_id`` only names the reader (nothing is committed); ``clients`` makes it (default: the confluent
    clients of ``kafka``). Raises :class:`TimeoutError` when the range is not read within ``timeout_s``, and
    what :func:`~flitfeed.startup.kafka_call` raises when the broker keeps refusing; transient errors are
    retried there.
    """
    reader = clients_for(kafka, clients).consumer(group_id)
    try:
        tp = TopicPartition(topic, partition)
        low, high = kafka_call(lambda: reader.get_watermark_offsets(tp, timeout=10),
                               what=f"offsets of {topic}[{partition}]")
        end = high if until is None else min(until, high)
        first = low if start is None else max(low, start)
        if since_ms is not None:
            found = kafka_call(lambda: reader.offsets_for_times([TopicPartition(topic, partition, since_ms)],
                                                                timeout=10), what=f"times of {topic}")
            first = found[0].offset if found[0].offset >= 0 else end
        if first >= end:
            return
        reader.assign([TopicPartition(topic, partition, first)])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for m in reader.consume(num_messages=1000, timeout=0.5):
                if m.error() is None and m.offset() < end:
                    yield m
            if reader.position([tp])[0].offset >= end:
                return
        raise TimeoutError(f"{topic}[{partition}] not read up to offset {end} within {timeout_s:.0f} s")
    finally:
        reader.close()
