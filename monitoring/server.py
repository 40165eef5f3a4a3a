"""The metrics HTTP server of one service process: ``/metrics``, ``/livez``, ``/readyz``.

Several processes of one service may run on one host (scale-out), so every
process serves its **own** registry on its **own** port and announces itself to
Prometheus through file-based service discovery: a JSON file
``<targets_dir>/<service>-<pid>.json`` naming ``host:port`` and the ``service``
label. Prometheus (``deploy/prometheus/prometheus.yml``) watches that directory,
so each process becomes one target with its own ``instance`` label, and
dashboards aggregate with ``sum``/``max by (...)``. When the configured port is
taken (a second process on the same host), the server binds a free port instead
and announces that one. (prometheus_client's multiprocess mode was not used: it
cannot carry Info metrics or live gauges like the drift scores, and needs a
shared directory wiped between runs.)

>>> from prometheus_client import CollectorRegistry, Counter
>>> import json, urllib.request
>>> registry = CollectorRegistry()
>>> Counter("flitfeed_doc_total", "x", registry=registry).inc()
>>> health = Health(liveness_timeout_s=30)
>>> server = MetricsServer("doc", registry, health).start("127.0.0.1", 0)
>>> get = lambda path: urllib.request.urlopen(f"{server.url}{path}", timeout=5)
>>> b"flitfeed_doc_total 1.0" in get("/metrics").read()
True
>>> health.beat(); json.load(get("/livez"))["status"]
'ok'
>>> health.require("index")
>>> try:
...     get("/readyz")
... except urllib.error.HTTPError as e:
...     e.code, json.load(e)["waiting_for"]
(503, ['index'])
>>> health.ready("index"); json.load(get("/readyz"))["status"]
'ready'
>>> server.stop()
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)

__all__ = ["Health", "MetricsServer"]


class Health:
    """Liveness (the main loop beat recently) and readiness (every required condition met).

    The service's loop calls :meth:`beat` on each iteration; components declare what readiness waits for
    with :meth:`require` and clear it with :meth:`ready` (or set it back with ``ready(name, False)``).
    Thread-safe: the HTTP threads read what the service's loop writes.
    """

    def __init__(self, liveness_timeout_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.liveness_timeout_s = liveness_timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last_beat: float | None = None
        self._started = clock()
        self._conditions: dict[str, bool] = {}

    def beat(self) -> None:
        with self._lock:
            self._last_beat = self._clock()

    def require(self, *names: str) -> None:
        with self._lock:
            for name in names:
                self._conditions.setdefault(name, False)

    def ready(self, name: str, ok: bool = True) -> None:
        with self._lock:
            self._conditions[name] = ok

    def livez(self) -> tuple[int, dict]:
        with self._lock:
            last = self._last_beat
        now = self._clock()
        age = None if last is None else round(now - last, 3)
        # Before the first beat the service is starting (loading a model, joining a group): alive for one timeout.
        ok = (now - self._started <= self.liveness_timeout_s) if last is None else now - last <= self.liveness_timeout_s
        return (200 if ok else 503), {"status": "ok" if ok else "stalled", "last_beat_age_s": age,
                                      "timeout_s": self.liveness_timeout_s}

    def readyz(self) -> tuple[int, dict]:
        with self._lock:
            waiting = sorted(name for name, ok in self._conditions.items() if not ok)
            conditions = dict(self._conditions)
        if waiting:
            return 503, {"status": "not_ready", "waiting_for": waiting, "conditions": conditions}
        return 200, {"status": "ready", "conditions": conditions}


class MetricsServer:
    """Serves one registry and one :class:`Health` over HTTP; optionally announces itself for file_sd.

    :param service: the ``service`` label of this process's scrape target (``worker``, ``ranker``).
    :param targets_dir: where to write the file_sd target (None = do not announce).
    """

    def __init__(self, service: str, registry: CollectorRegistry, health: Health,
                 targets_dir: Path | None = None) -> None:
        self.service = service
        self.registry = registry
        self.health = health
        self.targets_dir = targets_dir
        self._httpd: ThreadingHTTPServer | None = None
        self._target_file: Path | None = None
        self.host = ""
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, host: str, port: int) -> "MetricsServer":
        """Bind ``host:port`` (a free port if that one is taken or ``port`` is 0) and serve in a daemon thread."""
        handler = _handler(self.registry, self.health)
        try:
            self._httpd = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            log.warning("metrics port taken; serving on a free port (announced for Prometheus file_sd)",
                        extra={"service": self.service, "port": port, "error": str(exc)})
            self._httpd = ThreadingHTTPServer((host, 0), handler)
        self._httpd.daemon_threads = True
        self.host, self.port = host, int(self._httpd.server_address[1])
        threading.Thread(target=self._httpd.serve_forever, name="metrics-http", daemon=True).start()
        self._announce()
        log.info("metrics served", extra={"service": self.service, "url": f"{self.url}/metrics"})
        return self

    def _announce(self) -> None:
        if self.targets_dir is None:
            return
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        _remove_stale_targets(self.targets_dir)
        target = {"targets": [f"{self.host}:{self.port}"], "labels": {"service": self.service}}
        self._target_file = self.targets_dir / f"{self.service}-{os.getpid()}.json"
        tmp = self._target_file.with_suffix(".tmp")
        tmp.write_text(json.dumps([target]))
        tmp.replace(self._target_file)  # atomic: Prometheus never reads half a file

    def stop(self) -> None:
        if self._target_file is not None:
            self._target_file.unlink(missing_ok=True)
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()


def _remove_stale_targets(directory: Path) -> None:
    """Drop target files of processes on this host that are gone (killed without cleaning up)."""
    for path in directory.glob("*-*.json"):
        try:
            pid = int(path.stem.rsplit("-", 1)[1])
            os.kill(pid, 0)
        except ValueError:
            continue
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except PermissionError:
            continue  # alive, owned by someone else


def _handler(registry: CollectorRegistry, health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path in ("/livez", "/readyz"):
                code, body = health.livez() if path == "/livez" else health.readyz()
                self._send(code, json.dumps(body).encode(), "application/json")
            else:
                self._send(404, b'{"status":"not_found"}', "application/json")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - scrapes are not worth a log line
            pass

    return Handler
