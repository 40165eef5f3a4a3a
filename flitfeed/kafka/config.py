"""confluent-kafka client configuration, in one place.

Every producer, consumer and admin client of flitfeed is configured from here,
so that connection and security settings (TLS, SASL: :mod:`flitfeed.kafka.security`)
are added once.

Overrides use librdkafka's dotted names, hence the ``**{...}`` form::

    producer_config(kafka, **{"linger.ms": 20})
"""

from __future__ import annotations

from typing import Any

from flitfeed.kafka.security import librdkafka_security
from flitfeed.settings import KafkaConfig


def client_config(kafka: KafkaConfig, **overrides: Any) -> dict[str, Any]:
    """Settings shared by every client (admin clients use this directly)."""
    config: dict[str, Any] = {"bootstrap.servers": kafka.bootstrap_servers}
    config.update(librdkafka_security(kafka))
    config.update(overrides)
    return config


def producer_config(kafka: KafkaConfig, **overrides: Any) -> dict[str, Any]:
    """A producer that neither loses nor duplicates records on retries."""
    config = client_config(
        kafka,
        **{
            # Idempotence needs acks=all; spelled out so nobody "optimises"
            # it to acks=1 without noticing what they give up.
            "enable.idempotence": True,
            "acks": "all",
            # A short wait lets the encoder's bursts share a request.
            "linger.ms": 2,
            "compression.type": "lz4",
            # Java's (and Faust's) partitioner. librdkafka's default hashes keys differently, which
            # would put a user's interactions and their parked retries on different partitions.
            "partitioner": "murmur2_random",
        },
    )
    config.update(overrides)
    return config


def consumer_config(kafka: KafkaConfig, group_id: str, **overrides: Any) -> dict[str, Any]:
    """A consumer whose offsets are committed by the application after
    processing (at-least-once), starting from the beginning for a new group."""
    config = client_config(
        kafka,
        **{
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        },
    )
    config.update(overrides)
    return config


#: Header naming the process (``KafkaConfig.instance()``) that produced a record: which replica wrote a feed.
INSTANCE_HEADER = "flitfeed-instance"


def instance_headers(kafka: KafkaConfig) -> list[tuple[str, bytes]]:
    """Headers every record produced by a flitfeed service carries.

    >>> instance_headers(KafkaConfig(instance_id="ranker-0"))
    [('flitfeed-instance', b'ranker-0')]
    """
    return [(INSTANCE_HEADER, kafka.instance().encode())]


def session_config(kafka: KafkaConfig) -> dict[str, Any]:
    """Group-membership timing for the ranker's consumer (the worker's Faust app uses the same numbers).

    >>> session_config(KafkaConfig(group_session_timeout_s=6))
    {'session.timeout.ms': 6000, 'heartbeat.interval.ms': 2000}
    """
    timeout_ms = int(kafka.group_session_timeout_s * 1000)
    return {"session.timeout.ms": timeout_ms, "heartbeat.interval.ms": min(3000, timeout_ms // 3)}
