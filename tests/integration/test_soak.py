"""Soak: steady load for a while; memory and feed latency stay flat, per-user memories stay bounded.

The load is the simulated world at a fixed rate (4 flits/s and 12 interactions/s from 12 birds, each
interaction triggering a feed) for ``FLITFEED_SOAK_S`` seconds (CI: 45). Every window the test
samples the resident memory of the worker and the ranker and the feed latency percentiles of that
window (from the ranker's histogram), and prints the table. It asserts what must hold at any duration:
no user state ever exceeds its bounds (seen, muted), both services run throughout, and every window
publishes feeds. Long mode (``FLITFEED_SOAK_S`` >= 600, e.g. ``FLITFEED_SOAK_S=3600``) also asserts
that memory is flat: the last window's RSS is within 15 % (or 40 MiB) of the RSS after warm-up.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from flitfeed.demo.world import World
from flitfeed.kafka.admin import create_topics
from flitfeed.settings import Settings
from flitfeed.streams.topics import TOPIC_USER_STATES
from flitfeed.streams.events import UserState
from tests.integration.helpers import Bus
from tests.integration.test_crash_recovery import Load
from tests.integration.test_recovery import free_port, scrape
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

SOAK_S = float(os.environ.get("FLITFEED_SOAK_S", "45"))
WINDOWS = 6
SEEN, MUTED = 25, 4


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def latency_buckets(samples: dict) -> dict[float, float]:
    return {float(dict(ls)["le"]): v for (n, ls), v in samples.items()
            if n == "flitfeed_feed_latency_seconds_bucket" and dict(ls).get("trigger") == "interaction"}


def percentile(now: dict[float, float], before: dict[float, float], q: float) -> float | None:
    delta = {le: now[le] - before.get(le, 0.0) for le in now}
    total = delta.get(float("inf"), 0.0)
    if total <= 0:
        return None
    return next(le for le in sorted(delta) if delta[le] >= q * total)


def test_soak_memory_and_latency_stay_flat(isolated_settings: Settings, services) -> None:
    worker_port, ranker_port = free_port(), free_port()
    s = isolated_settings.replace(**{"worker_metrics_port": worker_port, "ranker_metrics_port": ranker_port,
                                             "seen_capacity": SEEN, "muted_capacity": MUTED, "dedup_capacity": 60,
                                             "recent_flits_capacity": 300})
    create_topics(s.kafka)
    bus = Bus(s, alive=services.all_alive)
    worker = services("worker", s, FLITFEED_ENCODER="hashing")
    ranker = services("ranker", s, FLITFEED_ENCODER="hashing")
    load = Load(bus, World(seed=3, n_birds=12, n_authors=6, start=time.time(), id_prefix="soak"))
    load.start()
    rows = []
    try:
        wait_until(lambda: latency_buckets(scrape(ranker_port) or {}).get(float("inf"), 0) > 0, 120,
                   what="the first feeds")
        before = latency_buckets(scrape(ranker_port))
        start = time.monotonic()
        for w in range(1, WINDOWS + 1):
            # Not a sleep in place of a condition: the soak *is* time under load; each window is a sample.
            time.sleep(max(0.0, start + w * SOAK_S / WINDOWS - time.monotonic()))
            assert worker.alive() and ranker.alive(), "a service died during the soak"
            samples = scrape(ranker_port)
            now = latency_buckets(samples)
            rows.append({"t_s": round(time.monotonic() - start), "interactions": len(load.events),
                         "worker_rss_mib": round(rss_mib(worker.proc.pid), 1),
                         "ranker_rss_mib": round(rss_mib(ranker.proc.pid), 1),
                         "feeds": int(now[float("inf")] - before[float("inf")]),
                         "p50_s": percentile(now, before, 0.5), "p95_s": percentile(now, before, 0.95)})
            before = now
    finally:
        load.stop_event.set()
        load.join(30)
    assert load.error is None, load.error

    print(f"\nsoak {SOAK_S:.0f} s at ~16 events/s (machine: {os.cpu_count()} cores)")
    print("| " + " | ".join(rows[0]) + " |")
    for row in rows:
        print("| " + " | ".join(str(v) for v in row.values()) + " |")
    assert all(row["feeds"] > 0 for row in rows), "a window without feeds"

    states = [UserState.model_validate_json(m.value()) for m in bus.drain(TOPIC_USER_STATES)]
    assert states and max(len(st.seen) for st in states) <= SEEN and max(len(st.muted_authors) for st in states) <= MUTED
    assert max(len(st.seen) for st in states) == SEEN, "the soak was too short to fill a seen-set"
    if SOAK_S >= 600:
        for svc in ("worker_rss_mib", "ranker_rss_mib"):
            warm, last = rows[1][svc], rows[-1][svc]
            assert last <= max(warm * 1.15, warm + 40), f"{svc} grew from {warm} to {last} MiB"
    bus.close()
