"""The load generator produces the world's events on the right topics, keyed as the services expect."""

from __future__ import annotations

import json

from flitfeed.demo.world import World
from flitfeed.loadgen import LoadGenerator, due
from flitfeed.settings import Settings


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    def produce(self, topic: str, key: bytes, value: bytes) -> None:
        self.sent.append((topic, key, value))

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        return 0


def test_schedule_is_open_loop() -> None:
    # Behind schedule, everything overdue is due at once: a slow system gets a burst, not a pause.
    assert due(100.0, 2.0, 50) == 150
    assert sum(due(10.0, t / 10, 0) - due(10.0, (t - 1) / 10, 0) for t in range(1, 11)) == 10


def test_run_sends_keyed_events_and_records_their_send_times() -> None:
    producer = FakeProducer()
    catalog = World(seed=1, n_birds=30, start=1000.0)
    catalog.next_flits(100, now=1000.0)
    gen = LoadGenerator(Settings(topic_prefix="p-"), catalog=catalog, live=World(seed=2, start=1000.0,
                        id_prefix="live"), producer=producer)
    sent = gen.run(interactions_per_s=400, flits_per_s=200, requests_per_s=100, duration_s=0.3)
    by_topic: dict[str, list[tuple[bytes, dict]]] = {}
    for topic, key, value in producer.sent:
        by_topic.setdefault(topic, []).append((key, json.loads(value)))
    assert set(by_topic) <= {"p-interactions", "p-flits", "p-feed-requests"}
    assert sent.interactions and sent.flits and sent.requests
    # Never more than the schedule allows, and every event sent is recorded with its send time.
    assert len(sent.interactions) <= 400 * 0.3 + 1 and len(sent.flits) <= 200 * 0.3 + 1
    assert {v["event_id"] for _, v in by_topic["p-interactions"]} == set(sent.interactions)
    assert all(k.decode() == v["user_id"] for k, v in by_topic["p-interactions"] + by_topic["p-feed-requests"])
    assert all(k.decode() == v["flit_id"] and v["flit_id"].startswith("flit-live-") for k, v in by_topic["p-flits"])
    # Interactions are about catalogue flits (already embedded), never about the live ones.
    assert all(v["flit_id"].startswith("flit-s1-") for _, v in by_topic["p-interactions"])
    assert all(sent.started <= t <= sent.finished for t in sent.interactions.values())


def test_publish_flit_vectors_refuses_mismatched_lengths() -> None:
    import numpy as np
    import pytest

    gen = LoadGenerator(Settings(), catalog=World(seed=1, start=0.0), producer=FakeProducer())
    flits = World(seed=1, start=0.0).next_flits(2, now=0.0)
    with pytest.raises(ValueError):
        gen.publish_flit_vectors(flits, np.zeros((3, 4), dtype=np.float32), "m")
