"""Recovery paths with the real broker and the services as real processes.

Late and missing flits (parking, dead letters), duplicates, a ranker restart, a
corrupt or missing ranker index, and the Prometheus endpoints. Every wait has a deadline.
"""

from __future__ import annotations

import base64
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.service import free_port
from flitfeed.cli import offsets_path
from flitfeed.kafka.admin import create_topics
from flitfeed.settings import Settings
from flitfeed.streams.topics import TOPIC_FLIT_VECTORS, TOPIC_INTERACTIONS, TOPIC_PARKED
from flitfeed.streams.events import Feed, Flit, FlitVector, ParkedInteraction
from tests.integration.helpers import Bus, make_interaction, now_utc
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

#: Worker start-up (MiniLM load, group join) plus the first feed.
FIRST_FEED_S = 90
#: A feed once everything runs.
FEED_S = 45

TOPICS = {
    "worms": ["A fat earthworm wriggled out of the wet lawn after the rain",
              "Found a whole cluster of juicy worms under the old log today",
              "Early morning worm hunting on the soggy football pitch",
              "The rain brought dozens of earthworms up to the surface",
              "Nothing beats a fresh worm pulled straight from damp soil",
              "Tugging a stubborn worm out of the grass took me ages"],
    "storms": ["Thunderstorm rolling in from the west, taking shelter in the hedge",
               "Gale force winds tonight, my branch is swaying like mad",
               "Hail the size of peas battered the oak tree this afternoon",
               "Dark clouds and lightning over the hills, stay safe everyone",
               "Heavy wind and rain all night, barely slept a wink",
               "Lightning struck the church spire during the storm"],
    "songs": ["Practising my dawn chorus melody, three new notes this week",
              "The nightingale down the lane sang for two hours straight",
              "Learning a complicated trill from the old blackbird",
              "My song echoed beautifully across the valley this morning",
              "Duet with my mate at sunrise, our harmonies are improving",
              "Singing from the top of the chimney to mark my territory"],
}


def world() -> dict[str, Flit]:
    """18 flits on three subjects, three authors per subject."""
    return {f"{topic}-{i}": Flit(flit_id=f"{topic}-{i}", author_id=f"author-{topic[0]}{i % 3}", text=text,
                                 created_at=now_utc())
            for topic, texts in TOPICS.items() for i, text in enumerate(texts)}


def topic_of(flit_id: str) -> str:
    return flit_id.split("-")[0]


# --- helpers ------------------------------------------------------------------------------------------------
@pytest.fixture
def make_bus(isolated_settings: Settings, services) -> Iterator[Callable[[Settings], Bus]]:
    """A Bus on the test's topics, for the settings the test's services run with."""
    create_topics(isolated_settings.kafka)
    buses: list[Bus] = []

    def make(settings: Settings) -> Bus:
        bus = Bus(settings, alive=services.all_alive)
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        bus.close()


def produce(bus: Bus, topic: str, key: str, value: bytes) -> tuple[int, int]:
    """Produce one record; its (partition, offset) once the broker has it."""
    delivered: list = []
    bus.producer.produce(bus.settings.kafka.topic(topic), key=key.encode(), value=value,
                         on_delivery=lambda err, msg: delivered.append((err, msg)))
    assert bus.producer.flush(10) == 0, "message not delivered"
    (err, msg), = delivered
    assert err is None, err
    return msg.partition(), msg.offset()


def embedded_ids(bus: Bus) -> set[str]:
    return {FlitVector.model_validate_json(m.value()).flit.flit_id for m in bus.drain(TOPIC_FLIT_VECTORS)}


def wait_embedded(bus: Bus, flit_ids, timeout: float = FIRST_FEED_S) -> None:
    """Until the worker has published (hence indexed) the vectors of ``flit_ids``."""
    wanted = set(flit_ids)

    def done() -> bool:
        assert bus._alive(), "a service died while waiting for flit vectors"
        return wanted <= embedded_ids(bus)

    wait_until(done, timeout, what=f"vectors of {len(wanted)} flits")


def publish_world(bus: Bus) -> dict[str, Flit]:
    """Publish the small topic world and wait until every flit is embedded."""
    flits = world()
    for flit in flits.values():
        bus.flit(flit)
    wait_embedded(bus, flits)
    return flits


def feeds_for(bus: Bus, user: str) -> list[Feed]:
    return [f for f in bus.feeds() if f.user_id == user]


Samples = dict[tuple[str, frozenset], float]


def scrape(port: int) -> Samples | None:
    """Every sample a /metrics endpoint serves, or None while it does not answer yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def wait_metric(port: int, name: str, labels: dict[str, str], predicate: Callable[[float], bool],
                timeout: float = FEED_S, what: str | None = None) -> Samples:
    def check() -> Samples | None:
        samples = scrape(port)
        return samples if samples is not None and predicate(sample(samples, name, **labels)) else None

    return wait_until(check, timeout, interval=0.2, what=what or f"{name}{labels} on :{port}")


# --- 1. an interaction that arrives before its flit ---------------------------------------------------------
def test_interaction_before_its_flit_is_parked_then_applied(isolated_settings: Settings, services,
                                                            make_bus) -> None:
    # Short back-offs and enough attempts to cover the time until the flit is produced and embedded.
    settings = isolated_settings.replace(**{"park_base_delay_s": 0.1, "park_max_delay_s": 0.5,
                                                    "park_max_attempts": 60})
    bus = make_bus(settings)
    services("worker", settings)
    services("ranker", settings)
    flits = world()
    late = flits.pop("worms-0")
    for flit in flits.values():
        bus.flit(flit)
    wait_embedded(bus, flits)

    user = "early-bird"
    like = make_interaction(user, late.flit_id, "like")
    bus.interaction(like)

    def parked() -> ParkedInteraction | None:
        assert services.all_alive(), "a service died while waiting for the like to be parked"
        records = [ParkedInteraction.model_validate_json(m.value()) for m in bus.drain(TOPIC_PARKED)]
        return next((p for p in records if p.interaction.event_id == like.event_id), None)

    first = wait_until(parked, FEED_S, what="the like on the parked topic")
    assert first.attempts == 0
    assert base64.b64decode(first.raw_b64) == like.to_bytes()
    assert not feeds_for(bus, user), "a feed for the like was published before its flit existed"

    bus.flit(late)
    feed = bus.wait_feed(lambda f: like.event_id in f.answers(), FEED_S, what="the feed for the parked like")
    assert feed.user_id == user and feed.trigger_kind == "interaction"
    assert not feed.cold_start
    ids = [item.flit_id for item in feed.items]
    assert late.flit_id not in ids, "the liked flit is not marked seen"
    assert topic_of(ids[0]) == "worms", f"the late like did not shape the taste: {ids}"
    assert not [d for d in bus.dead_letters() if d.reason == "flit_not_found"]


# --- 2. an interaction whose flit never arrives -------------------------------------------------------------
def test_interaction_for_missing_flit_is_dead_lettered(isolated_settings: Settings, services, make_bus) -> None:
    settings = isolated_settings.replace(**{"park_base_delay_s": 0.05, "park_max_delay_s": 0.2,
                                                    "park_max_attempts": 3})
    bus = make_bus(settings)
    services("worker", settings, FLITFEED_ENCODER="hashing")
    services("ranker", settings)
    publish_world(bus)

    user = "lonely-bird"
    ghost = make_interaction(user, "never-posted", "like")
    raw = ghost.to_bytes()
    partition, offset = produce(bus, TOPIC_INTERACTIONS, user, raw)

    def dead_letter():
        return next((d for d in bus.dead_letters() if d.reason == "flit_not_found"), None)

    letter = wait_until(dead_letter, FEED_S, what="a flit_not_found dead letter")
    assert letter.source_topic == settings.kafka.topic(TOPIC_INTERACTIONS)
    assert (letter.partition, letter.offset) == (partition, offset)
    assert base64.b64decode(letter.value_b64) == raw
    assert letter.key_b64 is not None and base64.b64decode(letter.key_b64) == user.encode()
    assert "never-posted" in letter.detail
    assert letter.service == "worker"
    assert not feeds_for(bus, user)

    # The worker keeps serving, this user included.
    like = make_interaction(user, "songs-1", "like")
    bus.interaction(like)
    feed = bus.wait_feed(lambda f: like.event_id in f.answers(), FEED_S, what="a feed after the dead letter")
    assert not feed.cold_start
    assert services.all_alive()
    assert len([d for d in bus.dead_letters() if d.reason == "flit_not_found"]) == 1


# --- 3. a ranker restart ------------------------------------------------------------------------------------
def test_ranker_restart_keeps_user_state_without_republishing(isolated_settings: Settings, services,
                                                             make_bus) -> None:
    bus = make_bus(isolated_settings)
    services("worker")
    ranker = services("ranker")
    publish_world(bus)

    user = "restless-bird"
    likes = [make_interaction(user, fid, "like") for fid in ("storms-0", "storms-1", "storms-2")]
    for like in likes:
        bus.interaction(like)
    old_triggers = {like.event_id for like in likes}
    wait_until(lambda: old_triggers <= {t for f in feeds_for(bus, user) for t in f.answers()}, FEED_S,
               what="a feed for every like")

    assert ranker.stop() == 0, ranker.log_tail()
    before = [t for f in feeds_for(bus, user) for t in f.answers() if t in old_triggers]
    assert sorted(before) == sorted(old_triggers), before      # each like answered exactly once

    services("ranker")
    request_id = bus.request(user, k=5)
    # Feeds are keyed by user: a re-published feed would precede this one on the same partition.
    feed = bus.wait_feed(lambda f: f.trigger_id == request_id, FIRST_FEED_S, what="a feed after the restart")
    assert not feed.cold_start, "the restarted ranker forgot the user's state"
    ids = [item.flit_id for item in feed.items]
    assert len(ids) == 5
    assert not {"storms-0", "storms-1", "storms-2"} & set(ids), f"seen flits in feed: {ids}"
    after = [t for f in feeds_for(bus, user) for t in f.answers() if t in old_triggers]
    assert len(after) == len(before), \
        f"the restarted ranker re-published {len(after) - len(before)} feeds that were already served"


# --- 4. a corrupt or missing ranker index ------------------------------------------------------------------
def _garble_marker(index: Path) -> None:
    (index / "flitfeed-index.json").write_bytes(b"\x00not json{{{")


def _delete_marker(index: Path) -> None:
    (index / "flitfeed-index.json").unlink()


def _delete_index_dir(index: Path) -> None:
    shutil.rmtree(index)  # ranker.offsets.json, beside it, stays


def _empty_index_dir(index: Path) -> None:
    for entry in index.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


@pytest.mark.parametrize(("corrupt", "detected"), [
    pytest.param(_garble_marker, True, id="garbled-marker"),
    pytest.param(_delete_marker, True, id="missing-marker"),
    # Not corrupt, just gone; the replica offsets file beside the directory stays and must not stop the replay.
    pytest.param(_delete_index_dir, False, id="deleted-index-dir"),
    pytest.param(_empty_index_dir, False, id="emptied-index-dir"),
])
def test_corrupt_ranker_index_is_rebuilt_from_the_log(isolated_settings: Settings, services, make_bus,
                                                      corrupt: Callable[[Path], None], detected: bool) -> None:
    port = free_port()
    settings = isolated_settings.replace(**{"ranker_metrics_port": port})
    bus = make_bus(settings)
    services("worker", settings, FLITFEED_ENCODER="hashing")
    ranker = services("ranker", settings)
    flits = publish_world(bus)
    user = "warm-bird"
    like = make_interaction(user, "songs-0", "like")
    bus.interaction(like)
    feed = bus.wait_feed(lambda f: like.event_id in f.answers(), FIRST_FEED_S, what="a feed before the restart")
    assert {item.reason for item in feed.items} <= {"similar", "explore"}, feed.items

    assert ranker.stop() == 0, ranker.log_tail()
    index = settings.data_dir / "index" / "ranker"
    assert (index / "flitfeed-index.json").exists() and offsets_path(settings, "ranker").exists()
    corrupt(index)

    ranker = services("ranker", settings)
    # The gauge is set by the replicator after it upserts: the replica holds every flit again.
    wait_metric(port, "flitfeed_index_points", {"service": "ranker"}, lambda v: v == len(flits), 30,
                what=f"the ranker's index to be rebuilt with {len(flits)} flits")
    request_id = bus.request(user, k=8)
    feed = bus.wait_feed(lambda f: f.trigger_id == request_id, FEED_S, what="a feed after the rebuild")
    assert not feed.cold_start
    assert len(feed.items) == 8, feed.items
    reasons = [item.reason for item in feed.items]
    # Served from an empty index, the feed would hold only fresh/popular candidates.
    assert set(reasons) <= {"similar", "explore"} and reasons.count("similar") >= 7, reasons
    assert "songs-0" not in {item.flit_id for item in feed.items}
    if detected:
        assert "rebuilding it from the flit-vectors log" in ranker.log_path.read_text(errors="replace")


# --- 5. a duplicate interaction -----------------------------------------------------------------------------
def test_duplicate_interaction_is_applied_once(isolated_settings: Settings, services, make_bus) -> None:
    port = free_port()
    settings = isolated_settings.replace(**{"worker_metrics_port": port})
    bus = make_bus(settings)
    services("worker", settings, FLITFEED_ENCODER="hashing")
    services("ranker", settings)
    publish_world(bus)

    user = "echo-bird"
    x = make_interaction(user, "worms-1", "like")
    y = make_interaction(user, "worms-2", "like")
    z = make_interaction(user, "worms-3", "like")
    # x twice in a row (the worker re-publishes the state, the ranker must skip it), then x again after y
    # (nothing is published); all on one partition, so z's feed means every copy of x was handled.
    for event in (x, x, y, x, z):
        bus.interaction(event)
    bus.wait_feed(lambda f: z.event_id in f.answers(), FIRST_FEED_S, what="the feed for the last like")

    triggers = [t for f in feeds_for(bus, user) for t in f.answers()]
    assert triggers.count(x.event_id) == 1, triggers
    assert triggers.count(y.event_id) == 1, triggers
    assert triggers == [x.event_id, y.event_id, z.event_id], triggers
    samples = scrape(port)
    assert samples is not None
    assert sample(samples, "flitfeed_events_duplicate_total", service="worker",
                  topic=settings.kafka.topic(TOPIC_INTERACTIONS)) == 2
    assert sample(samples, "flitfeed_events_processed_total", service="worker",
                  topic=settings.kafka.topic(TOPIC_INTERACTIONS)) == 3


# --- 6. the metrics endpoints -------------------------------------------------------------------------------
def test_metrics_endpoints(isolated_settings: Settings, services, make_bus) -> None:
    worker_port, ranker_port = free_port(), free_port()
    settings = isolated_settings.replace(**{"worker_metrics_port": worker_port,
                                                    "ranker_metrics_port": ranker_port})
    bus = make_bus(settings)
    services("worker", settings, FLITFEED_ENCODER="hashing")
    services("ranker", settings)
    flits = publish_world(bus)
    like = make_interaction("counted-bird", "songs-2", "like")
    bus.interaction(like)
    bus.wait_feed(lambda f: like.event_id in f.answers(), FEED_S, what="a feed")

    flits_topic = settings.kafka.topic("flits")
    worker = wait_metric(worker_port, "flitfeed_events_consumed_total", {"service": "worker", "topic": flits_topic},
                         lambda v: v >= len(flits))
    assert sample(worker, "flitfeed_stage_duration_seconds_count", service="worker", stage="embed") > 0
    assert sample(worker, "flitfeed_flit_freshness_seconds_count", service="worker") >= len(flits)
    assert sample(worker, "flitfeed_events_consumed_total", service="worker",
                  topic=settings.kafka.topic(TOPIC_INTERACTIONS)) >= 1

    ranker = wait_metric(ranker_port, "flitfeed_feeds_published_total",
                         {"trigger": "interaction", "cold_start": "false"}, lambda v: v >= 1)
    assert sample(ranker, "flitfeed_stage_duration_seconds_count", service="ranker", stage="candidate_query") > 0
    assert sample(ranker, "flitfeed_feed_latency_seconds_count", trigger="interaction") >= 1
    assert sample(ranker, "flitfeed_index_points", service="ranker") == len(flits)
