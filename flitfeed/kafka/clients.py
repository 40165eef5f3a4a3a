"""Where a service's Kafka clients come from: one small factory, injected.

A service that builds its own ``Consumer``/``Producer`` can only be run against a broker. Taking a
:class:`KafkaClients` instead lets the wiring (``flitfeed/cli.py``) hand it the confluent clients and a test
hand it in-memory ones (``tests/unit/fake_kafka.py``), with the service's code unchanged. Every client is
still configured in one place (:mod:`flitfeed.kafka.config`): :class:`ConfluentClients` only calls it.

Overrides use librdkafka's dotted names, as in :mod:`flitfeed.kafka.config`::

    clients = ConfluentClients(settings.kafka)
    reader = clients.consumer(f"{settings.kafka.app_id}-replica-unused", **{"enable.partition.eof": True})
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from flitfeed.kafka.config import client_config, consumer_config, producer_config
from flitfeed.settings import KafkaConfig

__all__ = ["ConfluentClients", "KafkaClients", "clients_for"]


class KafkaClients(Protocol):
    """Makes the Kafka clients a service uses; each call is a new client, owned (and closed) by the caller."""

    def consumer(self, group_id: str, **overrides: Any) -> Consumer:
        """A consumer that commits only what the application commits (``group_id`` may just name a reader)."""

    def producer(self, **overrides: Any) -> Producer:
        """An idempotent producer."""

    def admin(self, **overrides: Any) -> AdminClient:
        """An admin client (offset and metadata queries)."""


@dataclass(frozen=True, slots=True)
class ConfluentClients:
    """:class:`KafkaClients` as confluent-kafka clients configured from ``kafka`` (the services' default)."""

    kafka: KafkaConfig

    def consumer(self, group_id: str, **overrides: Any) -> Consumer:
        return Consumer(consumer_config(self.kafka, group_id=group_id, **overrides))

    def producer(self, **overrides: Any) -> Producer:
        return Producer(producer_config(self.kafka, **overrides))

    def admin(self, **overrides: Any) -> AdminClient:
        return AdminClient(client_config(self.kafka, **overrides))


def clients_for(kafka: KafkaConfig, clients: KafkaClients | None = None) -> KafkaClients:
    """``clients`` when given, else the confluent clients of ``kafka``: the default every injection point uses,
    so callers that pass nothing keep talking to the broker as before.

    >>> clients_for(KafkaConfig(bootstrap_servers="b:9092")).kafka.bootstrap_servers
    'b:9092'
    """
    return clients if clients is not None else ConfluentClients(kafka)
