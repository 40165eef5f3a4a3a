"""Where the worker keeps its users' profiles: Faust's in-memory table or its RocksDB store (``rocksdict``).

The profiles table (``USER_PROFILES_TABLE``) is backed by a compacted changelog topic either way.
``memory``: every profile is a Python dict in RAM and a restart replays the whole changelog.
``rocksdb`` (the default): every owned partition is a RocksDB database under ``data_dir/faust``; a restart
opens them and reads only the changelog records written after the last one the database has (Faust keeps
that offset in each partition's database), so start-up no longer grows with the user count, and RAM holds
RocksDB's bounded caches (:data:`ROCKSDB_OPTIONS`) instead of every profile.

Failures of the local state (README "User state"):

- a partition database that cannot be opened because it is corrupt, or that is missing although this
  worker held it before, is set aside and rebuilt from the changelog: one warning line and
  ``flitfeed_state_rebuilds_total{reason}``; never a crash, so never a crash loop;
- a full disk raises :class:`StateDiskFull` (one line: which path, how much is free, what to do); the
  agents wait and retry the write (``streams/agents/common.py``) with the event unacked, so nothing is
  lost and nothing is applied twice. RocksDB refuses every later write to a database that failed one
  for a full disk, even once space is freed, until it is reopened: :func:`reopen_for_writes` does that
  before each retry (measured on a real full tmpfs: ``tests/integration/test_full_disk.py``). Opening a
  database writes to it, so a start on a full disk waits the same way (one line, counted, retried) before
  the partition is served, instead of stopping the service into a crash loop.

:mod:`flitfeed.streams.faust_compat.tables` fits these policies into Faust's RocksDB store (its private
methods, so with the other Faust workarounds): the profiles table, its store, and the users count.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from flitfeed.settings import WorkerConfig

log = logging.getLogger(__name__)

#: The stores ``WorkerConfig.state_store`` and ``RankerConfig.ranker_state_store`` select.
STORES = ("memory", "rocksdb")

#: RocksDB options per partition database (6 partitions by default): a memtable of 8 MiB, two at most,
#: and a 16 MiB block cache. Faust's defaults (64 MiB x 3 memtables, a 2 GiB cache, each per partition)
#: would let one worker grow past 12 GiB. Profiles are read once per interaction, so a small cache costs
#: little; the page cache keeps the hot files anyway.
ROCKSDB_OPTIONS: dict[str, int] = {
    "write_buffer_size": 8 << 20,
    "max_write_buffer_number": 2,
    "block_cache_size": 16 << 20,
    "target_file_size_base": 32 << 20,
}


class StateDiskFull(OSError):
    """The disk under a service's user state is full: a profile or user state could not be written, or a
    database opened for writing."""

    def __init__(self, path: Path | str, cause: BaseException | str) -> None:
        self.path = Path(path)
        free = _free_bytes(self.path)
        where = f"{free // (1 << 20)} MiB free" if free is not None else "free space unknown"
        super().__init__(errno.ENOSPC, f"user state store: no space left on device under {self.path} ({where}): "
                                       f"state writes wait until space is freed or the volume grown "
                                       f"({str(cause).splitlines()[0] if str(cause) else 'ENOSPC'})")

    def __str__(self) -> str:
        return str(self.strerror)


def is_disk_full(exc: BaseException) -> bool:
    """A RocksDB (rocksdict raises plain ``Exception`` with RocksDB's status text) or OS error for ENOSPC."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    text = str(exc)
    return "No space left on device" in text or "ENOSPC" in text


def is_corrupt(exc: BaseException) -> bool:
    """RocksDB's status for a database it cannot trust (a bad CURRENT or MANIFEST, an SST of the wrong size)."""
    return str(exc).startswith("Corruption:")


def _free_bytes(path: Path) -> int | None:
    for p in (path, *path.parents):
        try:
            return shutil.disk_usage(p).free
        except OSError:
            continue
    return None


#: How often a state write that failed for a full disk is tried again (the worker's profiles, the ranker's users).
DISK_FULL_RETRY_S = 5.0


@contextmanager
def disk_full_as_error(path: Path | str) -> Iterator[None]:
    """Raise a full disk met inside as :class:`StateDiskFull` naming ``path`` (RocksDB reports it as a plain
    ``Exception`` with its status text); anything else passes unchanged."""
    try:
        yield
    except StateDiskFull:
        raise
    except Exception as exc:
        if is_disk_full(exc):
            raise StateDiskFull(path, exc) from exc
        raise


class HeldPartitions:
    """The partitions a store has held, in a JSON file beside its databases: a database missing for one of
    them was lost (rebuilt, and counted), not new.

    >>> import tempfile
    >>> held = HeldPartitions(Path(tempfile.mkdtemp()) / "partitions.json")
    >>> 3 in held, held.add(3), 3 in held
    (False, None, True)
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> set[int]:
        try:
            return set(json.loads(self.path.read_text()))
        except (OSError, ValueError):
            return set()

    def __contains__(self, partition: int) -> bool:
        return partition in self._read()

    def add(self, partition: int) -> None:
        held = self._read()
        if partition not in held:
            # Written aside and renamed: a write that fails (a full disk) leaves the old list, not an empty one.
            part = self.path.with_name(self.path.name + ".part")
            try:
                part.write_text(json.dumps(sorted(held | {partition})))
                os.replace(part, self.path)
            except OSError as exc:
                part.unlink(missing_ok=True)
                if is_disk_full(exc):
                    raise StateDiskFull(self.path.parent, exc) from exc
                raise


def store_url(worker: WorkerConfig) -> str:
    """The Faust store URL of ``worker.state_store``."""
    if worker.state_store not in STORES:
        raise ValueError(f"unknown state store {worker.state_store!r}: one of {', '.join(STORES)}")
    return f"{worker.state_store}://"


def open_or_rebuild(path: Path, open_db: Callable[[Path], Any], held_before: bool,
                    on_rebuild: Callable[[str, str], None]) -> Any:
    """Open the partition database at ``path`` with ``open_db``; one that is corrupt is moved to
    ``<path>.corrupt`` (replacing an older one) and opened empty, and one missing although this worker
    held it before (``held_before``) is opened empty: ``on_rebuild(reason, detail)`` is told either way.
    An empty database has no changelog offset, so Faust's recovery reads the partition's whole changelog.

    A lock held by another process, a full disk or any other error is raised as is (Faust retries a lock).
    """
    if held_before and not path.exists():
        on_rebuild("missing", f"{path} does not exist")
    try:
        return open_db(path)
    except Exception as exc:
        if is_disk_full(exc):
            raise StateDiskFull(path, exc) from exc
        if not is_corrupt(exc):
            raise
        aside = path.with_name(path.name + ".corrupt")
        shutil.rmtree(aside, ignore_errors=True)
        path.rename(aside)
        on_rebuild("corrupt", f"{str(exc).splitlines()[0]}; moved to {aside}")
        return open_db(path)


def close_quietly(db: Any) -> None:
    """Close a RocksDB handle; a database that refused a write raises on close ("Writer has previous error")
    but is closed (its lock released) all the same."""
    if db is None:
        return
    try:
        db.close()
    except Exception as exc:  # noqa: BLE001 - the handle is dropped either way
        log.debug("closing a state database: %s", str(exc).splitlines()[0] if str(exc) else exc)


def reopen_for_writes(path: Path, db: Any, open_db: Callable[[Path], Any],
                      open_read_only: Callable[[Path], Any]) -> tuple[Any, StateDiskFull | None]:
    """Reopen the database at ``path`` (``db``, its handle, is closed) so that it takes writes again.

    RocksDB keeps the error of a write that failed for a full disk and returns it for every later write,
    also once space is freed, until the database is closed and opened again (rocksdict has no
    ``DB::Resume``). Opening needs space too (it writes the log's records to a table file and a new
    manifest): while the disk is still full that open fails, and ``path`` is opened read-only instead, so
    reads go on (an open for reading writes nothing). Returns the new handle and, when it is the read-only
    one, the :class:`StateDiskFull` to raise: the caller retries later, and reopens again.
    """
    close_quietly(db)
    try:
        with disk_full_as_error(path):
            return open_db(path), None
    except StateDiskFull as full:
        return open_read_only(path), full
