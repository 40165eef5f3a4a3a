"""The ranker's users on disk (RocksDB, the default ``ranker_state_store``) across a kill -9.

A real worker and ranker; users interact until each has a personalised feed. The ranker is SIGKILLed and
started again: it opens its user-state databases and reads only the ``user-states`` records after the
offset they applied (``flitfeed_state_restored_records_total`` stays below the records on the topic;
a ranker in memory reads all of them), and each user's next feed is personalised at once, from the state
it kept. The in-memory store, run the same way, reads the whole topic: the metric tells the two apart.
"""

from __future__ import annotations

import signal
import urllib.error
import urllib.request

import pytest
from confluent_kafka import Consumer, TopicPartition

from flitfeed.kafka.admin import create_topics
from flitfeed.kafka.config import consumer_config
from flitfeed.settings import Settings
from flitfeed.streams.events import Feed, Flit
from flitfeed.streams.topics import TOPIC_USER_STATES
from tests.integration.helpers import Bus, make_interaction, now_utc, uncommitted
from tests.integration.test_recovery import free_port, sample, scrape
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

USERS = [f"bird-{i}" for i in range(8)]


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            return resp.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def state_records(s: Settings) -> int:
    topic = s.kafka.topic(TOPIC_USER_STATES)
    probe = Consumer(consumer_config(s.kafka, group_id=f"probe-{s.kafka.ranker_group}"))
    try:
        return sum(probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                   for p in range(s.kafka.partitions))
    finally:
        probe.close()


@pytest.mark.parametrize("store", ["rocksdb", "memory"])
def test_a_restarted_ranker_reads_only_the_tail_and_keeps_every_users_taste(isolated_settings: Settings, services,
                                                                           store: str) -> None:
    port = free_port()
    s = isolated_settings.replace(ranker_metrics_port=port, group_session_timeout_s=6.0, ranker_state_store=store)
    create_topics(s.kafka)
    bus = Bus(s, alive=services.all_alive)
    try:
        services("worker", s)
        ranker = services("ranker", s)
        topics = ["worms", "storms", "seeds", "moths"]
        for t in topics:
            for i in range(6):
                bus.flit(Flit(flit_id=f"{t}-{i}", author_id=f"author-{t}-{i % 2}", text=f"{t} {t} about {t} {i}",
                              created_at=now_utc(), tags=[t]))
        for n, user in enumerate(USERS):
            topic = topics[n % len(topics)]
            for i in range(3):
                bus.interaction(make_interaction(user, f"{topic}-{i}", "like"))
        last = {user: make_interaction(user, f"{topics[n % len(topics)]}-3", "like") for n, user in enumerate(USERS)}
        for e in last.values():
            bus.interaction(e)
        for user, e in last.items():
            feed = bus.wait_feed(lambda f, e=e: e.event_id in f.answers(), 180, what=f"{user}'s feed")
            assert not feed.cold_start
        written = state_records(s)
        assert written >= 4 * len(USERS), written
        # Every state served and committed, so both stores' restarts start from the same committed offsets.
        wait_until(lambda: uncommitted(s, TOPIC_USER_STATES, s.kafka.ranker_group) == 0 or None, 60,
                   what="the ranker committing every user state")

        ranker.stop(signal.SIGKILL)
        services("ranker", s)
        wait_until(lambda: ready(port) or None, 120, what="the restarted ranker ready")
        samples = wait_until(lambda: scrape(port), 60, what="the restarted ranker's metrics")
        restored = sample(samples, "flitfeed_state_restored_records_total", service="ranker")
        print(f"\n{store}: the restarted ranker read {restored:.0f} of {written} user-states records")
        if store == "rocksdb":
            assert restored < written, (restored, written)
        else:
            assert restored == written, (restored, written)

        # A feed request (no new state) is answered from the state the restarted ranker holds: personalised.
        for user in USERS:
            request_id = bus.request(user)
            feed: Feed = bus.wait_feed(lambda f, r=request_id: f.trigger_id == r, 120, what=f"{user}'s request")
            assert not feed.cold_start, f"{user} lost their taste across the restart"
    finally:
        bus.close()
