"""Shared fixtures: settings isolated per test, the real broker, services as real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from flitfeed.settings import Settings

REPO = Path(__file__).resolve().parents[1]
KAFKA_SCRIPT = REPO / "deploy" / "kafka" / "kafka.sh"


@pytest.fixture(scope="session")
def broker() -> str:
    """The real local broker; started by the project's own script if it is not running.

    ``FLITFEED_TEST_BOOTSTRAP`` points the tests at a broker someone else started instead.
    """
    external = os.environ.get("FLITFEED_TEST_BOOTSTRAP")
    if external:
        return external
    subprocess.run(["bash", str(KAFKA_SCRIPT), "start"], check=True)
    return "127.0.0.1:9092"


@pytest.fixture
def isolated_settings(broker: str, tmp_path: Path) -> Settings:
    """Settings whose topics, groups and data dir belong to this test alone."""
    tag = uuid.uuid4().hex[:8]
    return Settings(bootstrap_servers=broker, topic_prefix=f"t{tag}-", app_id=f"flitfeed-{tag}",
                    ranker_group=f"flitfeed-ranker-{tag}", data_dir=tmp_path / "data",
                    worker_metrics_port=0, ranker_metrics_port=0)


def settings_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLITFEED_")}
    return env | settings.to_env() | {"PYTHONUNBUFFERED": "1"}


class Service:
    """A flitfeed service running as a real process, its output in a log file."""

    def __init__(self, name: str, settings: Settings, log_dir: Path, extra_env: dict[str, str] | None = None):
        self.name = name
        self.env = settings_env(settings) | (extra_env or {})
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.stopped = False

    def start(self) -> "Service":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "flitfeed.cli", self.name], env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        self.stopped = True
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class Services:
    """The services a test started; ``services("worker")`` starts one more."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.started: list[Service] = []

    def __call__(self, name: str, settings: Settings | None = None, **extra_env: str) -> Service:
        svc = Service(name, settings or self.settings, self.log_dir, extra_env).start()
        self.started.append(svc)
        return svc

    def all_alive(self) -> bool:
        """Every service the test did not stop on purpose is still running."""
        return all(svc.alive() for svc in self.started if not svc.stopped)

    def stop_all(self) -> None:
        for svc in self.started:
            svc.stop()


@pytest.fixture
def services(isolated_settings: Settings, tmp_path: Path) -> Iterator[Services]:
    running = Services(isolated_settings, tmp_path)
    yield running
    crashed = [svc for svc in running.started if not svc.stopped and not svc.alive()]
    running.stop_all()
    for svc in crashed:
        print(f"--- {svc.name} exited {svc.proc.returncode}:\n{svc.log_tail()}")
