"""The worker and the ranker, as real processes, on a real Qdrant server (the shared index, one writer).

* the worker writes every flit into the server's collection and the ranker serves feeds from it;
* Qdrant stops in the middle of the stream: both services log that they wait (and retry), the server comes
  back on the same storage, and they resume: no flit is dead-lettered, every flit is in the index, the feed
  asked for while it was down is served, neither service died;
* a wrong API key is refused by the real server at start-up: exit status 2, one line, no traceback, no key.

Skipped (saying where it looked) without the Qdrant server binary; needs the broker like every integration
test (``FLITFEED_TEST_BOOTSTRAP`` points at one already running).
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr

from flitfeed.index.server import ServerIndex
from flitfeed.kafka.admin import create_topics
from flitfeed.settings import Settings
from flitfeed.streams.events import Feed, Flit
from benchmarks.service import free_port
from tests.integration.helpers import Bus, make_interaction, metric, now_utc
from tests.qdrant_server import QdrantServer, qdrant_binary_or_skip
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

DIM = 384  # the hashing encoder's, as the worker and the ranker check at start-up
SECRET = "hunter2-Zq8x"
TOPICS = {"worms": "earthworm wriggled wet lawn rain soil worms",
          "storms": "thunderstorm gale hail lightning wind rain clouds",
          "songs": "dawn chorus melody trill warbling singing nightingale"}
USER = "bird-7"
#: What a service logs each time it retries a Qdrant call (index/server.py).
RETRY_LINE = "Qdrant server unreachable; retrying"
WAITED = re.compile(re.escape(RETRY_LINE) + r".* attempt=6 ")


def flits(prefix: str, n: int) -> list[Flit]:
    names = list(TOPICS)
    out = []
    for i in range(n):
        topic = names[i % len(names)]
        out.append(Flit(flit_id=f"{prefix}-{topic}-{i}", author_id=f"author-{topic}-{i % 4}",
                        text=f"{TOPICS[topic]} number {i}", created_at=now_utc()))
    return out


@pytest.fixture
def settings(isolated_settings: Settings, qdrant: QdrantServer) -> Settings:
    # No data dir is made here: the worker creates what Faust needs itself (no embedded index creates it).
    return isolated_settings.replace(**{
        "qdrant_url": qdrant.url, "collection": f"flits-{uuid.uuid4().hex[:8]}", "encoder": "hashing",
        "vector_dim": DIM, "startup_timeout_s": 60.0, "worker_metrics_port": free_port(),
        "ranker_metrics_port": free_port()})


def log_text(service) -> str:  # noqa: ANN001 - benchmarks.service.Service
    return service.log_path.read_text(errors="replace")


def test_worker_and_ranker_on_a_qdrant_server_wait_through_its_restart(settings: Settings, services,
                                                                       qdrant: QdrantServer) -> None:
    create_topics(settings.kafka)
    bus = Bus(settings, alive=services.all_alive)
    reader = ServerIndex(qdrant.url, settings.index.collection, DIM, unreachable_retry_s=30)
    try:
        worker = services("worker", settings)
        ranker = services("ranker", settings)
        before = flits("a", 30)
        for flit in before:
            bus.flit(flit)
        wait_until(lambda: reader.count() == len(before), 120, what="the worker to write 30 flits to Qdrant")
        for fid in [f.flit_id for f in before if "worms" in f.flit_id][:3]:
            bus.interaction(make_interaction(USER, fid, "like"))
        first = bus.request(USER, k=5)
        feed = bus.wait_feed(lambda f: f.trigger_id == first, 120, what="a feed served from the shared index")
        assert feed.items and {i.flit_id for i in feed.items} <= {f.flit_id for f in before}

        # Qdrant goes away in the middle of the stream: flits and a feed request arrive meanwhile.
        qdrant.stop()
        during = flits("b", 12)
        for flit in during:
            bus.flit(flit)
        asked_while_down = bus.request(USER, k=5)
        # Down long enough that each service waited through several retries of one call (~1.5 s):
        # a service that gave up on the call instead would dead-letter the flits or the request.
        wait_until(lambda: all(WAITED.search(log_text(s)) for s in (worker, ranker)), 60,
                   what="worker and ranker to log that they waited 6 retries for Qdrant")
        # ... and counted them (flitfeed_index_retries_total, by operation).
        for port in (settings.monitoring.worker_metrics_port, settings.monitoring.ranker_metrics_port):
            assert metric(port, "flitfeed_index_retries_total") >= 6
        qdrant.start()  # same ports, same storage

        after = flits("c", 12)
        for flit in after:
            bus.flit(flit)
        everything = before + during + after
        wait_until(lambda: reader.count() == len(everything), 120, what="every flit in the index")
        assert set(reader.retrieve_many([f.flit_id for f in everything])) == {f.flit_id for f in everything}

        def answered(feed: Feed) -> bool:
            return feed.trigger_id == asked_while_down

        feed = bus.wait_feed(answered, 60, what="the feed asked for while Qdrant was down")
        assert feed.items
        last = bus.request(USER, k=5)
        feed = bus.wait_feed(lambda f: f.trigger_id == last, 60, what="a feed after Qdrant came back")
        assert feed.items
        assert bus.dead_letters() == [], "a flit or request was given up on while Qdrant restarted"
        assert services.all_alive()
    finally:
        reader.close()
        bus.close()


def test_a_wrong_api_key_stops_the_ranker_at_start_up_in_one_line(isolated_settings: Settings, services,
                                                                   tmp_path: Path) -> None:
    qdrant_binary_or_skip()
    with QdrantServer(tmp_path / "keyed", api_key=SECRET) as keyed:
        wrong = isolated_settings.replace(**{
            "qdrant_url": keyed.url, "qdrant_api_key": SecretStr("not-the-key"), "encoder": "hashing", "vector_dim": DIM,
            "startup_timeout_s": 60.0})
        ranker = services("ranker", wrong)
        assert ranker.wait(120) == 2, log_text(ranker)
        ranker.stopped = True
        out = log_text(ranker)
        assert f"cannot start ranker: cannot open the index: Qdrant server at {keyed.url} refused the API key" in out
        assert "Traceback" not in out
        assert "not-the-key" not in out and SECRET not in out
