"""The pipeline end to end: real broker, worker and ranker as real processes, the real MiniLM encoder."""

from __future__ import annotations

import base64
from typing import Iterator

import pytest

from flitfeed.kafka.admin import create_topics
from flitfeed.settings import Settings
from flitfeed.streams.events import Feed, Flit
from tests.integration.helpers import Bus, make_interaction, now_utc
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

TOPICS = {
    "worms": ["A fat earthworm wriggled out of the wet lawn after the rain",
              "Found a whole cluster of juicy worms under the old log today",
              "Early morning worm hunting on the soggy football pitch",
              "The rain brought dozens of earthworms up to the surface",
              "Nothing beats a fresh worm pulled straight from damp soil",
              "Beetle larvae and worms everywhere in the compost heap",
              "Tugging a stubborn worm out of the grass took me ages",
              "Worm season is here: the wet ground is full of them"],
    "storms": ["Thunderstorm rolling in from the west, taking shelter in the hedge",
               "Gale force winds tonight, my branch is swaying like mad",
               "Hail the size of peas battered the oak tree this afternoon",
               "Dark clouds and lightning over the hills, stay safe everyone",
               "The storm knocked down half the nests along the river",
               "Heavy wind and rain all night, barely slept a wink",
               "Weather warning: a big storm front arrives tomorrow morning",
               "Lightning struck the church spire during the storm"],
    "songs": ["Practising my dawn chorus melody, three new notes this week",
              "The nightingale down the lane sang for two hours straight",
              "Learning a complicated trill from the old blackbird",
              "My song echoed beautifully across the valley this morning",
              "Duet with my mate at sunrise, our harmonies are improving",
              "Which bird has the most beautiful song? I vote wren",
              "Recorded my warbling and it sounds lovely played back",
              "Singing from the top of the chimney to mark my territory"],
}
# Four authors per topic, so author diversity (a feature) does not push a second topic into the top 3.
AUTHORS = {t: [f"author-{t[0]}{i}" for i in range(1, 5)] for t in TOPICS}
USER = "bird-042"


def world() -> dict[str, Flit]:
    flits = {}
    for topic, texts in TOPICS.items():
        for i, text in enumerate(texts):
            fid = f"{topic}-{i}"
            flits[fid] = Flit(flit_id=fid, author_id=AUTHORS[topic][i % 4], text=text, created_at=now_utc())
    return flits


def topic_of(flit_id: str) -> str:
    return flit_id.split("-")[0]


@pytest.fixture
def bus(isolated_settings: Settings, services) -> Iterator[Bus]:
    create_topics(isolated_settings.kafka)
    b = Bus(isolated_settings, alive=services.all_alive)
    yield b
    b.close()


def test_personalised_feed_hide_dead_letters_and_restart(isolated_settings: Settings, services, bus: Bus) -> None:
    worker = services("worker")
    services("ranker")
    flits = world()
    for flit in flits.values():
        bus.flit(flit)

    liked = ["worms-0", "worms-1", "worms-2"]
    for fid in liked:
        bus.interaction(make_interaction(USER, fid, "like"))
    # Viewing then hiding a flit by author-s1 mutes that author: their flits must never appear.
    bus.interaction(make_interaction(USER, "storms-0", "view"))
    hide = make_interaction(USER, "storms-0", "hide")
    bus.interaction(hide)

    def personalised(feed: Feed) -> bool:
        return feed.user_id == USER and hide.event_id in feed.answers()

    feed = bus.wait_feed(personalised, timeout=180, what=f"a feed for {USER} after its hide")
    assert not feed.cold_start
    ids = [item.flit_id for item in feed.items]
    assert len(ids) == 10, ids
    top = ids[:3]
    assert all(topic_of(f) == "worms" for f in top), f"top items are not about worms: {ids}"
    assert not set(ids) & {*liked, "storms-0"}, f"seen flits in feed: {ids}"
    assert "author-s1" not in {item.author_id for item in feed.items}
    assert {item.reason for item in feed.items} <= {"similar", "fresh_popular", "fresh", "popular", "explore", "co_engaged"}

    # Hiding a worm author removes that author from the next feed.
    hide_w1 = make_interaction(USER, "worms-0", "hide")
    bus.interaction(hide_w1)
    feed = bus.wait_feed(lambda f: hide_w1.event_id in f.answers(), timeout=60, what="feed after hiding author-w1")
    assert "author-w1" not in {item.author_id for item in feed.items}
    assert topic_of(feed.items[0].flit_id) == "worms"

    # Malformed input on every input topic is dead-lettered with its reason; the pipeline keeps serving.
    bus.send("flits", b"bad-flit", b'{"flit_id": "x", "text": ')
    bus.send("interactions", USER, b'{"event_id": "e", "user_id": "bird-042", "flit_id": "worms-3", '
                                   b'"kind": "poke", "ts": 0}')
    bus.send("feed-requests", USER, b"\xff\xfe not utf-8")

    def three_dead_letters():
        letters = bus.dead_letters()
        return letters if {d.source_topic for d in letters} >= {
            isolated_settings.kafka.topic(t) for t in ("flits", "interactions", "feed-requests")} else None

    letters = {d.source_topic: d for d in wait_until(three_dead_letters, 60, what="three dead letters")}
    assert letters[isolated_settings.kafka.topic("flits")].reason == "invalid_json"
    assert letters[isolated_settings.kafka.topic("interactions")].reason == "unknown_kind"
    assert letters[isolated_settings.kafka.topic("feed-requests")].reason == "invalid_utf8"
    assert base64.b64decode(letters[isolated_settings.kafka.topic("feed-requests")].value_b64) == b"\xff\xfe not utf-8"
    request_id = bus.request(USER, k=5)
    feed = bus.wait_feed(lambda f: f.trigger_id == request_id, timeout=60, what="feed for a request after bad input")
    assert len(feed.items) == 5 and not feed.cold_start

    # Restart the worker: the user's state survives (no regression to cold start).
    assert worker.stop() is not None
    services("worker")
    like = make_interaction(USER, "worms-3", "like")
    bus.interaction(like)
    feed = bus.wait_feed(lambda f: like.event_id in f.answers(), timeout=120, what="feed after worker restart")
    assert not feed.cold_start
    assert topic_of(feed.items[0].flit_id) == "worms"
    assert "author-w1" not in {item.author_id for item in feed.items}, "muted author forgotten across restart"

