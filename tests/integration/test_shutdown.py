"""Graceful shutdown: SIGTERM commits progress and flushes state, so a restart re-reads nothing.

After both services are stopped with SIGTERM (exit status 0), their consumer groups have committed
every message of their input topics (read from the broker). Started again, they apply only what
arrived since: exactly one new interaction (counters of the new processes), no feed for an old
interaction is published again, and the profile survives.
"""

from __future__ import annotations

import pytest

from flitfeed.kafka.admin import create_topics
from flitfeed.settings import Settings
from flitfeed.streams.topics import TOPIC_FLITS, TOPIC_INTERACTIONS, TOPIC_USER_STATES
from flitfeed.streams.events import Flit
from tests.integration.helpers import Bus, make_interaction, now_utc, uncommitted
from tests.integration.test_recovery import free_port, sample, scrape, wait_embedded
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


def test_sigterm_commits_and_flushes(isolated_settings: Settings, services) -> None:
    worker_port, ranker_port = free_port(), free_port()
    s = isolated_settings.replace(**{"worker_metrics_port": worker_port, "ranker_metrics_port": ranker_port})
    create_topics(s.kafka)
    bus = Bus(s, alive=services.all_alive)
    env = {"FLITFEED_ENCODER": "hashing"}
    worker, ranker = services("worker", s, **env), services("ranker", s, **env)
    flits = [Flit(flit_id=f"f{i}", author_id=f"a{i % 3}", text=f"worms and rain number {i}", created_at=now_utc())
             for i in range(8)]
    for flit in flits:
        bus.flit(flit)
    wait_embedded(bus, [f.flit_id for f in flits])
    events = [make_interaction(user, f"f{i}", "like") for i in range(4) for user in ("calm-a", "calm-b")]
    for e in events:
        bus.interaction(e)
    wait_until(lambda: {e.event_id for e in events} <= {t for f in bus.feeds() for t in f.answers()}, 60,
               what="a feed for every like")

    assert worker.stop() == 0, worker.log_tail()
    assert ranker.stop() == 0, ranker.log_tail()
    # SIGTERM committed everything the worker had applied: a restart has nothing old to re-read.
    assert uncommitted(s, TOPIC_INTERACTIONS) == 0
    assert uncommitted(s, TOPIC_FLITS) == 0
    assert uncommitted(s, TOPIC_USER_STATES, group_id=s.kafka.ranker_group) == 0
    feeds_before = len(bus.feeds())

    services("worker", s, **env)
    services("ranker", s, **env)
    late = make_interaction("calm-a", "f6", "like")
    bus.interaction(late)
    feed = bus.wait_feed(lambda f: late.event_id in f.answers(), 120, what="a feed after the graceful restart")
    assert not feed.cold_start, "the profile did not survive the restart"
    assert {"f0", "f1", "f2", "f3", "f6"}.isdisjoint({i.flit_id for i in feed.items}), "seen flits forgotten"

    w, r = scrape(worker_port), scrape(ranker_port)
    assert w is not None and r is not None
    # The restarted worker applied exactly the one new interaction. Delivery is at-least-once: Faust
    # may hand the new interaction over twice while its start-up rebalance settles (it resumes the
    # stream before seeking to the committed offsets); the second copy is recognised by its event id.
    consumed = sample(w, "flitfeed_events_consumed_total", service="worker", topic=s.kafka.topic(TOPIC_INTERACTIONS))
    duplicates = sample(w, "flitfeed_events_duplicate_total", service="worker", topic=s.kafka.topic(TOPIC_INTERACTIONS))
    assert consumed - duplicates == 1
    assert sample(w, "flitfeed_events_consumed_total", service="worker", topic=s.kafka.topic(TOPIC_FLITS)) == 0
    assert sample(r, "flitfeed_feeds_published_total", trigger="interaction", cold_start="false") >= 1
    assert {t for f in bus.feeds()[feeds_before:] for t in f.answers()} == {late.event_id}, \
        "feeds for interactions applied before the restart were published again"
    bus.close()
