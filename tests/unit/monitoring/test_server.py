"""/metrics, /livez and /readyz, free-port fallback and file_sd announcement of several processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client import CollectorRegistry

from flitfeed.monitoring.metrics import Metrics
from flitfeed.monitoring.server import Health, MetricsServer


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_livez_turns_503_when_the_loop_stops_beating() -> None:
    clock = Clock()
    health = Health(liveness_timeout_s=10, clock=clock)
    assert health.livez()[0] == 200  # starting up: alive for one timeout before the first beat
    clock.t += 11
    assert health.livez()[0] == 503
    health.beat()
    clock.t += 9
    assert health.livez() == (200, {"status": "ok", "last_beat_age_s": 9.0, "timeout_s": 10})
    clock.t += 2
    code, body = health.livez()
    assert (code, body["status"]) == (503, "stalled")


def test_readyz_lists_what_it_waits_for(tmp_path: Path) -> None:
    m = Metrics("ranker", CollectorRegistry())
    assert m.serve("127.0.0.1", 0) is None  # port 0 = metrics off
    server = m.serve("127.0.0.1", _free_port(), targets_dir=tmp_path)
    assert server is not None
    try:
        m.health.require("partitions_assigned", "flit_vectors_caught_up")
        m.health.ready("partitions_assigned")
        code, body = _get(f"{server.url}/readyz")
        assert code == 503 and json.loads(body)["waiting_for"] == ["flit_vectors_caught_up"]
        m.health.ready("flit_vectors_caught_up")
        code, body = _get(f"{server.url}/readyz")
        assert code == 200 and json.loads(body)["status"] == "ready"
        m.consumed.labels(service="ranker", topic="feeds").inc(3)
        code, body = _get(f"{server.url}/metrics")
        assert code == 200
        assert b'flitfeed_events_consumed_total{service="ranker",topic="feeds"} 3.0' in body
        assert b"process_resident_memory_bytes" in body
        assert _get(f"{server.url}/nope")[0] == 404
    finally:
        server.stop()


def test_two_processes_on_one_configured_port_get_two_announced_targets(tmp_path: Path) -> None:
    """The second process finds the port taken, serves on a free one, and both are announced for file_sd."""
    first = MetricsServer("worker", CollectorRegistry(), Health(), tmp_path).start("127.0.0.1", 0)
    script = ("import sys, time; from pathlib import Path; from prometheus_client import CollectorRegistry;"
              "from flitfeed.monitoring.server import MetricsServer, Health;"
              f"s = MetricsServer('worker', CollectorRegistry(), Health(), Path(sys.argv[1])).start('127.0.0.1', {first.port});"
              "print(s.port, flush=True); sys.stdin.read(); s.stop()")
    child = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        child_port = int(child.stdout.readline())
        assert child_port != first.port
        announced = {json.loads(p.read_text())[0]["targets"][0]: p.name for p in tmp_path.glob("*.json")}
        assert set(announced) == {f"127.0.0.1:{first.port}", f"127.0.0.1:{child_port}"}
        assert f"worker-{os.getpid()}.json" in announced.values()
        assert all(json.loads(p.read_text())[0]["labels"] == {"service": "worker"} for p in tmp_path.glob("*.json"))
    finally:
        child.communicate("", timeout=10)
        first.stop()
    assert list(tmp_path.glob("*.json")) == []  # each process removes its own target on a clean stop


def test_targets_of_dead_processes_are_removed_on_start(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"ranker-{int(dead.stdout)}.json"
    stale.write_text('[{"targets": ["127.0.0.1:1"], "labels": {"service": "ranker"}}]')
    server = MetricsServer("ranker", CollectorRegistry(), Health(), tmp_path).start("127.0.0.1", 0)
    try:
        assert not stale.exists()
        assert [p.name for p in tmp_path.glob("*.json")] == [f"ranker-{os.getpid()}.json"]
    finally:
        server.stop()
