"""RocksDB on a disk that fills up, as measured on a real full tmpfs (tests/integration/test_full_disk.py).

A real rocksdict database behind a wrapper that adds what a full disk does to it:

- a write fails with RocksDB's status text while the disk is full;
- after one failed, every later write fails the same way, also once space is freed, until the database is
  closed and opened again (its close then raises "Writer has previous error" but closes);
- opening it for writing fails while the disk is full (the open writes a table file and a manifest);
  opening it read-only works (it writes nothing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

ENOSPC_TEXT = "IO error: No space left on device: While appending to file: 000004.log: No space left on device"


class Disk:
    """The one switch the tests flip: whether the disk has space."""

    def __init__(self) -> None:
        self.full = False
        self.opened: list[str] = []  # "rw" or "ro", per open


class FillingDb:
    """A real database (``db``) on ``disk``."""

    def __init__(self, db: Any, disk: Disk, read_only: bool = False) -> None:
        self._db, self._disk, self._read_only = db, disk, read_only
        self.refusing = False

    def _write(self, do: Callable[[], Any]) -> Any:
        if self._read_only:
            raise Exception("Not implemented: Not supported operation in read only mode.")
        if self._disk.full or self.refusing:
            self.refusing = True
            raise Exception(ENOSPC_TEXT)
        return do()

    def put(self, key: bytes, value: bytes) -> None:
        self._write(lambda: self._db.put(key, value))

    def write(self, batch: Any) -> None:
        self._write(lambda: self._db.write(batch))

    def close(self) -> None:
        self._db.close()
        if self.refusing:
            raise Exception("IO error: Writer has previous error.; IO error: Writer has previous error.")

    def __getitem__(self, key: Any) -> Any:
        return self._db[key]

    def __getattr__(self, name: str) -> Any:  # get, key_may_exist, property_int_value, ...
        return getattr(self._db, name)


def opener(disk: Disk, open_db: Callable[[Path], Any]) -> Callable[[Path], FillingDb]:
    """``open_db`` (read-write) on ``disk``: refused while it is full."""

    def open_rw(path: Path) -> FillingDb:
        if disk.full:
            raise Exception(f"IO error: No space left on device: While appending to file: {path}/000009.sst: "
                            f"No space left on device")
        disk.opened.append("rw")
        return FillingDb(open_db(path), disk)

    return open_rw


def read_only_opener(disk: Disk, open_db: Callable[[Path], Any]) -> Callable[[Path], FillingDb]:
    def open_ro(path: Path) -> FillingDb:
        disk.opened.append("ro")
        return FillingDb(open_db(path), disk, read_only=True)

    return open_ro
