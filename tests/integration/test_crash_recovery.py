"""kill -9 of the worker and the ranker at random points while load runs; nothing lost, nothing applied twice.

A load thread streams a simulated Flutter world (flits and interactions) into the pipeline. Meanwhile
the test kills the worker, the ranker or both with SIGKILL at random moments and restarts them. After
the load stops:

* every user's final state (from ``user-states``) equals the state computed by applying the same
  interactions once each, in production order, to :class:`UserProfile` (the uninterrupted run):
  same positives and negatives (a lost or double-applied interaction changes them), same seen flits,
  same muted authors, same taste;
* every applied interaction produced a feed (none lost by a ranker crash);
* the final feed of each sampled user from the crashed-and-restarted ranker equals the feed from a
  fresh ranker that never crashed (new consumer group, index replayed from the log), item for item;
* the catch-up time (last restart → every user state correct) is printed.

CI runs ``FLITFEED_KILL_ROUNDS=3`` rounds (worker, ranker, both). Long mode, e.g.::

    FLITFEED_KILL_ROUNDS=40 FLITFEED_TEST_BOOTSTRAP=127.0.0.1:9092 \\
        .venv/bin/python -m pytest -s tests/integration/test_crash_recovery.py

draws a random victim per round (``FLITFEED_KILL_SEED`` picks the sequence).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import numpy as np
import pytest

from flitfeed.demo.world import World
from flitfeed.encoders.hashing import HashingEncoder
from flitfeed.encoders.user_vector import UserProfile
from flitfeed.kafka.admin import create_topics
from flitfeed.settings import Settings
from flitfeed.streams.topics import TOPIC_FEED_REQUESTS, TOPIC_USER_STATES
from flitfeed.streams.embedding import flit_text
from flitfeed.streams.events import Feed, Flit, Interaction, UserState, to_epoch
from flitfeed.streams.user_updates import taste_params
from tests.integration.helpers import Bus, uncommitted
from tests.integration.test_recovery import free_port, scrape
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

ROUNDS = int(os.environ.get("FLITFEED_KILL_ROUNDS", "3"))
SEED = int(os.environ.get("FLITFEED_KILL_SEED", "11"))
#: Load: every tick (0.25 s) this many flits and interactions.
FLITS_PER_TICK, EVENTS_PER_TICK = 1, 3


class Load(threading.Thread):
    """Produces the world's flits and interactions until stopped; remembers what it sent, in order."""

    def __init__(self, bus: Bus, world: World, flush_s: float = 10.0) -> None:
        super().__init__(daemon=True)
        self.bus, self.world, self.flush_s = bus, world, flush_s
        self.flits: dict[str, Flit] = {}
        self.events: list[Interaction] = []
        self.stop_event = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                now = time.time()
                for flit in self.world.next_flits(FLITS_PER_TICK, now=now):
                    self.flits[flit.flit_id] = flit
                    self.bus.producer.produce(self.bus.settings.kafka.topic("flits"), key=flit.flit_id.encode(),
                                              value=flit.to_bytes())
                for event in self.world.spontaneous_interactions(EVENTS_PER_TICK, now=now):
                    self.events.append(event)
                    self.bus.producer.produce(self.bus.settings.kafka.topic("interactions"),
                                              key=event.user_id.encode(), value=event.to_bytes())
                # Long enough to ride out a broker restart: the producer buffers and retries meanwhile.
                assert self.bus.producer.flush(self.flush_s) == 0
                self.stop_event.wait(0.25)
        except BaseException as exc:  # reported by the test thread
            self.error = exc


def expected_states(load: Load, settings: Settings) -> dict[str, UserProfile]:
    """The uninterrupted run: each interaction applied exactly once, in production order."""
    encoder = HashingEncoder(settings.encoder.vector_dim)
    params = taste_params(settings.worker)
    vectors = dict(zip(load.flits, encoder.encode_many([flit_text(f) for f in load.flits.values()])))
    profiles: dict[str, UserProfile] = {}
    for e in load.events:
        p = profiles.setdefault(e.user_id, UserProfile(e.user_id))
        flit = load.flits[e.flit_id]
        p.learn_one(e.event_id, e.kind, to_epoch(e.ts), vectors[e.flit_id], flit.author_id, e.flit_id, params,
                    e.dwell_ms)
    return profiles


def wait_states_exact(bus: Bus, expected: dict, what: str, timeout_s: float = 180) -> None:
    """Wait until the latest published user states match ``expected``; the failure lists what differs."""
    try:
        wait_until(lambda: not mismatches(expected, latest_states(bus)) or None, timeout_s, interval=0.5, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; still wrong: {mismatches(expected, latest_states(bus))[:8]}") from None


def mismatches(expected: dict[str, UserProfile], actual: dict[str, UserState]) -> list[str]:
    out = []
    for user, p in expected.items():
        s = actual.get(user)
        if s is None:
            out.append(f"{user}: no state")
            continue
        if (s.positives, s.negatives) != (p.positives, p.negatives):
            out.append(f"{user}: positives/negatives {s.positives}/{s.negatives} != {p.positives}/{p.negatives}")
        elif set(s.seen) != set(p.seen) or set(s.muted_authors) != set(p.muted_authors):
            out.append(f"{user}: seen or muted differ")
        else:
            q = p.query_vector()
            if (q is None) != (s.taste is None) or (q is not None and not np.allclose(q, s.taste, atol=1e-4)):
                out.append(f"{user}: taste differs")
    return out


def latest_states(bus: Bus) -> dict[str, UserState]:
    states: dict[str, UserState] = {}
    for m in bus.drain(TOPIC_USER_STATES):
        state = UserState.model_validate_json(m.value())
        states[state.user_id] = state
    return states


def same_feed(a: Feed, b: Feed) -> bool:
    """Same items in the same order; two items whose scores differ by less than 1e-3 may swap
    (freshness decays between the two requests)."""
    if [i.flit_id for i in a.items] == [i.flit_id for i in b.items]:
        return True
    scores_b = {i.flit_id: i.score for i in b.items}
    return (set(scores_b) == {i.flit_id for i in a.items}
            and all(abs(i.score - scores_b[i.flit_id]) < 1e-3 for i in a.items))


def wait_ranker_read_all(s: Settings, who: str) -> None:
    """Until the ranker group of ``s`` has committed every user state and feed request on the broker."""
    wait_until(lambda: uncommitted(s, TOPIC_USER_STATES, s.kafka.ranker_group) == 0
               and uncommitted(s, TOPIC_FEED_REQUESTS, s.kafka.ranker_group) == 0, 120,
               what=f"{who} to have read every user state and feed request")


def test_kill_9_worker_and_ranker_under_load_loses_nothing(isolated_settings: Settings, services) -> None:
    worker_port, ranker_port = free_port(), free_port()
    s = isolated_settings.replace(**{
        "worker_metrics_port": worker_port, "ranker_metrics_port": ranker_port, "group_session_timeout_s": 6.0,
        # Large memories so the comparison is exact (bounded lists keep the latest, which depends on order);
        # a 2-id window, so that re-delivered interactions are caught by their offsets, not their ids.
        "seen_capacity": 100_000, "muted_capacity": 100_000, "dedup_capacity": 2,
        # An interaction may overtake its flit while the worker restarts: park long enough.
        "park_base_delay_s": 0.2, "park_max_delay_s": 2.0, "park_max_attempts": 60,
        # Feeds are compared with a ranker that never crashed: both rank with the same model (the prior).
        # A learning model depends on when each example arrived; its restart is test_learned_ranking's.
        "ranker_learning": False})
    create_topics(s.kafka)
    bus = Bus(s)
    env = {"FLITFEED_ENCODER": "hashing"}
    running = {"worker": services("worker", s, **env), "ranker": services("ranker", s, **env)}
    rng = random.Random(SEED)
    victims = (["worker", "ranker", "both"] + [rng.choice(["worker", "ranker", "both"])
                                               for _ in range(max(0, ROUNDS - 3))])[:ROUNDS]

    def progressing(name: str, port: int) -> bool:
        """The service serves metrics and has consumed something since it started."""
        samples = scrape(port)
        return samples is not None and sum(v for (n, _), v in samples.items()
                                           if n == "flitfeed_events_consumed_total") > 0

    load = Load(bus, World(seed=SEED, n_birds=12, n_authors=6, start=time.time(), id_prefix=f"k{SEED}"))
    load.start()
    ports = {"worker": worker_port, "ranker": ranker_port}
    last_restart = time.monotonic()
    try:
        for n, victim in enumerate(victims, 1):
            for name in ("worker", "ranker"):
                wait_until(lambda: progressing(name, ports[name]), 120, what=f"{name} running before kill {n}")
            # A random point: somewhere in the middle of consuming, applying, publishing and committing.
            time.sleep(rng.uniform(0.5, 4.0))
            for name in (["worker", "ranker"] if victim == "both" else [victim]):
                assert running[name].alive(), running[name].log_tail()
                running[name].stop(signal.SIGKILL)
                running[name] = services(name, s, **env)
            last_restart = time.monotonic()
            print(f"kill {n}/{len(victims)}: SIGKILL {victim} after {len(load.events)} interactions")
        for name in ("worker", "ranker"):
            wait_until(lambda: progressing(name, ports[name]), 120, what=f"{name} running after the last kill")
        time.sleep(rng.uniform(1.0, 3.0))  # the load goes on a little after the last restart
    finally:
        load.stop_event.set()
        load.join(30)
    assert load.error is None, load.error
    load_stopped = time.monotonic()

    expected = expected_states(load, s)
    wait_states_exact(bus, expected, "final user states equal to the uninterrupted run")
    caught_up = time.monotonic()
    print(f"\n{len(victims)} kills ({', '.join(victims)}), {len(load.events)} interactions, {len(load.flits)} flits, "
          f"{len(expected)} users: every state correct {caught_up - last_restart:.1f} s after the last restart, "
          f"{caught_up - load_stopped:.1f} s after the load stopped")

    # Every applied interaction led to a feed, crashes or not.
    event_ids = {e.event_id for e in load.events}
    wait_until(lambda: event_ids <= {t for f in bus.feeds() for t in f.answers()}, 60, what="a feed for every interaction")

    # The restarted ranker serves the same feeds as a ranker that never crashed. Each is asked only once it
    # has read every user state (a ranker answers a request with the states it has read so far).
    users = sorted(expected)[:4]
    wait_ranker_read_all(s, "the restarted ranker")
    crashed = {u: bus.wait_feed(lambda f, r=bus.request(u): f.trigger_id == r, 60, what=f"feed for {u}")
               for u in users}
    assert running["ranker"].stop() == 0, running["ranker"].log_tail()
    fresh = s.replace(**{"ranker_group": f"{s.kafka.ranker_group}-fresh", "data_dir": s.data_dir / "fresh",
                                 "ranker_metrics_port": 0})
    services("ranker", fresh, **env)
    wait_ranker_read_all(fresh, "a ranker that never crashed")
    for u in users:
        request_id = bus.request(u)
        reference = bus.wait_feed(lambda f: f.trigger_id == request_id, 120, what=f"reference feed for {u}")
        assert same_feed(crashed[u], reference), (u, crashed[u].items, reference.items)
    assert services.all_alive()
    bus.close()
