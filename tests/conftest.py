"""Shared fixtures: settings isolated per test, the real broker, services as real processes."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pytest

from benchmarks.service import Service, stop_all
from flitfeed.kafka.local_broker import kafka_script
from flitfeed.settings import Settings

REPO = Path(__file__).resolve().parents[1]
KAFKA_SCRIPT = kafka_script()


def pytest_configure(config: pytest.Config) -> None:
    """``FLITFEED_TEST_INSTALLED=PREFIX``: refuse to run unless flitfeed is imported from under PREFIX.

    tests/wheel_check.sh runs the unit tests against an installed wheel; without this guard a stray
    path to the checkout would silently test the sources instead.
    """
    installed = os.environ.get("FLITFEED_TEST_INSTALLED")
    if installed:
        import flitfeed

        where = Path(flitfeed.__file__).resolve()
        if not where.is_relative_to(Path(installed).resolve()):
            raise pytest.UsageError(f"flitfeed is imported from {where}, not from the installation in {installed}")


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
def leaves_no_topics(broker: str) -> Iterator[None]:
    """The test's run deletes every topic it made, its Faust app's changelog and assignor topics too (a local
    broker outlives it). The suite runs one test at a time, so the topics that appear during the test are its own,
    but for the broker's internal ones (``__consumer_offsets`` is made when a fresh broker first sees a group)."""
    from confluent_kafka.admin import AdminClient

    def topics() -> set[str]:
        listed = AdminClient({"bootstrap.servers": broker}).list_topics(timeout=10).topics
        return {t for t in listed if not t.startswith("__")}

    before = topics()
    yield
    assert topics() - before == set()


@pytest.fixture(scope="session")
def _isolated_runs(broker: str) -> Iterator[list[Settings]]:
    """Every test's isolated settings; their topics are deleted when the session ends, so that repeated runs
    of the suite against the project's broker (its data outlives it) do not pile up thousands of partitions."""
    made: list[Settings] = []
    yield made
    if not made:
        return
    from flitfeed.kafka.admin import delete_run_topics

    try:
        delete_run_topics(*(s.kafka for s in made), timeout_s=120)
    except Exception as exc:  # the broker may be gone; the topics are uniquely prefixed
        print(f"could not delete the tests' topics (t<tag>-*, flitfeed-<tag>-*): {exc}")


@pytest.fixture
def isolated_settings(broker: str, tmp_path: Path, _isolated_runs: list[Settings]) -> Settings:
    """Settings whose topics, groups and data dir belong to this test alone."""
    tag = uuid.uuid4().hex[:8]
    settings = Settings(bootstrap_servers=broker, topic_prefix=f"t{tag}-", app_id=f"flitfeed-{tag}",
                        ranker_group=f"flitfeed-ranker-{tag}", data_dir=tmp_path / "data",
                        worker_metrics_port=0, ranker_metrics_port=0)
    _isolated_runs.append(settings)
    return settings


class Services:
    """The services a test started; ``services("worker")`` starts one more."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.started: list[Service] = []

    def __call__(self, name: str, settings: Settings | None = None, **extra_env: str) -> Service:
        svc = Service(name, settings or self.settings, self.log_dir / f"{name}.log", extra_env).start()
        self.started.append(svc)
        return svc

    def all_alive(self) -> bool:
        """Every service the test did not stop on purpose is still running."""
        return all(svc.alive() for svc in self.started if not svc.stopped)

    def stop_all(self) -> None:
        stop_all(self.started)


@pytest.fixture
def services(isolated_settings: Settings, tmp_path: Path) -> Iterator[Services]:
    running = Services(isolated_settings, tmp_path)
    yield running
    crashed = [svc for svc in running.started if not svc.stopped and not svc.alive()]
    running.stop_all()
    for svc in crashed:
        print(f"--- {svc.name} exited {svc.proc.returncode}:\n{svc.log_tail()}")


if TYPE_CHECKING:
    from tests.qdrant_server import QdrantServer


@pytest.fixture
def qdrant(tmp_path: Path) -> Iterator["QdrantServer"]:
    """A real Qdrant server on loopback for one test, its storage in the test's folder (skips without the
    binary: ``tests/qdrant_server.py``)."""
    from tests.qdrant_server import QdrantServer, qdrant_binary_or_skip

    qdrant_binary_or_skip()
    with QdrantServer(tmp_path / "qdrant") as server:
        yield server
