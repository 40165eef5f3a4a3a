"""A real full disk under the worker's profiles and the ranker's users (README "User state").

Each service's RocksDB databases live on a small tmpfs of their own, mounted for this test (it needs root or
CAP_SYS_ADMIN, and skips saying so without); a filler file takes every free byte. For each service in turn:

1. interactions arrive: a write that still fits in a page its files already have goes through; the first
   that does not is refused, and the service logs one error line naming the full disk, counts
   ``flitfeed_state_write_errors_total{reason="disk_full"}`` on each try, stays up, and acks nothing from
   there on (those interactions, or user states, stay uncommitted; no user state, or feed, goes out);
2. the filler is deleted: the held interactions are applied exactly once each (one user state and one feed
   per interaction, every user's state exact), and the service says its store is writable again. RocksDB
   refuses every write after one failed until the database is reopened, which the stores do: without that
   they would wait forever.

Last, both restart on full disks that hold their databases (opening one for writing writes a manifest):
each logs one line and waits for space, alive and not ready, rather than exit at every restart (a crash
loop), and serves once the disk is freed.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import uuid
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest

from benchmarks.service import stop_all
from flitfeed.kafka.admin import create_topics
from flitfeed.settings import Settings
from flitfeed.streams.events import Flit, Interaction, UserState
from flitfeed.streams.topics import TOPIC_INTERACTIONS, TOPIC_USER_STATES
from tests.integration.helpers import Bus, make_interaction, now_utc, uncommitted
from tests.integration.test_crash_recovery import Load, expected_states, wait_states_exact
from tests.integration.test_ranker_state import ready
from tests.integration.test_recovery import free_port, sample, scrape
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

#: Smaller than one RocksDB write-ahead-log preallocation (1.1 x the memtable: 8.8 MiB for the worker, 4.4 for
#: the ranker), so no write lands in space reserved before the disk filled.
TMPFS_SIZE = "4m"
USERS = [f"wren-{i}" for i in range(4)]
SUBJECTS = ["worms", "storms", "seeds", "moths"]


class Tmpfs:
    """A tmpfs of ``TMPFS_SIZE`` mounted at ``path`` (created), and a filler file that takes its free space."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler"
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(path)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(done.stderr.strip() or f"mount exited {done.returncode}")

    def fill(self) -> None:
        """Write zeros until the filesystem refuses one more byte."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for size in (1 << 20, 1 << 12, 1):
                block = b"\0" * size
                while True:
                    try:
                        os.write(fd, block)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
        finally:
            os.close(fd)
        assert shutil.disk_usage(self.path).free == 0, shutil.disk_usage(self.path)

    def free(self) -> None:
        self.filler.unlink()

    def unmount(self) -> None:
        if subprocess.run(["umount", str(self.path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)  # busy: detach it now


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator:
    """Mounts tmpfs filesystems (``tmpfs(path)``) and unmounts them all at the end; skips where mounting is
    not allowed. Ask for it before ``services``, so the services are stopped before their disks go."""
    try:
        Tmpfs(tmp_path / "mount-probe").unmount()
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"a real full disk needs a tmpfs mount (root or CAP_SYS_ADMIN): {exc}")
    mounted: list[Tmpfs] = []

    def mount(path: Path) -> Tmpfs:
        fs = Tmpfs(path)
        mounted.append(fs)
        return fs

    try:
        yield mount
    finally:
        for fs in reversed(mounted):
            fs.unmount()


def published(bus: Bus, topic: str, trigger_of) -> Counter:
    """How many records of ``topic`` were published per trigger id."""
    return Counter(trigger_of(m.value()) for m in bus.drain(topic))


def assert_one_disk_full_line(log: str, path: object) -> None:
    """The full disk was said once, as an ERROR naming the full filesystem's path."""
    errors = [line for line in log.splitlines() if "no space left on device" in line.lower()]
    assert len(errors) == 1 and " ERROR " in errors[0] and str(path) in errors[0], errors


def test_worker_and_ranker_wait_out_a_full_disk(tmpfs, isolated_settings: Settings, services) -> None:
    worker_port, ranker_port = free_port(), free_port()
    s = isolated_settings.replace(**{
        "worker_metrics_port": worker_port, "ranker_metrics_port": ranker_port, "group_session_timeout_s": 6.0,
        "state_store": "rocksdb", "ranker_state_store": "rocksdb",
        "seen_capacity": 100_000, "muted_capacity": 100_000, "dedup_capacity": 100_000})
    worker_fs = tmpfs(s.data_dir / "faust")
    ranker_fs = tmpfs(s.data_dir / "ranker-state")
    create_topics(s.kafka)
    bus = Bus(s, alive=services.all_alive)
    env = {"FLITFEED_ENCODER": "hashing"}
    worker = services("worker", s, **env)
    ranker = services("ranker", s, **env)
    flits = {f"{t}-{i}": Flit(flit_id=f"{t}-{i}", author_id=f"author-{t}", text=f"{t} {t} about {t} {i}",
                              created_at=now_utc(), tags=[t]) for t in SUBJECTS for i in range(4)}
    events: list[Interaction] = []

    def interact(round_: int) -> list[Interaction]:
        sent = [make_interaction(u, f"{SUBJECTS[n % len(SUBJECTS)]}-{round_}", "like",
                                 event_id=f"r{round_}-{u}-{uuid.uuid4().hex[:6]}") for n, u in enumerate(USERS)]
        for e in sent:
            bus.interaction(e)
        events.extend(sent)
        return sent

    def states() -> Counter:
        return published(bus, TOPIC_USER_STATES, lambda v: UserState.model_validate_json(v).trigger_id)

    def expect_exact(what: str) -> None:
        load = Load(bus, None)  # type: ignore[arg-type]
        load.flits, load.events = flits, events
        wait_states_exact(bus, expected_states(load, s), what, timeout_s=120)

    def feeds() -> Counter:
        return Counter(t for f in bus.feeds() for t in f.answers())

    def write_errors(port: int, service: str) -> float:
        return sample(scrape(port) or {}, "flitfeed_state_write_errors_total", service=service, reason="disk_full")

    try:
        for f in flits.values():
            bus.flit(f)
        first = interact(0)
        wait_until(lambda: all(feeds()[e.event_id] for e in first) or None, 120, what="every user's first feed")
        expect_exact("every state after the first round")
        wait_until(lambda: uncommitted(s, TOPIC_INTERACTIONS) == 0 or None, 60, what="the worker committing")

        # --- the worker's disk fills ---------------------------------------------------------------
        worker_fs.fill()
        held = interact(1)
        # Two tries at least: the first failed, and a retry DISK_FULL_RETRY_S later failed too (longer than
        # the worker's commit interval, so an ack meanwhile would have been committed).
        wait_until(lambda: write_errors(worker_port, "worker") >= 2 or None, 60,
                   what="the worker retrying a profile write on a full disk")
        assert worker.alive(), worker.log_tail()
        # A profile write can still fit in the last page of a database's log file: those interactions are
        # applied; the first one that does not fit holds the agent, and it and every one after it wait unacked.
        waiting = [e for e in held if not states()[e.event_id]]
        print(f"\nworker on a full disk: {len(held) - len(waiting)} of {len(held)} interactions fitted, "
              f"{len(waiting)} wait")
        # (==: the worker finishes the users of a batch in order and acks each once its effects are done, so
        # one that fitted is acked and the one waiting for space holds every one after it, unsent and unacked.)
        assert waiting and uncommitted(s, TOPIC_INTERACTIONS) == len(waiting), "an interaction was acked unapplied"
        assert_one_disk_full_line(worker.log_path.read_text(errors="replace"), worker_fs.path)
        worker_fs.free()
        wait_until(lambda: all(states()[e.event_id] for e in held) or None, 60,
                   what="the held interactions applied once space was freed")
        expect_exact("every state after the worker's disk was freed")
        wait_until(lambda: uncommitted(s, TOPIC_INTERACTIONS) == 0 or None, 60, what="the worker committing")
        assert "user state store writable again" in worker.log_path.read_text(errors="replace")

        # --- the ranker's disk fills ---------------------------------------------------------------
        wait_until(lambda: all(feeds()[e.event_id] for e in held) or None, 60, what="the feeds of the worker's held")
        wait_until(lambda: uncommitted(s, TOPIC_USER_STATES, s.kafka.ranker_group) == 0 or None, 60,
                   what="the ranker committing every user state")
        ranker_fs.fill()
        held_r = interact(2)
        wait_until(lambda: all(states()[e.event_id] for e in held_r) or None, 60, what="the worker publishing states")
        wait_until(lambda: write_errors(ranker_port, "ranker") >= 2 or None, 60,
                   what="the ranker retrying a state write on a full disk")
        assert ranker.alive(), ranker.log_tail()
        waiting = [e for e in held_r if not feeds()[e.event_id]]
        print(f"ranker on a full disk: {len(held_r) - len(waiting)} of {len(held_r)} user states fitted, "
              f"{len(waiting)} wait")
        # (>=: a state that fitted may share its poll's commit with one that waits.)
        assert waiting and uncommitted(s, TOPIC_USER_STATES, s.kafka.ranker_group) >= len(waiting), \
            "a user state was acked unapplied"
        assert_one_disk_full_line(ranker.log_path.read_text(errors="replace"), ranker_fs.path)
        ranker_fs.free()
        wait_until(lambda: all(feeds()[e.event_id] for e in held_r) or None, 60,
                   what="the held user states' feeds once space was freed")
        wait_until(lambda: uncommitted(s, TOPIC_USER_STATES, s.kafka.ranker_group) == 0 or None, 60,
                   what="the ranker committing")
        assert "ranker user state store writable again" in ranker.log_path.read_text(errors="replace")

        # Each interaction applied once: one user state and one feed answer each, and every state exact.
        assert states() == Counter({e.event_id: 1 for e in events}), states()
        assert feeds() == Counter({e.event_id: 1 for e in events}), feeds()
        expect_exact("every state at the end")

        # --- both killed, and restarted on full disks that hold their databases ---------------------
        # Opening a RocksDB database for writing writes to it (a manifest, the log's records to a table
        # file): both wait for space, alive and not ready, rather than exit (and exit again at every
        # restart: a crash loop).
        stop_all([worker, ranker], signal.SIGKILL)
        marks = {svc.name: len(svc.log_path.read_bytes()) for svc in (worker, ranker)}
        worker_fs.fill()
        ranker_fs.fill()
        worker, ranker = services("worker", s, **env), services("ranker", s, **env)
        for svc, port in ((worker, worker_port), (ranker, ranker_port)):
            wait_until(lambda: write_errors(port, svc.name) >= 2 or None, 90,
                       what=f"the {svc.name} waiting for space to open its state store")
            assert svc.alive() and not ready(port), svc.log_tail()
            restart_log = svc.log_path.read_bytes()[marks[svc.name]:].decode(errors="replace")
            errors = [line for line in restart_log.splitlines() if "no space left on device" in line.lower()]
            assert len(errors) == 1 and " ERROR " in errors[0], errors
        worker_fs.free()
        ranker_fs.free()
        for port in (worker_port, ranker_port):
            wait_until(lambda: ready(port) or None, 90, what="the services ready once space was freed")
        after = interact(3)
        wait_until(lambda: all(feeds()[e.event_id] for e in after) or None, 90, what="feeds after the restart")
        expect_exact("every state after the restart on a full disk")
        assert states() == Counter({e.event_id: 1 for e in events}), states()
        assert feeds() == Counter({e.event_id: 1 for e in events}), feeds()
        assert services.all_alive()
        for svc in (worker, ranker):
            assert "Traceback" not in svc.log_path.read_text(errors="replace"), svc.log_tail()
    finally:
        bus.close()
