"""A flitfeed service (``python -m flitfeed.cli <name>``) as a real child process, its output in a log file.

The one wrapper the integration tests (``tests/conftest.py``) and the benchmarks that run the real
services (:mod:`benchmarks.end_to_end`, :mod:`benchmarks.scale_out`) start and stop them with.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable, Iterable

from flitfeed.settings import Settings

__all__ = ["Service", "free_port", "service_env", "stop_all"]


def free_port() -> int:
    """A free TCP port on the loopback interface (for a service's metrics server)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_env(settings: Settings, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without its ``FLITFEED_*`` variables, then ``settings``, then ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLITFEED_")}
    return env | settings.to_env() | {"PYTHONUNBUFFERED": "1"} | (extra or {})


class Service:
    """One service process; ``start()`` launches it, appending its stdout and stderr to ``log_path``.

    It runs in a session of its own, so a signal meant for the caller (Ctrl-C) is not delivered to it.
    """

    def __init__(self, name: str, settings: Settings, log_path: Path,
                 extra_env: dict[str, str] | None = None, cpus: set[int] | None = None) -> None:
        #: The flitfeed subcommand it runs: ``worker`` or ``ranker``.
        self.name = name
        self.env = service_env(settings, extra_env)
        self.log_path = log_path
        #: CPUs the process (and every thread it starts) may run on; None: any.
        self.cpus = cpus
        self.proc: subprocess.Popen | None = None
        #: Set by stop(): the caller ended it on purpose (it did not crash).
        self.stopped = False

    def start(self) -> Service:
        with open(self.log_path, "ab") as log:
            # The affinity is set in the child before it runs Python, so every thread it starts inherits it.
            pin = None if self.cpus is None else functools.partial(os.sched_setaffinity, 0, self.cpus)
            self.proc = subprocess.Popen([sys.executable, "-m", "flitfeed.cli", self.name], env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=pin)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` if it is still running; counts as a stop on purpose."""
        self.stopped = True
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int | None:
        """Its exit status, killing it after ``timeout`` seconds; None if it was never started."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        """Send ``sig`` (if it is still running) and wait for it to exit; its exit status."""
        self.send_signal(sig)
        return self.wait(timeout)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far (all threads), from /proc."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def stop_all(services: Iterable[Service], sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
    """Signal every service first, then wait for each: they shut down side by side."""
    services = list(services)
    for svc in services:
        svc.send_signal(sig)
    for svc in services:
        svc.wait(timeout)


def ready_with(port: int, condition: str) -> bool:
    """/readyz answers 200 with ``condition`` among the conditions met: the server answers 200 with fewer
    conditions between its start and the service's creation, so a bare 200 does not say the service is up."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            body = json.loads(resp.read())
            return resp.status == 200 and body.get("conditions", {}).get(condition) is True
    except Exception:  # noqa: BLE001 - not up yet, or 503
        return False


def start_until_ready(role: str, name: str, settings: Settings, log_dir: Path, port: int, timeout_s: float,
                      condition: str, progress: Callable[[Service], str]) -> tuple[Service, float]:
    """A ``flitfeed <role>`` process (hashing encoder, warnings only) and the seconds until it was ready
    (:func:`ready_with` ``condition``), printing ``progress(service)`` every 10 s while it is not. Killed,
    with its log's tail in the error, when it exits or is not ready after ``timeout_s``."""
    env = {"FLITFEED_ENCODER": "hashing", "FLITFEED_LOG_LEVEL": "WARNING"}
    started = time.perf_counter()
    svc = Service(role, settings, log_dir / f"{name}.log", env).start()
    last_print = started
    while not ready_with(port, condition):
        now = time.perf_counter()
        if not svc.alive():
            raise RuntimeError(f"{name}: the {role} exited ({svc.proc.returncode}):\n{svc.log_tail(30)}")
        if now - started > timeout_s:
            svc.stop(signal.SIGKILL)
            raise RuntimeError(f"{name}: not ready after {timeout_s:.0f} s:\n{svc.log_tail(30)}")
        if now - last_print >= 10:
            print(f"  {name}: {now - started:.0f} s, not ready; {progress(svc)}", flush=True)
            last_print = now
        time.sleep(0.2)
    return svc, time.perf_counter() - started
