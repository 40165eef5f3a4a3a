"""Embedding versions on a real broker, with the real worker and ranker running: re-embedding the log with
another model while the live version keeps serving, resuming after kill -9, and refusing bad input."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from confluent_kafka import Consumer, TopicPartition

from benchmarks.service import service_env
from flitfeed.encoders.factory import encoder_for_spec
from flitfeed.encoders.hashing import HashingEncoder
from flitfeed.index.versions import entry, version_tag
from flitfeed.kafka.admin import create_topics
from flitfeed.kafka.config import consumer_config
from flitfeed.settings import Settings
from flitfeed.streams.topics import TOPIC_FLIT_VECTORS, TOPIC_FLITS, TOPIC_USER_STATES
from flitfeed.streams.embedding import flit_text
from flitfeed.streams.events import Flit, FlitVector, UserState, VersionCatalog
from flitfeed.streams.version_log import read_catalog
from benchmarks.service import free_port
from tests.integration.helpers import Bus, make_interaction, metric, now_utc
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

NEW_MODEL = "hashing"  # a genuinely different model from the live MiniLM, and instant to load
TEXTS = {"worms": "A fat earthworm wriggled out of the wet lawn after the rain number {i}",
         "storms": "Thunderstorm rolling in from the west, shelter in the hedge number {i}",
         "songs": "Practising my dawn chorus melody, new notes this week number {i}"}


def flits(n_per_topic: int, start: int = 0) -> list[Flit]:
    return [Flit(flit_id=f"{topic}-{i}", author_id=f"author-{topic[0]}{i % 5}", text=text.format(i=i),
                 created_at=now_utc()) for i in range(start, start + n_per_topic) for topic, text in TEXTS.items()]


@pytest.fixture
def settings(isolated_settings: Settings) -> Settings:
    s = isolated_settings.replace(**{"ranker_metrics_port": free_port()})
    create_topics(s.kafka)
    return s


@pytest.fixture
def bus(settings: Settings, services) -> Iterator[Bus]:
    b = Bus(settings, alive=services.all_alive)
    yield b
    b.close()


def cli(settings: Settings, *args: str, timeout: float = 180, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flitfeed.cli", *args], env=service_env(settings, env),
                          capture_output=True, text=True, timeout=timeout)


def read_topic(settings: Settings, name: str) -> list:
    """Every record of a topic up to its end now, partition by partition (confluent-kafka messages)."""
    topic = settings.kafka.topic(name)
    reader = Consumer(consumer_config(settings.kafka, group_id=f"test-versions-{name}"))
    out = []
    try:
        for p in range(settings.kafka.partitions):
            low, high = reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high <= low:
                continue
            reader.assign([TopicPartition(topic, p, low)])
            seen = 0
            while seen < high - low:
                for m in reader.consume(num_messages=500, timeout=1.0):
                    if m.error() is None:
                        seen += 1
                        out.append(m)
    finally:
        reader.close()
    return out


def flit_vector_records(settings: Settings) -> list[tuple[bytes, FlitVector | None]]:
    """Every record of ``flit-vectors`` up to its end now, in partition order (None: a tombstone)."""
    return [(m.key(), None if m.value() is None else FlitVector.model_validate_json(m.value()))
            for m in read_topic(settings, TOPIC_FLIT_VECTORS)]


def flits_log_end(settings: Settings) -> dict[int, int]:
    probe = Consumer(consumer_config(settings.kafka, group_id="test-versions-probe"))
    try:
        return {p: probe.get_watermark_offsets(TopicPartition(settings.kafka.topic(TOPIC_FLITS), p), timeout=10)[1]
                for p in range(settings.kafka.partitions)}
    finally:
        probe.close()


def built(catalog: VersionCatalog | None) -> str:
    assert catalog is not None
    return next(v.version for v in catalog.versions if v.state != "live")


def test_reembed_builds_a_new_version_beside_the_live_one(settings: Settings, services, bus: Bus,
                                                          tmp_path: Path) -> None:
    services("worker", settings)
    services("ranker", settings)
    catalogue = flits(40)  # 120 flits
    for f in catalogue:
        bus.flit(f)
    bus.send(TOPIC_FLITS, "broken", b"{not json")  # dead-lettered by the worker; skipped by the re-embedding
    bus.interaction(make_interaction("bird-1", "worms-0", "like", event_id="like-1"))
    first = bus.wait_feed(lambda f: "like-1" in f.answers(), 120, "the feed of the first like")
    live = first.model_version
    assert live.startswith("all-MiniLM-L6-v2@")

    # Bad input changes nothing: an unknown model, or the live model itself.
    nothing = cli(settings, "reembed", "--model", str(tmp_path / "no-such-model"))
    assert nothing.returncode == 2 and "unknown model" in nothing.stderr, nothing.stderr
    assert read_catalog(settings.kafka) is None

    # An interrupted backfill (--limit) leaves a resumable version, registered beside the live one.
    part = cli(settings, "reembed", "--model", NEW_MODEL, "--limit", "20", FLITFEED_ENCODER_BATCH_SIZE="4")
    assert part.returncode == 0, part.stderr
    assert "not ready" not in part.stderr  # stopped by --limit, not waiting for workers
    catalog = read_catalog(settings.kafka)
    version = built(catalog)
    assert catalog.live == live and entry(catalog, version).state == "building"
    assert 20 <= entry(catalog, version).flits < 121
    assert cli(settings, "reembed", "--model", "minilm").returncode == 2  # the live version: nothing to build

    # kill -9 in the middle of the resumed backfill, then run it again: it completes, consistently.
    log_path = tmp_path / "reembed.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "flitfeed.cli", "reembed", "--model", NEW_MODEL],
                                env=service_env(settings, {"FLITFEED_ENCODER_BATCH_SIZE": "1"}), stdout=log,
                                stderr=subprocess.STDOUT)
    wait_until(lambda: "re-embedding flits with" in log_path.read_text() or proc.poll() is not None, 120,
               what="the resumed re-embedding's first progress line")
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    done = cli(settings, "reembed", "--model", NEW_MODEL)
    assert done.returncode == 0, done.stderr
    catalog = read_catalog(settings.kafka)
    assert catalog.live == live and entry(catalog, version).state == "ready"
    listed = cli(settings, "versions", "list").stdout
    assert f"{version}" in listed and "ready" in listed and "1 worker(s)" in listed
    assert entry(catalog, version).positions == {p: end for p, end in flits_log_end(settings).items() if end}

    # Every valid flit has exactly the new model's vector under its versioned key; the live records are intact.
    records = flit_vector_records(settings)
    rebuilt = {key: r for key, r in records if key.endswith(b"|" + version_tag(version).encode())}
    assert {r.flit.flit_id for r in rebuilt.values()} == {f.flit_id for f in catalogue}
    assert {r.model_version for r in rebuilt.values()} == {version}
    encoder = HashingEncoder()
    for r in rebuilt.values():
        assert np.allclose(r.vector, encoder.encode_one(flit_text(r.flit)), atol=1e-6)
    assert {r.model_version for key, r in records if b"|" not in key} == {live}

    # The live system kept serving its own version, and never let the new vectors into its index.
    bus.interaction(make_interaction("bird-1", "worms-1", "like", event_id="like-2"))
    after = bus.wait_feed(lambda f: "like-2" in f.answers(), 60, "a feed after the re-embedding")
    assert after.model_version == live and after.items
    assert metric(settings.monitoring.ranker_metrics_port, "flitfeed_index_vectors_skipped_total", service="ranker",
                  reason="other_version") >= len(catalogue)
    assert metric(settings.monitoring.ranker_metrics_port, "flitfeed_index_points", service="ranker") == len(catalogue)

    # From now on the worker embeds every new flit with the new version too: it stays complete.
    newer = flits(2, start=40)
    for f in newer:
        bus.flit(f)

    def rebuilt_newer() -> dict[str, FlitVector]:
        found = {r.flit.flit_id: r for key, r in flit_vector_records(settings) if b"|" in key}
        return found if {f.flit_id for f in newer} <= set(found) else {}

    found = wait_until(rebuilt_newer, 60, what="the new flits' vectors of the new version, from the worker")
    for f in newer:
        assert found[f.flit_id].model_version == version
        assert np.allclose(found[f.flit_id].vector, encoder.encode_one(flit_text(f)), atol=1e-6)


def test_a_worker_whose_encoder_the_catalogue_does_not_hold_refuses_to_start(settings: Settings, services,
                                                                           bus: Bus) -> None:
    services("worker", settings)
    bus.flit(flits(1)[0])
    assert cli(settings, "reembed", "--model", NEW_MODEL).returncode == 0
    wrong = services("worker", settings, FLITFEED_ENCODER="static", FLITFEED_VECTOR_DIM="256")
    assert wrong.wait(120) == 2
    assert "the catalogue does not hold" in wrong.log_tail()


def test_a_dropped_version_leaves_the_catalogue_its_vectors_are_deleted_and_the_workers_stop(
        settings: Settings, services, bus: Bus) -> None:
    worker = services("worker", settings)
    for f in flits(4):
        bus.flit(f)
    assert cli(settings, "reembed", "--model", NEW_MODEL).returncode == 0
    version = built(read_catalog(settings.kafka))
    tag = b"|" + version_tag(version).encode()

    refused = cli(settings, "versions", "drop", read_catalog(settings.kafka).live)
    assert refused.returncode == 2 and "live version" in refused.stderr

    # Registering one version more than FLITFEED_VERSIONS_KEEP (2: the live one and one other) drops the oldest.
    second = cli(settings, "reembed", "--model", "minilm:torch")
    assert second.returncode == 0, second.stderr
    assert f"dropping {version}" in second.stderr
    catalog = read_catalog(settings.kafka)
    assert entry(catalog, version) is None and len(catalog.versions) == 2
    latest: dict[bytes, FlitVector | None] = {}
    for key, record in flit_vector_records(settings):
        latest[key] = record
    assert [k for k in latest if k.endswith(tag)] and all(latest[k] is None for k in latest if k.endswith(tag))

    # The workers stop embedding with it, and go on with the newer one.
    wait_until(lambda: "no longer holding a version" in worker.log_tail(400), 60,
               what="the worker to stop embedding with the dropped version")
    newer = built(catalog)
    (late,) = flits(1, start=90)[:1]
    bus.flit(late)

    def vectors_of_late() -> set[str]:
        found = {r.model_version for key, r in flit_vector_records(settings) if r is not None and r.flit.flit_id == late.flit_id}
        return found if newer in found else set()

    assert wait_until(vectors_of_late, 60, what="the late flit's vectors") == {catalog.live, newer}

    dropped = cli(settings, "versions", "drop", newer)
    assert dropped.returncode == 0 and "dropped" in dropped.stdout
    assert [v.version for v in read_catalog(settings.kafka).versions] == [catalog.live]


def latest_user_states(settings: Settings) -> dict[str, UserState]:
    """The latest state of every user on ``user-states`` now."""
    states = (UserState.model_validate_json(m.value()) for m in read_topic(settings, TOPIC_USER_STATES))
    return {state.user_id: state for state in states}


def groups_formed(settings: Settings) -> bool:
    from flitfeed.kafka.groups import describe_group

    try:
        workers = describe_group(settings.kafka, settings.kafka.app_id)
        rankers = describe_group(settings.kafka, settings.kafka.ranker_group)
    except Exception:  # the groups do not exist yet
        return False
    return all(len(g.members) == 2 and g.state == "stable" and all(g.members.values()) for g in (workers, rankers))


def test_a_switch_under_live_traffic_loses_nothing_and_a_rollback_restores_the_previous_feeds(
        settings: Settings, services, bus: Bus, tmp_path: Path) -> None:
    # Two workers and two rankers: every replica switches, and each ranker confirms. The ranking model stays
    # the prior: feeds then show what each user's taste picks, not what the synthetic traffic taught a model.
    settings = settings.replace(**{"group_session_timeout_s": 6.0, "ranker_learning": False})
    ports, started, config = {}, {}, {}
    for role in ("worker", "ranker"):
        for name in ("a", "b"):
            instance = f"{role}-{name}"
            ports[instance] = free_port()
            port = {"worker_metrics_port" if role == "worker" else "ranker_metrics_port": ports[instance]}
            config[instance] = settings.replace(**{"instance_id": instance, "data_dir": tmp_path / instance,
                                                           **port})
            started[instance] = services(role, config[instance])
    wait_until(lambda: groups_formed(settings), 120, what="both workers and both rankers in their groups")
    for f in flits(20):  # 60 flits on three subjects
        bus.flit(f)
    # Two users with one plain taste each, who then go quiet: their tastes in the new version come from the
    # workers' sweep over their history, not from a new interaction.
    bus.interaction(make_interaction("bird-w", "worms-0", "like", event_id="w-1"))
    bus.interaction(make_interaction("bird-s", "storms-0", "like", event_id="s-1"))
    live = bus.wait_feed(lambda f: "s-1" in f.answers(), 120, "the feed of the storm lover's like").model_version
    bus.wait_feed(lambda f: "w-1" in f.answers(), 60, "the feed of the worm lover's like")

    def follows_tastes(version: str) -> None:
        """Each quiet user's requested feed, ranked with ``version``, leans to their own subject."""
        share = {}
        for user in ("bird-w", "bird-s"):
            rid = bus.request(user)
            feed = bus.wait_feed(lambda f: f.trigger_id == rid, 60, f"{user}'s requested feed")
            assert feed.model_version == version and feed.items and not feed.cold_start, feed
            share[user] = {s: sum(i.flit_id.startswith(s) for i in feed.items) / len(feed.items)
                           for s in ("worms", "storms")}
        assert share["bird-w"]["worms"] > share["bird-s"]["worms"], share
        assert share["bird-s"]["storms"] > share["bird-w"]["storms"], share

    follows_tastes(live)

    # Bad input changes nothing: an unknown version, and one that has not caught up.
    # The new version is the static model: another dimension (256) than the live MiniLM's (384), in an index
    # of its own.
    part = cli(settings, "reembed", "--model", "static", "--limit", "5", FLITFEED_ENCODER_BATCH_SIZE="4")
    assert part.returncode == 0, part.stderr
    version = built(read_catalog(settings.kafka))
    unchanged = read_catalog(settings.kafka)
    for target, message in ((version, "has not caught up"), ("no-such-model@0", "unknown version")):
        refused = cli(settings, "versions", "switch", target)
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
        assert read_catalog(settings.kafka) == unchanged
    finished = cli(settings, "reembed", "--model", "static")
    assert finished.returncode == 0 and f"ready to switch: flitfeed versions switch {version}" in finished.stdout, \
        finished.stderr

    # Live traffic all through the switch: new flits and interactions, a few a second.
    sent_flits: list[str] = []
    sent_events: list[str] = []
    stop = threading.Event()

    def traffic() -> None:
        producer = Bus(settings)
        try:
            i = 0
            while not stop.is_set():
                flit = Flit(flit_id=f"live-{i}", author_id="author-live", text=f"Earthworms under the compost heap {i}",
                            created_at=now_utc())
                producer.flit(flit)
                sent_flits.append(flit.flit_id)
                # Each on a flit of the traffic's own, sent a little earlier: popularity spread thin, on neither
                # quiet user's subject, so their feeds show what their tastes pick.
                event = make_interaction(f"bird-t{i % 4}", f"live-{max(0, i - 5)}", "like", event_id=f"t-{i}")
                producer.interaction(event)
                sent_events.append(event.event_id)
                i += 1
                stop.wait(0.1)
        finally:
            producer.close()

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(sent_events) >= 10, 60, what="traffic before the switch")
        switched = cli(settings, "versions", "switch", version)
        assert switched.returncode == 0, switched.stderr
        assert f"live: {version}" in switched.stdout
        assert "rankers ranking with" in switched.stdout and "ranker-a" in switched.stdout \
            and "ranker-b" in switched.stdout, switched.stdout
        during = len(sent_events)
        wait_until(lambda: len(sent_events) >= during + 10, 60, what="traffic after the switch")
    finally:
        stop.set()
        thread.join(30)

    # No interaction lost: every one is answered by a feed.
    def all_answered() -> bool:
        answered = {t for f in bus.feeds() for t in f.answers()}
        return set(sent_events) <= answered

    wait_until(all_answered, 120, what="a feed answering every interaction sent through the switch")
    # Nothing was dead-lettered: no interaction or flit failed because the space changed under it (another
    # dimension: 256 for 384).
    assert not bus.dead_letters(), [(d.reason, d.detail) for d in bus.dead_letters()]
    # No feed mixes versions, and the ranker switched once, between batches: per user, the old version's feeds,
    # then the new one's, never back.
    feeds = bus.feeds()
    assert {f.model_version for f in feeds} == {live, version}
    for user in {f.user_id for f in feeds}:
        versions = [f.model_version for f in feeds if f.user_id == user]
        assert versions == sorted(versions, key=lambda v: v == version), (user, versions)
    for instance, port in ports.items():
        assert metric(port, "flitfeed_version_switches_total", service=instance.split("-")[0]) == 1, instance

    # No flit lost: every flit sent through the switch has its vector in both versions.
    records = flit_vector_records(settings)
    for flit_id in sent_flits:
        held = {r.model_version for key, r in records if r is not None and r.flit.flit_id == flit_id}
        assert held == {live, version}, flit_id

    # The quiet users' tastes were rebuilt in the new space from what they did (one like each), and their
    # feeds follow them there too.
    states = latest_user_states(settings)
    encoder = encoder_for_spec("static", settings.encoder)
    assert encoder.dim == 256 and entry(read_catalog(settings.kafka), version).dim == 256
    for user, flit in (("bird-w", flits(1)[0]), ("bird-s", flits(1)[1])):
        expected = encoder.encode_one(flit_text(flit))
        assert np.allclose(states[user].tastes[version], expected / np.linalg.norm(expected), atol=1e-5), user
    follows_tastes(version)

    # A ranker restarted now serves the live version from its own replica of it, and keeps its users'
    # tastes in the version kept for a rollback.
    assert started["ranker-a"].stop() == 0
    started["ranker-a"] = services("ranker", config["ranker-a"])
    wait_until(lambda: groups_formed(settings), 120, what="the restarted ranker back in its group")

    # Rollback: the previous version serves again at once, without re-embedding, with the same tastes.
    rolled = cli(settings, "versions", "rollback")
    assert rolled.returncode == 0, rolled.stderr
    assert f"live: {live}" in rolled.stdout
    assert read_catalog(settings.kafka).live == live and entry(read_catalog(settings.kafka), version).state == "ready"
    follows_tastes(live)
    bus.interaction(make_interaction("bird-s", "storms-1", "like", event_id="s-2"))
    after = bus.wait_feed(lambda f: "s-2" in f.answers(), 60, "a feed after the rollback")
    assert after.model_version == live
