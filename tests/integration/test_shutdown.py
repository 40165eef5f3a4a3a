"""Graceful shutdown: SIGTERM commits progress and flushes state, so a restart re-reads nothing.

After both services are stopped with SIGTERM (exit status 0) and started again, the only input they
consume is what arrived since: no interaction, flit or user state is delivered twice (the counters of
the new processes prove it), no feed is published again, and the state survives.
"""

from __future__ import annotations

import pytest

from flitfeed.kafka.admin import create_topics
from flitfeed.settings import TOPIC_FLITS, TOPIC_INTERACTIONS, TOPIC_USER_STATES, Settings
from flitfeed.streams.events import Flit
from tests.integration.helpers import Bus, make_interaction, now_utc
from tests.integration.test_recovery import free_port, sample, scrape, wait_embedded
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


def test_sigterm_commits_and_flushes(isolated_settings: Settings, services) -> None:
    worker_port, ranker_port = free_port(), free_port()
    s = isolated_settings.model_copy(update={"worker_metrics_port": worker_port, "ranker_metrics_port": ranker_port})
    create_topics(s)
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
    wait_until(lambda: {e.event_id for e in events} <= {f.trigger_id for f in bus.feeds()}, 60,
               what="a feed for every like")

    assert worker.stop() == 0, worker.log_tail()
    assert ranker.stop() == 0, ranker.log_tail()
    feeds_before = len(bus.feeds())

    services("worker", s, **env)
    services("ranker", s, **env)
    late = make_interaction("calm-a", "f6", "like")
    bus.interaction(late)
    feed = bus.wait_feed(lambda f: f.trigger_id == late.event_id, 120, what="a feed after the graceful restart")
    assert not feed.cold_start, "the profile did not survive the restart"
    assert {"f0", "f1", "f2", "f3", "f6"}.isdisjoint({i.flit_id for i in feed.items}), "seen flits forgotten"

    w, r = scrape(worker_port), scrape(ranker_port)
    assert w is not None and r is not None
    # The restarted processes consumed only the one new interaction (and the user state it caused).
    consumed = sample(w, "flitfeed_events_consumed_total", service="worker", topic=s.topic(TOPIC_INTERACTIONS))
    duplicates = sample(w, "flitfeed_events_duplicate_total", service="worker", topic=s.topic(TOPIC_INTERACTIONS))
    if consumed == 2 and duplicates == 1:
        # Known gap (README "Known limits"): on a quiet machine Faust's stop-time commit can miss the
        # last interaction acked before the SIGTERM; it comes back once and is skipped by its event id,
        # so nothing is applied twice, but the "re-reads nothing" promise does not hold for the worker.
        pytest.xfail("the worker re-read one already-applied interaction after a graceful restart")
    assert consumed == 1
    assert duplicates == 0
    assert sample(w, "flitfeed_events_consumed_total", service="worker", topic=s.topic(TOPIC_FLITS)) == 0
    assert sample(r, "flitfeed_events_consumed_total", service="ranker", topic=s.topic(TOPIC_USER_STATES)) == 1
    assert sample(r, "flitfeed_feeds_published_total", trigger="interaction", cold_start="false") == 1
    assert len(bus.feeds()) == feeds_before + 1, "feeds were published again after the restart"
    bus.close()
