"""The real local broker (deploy/kafka/kafka.sh) and topic administration.

Runs against the ``broker`` fixture (the project's broker, or ``FLITFEED_TEST_BOOTSTRAP``);
a missing broker is a failure, not a skip.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from flitfeed.kafka import (
    TOPIC_SPECS,
    BrokerUnavailableError,
    client_config,
    consumer_config,
    create_topics,
    delete_topics,
    describe,
    producer_config,
    topic_names,
    wait_for_broker,
)
from flitfeed.settings import KafkaConfig, Settings
from flitfeed.streams.topics import TOPIC_FLIT_VECTORS, TOPIC_FLITS, TOPIC_USER_STATES

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings(broker: str) -> Settings:
    # A fresh prefix per run: topics of an earlier, crashed run cannot leak in.
    s = Settings(bootstrap_servers=broker, topic_prefix=f"it-broker-{uuid.uuid4().hex[:12]}-", partitions=6,
                 replication_factor=1)
    wait_for_broker(s.kafka, timeout_s=60)
    return s


@pytest.fixture(scope="module")
def topics(settings: Settings) -> Iterator[list[str]]:
    names = create_topics(settings.kafka)
    yield names
    delete_topics(settings.kafka, names)


def test_all_topics_have_the_configured_partitions(settings: Settings, topics: list[str]) -> None:
    assert topics == topic_names(settings.kafka)
    assert describe(settings.kafka) == {name: 6 for name in topics}


def test_cleanup_policies_and_retention(settings: Settings, topics: list[str]) -> None:
    admin = AdminClient(client_config(settings.kafka))
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in topics]
    configs = {resource.name: future.result(timeout=30) for resource, future in admin.describe_configs(resources).items()}
    policies = {name: config["cleanup.policy"].value for name, config in configs.items()}
    expected = {settings.kafka.topic(spec.name): "compact" if spec.compacted else "delete" for spec in TOPIC_SPECS}
    assert policies == expected
    # The flits log is kept forever: a new embedding version is re-embedded from it.
    assert configs[settings.kafka.topic(TOPIC_FLITS)]["retention.ms"].value == "-1"
    assert policies[settings.kafka.topic(TOPIC_FLIT_VECTORS)] == "compact"
    assert policies[settings.kafka.topic(TOPIC_USER_STATES)] == "compact"


def test_create_topics_is_idempotent(settings: Settings, topics: list[str]) -> None:
    assert create_topics(settings.kafka) == topics
    assert describe(settings.kafka) == {name: 6 for name in topics}


def test_produce_consume_round_trip(settings: Settings, topics: list[str]) -> None:
    topic = settings.kafka.topic(TOPIC_FLITS)
    sent = {f"flit-{i}".encode(): f"text {i}".encode() for i in range(50)}

    delivery_errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            delivery_errors.append(err)

    producer = Producer(producer_config(settings.kafka))
    for key, value in sent.items():
        producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
    assert producer.flush(30) == 0
    assert delivery_errors == []

    group_id = f"{settings.kafka.topic_prefix}round-trip"
    consumer = Consumer(consumer_config(settings.kafka, group_id=group_id))
    received: dict[bytes, bytes] = {}
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 60
        while len(received) < len(sent) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            received[msg.key()] = msg.value()
        # Auto-commit is off: offsets only move when the application says so.
        committed = consumer.commit(asynchronous=False)
        assert committed is not None
        assert sum(tp.offset for tp in committed if tp.offset > 0) == len(sent)
    finally:
        consumer.close()
    assert received == sent
    # Bound to a name: a temporary client would be destroyed before its
    # future completes, and the future would never resolve.
    admin = AdminClient(client_config(settings.kafka))
    admin.delete_consumer_groups([group_id])[group_id].result(timeout=30)


def test_read_partition_reads_a_range_and_stops(settings: Settings, topics: list[str]) -> None:
    from flitfeed.kafka.reading import read_partition

    topic = settings.kafka.topic(TOPIC_USER_STATES)
    producer = Producer(producer_config(settings.kafka))
    # In the past: the broker refuses timestamps more than an hour ahead of its clock.
    stamps = [int(time.time() * 1000) - 100_000 + 1000 * i for i in range(10)]
    for i, ts in enumerate(stamps):
        producer.produce(topic, key=b"k", value=f"m{i}".encode(), partition=3, timestamp=ts)
    assert producer.flush(30) == 0

    def read(**kw: object) -> list[bytes]:
        return [m.value() for m in read_partition(settings.kafka, topic, 3, group_id=f"{settings.kafka.topic_prefix}read", **kw)]

    assert read() == [f"m{i}".encode() for i in range(10)]              # the log as it is now
    assert read(until=4) == [b"m0", b"m1", b"m2", b"m3"]                 # up to an offset, exclusive
    assert read(since_ms=stamps[7]) == [b"m7", b"m8", b"m9"]             # from a time
    assert read(since_ms=stamps[7], until=8) == [b"m7"]
    assert read(since_ms=stamps[-1] + 1) == [] and read(until=0) == []
    assert [m.value() for m in read_partition(settings.kafka, topic, 4, group_id="x")] == []   # an empty partition


def test_wait_for_broker_on_a_closed_port_fails_in_time() -> None:
    # Bind and release a port so that nothing listens on it.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"127.0.0.1:{port}"

    started = time.monotonic()
    with pytest.raises(BrokerUnavailableError, match=address):
        wait_for_broker(KafkaConfig(bootstrap_servers=address), timeout_s=2)
    assert time.monotonic() - started < 5
