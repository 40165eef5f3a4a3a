"""Kafka plumbing shared by all services: client configuration and topics."""

from flitfeed.kafka.admin import (
    TOPIC_SPECS,
    BrokerUnavailableError,
    KafkaAdminError,
    TopicSpec,
    create_topics,
    delete_run_topics,
    delete_topics,
    describe,
    topic_names,
    wait_for_broker,
)
from flitfeed.kafka.config import client_config, consumer_config, producer_config

__all__ = [
    "TOPIC_SPECS",
    "BrokerUnavailableError",
    "KafkaAdminError",
    "TopicSpec",
    "client_config",
    "consumer_config",
    "create_topics",
    "delete_run_topics",
    "delete_topics",
    "describe",
    "producer_config",
    "topic_names",
    "wait_for_broker",
]
