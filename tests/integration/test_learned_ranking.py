"""The learned ranking against the real broker and services (issue 14).

The demo's world is played against a worker and a ranker with the shipped defaults until the
ranker has learned from its own impressions. Then a new user who likes four posts of one topic,
while other topics are far more popular, gets at least 4 of the next feed's top 5 from that topic,
unseen, none by an author they hid. The model lives in Kafka: the ranker is restarted and the
restarted one, starting from the model snapshot and the examples stream, serves the same taste.
That the lift is learned and not the prior's is shown in-process, where it is cheap to compare
(tests/unit/ranker/test_learning_in_the_demo_world.py, which also plays this case on several seeds).
"""

from __future__ import annotations

import time
from typing import Iterator

import pytest
from confluent_kafka import Consumer, TopicPartition

from flitfeed.demo.runner import stream_world
from flitfeed.demo.world import World
from flitfeed.ranker.features import FEATURES
from flitfeed.kafka.admin import create_topics
from flitfeed.kafka.config import consumer_config
from flitfeed.settings import Settings
from flitfeed.streams.topics import TOPIC_EXAMPLES, TOPIC_IMPRESSIONS, TOPIC_RANKER_MODEL
from flitfeed.streams.events import Example, Feed, Impression, ModelSnapshot
from tests.integration.helpers import Bus, make_interaction
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

NEW_USER = "newbird"
TOPIC = "migration"
POPULAR_TOPICS = ("insects", "songs", "weather")
FANS = 20
WARM_UP_S = 75.0


@pytest.fixture
def settings(isolated_settings: Settings) -> Settings:
    return isolated_settings.replace(**{"model_snapshot_interval_s": 5.0})


@pytest.fixture
def bus(settings: Settings, services) -> Iterator[Bus]:
    create_topics(settings.kafka)
    b = Bus(settings, alive=services.all_alive)
    yield b
    b.close()


def read_all(settings: Settings, name: str) -> list:
    topic = settings.kafka.topic(name)
    c = Consumer(consumer_config(settings.kafka, group_id=f"test-read-{time.monotonic_ns()}"))
    try:
        out = []
        for p in range(settings.kafka.partitions):
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high <= low:
                continue
            c.assign([TopicPartition(topic, p, low)])
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and c.position([TopicPartition(topic, p)])[0].offset < high:
                out.extend(m for m in c.consume(500, timeout=0.5) if m.error() is None)
        return out
    finally:
        c.close()


def new_user_feed(bus: Bus) -> Feed:
    request_id = bus.request(NEW_USER, k=10)
    return bus.wait_feed(lambda f: f.trigger_id == request_id, timeout=60, what="the new user's feed")


def explain(settings: Settings, feed: Feed) -> str:
    """What a failure needs: the model's newest weights and the features each shown item was scored with."""
    snapshots = [ModelSnapshot.model_validate_json(m.value()) for m in read_all(settings, TOPIC_RANKER_MODEL)]
    weights = snapshots[-1].model["weights"] if snapshots else None
    shown = [Impression.model_validate_json(m.value()) for m in read_all(settings, TOPIC_IMPRESSIONS)]
    shown = [i for i in shown if i.impression_id == feed.impression_id]
    rows = [(i.flit_id, [round(v, 2) for v in i.features]) for i in shown[0].items] if shown else []
    named = {name: [round(v, 2) for v in w] for name, w in zip(FEATURES, weights or [])}
    return f"\nweights (engage, dwell, negative): {named}\nitems: {rows}"


def assert_follows_the_taste(world: World, feed: Feed, liked: list[str], hidden_author: str,
                             settings: Settings) -> None:
    top5 = [i.flit_id for i in feed.items[:5]]
    topics = [world.topic_of(f) for f in top5]
    print(topics, explain(settings, feed))  # shown by pytest -s, and with a failure
    if sum(t == TOPIC for t in topics) < 4:
        pytest.fail(f"{topics} {[i.reason for i in feed.items[:5]]}{explain(settings, feed)}")
    assert not set(top5) & set(liked), "a liked (seen) flit came back"
    assert hidden_author not in {i.author_id for i in feed.items}, "a hidden author came back"


def test_a_new_users_plain_taste_wins_over_popularity_and_survives_a_ranker_restart(
        settings: Settings, services, bus: Bus) -> None:
    services("worker")
    ranker = services("ranker")
    world = World(seed=5, start=time.time(), id_prefix="lr5")
    board = stream_world(settings, world, WARM_UP_S, alive=services.all_alive, show=None)
    assert board.summary()["feeds"] > 100

    # The model learned from the feeds it served, through Kafka: impressions, examples, snapshots.
    impressions = [Impression.model_validate_json(m.value()) for m in read_all(settings, TOPIC_IMPRESSIONS)]
    examples = [Example.model_validate_json(m.value()) for m in read_all(settings, TOPIC_EXAMPLES)]
    assert impressions and all(len(i.items[0].features) > 0 for i in impressions if i.items)
    assert {tuple(e.actions) for e in examples} >= {("engage",), ()}
    assert len({e.example_id for e in examples}) == len(examples), "an example was emitted twice"
    snapshot = wait_until(lambda: [ModelSnapshot.model_validate_json(m.value())
                                   for m in read_all(settings, TOPIC_RANKER_MODEL)] or None, 30,
                          what="a model snapshot")[-1]
    assert snapshot.model["examples"] > 100

    # Other topics become far more popular: FANS mainstream users each like the newest flits of three
    # topics (the case, where popularity buried what a new user had just liked).
    popular = [f for f in world.newest_flits(world.n_flits) if world.topic_of(f.flit_id) in POPULAR_TOPICS][:12]
    mine = [f for f in world.newest_flits(world.n_flits) if world.topic_of(f.flit_id) == TOPIC]
    assert len(mine) >= 12
    liked = [f.flit_id for f in mine[:4]]
    for fan in range(FANS):
        for fid in [f.flit_id for f in popular]:
            bus.interaction(make_interaction(f"fan-{fan:02d}", fid, "like"))
    # A new user likes four posts of one topic and hides a post of a popular author.
    hidden = popular[0]
    for fid in liked:
        bus.interaction(make_interaction(NEW_USER, fid, "like"))
    hide = make_interaction(NEW_USER, hidden.flit_id, "hide")
    bus.interaction(hide)
    bus.wait_feed(lambda f: hide.event_id in f.answers(), timeout=60, what="the feed after the hide")
    wait_until(lambda: sum(1 for m in bus.drain("feeds")
                           if Feed.model_validate_json(m.value()).user_id.startswith("fan-")) >= FANS, 120,
               what="the fans' likes applied")

    assert_follows_the_taste(world, new_user_feed(bus), liked, hidden.author_id, settings)

    # The model is in Kafka: a restarted ranker starts from the snapshot and the examples stream.
    ranker.stop()
    services("ranker")
    assert_follows_the_taste(world, new_user_feed(bus), liked, hidden.author_id, settings)
