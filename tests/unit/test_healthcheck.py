"""The container health check against a real HTTP server on a free port."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

from flitfeed.healthcheck import main, probe_urls
from flitfeed.settings import MonitoringConfig


class _Probes(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        ok = self.path == "/livez"  # live but not ready
        self.send_response(200 if ok else 503)
        self.end_headers()
        self.wfile.write(b'{"status":"ok"}' if ok else b'{"status":"waiting"}')

    def log_message(self, *args) -> None:  # noqa: ANN002 - keep test output quiet
        pass


@pytest.fixture
def service_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Probes)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_healthy_when_the_service_in_the_container_answers_200(service_port: int, monkeypatch) -> None:
    # The container runs a ranker: the worker's port is closed, the ranker's answers.
    monkeypatch.setenv("FLITFEED_WORKER_METRICS_PORT", str(_closed_port()))
    monkeypatch.setenv("FLITFEED_RANKER_METRICS_PORT", str(service_port))
    assert main(["livez"]) == 0
    assert main(["readyz"]) == 1


def test_unhealthy_when_nothing_answers(monkeypatch) -> None:
    monkeypatch.setenv("FLITFEED_WORKER_METRICS_PORT", str(_closed_port()))
    monkeypatch.setenv("FLITFEED_RANKER_METRICS_PORT", "0")
    assert main([]) == 1


def test_rejects_an_unknown_probe() -> None:
    with pytest.raises(ValueError):
        probe_urls(MonitoringConfig(), "healthz")


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
