"""The worker's on-disk user state (RocksDB, the default ``state_store``) across kill -9 and damaged files.

One real worker, one load of simulated interactions, three phases:

1. load, then every user state exact (each interaction applied once, in production order);
2. load again and SIGKILL the worker in the middle of it; the restarted worker reads its RocksDB files and
   only the changelog records written after the last one they hold: the records its recovery applied
   (``flitfeed_state_restored_records_total``) are at most those written since phase 1 ended, fewer than
   the changelog holds; every state exact again (nothing lost, nothing applied twice);
3. SIGKILL it while idle, corrupt one partition's database and delete another's; the restarted worker
   rebuilds both from the changelog (a log line and ``flitfeed_state_rebuilds_total`` each, no crash) and
   one more interaction per user lands on the full, rebuilt profiles.
"""

from __future__ import annotations

import random
import shutil
import signal
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from flitfeed.demo.world import World
from flitfeed.kafka.admin import create_topics
from flitfeed.kafka.config import consumer_config
from flitfeed.settings import Settings
from flitfeed.streams.app import USER_PROFILES_TABLE
from flitfeed.streams.events import Interaction
from tests.integration.helpers import Bus, make_interaction
from tests.integration.test_crash_recovery import Load, expected_states, wait_states_exact
from tests.integration.test_recovery import free_port, sample, scrape
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

SEED = 23


def changelog_records(s: Settings) -> int:
    """Records written to the profiles table's changelog so far (its end offsets, summed)."""
    topic = f"{s.kafka.app_id}-{USER_PROFILES_TABLE}-changelog"
    probe = Consumer(consumer_config(s.kafka, group_id=f"probe-{s.kafka.app_id}"))
    try:
        return sum(probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(s.kafka.partitions))
    finally:
        probe.close()


def partition_dbs(s: Settings) -> dict[int, Path]:
    found = {int(p.name.rsplit("-", 1)[1].split(".")[0]): p
             for p in s.data_dir.glob(f"faust/**/{USER_PROFILES_TABLE}-*.db") if p.is_dir()}
    assert found, f"no RocksDB partition under {s.data_dir}"
    return found


def test_worker_restarts_from_its_rocksdb_state_and_rebuilds_damaged_partitions(isolated_settings: Settings,
                                                                                services) -> None:
    port = free_port()
    s = isolated_settings.replace(**{
        "worker_metrics_port": port, "group_session_timeout_s": 6.0, "state_store": "rocksdb",
        # Large memories so the comparison is exact (bounded lists keep the latest, which depends on order);
        # a 2-id window, so that re-delivered interactions are caught by their offsets, not their ids.
        "seen_capacity": 100_000, "muted_capacity": 100_000, "dedup_capacity": 2,
        "park_base_delay_s": 0.2, "park_max_delay_s": 2.0, "park_max_attempts": 60})
    create_topics(s.kafka)
    bus = Bus(s)
    env = {"FLITFEED_ENCODER": "hashing"}
    rng = random.Random(SEED)
    world = World(seed=SEED, n_birds=12, n_authors=6, start=time.time(), id_prefix=f"s{SEED}")
    worker = services("worker", s, **env)

    def consumed() -> float:
        samples = scrape(port)
        return 0.0 if samples is None else sample(samples, "flitfeed_events_consumed_total", service="worker",
                                                  topic=s.kafka.topic("interactions"))

    def run_load(seconds: float, kill_after: float | None = None) -> Load:
        nonlocal worker
        load = Load(bus, world)
        load.start()
        try:
            if kill_after is not None:
                wait_until(lambda: consumed() > 0 or None, 120, what="the worker consuming before the kill")
                time.sleep(kill_after)  # a random point in the middle of applying and storing
                worker.stop(signal.SIGKILL)
                worker = services("worker", s, **env)
            time.sleep(seconds)
        finally:
            load.stop_event.set()
            load.join(30)
        assert load.error is None, load.error
        return load

    # 1. Load; every state exact.
    first = run_load(6.0)
    flits, events = dict(first.flits), list(first.events)

    def expect(what: str) -> None:
        merged = Load(bus, world)
        merged.flits, merged.events = flits, events
        wait_states_exact(bus, expected_states(merged, s), what)

    expect("every state exact after the first load")
    written_before_kill = changelog_records(s)
    assert written_before_kill >= 20, written_before_kill

    # 2. Load again, SIGKILL in the middle, restart: the local state plus the changelog's tail.
    second = run_load(3.0, kill_after=rng.uniform(0.5, 3.0))
    flits.update(second.flits)
    events += second.events
    expect("every state exact after kill -9 and restart")
    samples = wait_until(lambda: scrape(port), 60, what="the restarted worker's metrics")
    restored = sample(samples, "flitfeed_state_restored_records_total", service="worker")
    written_since = changelog_records(s) - written_before_kill
    print(f"\nrestart after kill -9: {restored:.0f} changelog records applied of {changelog_records(s)} "
          f"({written_since} written since the first load)")
    assert restored <= written_since < written_before_kill + written_since, (restored, written_since)
    assert sample(samples, "flitfeed_state_rebuilds_total", service="worker", reason="corrupt") == 0

    # 3. Damage two partitions' databases while the worker is down; it rebuilds them from the changelog.
    worker.stop(signal.SIGKILL)
    dbs = partition_dbs(s)
    corrupt, missing = sorted(dbs)[:2]
    (dbs[corrupt] / "CURRENT").write_text("garbage\n")
    shutil.rmtree(dbs[missing])
    worker = services("worker", s, **env)
    users = sorted({e.user_id for e in events})
    flit = next(iter(flits))
    extra: list[Interaction] = [make_interaction(u, flit, "like", event_id=f"rebuilt-{u}") for u in users]
    for e in extra:
        bus.interaction(e)
    events += extra
    expect("every state exact after two partitions were rebuilt from the changelog")
    samples = wait_until(lambda: scrape(port), 60, what="the restarted worker's metrics")
    assert sample(samples, "flitfeed_state_rebuilds_total", service="worker", reason="corrupt") == 1
    assert sample(samples, "flitfeed_state_rebuilds_total", service="worker", reason="missing") == 1
    log = worker.log_path.read_text(errors="replace")
    assert log.count("rebuilt from the changelog") >= 2, worker.log_tail()
    assert worker.alive() and services.all_alive()
    bus.close()
