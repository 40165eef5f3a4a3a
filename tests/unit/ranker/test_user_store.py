"""The ranker's user-state store (ranker/user_store.py) and its binary form (ranker/held.py).

One contract for both stores (put/get/overwrite/drop/offsets), then what only the durable one promises
(reopen, corruption, a missing or foreign-format partition, a full disk, its bounded cache), then the
restart plan and the binary form's round trip. No Kafka.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flitfeed.monitoring.metrics import Metrics
from flitfeed.ranker.held import HeldFormatError, HeldState, decode_held, encode_held
from flitfeed.ranker.user_store import (MemoryUserStore, Recovery, RocksUserStore, apply_records, open_user_store,
                                        plan_recovery, put_until_stored)
from flitfeed.settings import Settings
from flitfeed.streams.events import UserState
from flitfeed.streams.state_store import StateDiskFull

ENOSPC_TEXT = "IO error: No space left on device: While appending to file: 000012.log"


def held(user_id: str, trigger: str = "t1", dim: int = 8, seed: int = 0, versions: tuple[str, ...] = ("a@1",),
         seen: tuple[str, ...] = ("f1", "f2"), muted: tuple[str, ...] = ()) -> HeldState:
    rng = np.random.default_rng(seed)
    return HeldState(user_id=user_id, tastes={v: rng.normal(size=dim).astype(np.float32) for v in versions},
                     seen=seen, muted_authors=muted, positives=seed, trigger_id=trigger, serving=versions[0])


def same(a: HeldState | None, b: HeldState | None) -> bool:
    if a is None or b is None:
        return a is b
    return (a.user_id, a.seen, a.muted_authors, a.positives, a.trigger_id, a.serving) == \
        (b.user_id, b.seen, b.muted_authors, b.positives, b.trigger_id, b.serving) and \
        list(a.tastes) == list(b.tastes) and all(np.array_equal(a.tastes[v], b.tastes[v]) for v in a.tastes)


def rebuilds(metrics: Metrics, reason: str) -> float:
    return metrics.value("flitfeed_state_rebuilds_total", service="ranker", reason=reason)


@pytest.fixture(params=["memory", "rocksdb"])
def store(request, tmp_path: Path):
    s = MemoryUserStore() if request.param == "memory" else RocksUserStore(tmp_path / "state", cache_users=4)
    yield s
    s.close()


# --- the contract both stores keep -------------------------------------------------------------------
def test_an_unknown_user_or_partition_has_no_state(store) -> None:
    assert store.open_partition(0) == 0
    assert store.get(0, "nobody") is None
    assert store.get(5, "nobody") is None  # a partition not owned
    assert store.count() == 0 and store.partitions() == [0]


def test_a_put_state_is_read_back_whole(store) -> None:
    store.open_partition(0)
    state = held("u1", versions=("a@1", "b@2"), muted=("x",))
    store.put(0, "u1", state)
    assert same(store.get(0, "u1"), state)
    assert store.get(1, "u1") is None  # users are per partition
    assert store.count() == 1


def test_a_later_state_replaces_the_earlier_one(store) -> None:
    store.open_partition(0)
    store.put(0, "u1", held("u1", "t1", seed=1))
    store.put(0, "u1", held("u1", "t2", seed=2))
    assert same(store.get(0, "u1"), held("u1", "t2", seed=2))
    store.put_many(0, [held("u1", "t3", seed=3), held("u2"), held("u1", "t4", seed=4)], offset=9)
    assert store.get(0, "u1").trigger_id == "t4"  # the last of a batch wins
    assert store.count() == 2


def test_get_many_answers_in_order_across_partitions(store) -> None:
    for p in (0, 1):
        store.open_partition(p)
        store.put(p, f"u{p}", held(f"u{p}", seed=p))
    got = store.get_many([(1, "u1"), (0, "missing"), (0, "u0"), (3, "u0")])
    assert same(got[0], held("u1", seed=1)) and got[1] is None and same(got[2], held("u0", seed=0)) and got[3] is None


def test_the_applied_offset_moves_with_the_puts_that_carry_it(store) -> None:
    store.open_partition(0)
    store.put(0, "u1", held("u1"), offset=11)
    assert store.applied_offset(0) == 11
    store.put(0, "u2", held("u2"))  # no offset: it stays
    assert store.applied_offset(0) == 11
    store.put_many(0, [held("u3")], offset=20)
    assert store.applied_offset(0) == 20 and store.applied_offset(1) == 0


def test_the_applied_offset_never_moves_back(store) -> None:
    # After a restart the group re-delivers records the store applied (plan_recovery's replay): all
    # records before the stored offset are still applied, so a second crash must not forget that.
    store.open_partition(0)
    store.put(0, "u1", held("u1", "t2"), offset=20)
    store.put(0, "u1", held("u1", "t1"), offset=11)
    store.put_many(0, [held("u2")], offset=15)
    assert store.applied_offset(0) == 20
    store.reset_partition(0, "ahead_of_log")
    assert store.applied_offset(0) == 0  # only a reset empties it


def test_a_dropped_partition_is_forgotten_and_the_others_kept(store) -> None:
    for p in (0, 1):
        store.open_partition(p)
        store.put(p, "u", held("u", seed=p), offset=5)
    store.drop_partition(0)
    assert store.get(0, "u") is None and store.partitions() == [1] and store.count() == 1
    assert same(store.get(1, "u"), held("u", seed=1))


def test_a_reset_partition_is_empty_and_applied_nothing(store) -> None:
    store.open_partition(0)
    store.put(0, "u", held("u"), offset=5)
    store.reset_partition(0, "ahead_of_log")
    assert store.get(0, "u") is None and store.applied_offset(0) == 0 and store.partitions() == [0]


def test_records_are_applied_in_batches_with_their_offset(store) -> None:
    store.open_partition(2)
    records = [(o, f"u{o % 3}".encode()) for o in range(10, 17)] + [(17, None)]
    to_held = lambda v: held(v.decode(), trigger=v.decode()) if v else None  # noqa: E731
    assert apply_records(store, 2, records, to_held, batch=3) == 8
    assert store.applied_offset(2) == 18 and store.count() == 3


# --- what only the durable store promises --------------------------------------------------------
def test_a_reopened_store_has_its_states_and_offsets(tmp_path: Path) -> None:
    first = RocksUserStore(tmp_path / "s")
    first.open_partition(0)
    first.put_many(0, [held("u1", seed=1), held("u2", seed=2)], offset=42)
    first.close()
    again = RocksUserStore(tmp_path / "s")
    assert again.get(0, "u1") is None  # not owned until opened
    assert again.open_partition(0) == 42
    assert same(again.get(0, "u2"), held("u2", seed=2)) and again.count() == 2
    again.put(0, "u1", held("u1", "t9"), offset=43)  # not in the cache after a restart: still no new user
    assert again.count() == 2
    again.close()


def test_a_memory_store_starts_empty_so_a_restart_reads_the_whole_partition() -> None:
    assert MemoryUserStore().open_partition(0) == 0 and not MemoryUserStore.durable


def test_a_revoked_partition_keeps_its_files_for_when_it_comes_back(tmp_path: Path) -> None:
    s = RocksUserStore(tmp_path / "s")
    s.open_partition(3)
    s.put(3, "u", held("u"), offset=7)
    s.drop_partition(3)
    assert s.open_partition(3) == 7 and same(s.get(3, "u"), held("u"))
    s.close()


def test_a_corrupt_partition_is_set_aside_and_rebuilt(tmp_path: Path, caplog) -> None:
    metrics = Metrics("ranker")
    s = RocksUserStore(tmp_path / "s", metrics=metrics)
    s.open_partition(0)
    s.put(0, "u", held("u"), offset=7)
    s.close()
    (tmp_path / "s" / "p0" / "CURRENT").write_text("garbage\n")
    again = RocksUserStore(tmp_path / "s", metrics=metrics)
    with caplog.at_level(logging.WARNING):
        assert again.open_partition(0) == 0  # empty: the whole partition is read from the topic
    assert again.get(0, "u") is None and rebuilds(metrics, "corrupt") == 1
    assert (tmp_path / "s" / "p0.corrupt").is_dir()
    assert any(getattr(r, "reason", "") == "corrupt" and getattr(r, "partition", None) == 0 for r in caplog.records)
    again.put(0, "u", held("u"), offset=8)  # and it works again
    again.close()


def test_a_missing_partition_that_was_held_is_rebuilt_and_counted(tmp_path: Path) -> None:
    metrics = Metrics("ranker")
    s = RocksUserStore(tmp_path / "s", metrics=metrics)
    s.open_partition(1)
    s.put(1, "u", held("u"), offset=3)
    s.close()
    import shutil

    shutil.rmtree(tmp_path / "s" / "p1")
    again = RocksUserStore(tmp_path / "s", metrics=metrics)
    assert again.open_partition(1) == 0 and rebuilds(metrics, "missing") == 1
    assert again.open_partition(2) == 0 and rebuilds(metrics, "missing") == 1  # never held: not a rebuild
    again.close()


def test_a_partition_written_in_another_format_is_rebuilt(tmp_path: Path) -> None:
    metrics = Metrics("ranker")
    s = RocksUserStore(tmp_path / "s", metrics=metrics)
    s.open_partition(0)
    s.put(0, "u", held("u"), offset=3)
    s._dbs[0].put(b"mformat", (99).to_bytes(1, "little"))
    s.close()
    again = RocksUserStore(tmp_path / "s", metrics=metrics)
    assert again.open_partition(0) == 0 and again.get(0, "u") is None and rebuilds(metrics, "format") == 1
    again.close()


def test_a_reset_is_logged_and_counted(tmp_path: Path) -> None:
    metrics = Metrics("ranker")
    s = RocksUserStore(tmp_path / "s", metrics=metrics)
    s.open_partition(0)
    s.reset_partition(0, "ahead_of_log", "applied 900, log ends at 600")
    assert rebuilds(metrics, "ahead_of_log") == 1 and rebuilds(metrics, "missing") == 0  # one reset, one count
    s.close()


def test_a_full_disk_is_one_clear_error_and_changes_nothing(tmp_path: Path) -> None:
    s = RocksUserStore(tmp_path / "s")
    s.open_partition(0)
    s.put(0, "u", held("u", "t1"), offset=1)

    class FullDisk:
        def __init__(self, db) -> None:  # noqa: ANN001
            self.db = db

        def write(self, batch) -> None:  # noqa: ANN001
            raise Exception(ENOSPC_TEXT)  # what rocksdict raises: RocksDB's status text

        def __getattr__(self, name: str):  # noqa: ANN204
            return getattr(self.db, name)

    real = s._dbs[0]
    s._dbs[0] = FullDisk(real)
    with pytest.raises(StateDiskFull, match="no space left on device"):
        s.put(0, "u", held("u", "t2"), offset=2)
    s._dbs[0] = real
    assert s.get(0, "u").trigger_id == "t1" and s.applied_offset(0) == 1
    s.close()


def test_a_database_that_refused_a_write_for_a_full_disk_is_reopened_and_takes_writes_once_space_is_back(
        tmp_path: Path) -> None:
    # RocksDB refuses every write after one failed for a full disk, also once space is freed, until reopened
    # (tests/unit/rocks_full_disk.py); without the reopen the ranker would wait for space forever.
    from tests.unit.rocks_full_disk import Disk, opener, read_only_opener

    disk = Disk()
    s = RocksUserStore(tmp_path / "state", cache_users=0)
    s._open = opener(disk, s._open)
    s._open_read_only = read_only_opener(disk, s._open_read_only)
    s.open_partition(0)
    s.put(0, "a", held("a", "t1"), offset=1)
    disk.full = True
    for _ in range(2):  # the second try reopens it: still full, so read-only, and reads go on
        with pytest.raises(StateDiskFull, match="no space left on device"):
            s.put(0, "b", held("b", "t1"), offset=2)
        assert same(s.get(0, "a"), held("a", "t1")) and s.get(0, "b") is None
    assert disk.opened == ["rw", "ro"]
    disk.full = False
    s.put(0, "b", held("b", "t1"), offset=2)
    s.put(0, "a", held("a", "t2"), offset=3)
    assert disk.opened == ["rw", "ro", "rw"]
    assert s.count() == 2 and s.applied_offset(0) == 3
    s.close()
    again = RocksUserStore(tmp_path / "state", cache_users=0)
    assert again.open_partition(0) == 3 and again.count() == 2
    assert same(again.get(0, "a"), held("a", "t2")) and same(again.get(0, "b"), held("b", "t1"))
    again.close()


class FillingDisk(MemoryUserStore):
    """A store whose disk is full for the first ``failures`` writes."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def put(self, partition: int, user_id: str, state: HeldState, offset: int | None = None) -> None:
        if self.failures:
            self.failures -= 1
            raise StateDiskFull("/data/ranker-state", ENOSPC_TEXT)
        super().put(partition, user_id, state, offset)


def test_a_write_on_a_full_disk_waits_for_space_says_so_once_and_counts_each_try(caplog) -> None:
    store, metrics, waits, beats = FillingDisk(failures=3), Metrics("ranker"), [], []
    with caplog.at_level(logging.WARNING):
        assert put_until_stored(store, 0, held("u"), 5, wait=lambda s: waits.append(s) or False, metrics=metrics,
                                beat=lambda: beats.append(1), retry_s=2.0)
    assert store.get(0, "u") is not None and store.applied_offset(0) == 5
    assert waits == [2.0] * 3 and len(beats) == 3
    assert metrics.value("flitfeed_state_write_errors_total", service="ranker", reason="disk_full") == 3
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "no space left on device" in errors[0].getMessage()
    assert any("writable again" in r.getMessage() for r in caplog.records)


def test_a_stop_while_waiting_for_space_leaves_the_state_unapplied() -> None:
    store = FillingDisk(failures=10)
    assert not put_until_stored(store, 0, held("u"), 5, wait=lambda s: True)
    assert store.get(0, "u") is None and store.applied_offset(0) == 0  # the restart's tail read applies it


def test_the_cache_is_bounded_and_reads_past_it_come_from_disk(tmp_path: Path) -> None:
    s = RocksUserStore(tmp_path / "s", cache_users=3)
    s.open_partition(0)
    s.put_many(0, [held(f"u{i}", seed=i) for i in range(10)], offset=10)
    assert len(s.cache) == 3
    assert all(same(s.get(0, f"u{i}"), held(f"u{i}", seed=i)) for i in range(10))
    assert len(s.cache) == 3
    s.drop_partition(0)
    assert len(s.cache) == 0  # a revoked partition's users leave the cache too
    s.close()


def test_the_settings_select_the_store(tmp_path: Path) -> None:
    base = Settings().replace(data_dir=str(tmp_path))
    assert isinstance(open_user_store(base.replace(ranker_state_store="memory"), "user-states", None), MemoryUserStore)
    rocks = open_user_store(base.replace(ranker_state_cache_users=10), "user-states", None)
    assert isinstance(rocks, RocksUserStore) and rocks.cache.capacity == 10
    assert rocks.directory == tmp_path / "ranker-state" / "user-states"
    rocks.close()


# --- restart plan ---------------------------------------------------------------------------------
def test_a_restart_reads_only_the_tail_up_to_the_commit() -> None:
    assert plan_recovery(applied=480, committed=500, low=0, high=600) == Recovery(start=480, until=500)
    assert plan_recovery(applied=0, committed=500, low=0, high=600) == Recovery(start=0, until=500)
    assert plan_recovery(applied=0, committed=500, low=100, high=600) == Recovery(start=100, until=500)


def test_a_store_ahead_of_the_commit_is_kept_and_the_redelivered_records_replayed() -> None:
    assert plan_recovery(applied=520, committed=500, low=0, high=600) == \
        Recovery(start=520, until=520, replay_until=520)
    assert plan_recovery(applied=30, committed=-1001, low=0, high=600) == Recovery(30, 30, replay_until=30)


def test_a_store_the_log_cannot_explain_is_rebuilt() -> None:
    assert plan_recovery(applied=900, committed=500, low=0, high=600).rebuild == "ahead_of_log"
    assert plan_recovery(applied=50, committed=500, low=100, high=600) == \
        Recovery(start=100, until=500, rebuild="behind_log_start")


# --- the binary form ----------------------------------------------------------------------------------
def test_a_held_state_from_a_user_state_round_trips() -> None:
    taste = list(np.random.default_rng(0).normal(size=384))
    state = UserState(user_id="u", taste=taste, seen=[f"f{i}" for i in range(20)], muted_authors=["a1", "a2"],
                      updated_at=0, trigger_id="e1", positives=12, model_version="a@1", tastes={"b@2": taste[:16]})
    h = HeldState.of(state, "a@1", held=("b@2",))
    back = decode_held("u", encode_held(h))
    assert same(back, h)
    assert len(encode_held(h)) < 1_800  # 384 float32 + 20 ids: the taste is most of it
    assert not back.taste.flags.writeable  # a view on the stored bytes: a write would raise


ids = st.text(st.characters(codec="utf-8"), max_size=40)


@settings(max_examples=200, deadline=None)
@given(user=ids, seen=st.lists(ids, max_size=30), muted=st.lists(ids, max_size=5), positives=st.integers(-2**40, 2**40),
       trigger=ids, dims=st.dictionaries(ids, st.integers(0, 50), max_size=4))
def test_any_held_state_round_trips(user, seen, muted, positives, trigger, dims) -> None:  # noqa: ANN001
    rng = np.random.default_rng(len(seen))
    tastes = {v: rng.normal(size=d).astype(np.float32) for v, d in dims.items()}
    h = HeldState(user, tastes, tuple(seen), tuple(muted), positives, trigger, next(iter(dims), ""))
    assert same(decode_held(user, encode_held(h)), h)


def test_truncated_or_foreign_bytes_are_refused_not_misread() -> None:
    data = encode_held(held("u"))
    for bad in (data[:-1], data[:10], data + b"x", b""):
        with pytest.raises(HeldFormatError):
            decode_held("u", bad)
