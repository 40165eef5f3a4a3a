"""The worker's profiles table on Faust's stores: the policies of :mod:`flitfeed.streams.state_store` fitted
into Faust's RocksDB store.

Faust's ``Store`` and ``Table`` have no hooks for opening a partition's database, writing a key or
picking a store, so :class:`ProfileStore` and :class:`ProfilesTable` override their private methods
(``_open_for_partition``, ``_set``, ``_new_store_by_url``). That ties them to the faust-streaming
release they were verified against, like every other workaround here (:mod:`.version`).

A table takes the partition of a key (which RocksDB database, which changelog partition) from the event
being processed, Faust's ``current_event()``, set only by a stream iterating one event at a time. An
agent that takes batches processes many events and none is current: :func:`processing` makes one event
current for the table reads and writes of its key.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from typing import Any, Callable, Iterable, Iterator

import faust
import faust.stores.rocksdb as faust_rocksdb
from faust.stores.rocksdb import Store as RocksStore
from faust.streams import _current_event
from yarl import URL

from flitfeed.monitoring.metrics import Metrics
from flitfeed.settings import WorkerConfig
from flitfeed.streams.state_store import (DISK_FULL_RETRY_S, ROCKSDB_OPTIONS, HeldPartitions, StateDiskFull,
                                          disk_full_as_error, is_disk_full, open_or_rebuild, reopen_for_writes,
                                          store_url)

log = logging.getLogger(__name__)


class ProfileStore(RocksStore):
    """Faust's RocksDB store, with the corrupt/missing rebuild, the disk-full error and recovery counts."""

    metrics: Metrics | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Partitions whose database refused a write for a full disk: RocksDB refuses every later write until
        #: the database is reopened, which the next profile write does (:func:`reopen_for_writes`).
        self._refusing: set[int] = set()

    def _open_for_partition(self, partition: int) -> Any:
        path = self.partition_path(partition)
        held = HeldPartitions(self.path / f"{self.basename}-partitions.json")

        def rebuilt(reason: str, detail: str) -> None:
            log.warning("user state partition rebuilt from the changelog",
                        extra={"partition": partition, "reason": reason, "detail": detail})
            if self.metrics is not None:
                self.metrics.state_rebuilds.labels(service=self.metrics.service, reason=reason).inc()

        db = open_or_rebuild(path, lambda p: self.rocksdb_options.open(p), partition in held, rebuilt)
        held.add(partition)
        return db

    async def _try_open_db_for_partition(self, partition: int, *args: Any, **kwargs: Any) -> Any:
        """Open an assigned partition's database; on a full disk (RocksDB writes a manifest, and the log's
        records to a table file, to open one) say so in one line, count it, and try again every
        ``DISK_FULL_RETRY_S`` until it opens. Faust would stop the worker instead, and a restart on the same
        full disk would stop it again: a crash loop. Meanwhile the worker is not ready (its partitions are
        not assigned) but alive (the event loop runs)."""
        failed = False
        generation = kwargs.get("generation_id")
        while partition not in self._dbs and not self.should_stop:
            try:
                self._db_for_partition(partition)  # opened, and kept in self._dbs
            except StateDiskFull as exc:
                if self.metrics is not None:
                    self.metrics.state_write_errors.labels(service=self.metrics.service, reason="disk_full").inc()
                if not failed:
                    log.error(str(exc))
                failed = True
                if generation is not None and generation != self.app.consumer_generation_id:
                    return None  # rebalanced again meanwhile, as Faust gives up on a locked database
                await self.sleep(DISK_FULL_RETRY_S)
            except Exception:  # noqa: BLE001 - Faust's own handling below (a lock held by another worker)
                break
        if failed and partition in self._dbs:
            log.warning("user state store writable again")
        return await super()._try_open_db_for_partition(partition, *args, **kwargs)

    def _open_read_only(self, partition: int) -> Any:
        from rocksdict import AccessType, ReadOptions, Rdict

        db = Rdict(str(self.partition_path(partition)), options=self.rocksdb_options.as_options(),
                   access_type=AccessType.read_only())
        db.set_read_options(ReadOptions())
        return db

    def _set(self, key: bytes, value: bytes | None) -> None:
        partition = faust_rocksdb.current_event().message.partition  # the database Faust's _set writes to
        if partition in self._refusing:
            db, full = reopen_for_writes(self.partition_path(partition), self._dbs.pop(partition, None),
                                         # Not _open_for_partition: a database to rebuild is found at a
                                         # start or a rebalance, when the changelog is read, not mid-stream.
                                         lambda path: self.rocksdb_options.open(path),
                                         lambda _: self._open_read_only(partition))
            self._dbs[partition] = db
            if full is not None:
                raise full
            self._refusing.discard(partition)
        try:
            with disk_full_as_error(self.path):
                super()._set(key, value)
        except StateDiskFull:
            self._refusing.add(partition)
            raise

    def set_persisted_offset(self, tp: Any, offset: int) -> None:
        """The changelog offset the database holds, written when a changelog record is delivered: Faust
        sends a profile's record before writing it here, so a write that waits for disk space has one
        delivered meanwhile. On a full disk the offset is not moved (a restart then reads a little more
        of the changelog, which only writes the same profiles again) instead of an error on every retry."""
        if tp.partition in self._refusing:
            return
        try:
            super().set_persisted_offset(tp, offset)
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            self._refusing.add(tp.partition)

    def apply_changelog_batch(self, batch: Iterable[Any], to_key: Callable[[Any], Any],
                              to_value: Callable[[Any], Any]) -> None:
        try:
            with disk_full_as_error(self.path):
                super().apply_changelog_batch(batch, to_key, to_value)
        except StateDiskFull as err:
            log.error(str(err))  # the recovery stops the worker: say why in one line
            raise

    def estimated_size(self) -> int:
        """Keys in the active partitions, from RocksDB's estimate (exact until deletes and overwrites
        are compacted; this table never deletes): counting them would read every key."""
        total = 0
        for db in self._dbs_for_actives():
            total += max(0, int(db.property_int_value("rocksdb.estimate-num-keys") or 0) - 1)  # offset key
        return total


class ProfilesTable(faust.Table):
    """The profiles table; with ``rocksdb://`` its store is the guarded one above, told of ``metrics``."""

    metrics: Metrics | None = None

    def _new_store_by_url(self, url: str | URL) -> Any:
        if URL(str(url)).scheme != "rocksdb":
            return super()._new_store_by_url(url)
        store = ProfileStore(url, self.app, self, table_name=self.name, key_type=self.key_type,
                             key_serializer=self.key_serializer, value_serializer=self.value_serializer,
                             value_type=self.value_type, loop=self.loop, options=self.options)
        store.metrics = self.metrics
        return store

    def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
        """A table recovery's changelog records (either store), counted: a restart with local state reads
        only the tail."""
        events = list(batch)
        super().apply_changelog_batch(events)
        if self.metrics is not None:
            self.metrics.state_restored.labels(service=self.metrics.service).inc(len(events))


def profiles_table(app: faust.App, name: str, worker: WorkerConfig, partitions: int, metrics: Metrics) -> Any:
    """The worker's profiles table (user id -> ``UserProfile.to_bytes()``) in ``worker.state_store``, which
    the app was made with (``faust.App(store=store_url(worker))``), with ``partitions`` partitions."""
    if URL(str(app.conf.store)).scheme != worker.state_store:  # a table's own store URL "x://" is falsy
        raise ValueError(f"the app's store is {app.conf.store}, not {store_url(worker)}")
    # Values are the profiles' own bytes, written and read as they are (a memory table holds them so, ~10.6
    # KB for a worst-case user instead of a 44 KB dict). Records written before with Faust's JSON codec come
    # back as their JSON bytes, which UserProfile.from_stored still reads. value_type=bytes selects Faust's
    # "raw" codec for the values (the store's and the changelog's).
    table = ProfilesTable(app, name=name, default=None, partitions=partitions, key_type=str, value_type=bytes,
                          options=dict(ROCKSDB_OPTIONS) if worker.state_store == "rocksdb" else None)
    table.metrics = metrics
    app.tables.add(table)
    return table


def owned_users(table: Any) -> int:
    """How many users the table holds in this worker's active partitions (an estimate with RocksDB)."""
    size = getattr(table.data, "estimated_size", None)
    return size() if size is not None else len(table)


def table_recovered(app: Any) -> bool:
    """Faust's table recovery (reading the changelog tail, or all of it) is done: the agents can run."""
    recovery = getattr(app.tables, "recovery", None)
    return recovery is None or recovery.completed.is_set()


@contextlib.contextmanager
def processing(event: Any) -> Iterator[None]:
    """Make ``event`` Faust's current event inside the block, so a table read or write there goes to its
    partition: ``table.get`` reads that partition's database, ``table[key] = value`` writes it and sends the
    changelog record to the same partition (Faust's ``Table.partition_for_key`` and its RocksDB store's
    ``_get``/``_set`` read ``faust.streams.current_event()``).

    For an agent taking batches (``stream.noack_take``): its task has no current event, or a stale one.
    The event must be of a topic co-partitioned with the table (``interactions``, keyed by user id) and the
    key the one it carries. The previous value is restored on leaving, also on an exception.

    >>> from types import SimpleNamespace
    >>> from faust.streams import current_event
    >>> class Event:  # a stand-in for faust.Event: its message and its partition
    ...     message = SimpleNamespace(partition=3)
    >>> e = Event()
    >>> with processing(e):
    ...     current_event().message.partition
    3
    >>> current_event() is None
    True
    """
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)
