"""Embedding versions on a real Qdrant server: one collection per version, from the re-embedding to the drop.

One worker and one ranker share the server (``FLITFEED_QDRANT_URL``). ``flitfeed reembed --model hashing``
fills the new version's collection ``<collection>-<tag>`` through the worker's replica of it (the live
collection is left alone); a switch serves feeds from it, and the worker writes every new flit to both
collections; a rollback serves the live version again; ``flitfeed versions drop`` deletes the dropped
version's collection from the server, and with it its disk, and no service creates it again.

Skipped (saying where it looked) without the Qdrant server binary; needs the broker like every integration
test (``FLITFEED_TEST_BOOTSTRAP`` points at one already running).
"""

from __future__ import annotations

import uuid
from typing import Iterator

import pytest
from qdrant_client import QdrantClient

from benchmarks.service import free_port
from flitfeed.index.base import point_id
from flitfeed.index.spaces import space_collection
from flitfeed.index.versions import bare_version, entry
from flitfeed.kafka.admin import create_topics
from flitfeed.settings import Settings
from flitfeed.streams.topics import TOPIC_FLITS
from flitfeed.streams.events import Feed
from flitfeed.streams.version_log import read_catalog
from tests.integration.helpers import Bus, make_interaction
from tests.integration.test_versions import NEW_MODEL, built, cli, flits
from tests.qdrant_server import QdrantServer
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

USER = "bird-1"


@pytest.fixture
def settings(isolated_settings: Settings, qdrant: QdrantServer) -> Settings:
    # The live version is the default MiniLM (384-d); the version built is the hashing encoder's (384-d too).
    # The ranking model stays the prior: feeds show what the user's taste picks.
    s = isolated_settings.replace(**{
        "qdrant_url": qdrant.url, "collection": f"flits-{uuid.uuid4().hex[:8]}", "startup_timeout_s": 60.0,
        "worker_metrics_port": free_port(), "ranker_metrics_port": free_port(), "ranker_learning": False})
    create_topics(s.kafka)
    return s


@pytest.fixture
def client(qdrant: QdrantServer) -> Iterator[QdrantClient]:
    # A plain client: reading a collection through ServerIndex would create it when it is missing.
    c = QdrantClient(url=qdrant.url, timeout=30)
    yield c
    c.close()


def points(client: QdrantClient, collection: str) -> int:
    """The points of ``collection`` now (-1: there is no such collection)."""
    if not client.collection_exists(collection):
        return -1
    return client.count(collection, exact=True).count


def holds(client: QdrantClient, collection: str, flit_ids: list[str]) -> bool:
    found = client.retrieve(collection, ids=[point_id(f) for f in flit_ids], with_payload=False)
    return len(found) == len(flit_ids)


def test_each_version_has_its_collection_on_the_server_and_a_drop_deletes_it(
        settings: Settings, services, qdrant: QdrantServer, client: QdrantClient) -> None:
    bus = Bus(settings, alive=services.all_alive)
    try:
        worker = services("worker", settings)
        services("ranker", settings)
        live_collection = settings.index.collection
        catalogue = flits(10)  # 30 flits on three subjects
        for f in catalogue:
            bus.flit(f)
        bus.send(TOPIC_FLITS, "broken", b"{not json")  # dead-lettered; skipped by the re-embedding
        wait_until(lambda: points(client, live_collection) == len(catalogue), 120,
                   what="the worker to write the flits to the live collection")
        bus.interaction(make_interaction(USER, "worms-0", "like", event_id="like-1"))
        first = bus.wait_feed(lambda f: "like-1" in f.answers(), 120, "the feed of the first like")
        live = first.model_version
        assert live.startswith("all-MiniLM-L6-v2@") and first.items and not first.cold_start, first

        def requested_feed(what: str) -> Feed:
            rid = bus.request(USER)
            return bus.wait_feed(lambda f: f.trigger_id == rid, 60, what)

        # Re-embedding: the new version's collection gets exactly the valid flits, the live one is unchanged.
        done = cli(settings, "reembed", "--model", NEW_MODEL)
        assert done.returncode == 0, done.stderr
        catalog = read_catalog(settings.kafka)
        version = built(catalog)
        assert f"ready to switch: flitfeed versions switch {version}" in done.stdout, done.stdout + done.stderr
        new_collection = space_collection(settings.index.collection, version, bare_version(catalog))
        assert new_collection != live_collection and new_collection.startswith(f"{live_collection}-")
        wait_until(lambda: points(client, new_collection) == len(catalogue), 30,
                   what=f"the re-embedded flits in {new_collection}")
        assert holds(client, new_collection, [f.flit_id for f in catalogue])
        assert points(client, live_collection) == len(catalogue)
        assert requested_feed("a feed during the build").model_version == live

        # Switch: feeds come from the new version, with the user's taste rebuilt there (no cold start).
        switched = cli(settings, "versions", "switch", version)
        assert switched.returncode == 0, switched.stderr
        assert f"live: {version}" in switched.stdout, switched.stdout
        feed = requested_feed("a feed after the switch")
        assert feed.model_version == version and feed.items and not feed.cold_start, feed
        bus.interaction(make_interaction(USER, "storms-0", "like", event_id="like-2"))
        feed = bus.wait_feed(lambda f: "like-2" in f.answers(), 60, "the feed of a like after the switch")
        assert feed.model_version == version and feed.items and not feed.cold_start, feed

        # New flits after the switch land in both collections.
        newer = flits(2, start=10)
        for f in newer:
            bus.flit(f)
        total = len(catalogue) + len(newer)
        wait_until(lambda: points(client, new_collection) == total and points(client, live_collection) == total, 60,
                   what="the flits sent after the switch in both collections")
        for name in (live_collection, new_collection):
            assert holds(client, name, [f.flit_id for f in newer]), name

        # Rollback: the live version serves again.
        rolled = cli(settings, "versions", "rollback")
        assert rolled.returncode == 0, rolled.stderr
        assert f"live: {live}" in rolled.stdout, rolled.stdout
        feed = requested_feed("a feed after the rollback")
        assert feed.model_version == live and feed.items and not feed.cold_start, feed

        # Drop: the version's collection leaves the server, its files with it; the live one is untouched.
        stored = qdrant.workdir / "storage" / "collections"
        assert (stored / new_collection).is_dir()
        dropped = cli(settings, "versions", "drop", version)
        assert dropped.returncode == 0, dropped.stderr
        assert "dropped" in dropped.stdout and f"deleted collection {new_collection}" in dropped.stderr, dropped.stderr
        assert not client.collection_exists(new_collection)
        wait_until(lambda: not (stored / new_collection).exists(), 30, what="the dropped collection's files deleted")
        assert points(client, live_collection) == total
        assert entry(read_catalog(settings.kafka), version) is None
        wait_until(lambda: "no longer holding a version" in worker.log_tail(400), 60,
                   what="the worker to stop embedding with the dropped version")

        # The services go on with the live version, and none of them creates the dropped collection again.
        (late,) = flits(1, start=20)[:1]
        bus.flit(late)
        wait_until(lambda: points(client, live_collection) == total + 1, 60, what="a flit after the drop")
        feed = requested_feed("a feed after the drop")
        assert feed.model_version == live and feed.items and not feed.cold_start, feed
        assert not client.collection_exists(new_collection)
        again = cli(settings, "versions", "drop", version)  # started again: nothing left to delete, no error
        assert again.returncode == 0, again.stderr
        assert services.all_alive()
    finally:
        bus.close()
