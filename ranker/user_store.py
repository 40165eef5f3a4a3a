"""Where the ranker keeps its users' :class:`~.held.HeldState`: in memory, or in RocksDB read on demand.

The ranker needs, per owned ``user-states`` partition, each user's latest state (a feed reads it) and the
offset up to which it has applied that partition's records (a restart reads only what came after).

- :class:`MemoryUserStore`: a dict per partition, as the ranker has always kept them (~3.9 KB per user,
  ~4 GB at a million users), gone at a restart: the whole partition is read again.
- :class:`RocksUserStore`: one RocksDB database per partition under a directory (``rocksdict``), each
  record the compact binary form of :mod:`.held` (~1.8 KB for a 384-d taste and 20 seen ids), the
  partition's applied offset written in the same atomic batch as its states, and a bounded LRU of decoded
  states in front so the users being served are not decoded on every feed. RAM holds that LRU and
  RocksDB's bounded buffers (:func:`rocks_options`), not every user; a restart opens the files and reads
  only the topic's tail (:func:`plan_recovery`).

Failures of the local state, as the worker's profiles (``streams/state_store.py``): a partition database
that is corrupt, missing although this ranker held it, or written by another format is set aside or
emptied and rebuilt from the topic, with one warning line and ``flitfeed_state_rebuilds_total{reason}``;
a full disk raises :class:`~flitfeed.streams.state_store.StateDiskFull`, and the database that refused the
write is reopened before the next one (RocksDB refuses every write after that until it is).

Offsets here are "next to read", as Kafka commits them: ``applied_offset(p) == n`` means every record of
partition ``p`` before offset ``n`` is applied; 0 means none. It only moves forward (a reset empties it).
"""

from __future__ import annotations

import logging
import shutil
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Protocol, Sequence

from flitfeed.monitoring.metrics import Metrics
from flitfeed.ranker.held import FORMAT, HeldState, decode_held, encode_held
from flitfeed.settings import Settings
from flitfeed.streams.state_store import (DISK_FULL_RETRY_S, STORES, HeldPartitions, StateDiskFull, close_quietly,
                                          disk_full_as_error, open_or_rebuild, reopen_for_writes)

log = logging.getLogger(__name__)

# Keys: b"u" + user id for a state, b"m" + name for the partition's own records, so no user id can
# collide with the offset or the format.
_USER = b"u"
_APPLIED = b"mapplied"
_FORMAT = b"mformat"
# The partition's user count, kept exactly in the same batches: RocksDB's key estimate counts every
# overwrite still in a memtable or an uncompacted file, and a user's state is overwritten on each event.
_COUNT = b"mcount"


class UserStateStore(Protocol):
    """The ranker's per-user state, by ``user-states`` partition (see the module docstring)."""

    #: Whether what was put survives a restart (then a restart reads only the topic's tail).
    durable: bool

    def open_partition(self, partition: int) -> int:
        """Make ``partition`` owned (opening its files, rebuilding a corrupt one); its applied offset."""
        ...

    def get(self, partition: int, user_id: str) -> HeldState | None: ...

    def get_many(self, keys: Sequence[tuple[int, str]]) -> list[HeldState | None]:
        """The state of each ``(partition, user_id)``, in order (None: unknown user)."""
        ...

    def put(self, partition: int, user_id: str, state: HeldState, offset: int | None = None) -> None:
        """Store ``state``; with ``offset`` (the record's offset + 1) the applied offset moves there in the
        same atomic write, never back: a record the group re-delivers after a restart was applied already,
        and so were those after it (see :func:`plan_recovery`)."""
        ...

    def put_many(self, partition: int, states: Iterable[HeldState], offset: int | None = None) -> None:
        """Store ``states`` in order (a later state of a user wins) and the applied offset, atomically."""
        ...

    def applied_offset(self, partition: int) -> int: ...

    def reset_partition(self, partition: int, reason: str, detail: str = "") -> None:
        """Forget ``partition``'s states and offset, to rebuild it from the topic (logged and counted)."""
        ...

    def drop_partition(self, partition: int) -> None:
        """A revoked partition: forget it in RAM; what is on disk stays for when it comes back."""
        ...

    def partitions(self) -> list[int]: ...

    def count(self) -> int:
        """Users held in the owned partitions (no read: each store keeps the count)."""
        ...

    def close(self) -> None: ...


class MemoryUserStore:
    """Every owned user's :class:`HeldState` in a dict per partition; nothing survives a restart."""

    durable = False

    def __init__(self) -> None:
        self._states: dict[int, dict[str, HeldState]] = {}
        self._applied: dict[int, int] = {}

    def open_partition(self, partition: int) -> int:
        self._states.setdefault(partition, {})
        return self._applied.setdefault(partition, 0)

    def get(self, partition: int, user_id: str) -> HeldState | None:
        return self._states.get(partition, {}).get(user_id)

    def get_many(self, keys: Sequence[tuple[int, str]]) -> list[HeldState | None]:
        return [self.get(p, u) for p, u in keys]

    def put(self, partition: int, user_id: str, state: HeldState, offset: int | None = None) -> None:
        self._states.setdefault(partition, {})[user_id] = state
        if offset is not None:
            self._applied[partition] = max(offset, self._applied.get(partition, 0))

    def put_many(self, partition: int, states: Iterable[HeldState], offset: int | None = None) -> None:
        users = self._states.setdefault(partition, {})
        for state in states:
            users[state.user_id] = state
        if offset is not None:
            self._applied[partition] = max(offset, self._applied.get(partition, 0))

    def applied_offset(self, partition: int) -> int:
        return self._applied.get(partition, 0)

    def reset_partition(self, partition: int, reason: str, detail: str = "") -> None:
        self._states[partition] = {}
        self._applied[partition] = 0

    def drop_partition(self, partition: int) -> None:
        self._states.pop(partition, None)
        self._applied.pop(partition, None)

    def partitions(self) -> list[int]:
        return sorted(self._states)

    def count(self) -> int:
        return sum(len(users) for users in self._states.values())

    def close(self) -> None:
        self._states.clear()
        self._applied.clear()


class LruCache:
    """At most ``capacity`` decoded states, the least recently used evicted first (0: no cache).

    >>> c = LruCache(2)
    >>> c.put((0, "a"), 1); c.put((0, "b"), 2); c.get((0, "a")); c.put((0, "c"), 3)
    1
    >>> c.get((0, "b")) is None, len(c)
    (True, 2)
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple[int, str], object] = OrderedDict()

    def get(self, key: tuple[int, str]):  # noqa: ANN201 - the value put
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: tuple[int, str], value: object) -> None:
        if self.capacity <= 0:
            return
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def drop_partition(self, partition: int) -> None:
        for key in [k for k in self._items if k[0] == partition]:
            del self._items[key]

    def __len__(self) -> int:
        return len(self._items)


def rocks_options(block_cache_bytes: int = 16 << 20):  # noqa: ANN201 - rocksdict.Options
    """RocksDB options for a partition database: bounded memory, fast point reads.

    A 4 MiB memtable, two at most, per partition (RocksDB's default is 64 MiB x 2), and one block cache
    shared by all the partitions of the store (see :class:`RocksUserStore`): the hot users live decoded
    in the store's LRU, so RocksDB's own cache only spares the page cache a few reads. A bloom filter,
    because a feed request for a user with no state yet (a cold start) would otherwise read every level.
    """
    from rocksdict import BlockBasedOptions, Cache, Options

    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.set_write_buffer_size(4 << 20)
    opts.set_max_write_buffer_number(2)
    opts.set_target_file_size_base(32 << 20)
    table = BlockBasedOptions()
    table.set_block_cache(Cache(block_cache_bytes))
    table.set_bloom_filter(10, False)
    opts.set_block_based_table_factory(table)
    return opts


class RocksUserStore:
    """One RocksDB database per ``user-states`` partition under ``directory`` (``p<partition>``), with an
    LRU of ``cache_users`` decoded states in front (~2.3 KB each for a 384-d taste: 20,000 → ~46 MiB)."""

    durable = True

    def __init__(self, directory: Path | str, cache_users: int = 20_000, metrics: Metrics | None = None,
                 block_cache_bytes: int = 16 << 20) -> None:
        self.directory = Path(directory)  # made by the first partition opened (a full disk waits there)
        self.metrics = metrics
        self.cache = LruCache(cache_users)
        # One options object (so one block cache) for every partition: memory does not grow with the
        # partitions owned.
        self._options = rocks_options(block_cache_bytes)
        self._dbs: dict[int, object] = {}
        self._counts: dict[int, int] = {}
        self._applied: dict[int, int] = {}
        #: Partitions whose database refused a write for a full disk: reopened before the next write.
        self._refusing: set[int] = set()

    # --- partitions -----------------------------------------------------------
    def _path(self, partition: int) -> Path:
        return self.directory / f"p{partition}"

    def _rebuilt(self, partition: int, reason: str, detail: str) -> None:
        log.warning("ranker user state partition rebuilt from the topic",
                    extra={"partition": partition, "reason": reason, "detail": detail})
        if self.metrics is not None:
            self.metrics.state_rebuilds.labels(service=self.metrics.service, reason=reason).inc()

    def _open(self, path: Path):  # noqa: ANN202 - rocksdict.Rdict
        from rocksdict import Rdict

        with disk_full_as_error(path):
            return Rdict(str(path), self._options)

    def _open_read_only(self, path: Path):  # noqa: ANN202 - rocksdict.Rdict
        from rocksdict import AccessType, Rdict

        return Rdict(str(path), self._options, access_type=AccessType.read_only())

    def open_partition(self, partition: int) -> int:
        return self._open_partition(partition, rebuilding=False)

    def _open_partition(self, partition: int, rebuilding: bool) -> int:
        if partition in self._dbs:
            return self.applied_offset(partition)
        with disk_full_as_error(self.directory):
            self.directory.mkdir(parents=True, exist_ok=True)
        held = HeldPartitions(self.directory / "partitions.json")
        path = self._path(partition)
        # A partition emptied on purpose (``rebuilding``) is not also counted as missing.
        db = open_or_rebuild(path, self._open, partition in held and not rebuilding,
                             lambda reason, detail: self._rebuilt(partition, reason, detail))
        stored = db.get(_FORMAT)
        if stored is not None and int.from_bytes(stored, "little") != FORMAT:
            # Written by another version of the binary form: the topic has every state, so rebuild.
            db.close()
            self._destroy(path)
            self._rebuilt(partition, "format", f"{path} holds format {int.from_bytes(stored, 'little')}")
            db = self._open(path)
            stored = None
        if stored is None:
            self._write(db, path, [(_FORMAT, FORMAT.to_bytes(1, "little"))])
        self._dbs[partition] = db
        raw_count, raw_applied = db.get(_COUNT), db.get(_APPLIED)
        self._counts[partition] = 0 if raw_count is None else int.from_bytes(raw_count, "little")
        self._applied[partition] = 0 if raw_applied is None else int.from_bytes(raw_applied, "little")
        held.add(partition)
        return self.applied_offset(partition)

    def _destroy(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)

    def reset_partition(self, partition: int, reason: str, detail: str = "") -> None:
        self.drop_partition(partition)
        self._destroy(self._path(partition))
        self._rebuilt(partition, reason, detail)
        self._open_partition(partition, rebuilding=True)

    def drop_partition(self, partition: int) -> None:
        db = self._dbs.pop(partition, None)
        if db is not None:
            close_quietly(db)
        self._refusing.discard(partition)
        self._counts.pop(partition, None)
        self._applied.pop(partition, None)
        self.cache.drop_partition(partition)

    def partitions(self) -> list[int]:
        return sorted(self._dbs)

    def _db(self, partition: int):  # noqa: ANN202 - rocksdict.Rdict
        if partition not in self._dbs:
            self.open_partition(partition)
        return self._dbs[partition]

    # --- reads and writes -------------------------------------------------------
    def applied_offset(self, partition: int) -> int:
        return self._applied.get(partition, 0)

    def get(self, partition: int, user_id: str) -> HeldState | None:
        return self.get_many([(partition, user_id)])[0]

    def get_many(self, keys: Sequence[tuple[int, str]]) -> list[HeldState | None]:
        found: list[HeldState | None] = [self.cache.get(key) for key in keys]  # type: ignore[misc]
        missing: dict[int, list[int]] = {}
        for i, (key, state) in enumerate(zip(keys, found)):
            if state is None and key[0] in self._dbs:
                missing.setdefault(key[0], []).append(i)
        for partition, where in missing.items():
            values = self._dbs[partition][[_USER + keys[i][1].encode("utf-8") for i in where]]
            for i, raw in zip(where, values):
                if raw is not None:
                    state = decode_held(keys[i][1], raw)
                    self.cache.put(keys[i], state)
                    found[i] = state
        return found

    def put(self, partition: int, user_id: str, state: HeldState, offset: int | None = None) -> None:
        if state.user_id != user_id:
            raise ValueError(f"state of {state.user_id!r} put as {user_id!r}")
        self.put_many(partition, [state], offset)

    def put_many(self, partition: int, states: Iterable[HeldState], offset: int | None = None) -> None:
        if partition in self._refusing:
            db, full = reopen_for_writes(self._path(partition), self._dbs.pop(partition), self._open,
                                         self._open_read_only)
            self._dbs[partition] = db
            if full is not None:
                raise full
            self._refusing.discard(partition)
        db = self._db(partition)
        states = list(states)
        items = [(_USER + s.user_id.encode("utf-8"), encode_held(s)) for s in states]
        added = self._new_users(db, partition, states, [key for key, _ in items])
        if added:
            items.append((_COUNT, (self._counts[partition] + added).to_bytes(8, "little")))
        applied = self._applied[partition] if offset is None else max(offset, self._applied[partition])
        if applied != self._applied[partition]:
            items.append((_APPLIED, applied.to_bytes(8, "little")))
        try:
            self._write(db, self._path(partition), items)
        except StateDiskFull:
            self._refusing.add(partition)
            raise
        self._counts[partition] += added
        self._applied[partition] = applied
        # The cache is written through after the batch is stored: a failed write leaves it as the disk is.
        # A user whose state just changed is the one whose feed is built next.
        for s in states:
            self.cache.put((partition, s.user_id), s)

    def _new_users(self, db, partition: int, states: list[HeldState], keys: list[bytes]) -> int:  # noqa: ANN001
        """How many of ``states``' users the partition does not hold yet: a cached user is held, and the
        bloom filter answers most of the others (every user of a rebuild) without a read."""
        added, batch = 0, set()
        for state, key in zip(states, keys):
            if key in batch:
                continue
            batch.add(key)
            if self.cache.get((partition, state.user_id)) is not None:
                continue
            if not db.key_may_exist(key) or db.get(key) is None:
                added += 1
        return added

    def _write(self, db, path: Path, items: list[tuple[bytes, bytes]]) -> None:  # noqa: ANN001 - Rdict
        from rocksdict import WriteBatch

        batch = WriteBatch(raw_mode=True)
        for key, value in items:
            batch.put(key, value)
        with disk_full_as_error(path):
            db.write(batch)

    def count(self) -> int:
        return sum(self._counts.values())

    def flush(self) -> None:
        """Write the memtables to files (a benchmark measures the files; a restart does not need it)."""
        for db in self._dbs.values():
            db.flush()

    def close(self) -> None:
        for partition in list(self._dbs):
            self.drop_partition(partition)


def open_user_store(settings: Settings, topic: str, metrics: Metrics | None) -> UserStateStore:
    """The store ``settings.ranker.ranker_state_store`` names for the ``user-states`` topic ``topic``: RocksDB
    under ``data_dir/ranker-state/<topic>`` (a topic of another name, another prefix, never shares files)."""
    cfg = settings.ranker
    if cfg.ranker_state_store == "memory":
        return MemoryUserStore()
    if cfg.ranker_state_store == "rocksdb":
        return RocksUserStore(settings.data_dir / "ranker-state" / topic, cache_users=cfg.ranker_state_cache_users,
                              metrics=metrics)
    raise ValueError(f"unknown ranker state store {cfg.ranker_state_store!r}: one of {', '.join(STORES)}")


def put_until_stored(store: UserStateStore, partition: int, state: HeldState, offset: int | None, *,
                     wait: Callable[[float], bool], metrics: Metrics | None = None,
                     beat: Callable[[], None] = lambda: None, retry_s: float = DISK_FULL_RETRY_S) -> bool:
    """Put ``state``; on a full disk wait for space (:func:`until_written`). False: the ranker is stopping,
    and the state is not stored, nor its offset applied, so the restart's tail read applies it.

    >>> from flitfeed.ranker.held import HeldState
    >>> put_until_stored(MemoryUserStore(), 0, HeldState("u", {}, (), (), 0, "t"), 1, wait=lambda s: True)
    True
    """
    return until_written(lambda: store.put(partition, state.user_id, state, offset), wait=wait, metrics=metrics,
                         beat=beat, retry_s=retry_s)


def until_written(write: Callable[[], None], *, wait: Callable[[float], bool], metrics: Metrics | None = None,
                  beat: Callable[[], None] = lambda: None, retry_s: float = DISK_FULL_RETRY_S) -> bool:
    """Run ``write`` (a put, a partition's opening and recovery); on a full disk say so in one line, count
    it, and run it again every ``retry_s`` until it succeeds. ``wait(seconds)`` waits and is True when the
    ranker is stopping (a ``threading.Event``'s wait): then False is returned. ``beat`` keeps /livez from
    restarting a ranker that is only waiting for space.

    >>> until_written(lambda: None, wait=lambda s: True)
    True
    """
    failed = False
    while True:
        try:
            write()
        except StateDiskFull as exc:
            if metrics is not None:
                metrics.state_write_errors.labels(service=metrics.service, reason="disk_full").inc()
            if not failed:
                log.error(str(exc))
            failed = True
            beat()
            if wait(retry_s):
                return False
            continue
        if failed:
            log.warning("ranker user state store writable again")
        return True


# --- restart ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Recovery:
    """What a newly assigned partition needs before its group consumer starts at the committed offset."""

    #: Read ``user-states`` records in [start, until) into the store without publishing feeds.
    start: int
    until: int
    #: The group consumer re-delivers records before this offset that the store has already applied (the
    #: ranker stopped between storing them and committing): their feeds are built even though the stored
    #: state already has their trigger id (the ranker's "the worker re-published" repeat check).
    replay_until: int = 0
    #: Why the partition's store must be emptied first (None: it is kept).
    rebuild: str | None = None


def plan_recovery(applied: int, committed: int, low: int, high: int) -> Recovery:
    """The recovery of a partition whose store applied records up to ``applied``, whose group committed
    ``committed`` (negative: no commit, the group starts at the log's start) and whose log holds [low, high).

    >>> plan_recovery(applied=0, committed=500, low=0, high=600)          # empty store: read it all
    Recovery(start=0, until=500, replay_until=0, rebuild=None)
    >>> plan_recovery(applied=480, committed=500, low=0, high=600)        # a restart: the tail only
    Recovery(start=480, until=500, replay_until=0, rebuild=None)
    >>> plan_recovery(applied=520, committed=500, low=0, high=600)        # stopped before committing
    Recovery(start=520, until=520, replay_until=520, rebuild=None)
    >>> plan_recovery(applied=900, committed=500, low=0, high=600)        # from another log: rebuild
    Recovery(start=0, until=500, replay_until=0, rebuild='ahead_of_log')
    """
    committed = low if committed < 0 else committed
    if applied > high:
        # The store applied offsets the log never had: it belongs to an older topic of that name.
        return Recovery(start=low, until=committed, rebuild="ahead_of_log")
    if 0 < applied < low and applied < committed:
        # Records the store never applied were deleted from the log: what it holds may be stale.
        return Recovery(start=low, until=committed, rebuild="behind_log_start")
    if applied > committed:
        # Not a rebuild: the group re-delivers [committed, applied) in order, which leaves the store where
        # it is; a rebuild here would make every kill -9 read the whole partition.
        return Recovery(start=applied, until=applied, replay_until=applied)
    return Recovery(start=max(applied, low), until=committed)


def apply_records(store: UserStateStore, partition: int, records: Iterable[tuple[int, bytes | None]],
                  to_held: Callable[[bytes | None], HeldState | None], batch: int = 1000) -> int:
    """Apply ``user-states`` records ``(offset, value)`` of ``partition`` in order, ``batch`` per atomic
    write with the applied offset; ``to_held`` decodes one (None: a record to skip, dead-lettered when it
    was first consumed). The records read (skipped ones included: the offset passes them too).

    >>> store = MemoryUserStore()
    >>> held = lambda v: HeldState(v.decode(), {}, (), (), 0, "t") if v else None
    >>> apply_records(store, 0, [(7, b"a"), (8, None), (9, b"b")], held), store.applied_offset(0), store.count()
    (3, 10, 2)
    """
    pending: list[HeldState] = []
    read, last = 0, None
    for offset, value in records:
        read += 1
        last = offset
        state = to_held(value)
        if state is not None:
            pending.append(state)
        if read % batch == 0:
            store.put_many(partition, pending, offset + 1)
            pending = []
    if last is not None and read % batch != 0:
        store.put_many(partition, pending, last + 1)
    return read
