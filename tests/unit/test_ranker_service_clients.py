"""The ranker service driven end to end through injected Kafka clients, with no broker.

User states and feed requests go in, feeds come out; the inputs' offsets are committed only once the
feeds are delivered; a bad input is dead-lettered and costs no other feed. Everything the service reads
or writes goes through :class:`tests.unit.fake_kafka.FakeClients`.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Callable

import pytest
from prometheus_client import CollectorRegistry

from flitfeed.index.memory import MemoryIndex
from flitfeed.index.versions import VersionGate
from flitfeed.monitoring.metrics import Metrics
from flitfeed.ranker.service import RankerService
from flitfeed.settings import Settings
from flitfeed.streams.events import DeadLetter, Feed, FeedRequest, Flit, FlitVector, UserState
from flitfeed.streams.topics import (TOPIC_DEAD_LETTERS, TOPIC_FEED_REQUESTS, TOPIC_FEEDS, TOPIC_FLIT_VECTORS,
                                     TOPIC_USER_STATES, TOPICS)
from tests.unit.fake_kafka import FakeClients

VERSION = "m@1"
NOW = datetime.now(timezone.utc)


def poll_until(service: RankerService, done: Callable[[], bool], timeout_s: float = 20.0) -> None:
    """Step the service until ``done()`` holds (its loop, without the broker's waits)."""
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "condition not reached in time"
        service.step(timeout=0)


def flit_vector(flit_id: str, vector: list[float]) -> bytes:
    return FlitVector(flit=Flit(flit_id=flit_id, author_id=f"a-{flit_id}", text="worms", created_at=NOW),
                      vector=vector, model_version=VERSION, embedded_at=NOW).to_bytes()


def user_state(user_id: str, trigger_id: str, taste: list[float], seen: list[str]) -> bytes:
    return UserState(user_id=user_id, taste=taste, positives=len(seen), seen=seen, updated_at=NOW,
                     trigger_id=trigger_id, trigger_ts=time.time(), model_version=VERSION).to_bytes()


def fake_broker(settings: Settings) -> FakeClients:
    """Fake clients over a broker holding every topic of ``settings``."""
    clients = FakeClients()
    for spec in TOPICS:
        clients.broker.create(settings.kafka.topic(spec.name), settings.kafka.partitions)
    return clients


def ranker(settings: Settings, clients: FakeClients) -> RankerService:
    return RankerService(settings, MemoryIndex(4), None, Metrics("ranker", registry=CollectorRegistry()),
                         gate=VersionGate(VERSION), clients=clients)


@pytest.fixture
def world(tmp_path):  # noqa: ANN001, ANN201 - (settings, clients, service)
    settings = Settings().replace(partitions=2, instance_id="ranker-test", topic_prefix="t-", data_dir=tmp_path)
    clients = fake_broker(settings)
    broker = clients.broker
    vectors = {"f1": [1.0, 0.0, 0.0, 0.0], "f2": [0.9, 0.1, 0.0, 0.0], "f3": [0.0, 1.0, 0.0, 0.0],
               "f4": [0.0, 0.9, 0.1, 0.0], "f5": [0.0, 0.0, 1.0, 0.0], "f6": [0.0, 0.0, 0.0, 1.0]}
    for fid, v in vectors.items():
        broker.append(settings.kafka.topic(TOPIC_FLIT_VECTORS), fid.encode(), flit_vector(fid, v))
    service = ranker(settings, clients)
    yield settings, clients, service
    service.close()


def test_states_and_requests_in_feeds_out_committed_after_delivery_bad_input_dead_lettered(world) -> None:  # noqa: ANN001
    settings, clients, service = world
    broker = clients.broker
    t = settings.kafka.topic
    inputs = [
        (t(TOPIC_USER_STATES), b"wren", user_state("wren", "e1", [1.0, 0.0, 0.0, 0.0], ["f1"])),
        (t(TOPIC_USER_STATES), b"robin", user_state("robin", "e2", [0.0, 1.0, 0.0, 0.0], ["f3"])),
        (t(TOPIC_USER_STATES), b"wren", b"{not json"),
        (t(TOPIC_USER_STATES), b"wren", user_state("wren", "e3", [0.9, 0.1, 0.0, 0.0], ["f1", "f2"])),
        (t(TOPIC_FEED_REQUESTS), b"jay", FeedRequest(request_id="r1", user_id="jay", k=3).to_bytes()),
    ]
    for topic, key, value in inputs:
        broker.append(topic, key, value)
    producer = clients.producers[0]
    ranker_commits = lambda: [c for group, c in broker.commits if group == settings.kafka.ranker_group]  # noqa: E731

    # A slow broker: the feeds are built and handed to the producer, but nothing is delivered yet.
    producer.hold = True
    poll_until(service, lambda: len(producer) >= 4)
    for _ in range(3):
        service.step(timeout=0)
    assert broker.read(t(TOPIC_FEEDS)) == [] and ranker_commits() == [], "committed before the feeds were delivered"

    producer.hold = False
    ends = {(topic, p): broker.end(topic, p) for topic in (t(TOPIC_USER_STATES), t(TOPIC_FEED_REQUESTS))
            for p in range(settings.kafka.partitions)}
    committed = lambda: {tp: off for c in ranker_commits() for tp, off in c.items()}  # noqa: E731
    poll_until(service, lambda: all(committed().get(tp, 0) >= end for tp, end in ends.items() if end))

    feeds = [Feed.model_validate_json(m.value()) for m in broker.read(t(TOPIC_FEEDS))]
    by_user = {f.user_id: f for f in feeds}
    assert sorted(by_user) == ["jay", "robin", "wren"] and len(feeds) == 3
    # wren's two state changes in one poll: one feed from the newest state, answering both.
    assert by_user["wren"].trigger_id == "e3" and by_user["wren"].covers == ["e1", "e3"]
    assert not {"f1", "f2"} & {i.flit_id for i in by_user["wren"].items}, "a seen flit was served"
    assert by_user["wren"].items and by_user["robin"].items and not by_user["wren"].cold_start
    assert by_user["jay"].trigger_kind == "request" and by_user["jay"].cold_start and len(by_user["jay"].items) <= 3
    assert {f.model_version for f in feeds} == {VERSION}
    # Every feed was delivered before its inputs' offsets were committed.
    assert committed() == {tp: end for tp, end in ends.items() if end}

    letters = [DeadLetter.model_validate_json(m.value()) for m in broker.read(t(TOPIC_DEAD_LETTERS))]
    assert [(d.source_topic, d.original_value()) for d in letters] == [(t(TOPIC_USER_STATES), b"{not json")]
    assert service.user_count() == 2


def test_the_producer_lingers_as_configured(tmp_path) -> None:  # noqa: ANN001
    """``FLITFEED_RANKER_PRODUCER_LINGER_MS`` reaches the ranker's producer (librdkafka's ``linger.ms``)."""
    for linger in (0.5, 7.0):
        settings = Settings().replace(ranker_producer_linger_ms=linger, instance_id="ranker-test", topic_prefix="t-",
                                      data_dir=tmp_path / str(linger))
        clients = fake_broker(settings)
        service = ranker(settings, clients)
        try:
            assert clients.producers[0].config["linger.ms"] == linger
        finally:
            service.close()


def test_a_restart_reads_the_held_states_back_without_serving_them_again(world) -> None:  # noqa: ANN001
    settings, clients, service = world
    broker = clients.broker
    t = settings.kafka.topic
    broker.append(t(TOPIC_USER_STATES), b"wren", user_state("wren", "e1", [1.0, 0.0, 0.0, 0.0], ["f1"]))
    poll_until(service, lambda: len(broker.read(t(TOPIC_FEEDS))) == 1 and bool(broker.commits))
    service.close()

    restarted = ranker(settings, clients)
    try:
        broker.append(t(TOPIC_FEED_REQUESTS), b"wren", FeedRequest(request_id="r9", user_id="wren").to_bytes())
        poll_until(restarted, lambda: any(Feed.model_validate_json(m.value()).trigger_id == "r9"
                                          for m in broker.read(t(TOPIC_FEEDS))))
        feeds = [Feed.model_validate_json(m.value()) for m in broker.read(t(TOPIC_FEEDS))]
        # The state committed before the restart is held again (a warm feed), and its feed was not re-published.
        assert [f.trigger_id for f in feeds] == ["e1", "r9"]
        assert not feeds[-1].cold_start and restarted.user_count() == 1
    finally:
        restarted.close()
