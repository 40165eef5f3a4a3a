"""The worker's user-state store (streams/state_store.py): RocksDB through rocksdict, its rebuild of a corrupt or
missing partition database, its disk-full error, and the agents' retry of a profile write on a full disk."""

from __future__ import annotations

import asyncio
import errno
import logging
from pathlib import Path
from types import SimpleNamespace

import faust
import pytest

from flitfeed.monitoring.metrics import Metrics
from flitfeed.settings import WorkerConfig
from flitfeed.streams.agents.common import store_profile
from flitfeed.streams.faust_compat.tables import ProfileStore, owned_users, profiles_table
from flitfeed.streams.state_store import HeldPartitions, StateDiskFull, is_disk_full, store_url
from faust.types import TP

ENOSPC_TEXT = "IO error: No space left on device: While appending to file: 000012.log"


@pytest.fixture
def store(tmp_path: Path):
    """A profiles table's RocksDB store on its own app (never started: the store is used directly)."""
    worker = WorkerConfig(state_store="rocksdb")
    metrics = Metrics("worker")
    app = faust.App(f"state-test-{tmp_path.name}", store=store_url(worker), datadir=str(tmp_path / "faust"),
                    autodiscover=False)
    table = profiles_table(app, "user_profiles", worker, 6, metrics)
    store = table.data
    assert isinstance(store, ProfileStore)
    store.tabledir = Path(app.conf.tabledir)
    store.tabledir.mkdir(parents=True, exist_ok=True)
    yield SimpleNamespace(store=store, metrics=metrics, table=table)
    store._dbs.clear()


def changelog_event(partition: int, offset: int, key: bytes, value: bytes | None) -> SimpleNamespace:
    return SimpleNamespace(message=SimpleNamespace(tp=TP("changelog", partition), partition=partition, offset=offset,
                                                   key=key, value=value))


def rebuilds(metrics: Metrics, reason: str) -> float:
    return metrics.value("flitfeed_state_rebuilds_total", service="worker", reason=reason)


def reopen(s: SimpleNamespace, partition: int):
    """Drop the store's handle (as a restarted process would) and open the partition again."""
    s.store._dbs.pop(partition).close()
    return s.store._db_for_partition(partition)


def test_store_url_selects_memory_or_rocksdb() -> None:
    assert store_url(WorkerConfig()) == "rocksdb://"
    assert store_url(WorkerConfig(state_store="memory")) == "memory://"


def test_a_restart_reads_the_local_state_and_its_changelog_offset(store) -> None:
    s = store
    s.table.apply_changelog_batch([changelog_event(0, 0, b"u1", b'{"a": 1}'), changelog_event(0, 1, b"u2", b"{}")])
    assert s.metrics.value("flitfeed_state_restored_records_total", service="worker") == 2
    db = reopen(s, 0)
    assert db.get(b"u1") == b'{"a": 1}'
    # Faust's recovery reads the changelog from the offset after this one: only the tail.
    assert s.store.persisted_offset(TP("changelog", 0)) == 1
    assert rebuilds(s.metrics, "corrupt") == rebuilds(s.metrics, "missing") == 0


@pytest.mark.parametrize("kind", ["rocksdb", "memory"])
def test_profiles_are_stored_as_their_bytes_and_older_json_values_are_still_read(kind: str, tmp_path: Path) -> None:
    """The table writes a profile's bytes as they are (Faust's raw codec), in its store and its changelog, and
    a value written before with Faust's JSON codec comes back as those JSON bytes, which a profile reads."""
    import json

    import numpy as np

    from flitfeed.encoders.user_vector import TasteParams, UserProfile

    worker = WorkerConfig(state_store=kind)
    app = faust.App(f"state-raw-{kind}-{tmp_path.name}", store=store_url(worker), datadir=str(tmp_path / "faust"),
                    autodiscover=False)
    table = profiles_table(app, "user_profiles", worker, 6, Metrics("worker"))
    assert table.value_serializer == "raw" and table.changelog_topic.value_serializer == "raw"
    assert table.key_serializer == "json", "keys as before: the changelog's records keep their keys"
    if kind == "rocksdb":
        table.data.tabledir = Path(app.conf.tabledir)
        table.data.tabledir.mkdir(parents=True, exist_ok=True)
    p = UserProfile("u1")
    p.learn_one("e1", "like", 1.7e9, np.array([1.0, 0.0], dtype=np.float32), "a", "f1", TasteParams())
    old = UserProfile("u2")
    old.learn_one("e2", "like", 1.7e9, np.array([0.0, 1.0], dtype=np.float32), "a", "f2", TasteParams())
    older = json.dumps({k: v for k, v in old.to_dict().items() if k not in ("decided", "waiting")}).encode()

    def record(offset: int, key: bytes, value: bytes) -> SimpleNamespace:
        # As the changelog reader hands it over: the message's bytes, and decoded by the table's codecs.
        event = changelog_event(0, offset, key, value)
        event.key = app.serializers.loads_key(table.key_type, key, serializer=table.key_serializer)
        event.value = app.serializers.loads_value(table.value_type, value, serializer=table.value_serializer)
        return event

    table.apply_changelog_batch([record(0, b'"u1"', p.to_bytes()), record(1, b'"u2"', older)])
    assert table.data["u1"] == p.to_bytes() and table.data["u2"] == older
    assert UserProfile.from_stored(table.data["u2"]).has_applied("e2")
    if kind == "rocksdb":
        table.data._dbs.clear()


def test_a_corrupt_partition_database_is_set_aside_and_rebuilt_from_the_changelog(store, caplog) -> None:
    s = store
    s.store.apply_changelog_batch([changelog_event(3, 7, b"u1", b"{}")], to_key=lambda k: k, to_value=lambda v: v)
    path = s.store.partition_path(3)
    s.store._dbs.pop(3).close()
    (path / "CURRENT").write_text("garbage\n")
    with caplog.at_level(logging.WARNING):
        db = s.store._db_for_partition(3)
    assert db.get(b"u1") is None  # empty: no offset, so the recovery reads the whole changelog partition
    assert s.store.persisted_offset(TP("changelog", 3)) is None
    assert rebuilds(s.metrics, "corrupt") == 1
    assert (path.parent / (path.name + ".corrupt")).is_dir()
    assert any("rebuilt from the changelog" in r.getMessage() and getattr(r, "reason", "") == "corrupt"
               for r in caplog.records)
    # Opened fine again after that: no crash loop, no second rebuild.
    reopen(s, 3)
    assert rebuilds(s.metrics, "corrupt") == 1


def test_a_missing_partition_database_this_worker_held_is_rebuilt_and_counted(store) -> None:
    import shutil

    s = store
    s.store._db_for_partition(1)  # a first open is no rebuild
    assert rebuilds(s.metrics, "missing") == 0
    s.store._dbs.pop(1).close()
    shutil.rmtree(s.store.partition_path(1))
    s.store._db_for_partition(1)
    assert rebuilds(s.metrics, "missing") == 1


def test_a_full_disk_is_one_clear_error(store, monkeypatch) -> None:
    s = store

    class FullDisk:
        def put(self, key: bytes, value: bytes) -> None:
            raise Exception(ENOSPC_TEXT)  # what rocksdict raises: RocksDB's status text

    monkeypatch.setattr(s.store, "_db_for_partition", lambda partition: FullDisk())
    monkeypatch.setattr("faust.stores.rocksdb.current_event",
                        lambda: SimpleNamespace(message=SimpleNamespace(partition=0)))
    with pytest.raises(StateDiskFull) as raised:
        s.store._set(b"u1", b"{}")
    message = str(raised.value)
    assert "\n" not in message and "no space left on device" in message and str(s.store.path) in message
    assert "MiB free" in message
    assert is_disk_full(raised.value) and is_disk_full(Exception(ENOSPC_TEXT))
    assert not is_disk_full(Exception("Corruption: CURRENT file corrupted"))


def test_a_partition_that_refused_a_write_for_a_full_disk_is_reopened_once_space_is_back(store, monkeypatch) -> None:
    # RocksDB refuses every write after one failed for a full disk, also once space is freed, until reopened
    # (tests/unit/rocks_full_disk.py); without the reopen the worker would wait for space forever.
    from tests.unit.rocks_full_disk import Disk, opener, read_only_opener

    s, disk = store, Disk()
    monkeypatch.setattr(s.store.rocksdb_options, "open", opener(disk, s.store.rocksdb_options.open))
    real_read_only = s.store._open_read_only
    monkeypatch.setattr(s.store, "_open_read_only", lambda p: read_only_opener(disk, lambda _: real_read_only(p))(p))
    monkeypatch.setattr("faust.stores.rocksdb.current_event",
                        lambda: SimpleNamespace(message=SimpleNamespace(partition=0)))
    s.store._set(b"a", b"1")
    disk.full = True
    for _ in range(2):  # the second try reopens it: still full, so read-only, and reads go on
        with pytest.raises(StateDiskFull):
            s.store._set(b"b", b"1")
        assert s.store._get(b"a") == b"1" and s.store._get(b"b") is None
    # Faust writes the changelog offset when a record is delivered, also while the profile write waits: no error.
    s.store.set_persisted_offset(TP("changelog", 0), 5)
    assert disk.opened == ["rw", "ro"]
    disk.full = False
    s.store._set(b"b", b"2")
    s.store.set_persisted_offset(TP("changelog", 0), 7)
    assert disk.opened == ["rw", "ro", "rw"]
    assert reopen(s, 0).get(b"b") == b"2" and s.store.persisted_offset(TP("changelog", 0)) == 7


def test_a_partition_assigned_on_a_full_disk_waits_for_space_to_open_with_one_log_line(store, monkeypatch,
                                                                                      caplog) -> None:
    # Faust stops the worker when a database cannot be opened; on a full disk a restart would stop it again.
    from tests.unit.rocks_full_disk import Disk, opener

    s, disk = store, Disk()
    disk.full = True
    monkeypatch.setattr(s.store.rocksdb_options, "open", opener(disk, s.store.rocksdb_options.open))
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        disk.full = len(waits) < 3  # freed while the third wait runs

    monkeypatch.setattr(s.store, "sleep", sleep)
    with caplog.at_level(logging.WARNING):
        db = asyncio.run(s.store._try_open_db_for_partition(0, generation_id=s.store.app.consumer_generation_id))
    assert db is s.store._dbs[0] and disk.opened == ["rw"] and len(waits) == 3
    assert s.metrics.value("flitfeed_state_write_errors_total", service="worker", reason="disk_full") == 3
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "no space left on device" in errors[0].getMessage()
    assert any("writable again" in r.getMessage() for r in caplog.records)


def test_the_held_partitions_survive_a_write_that_fails_for_a_full_disk(tmp_path: Path, monkeypatch) -> None:
    held = HeldPartitions(tmp_path / "partitions.json")
    held.add(1)

    def no_space(self, text: str) -> int:  # noqa: ANN001
        with open(self, "w") as f:
            f.write(text[:1])  # a torn write, then the error
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", no_space)
    with pytest.raises(StateDiskFull):
        held.add(2)
    assert 1 in held and 2 not in held and not list(tmp_path.glob("*.part"))


def test_the_user_count_is_estimated_without_reading_every_key(store, monkeypatch) -> None:
    s = store
    s.store.apply_changelog_batch([changelog_event(0, i, f"u{i}".encode(), b"{}") for i in range(50)],
                                  to_key=lambda k: k, to_value=lambda v: v)
    monkeypatch.setattr(s.store, "_dbs_for_actives", lambda: iter(s.store._dbs.values()))
    assert owned_users(s.table) == 50


def test_a_profile_write_on_a_full_disk_waits_and_retries_with_one_log_line(tmp_path: Path, caplog) -> None:
    written: dict[str, dict] = {}
    failures = [StateDiskFull(tmp_path, ENOSPC_TEXT), StateDiskFull(tmp_path, ENOSPC_TEXT)]

    class Profiles:
        def __setitem__(self, key: str, value: dict) -> None:
            if failures:
                raise failures.pop()
            written[key] = value

    metrics = Metrics("worker")
    ctx = SimpleNamespace(profiles=Profiles(), metrics=metrics)
    with caplog.at_level(logging.WARNING):
        asyncio.run(store_profile(ctx, "u1", {"user_id": "u1"}, retry_s=0.0))
    assert written == {"u1": {"user_id": "u1"}}
    assert metrics.value("flitfeed_state_write_errors_total", service="worker", reason="disk_full") == 2
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "no space left on device" in errors[0].getMessage()
    assert any("writable again" in r.getMessage() for r in caplog.records)
