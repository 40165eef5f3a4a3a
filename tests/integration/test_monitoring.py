"""Metrics proven against a real Prometheus: every dashboard panel and alert rule returns data.

Starts the real broker, two worker and two ranker processes (all four configured with the *same* two
metrics ports, so the second of each kind falls back to a free port and announces it), and a real
Prometheus (Debian's package, on a free port, scraping every second through file_sd). It streams the
demo world's events — flits, interactions, feed requests, reactions to served feeds, a hide, a malformed
flit, a duplicate and an interaction for a flit that never arrives — then evaluates every PromQL
expression of every dashboard panel and every alert rule (each side of its comparison) through
Prometheus' HTTP API until each returns a number. About 1–2 minutes.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from benchmarks.service import free_port
from flitfeed.demo.world import World
from flitfeed.kafka.admin import create_topics
from flitfeed.settings import Settings
from flitfeed.streams.events import Feed, Interaction
from tests.integration.helpers import Bus, now_utc
from tests.promql import REPO, dashboard_exprs, instantiate, operands, rule_exprs
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

PROMETHEUS_SCRIPT = REPO / "deploy" / "prometheus" / "prometheus.sh"
REQUIRE_PROMETHEUS = os.environ.get("FLITFEED_REQUIRE_PROMETHEUS") == "1"


def http_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)
    except (urllib.error.URLError, ConnectionError, json.JSONDecodeError):
        return 0, {}


@pytest.fixture
def settings(isolated_settings: Settings) -> Settings:
    # Small drift windows and a 1 s refresh so every gauge fills within the test.
    return isolated_settings.replace(**{
        "encoder": "hashing", "metrics_targets_dir": str(isolated_settings.data_dir / "metrics-targets"), "worker_metrics_port": free_port(), "ranker_metrics_port": free_port(),
        "drift_reference_size": 20, "drift_window_size": 20, "monitoring_interval_s": 1.0,
        "park_base_delay_s": 0.2, "park_max_attempts": 3})


@pytest.fixture
def prometheus(settings: Settings, tmp_path: Path) -> Iterator[str]:
    if shutil.which("prometheus") is None:
        if REQUIRE_PROMETHEUS:
            pytest.fail("prometheus is not installed; `make setup` installs it")
        pytest.skip("prometheus not installed (deploy/prometheus/prometheus.sh install)")
    port = free_port()
    env = dict(os.environ, FLITFEED_PROMETHEUS_PORT=str(port), FLITFEED_PROMETHEUS_DATA=str(tmp_path / "prometheus"),
               FLITFEED_METRICS_TARGETS_DIR=str(settings.targets_dir()), FLITFEED_PROMETHEUS_SCRAPE_INTERVAL="1s")
    subprocess.run(["bash", str(PROMETHEUS_SCRIPT), "start"], env=env, check=True, timeout=60)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        subprocess.run(["bash", str(PROMETHEUS_SCRIPT), "stop"], env=env, timeout=30)


def query(prometheus: str, expr: str) -> list[dict]:
    code, body = http_json(f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
    assert code == 200 and body.get("status") == "success", f"{expr!r}: {code} {body}"
    return body["data"]["result"]


def has_number(result: list[dict]) -> bool:
    return any(not math.isnan(float(r["value"][1])) for r in result)


def all_expressions() -> list[tuple[str, str]]:
    out = []
    for where, expr in dashboard_exprs() + rule_exprs():
        for i, side in enumerate(operands(expr)):
            out.append((f"{where}{' (side %d)' % (i + 1) if len(operands(expr)) > 1 else ''}",
                        instantiate(side, rate_interval="5m")))
    return out


def announced(settings: Settings) -> dict[str, str]:
    """``{file name: http://host:port}`` of every process that announced itself."""
    out = {}
    for path in settings.targets_dir().glob("*.json"):
        try:
            out[path.stem] = f"http://{json.loads(path.read_text())[0]['targets'][0]}"
        except (ValueError, OSError):
            continue  # being written
    return out


def test_every_dashboard_and_alert_expression_returns_data(settings: Settings, services, prometheus: str) -> None:
    create_topics(settings.kafka)
    for i, name in enumerate(("worker", "worker", "ranker", "ranker")):
        # Processes on one host share the targets directory but not their embedded index (own data dir).
        services(name, settings.replace(**{"data_dir": settings.data_dir / f"process-{i}"}))
    bus = Bus(settings, alive=services.all_alive)
    try:
        targets = wait_until(lambda: (t := announced(settings)) and len(t) == 4 and t, 120,
                             what="four processes announcing their metrics")
        assert sorted(name.split("-")[0] for name in targets) == ["ranker", "ranker", "worker", "worker"]
        assert len(set(targets.values())) == 4, f"each process serves its own port: {targets}"
        for url in targets.values():
            assert http_json(f"{url}/livez") [0] == 200

        world = World(seed=11, start=time.time(), n_birds=30)
        for flit in world.next_flits(60):
            bus.flit(flit)
        # Every input topic gets one malformed message; an interaction whose flit never arrives is parked.
        bus.send("flits", b"bad", b'{"flit_id": ')
        bus.interaction(Interaction(event_id="ev-missing", user_id="bird-000", flit_id="never-posted", kind="like",
                                    ts=now_utc()))

        def all_ready() -> bool:
            assert services.all_alive(), "a service died while starting"
            return all(http_json(f"{url}/readyz")[0] == 200 for url in targets.values())

        wait_until(all_ready, 120, interval=0.5, what="every process ready (/readyz 200)")

        expressions = all_expressions()
        assert len(expressions) > 45
        hidden: set[str] = set()
        duplicate_sent = False
        missing: list[str] = []

        def stream_and_check() -> bool:
            nonlocal duplicate_sent, missing
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                now = time.time()
                for flit in world.next_flits(3, now):
                    bus.flit(flit)
                for event in world.spontaneous_interactions(4, now):
                    bus.interaction(event)
                    if not duplicate_sent:
                        bus.interaction(event)  # re-delivered: skipped by event id
                        duplicate_sent = True
                for request in world.feed_requests(3):
                    bus.send("feed-requests", request.user_id, request.to_bytes())
                for feed in bus.feeds()[-40:]:
                    react(world, bus, feed, hidden)
                bus.received["feeds"].clear()
                time.sleep(0.3)  # pacing the producer, not waiting for a condition
            missing = [where for where, expr in expressions if not has_number(query(prometheus, expr))]
            return not missing

        try:
            wait_until(stream_and_check, 150, interval=0.0, what="every expression returning data")
        except AssertionError:
            pytest.fail(f"{len(missing)} expressions return no data:\n  " + "\n  ".join(missing))

        # Several processes per service: one target each, each with its own instance label and its own work.
        up = {r["metric"]["service"]: int(r["value"][1])
              for r in query(prometheus, 'count by (service) (up{job="flitfeed"} == 1)')}
        assert up == {"worker": 2, "ranker": 2}
        busy = {r["metric"]["service"]: int(r["value"][1]) for r in query(
            prometheus, "count by (service) (sum by (service, instance) (flitfeed_events_consumed_total) > 0)")}
        assert busy == {"worker": 2, "ranker": 2}, "every process consumed its share"
        drift = query(prometheus, 'flitfeed_drift_score{signal="embedding_mmd"}')
        assert {r["metric"]["service"] for r in drift} == {"worker"}
        # Prometheus loaded the alert rules and evaluates them without errors.
        code, body = http_json(f"{prometheus}/api/v1/rules")
        rules = [r for g in body["data"]["groups"] for r in g["rules"]]
        assert code == 200 and len(rules) == len(rule_exprs())
        wait_until(lambda: all(r["health"] == "ok" for r in http_json(f"{prometheus}/api/v1/rules")[1]["data"]
                               ["groups"][0]["rules"]), 10, what="every alert rule evaluated without error")
    finally:
        bus.close()


def react(world: World, bus: Bus, feed: Feed, hidden: set[str]) -> None:
    """Birds react to the feeds they asked for; one hide per bird gives negative feedback too."""
    if feed.trigger_kind != "request" or not feed.items:
        return
    for event in world.interactions_for_feed(feed, time.time())[:3]:
        bus.interaction(event)
    if feed.user_id not in hidden:
        hidden.add(feed.user_id)
        bus.interaction(Interaction(event_id=f"hide-{feed.trigger_id}", user_id=feed.user_id,
                                    flit_id=feed.items[-1].flit_id, kind="hide", ts=now_utc()))


def test_lag_is_high_watermark_minus_committed_offset(isolated_settings: Settings) -> None:
    from confluent_kafka import Consumer, TopicPartition

    from flitfeed.kafka.config import consumer_config
    from flitfeed.monitoring.lag import LagReporter

    create_topics(isolated_settings.kafka)
    topic = isolated_settings.kafka.topic("flits")
    bus = Bus(isolated_settings)
    for i in range(7):
        bus.send("flits", "same-key", f"m{i}".encode())  # one key: all seven on one partition
    group = f"{isolated_settings.kafka.app_id}-lag"
    reporter = LagReporter(consumer_config(isolated_settings.kafka, group_id=group), [topic], lambda *_: None)
    probe = Consumer(consumer_config(isolated_settings.kafka, group_id=group))
    try:
        lag = reporter.measure(probe)
        assert len(lag) == isolated_settings.kafka.partitions
        assert sorted(lag.values())[-2:] == [0, 7]  # nothing committed yet: all retained messages count
        partition = next(p for (_, p), n in lag.items() if n == 7)
        probe.commit(offsets=[TopicPartition(topic, partition, 5)], asynchronous=False)
        assert reporter.measure(probe)[(topic, partition)] == 2
    finally:
        probe.close()
        bus.close()
