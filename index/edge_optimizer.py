"""Building the HNSW graph of an embedded index in another process, so searches never stall.

Qdrant Edge's ``optimize()`` holds the GIL for its whole run (100k 384-d points:
about two minutes on 2 cores), so running it on a thread of the process that
serves searches freezes that process. Instead:

1. the owner flushes its :class:`~flitfeed.index.edge.EdgeIndex` and copies the
   shard directory (:func:`snapshot_copy`; a second of file copying per 100k
   points, no engine call);
2. a child process opens the copy and optimizes it (:func:`optimize_copy`,
   ``python -m flitfeed.index.edge_optimizer DIR``) while the owner keeps
   serving and writing;
3. the owner swaps the optimized copy in (:meth:`EdgeIndex.swap_in`: close,
   rename, load; tens of ms) and re-applies what it wrote since the copy: for
   a replica of the ``flit-vectors`` log that is "rewind the stored offsets to
   the copy's and replay", idempotent by construction.

``benchmarks/index.py`` measures both schedules (search latency while indexing,
and the swap pause).

>>> import tempfile, numpy as np
>>> from flitfeed.index.base import IndexedFlit
>>> from flitfeed.index.edge import EdgeIndex
>>> root = Path(tempfile.mkdtemp())
>>> idx = EdgeIndex(root / "live", dim=4)
>>> idx.upsert_many([IndexedFlit("f1", "a", 1.7e9, np.ones(4, dtype=np.float32) / 2)])
>>> copy = snapshot_copy(idx, root / "copy")
>>> optimize_copy(copy, dim=4)
False
>>> idx.swap_in(copy)
>>> idx.count()
1
>>> idx.close()
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from flitfeed.index.edge import EdgeIndex

log = logging.getLogger(__name__)

__all__ = ["snapshot_copy", "optimize_copy", "optimize_command", "IndexRebuilder"]


def snapshot_copy(index: EdgeIndex, dest: Path) -> Path:
    """A consistent copy of ``index``'s directory at ``dest`` (flushed first; no writes may run meanwhile)."""
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    index.flush()
    shutil.copytree(index.path, dest)
    return dest


def optimize_command(path: Path, dim: int, **index_kwargs: object) -> list[str]:
    """The child process's command line (see :func:`optimize_copy`)."""
    cmd = [sys.executable, "-m", "flitfeed.index.edge_optimizer", str(path), "--dim", str(dim)]
    for key, value in index_kwargs.items():
        if value is True:
            cmd.append(f"--{key.replace('_', '-')}")
        elif value is not None and value is not False:
            cmd += [f"--{key.replace('_', '-')}", str(value)]
    return cmd


def optimize_copy(path: Path, dim: int, *, timeout: float | None = None, **index_kwargs: object) -> bool:
    """Optimize the index at ``path`` in a child process; True if segments were rebuilt.

    ``index_kwargs`` (``quantization``, ``hnsw_m``, ...) must match how the live
    index was opened, since they apply when the graph is built.
    """
    done = subprocess.run(optimize_command(path, dim, **index_kwargs), capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"optimizer process failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout.strip().endswith("optimized=True")


class IndexRebuilder:
    """Rebuilds a live replica's HNSW graph in a child process, polled from its owner's loop.

    Every ``interval_s`` :meth:`poll` checks how many points are unindexed; from
    ``min_unindexed`` on it copies the index (a short pause: flush + file copy),
    remembers the log position the copy reflects (``position()``), and starts
    the optimizer process. A later :meth:`poll` that finds the child done swaps
    the copy in and calls ``rewind(position)`` so the owner re-applies what it
    wrote since the copy (idempotent upserts). Single-threaded, like its owner.

    >>> import tempfile, numpy as np
    >>> from flitfeed.index.base import IndexedFlit
    >>> idx = EdgeIndex(Path(tempfile.mkdtemp()) / "live", dim=4, indexing_threshold_kb=1)
    >>> idx.upsert_many([IndexedFlit(f"f{i}", "a", 1.7e9, np.random.default_rng(i).random(4).astype("f4") + 0.1)
    ...                  for i in range(200)])
    >>> rewound = []
    >>> r = IndexRebuilder(idx, position=lambda: {0: 200}, rewind=rewound.append, min_unindexed=100,
    ...                    interval_s=0.0, indexing_threshold_kb=1)
    >>> r.poll()                                   # starts the child
    'started'
    >>> r.wait()                                   # (a service just polls again later)
    'swapped'
    >>> rewound, idx.unindexed_count(), idx.count()
    ([{0: 200}], 0, 200)
    >>> idx.close()
    """

    def __init__(self, index: EdgeIndex, position: Callable[[], dict[int, int]],
                 rewind: Callable[[dict[int, int]], None], *, min_unindexed: int, interval_s: float,
                 clock: Callable[[], float] = time.monotonic, **index_kwargs: object) -> None:
        self.index = index
        self._position = position
        self._rewind = rewind
        self.min_unindexed = min_unindexed
        self.interval_s = interval_s
        self._clock = clock
        # The copy is built as the live index was opened (quantization, on-disk storage, graph shape).
        self._kwargs = {**index.build_options, **index_kwargs}
        self._next_check = clock() + interval_s
        self._child: subprocess.Popen | None = None
        self._copy = index.path.with_name(index.path.name + ".rebuild")
        self._copy_position: dict[int, int] = {}
        #: Seconds the owner was paused by the last copy and the last swap (for logs and metrics).
        self.last_copy_s = 0.0
        self.last_swap_s = 0.0

    @property
    def running(self) -> bool:
        return self._child is not None

    def poll(self) -> str:
        """Advance the rebuild; returns ``idle``, ``started``, ``running``, ``swapped`` or ``failed``."""
        if self._child is not None:
            if self._child.poll() is None:
                return "running"
            return self._finish()
        if self.min_unindexed <= 0 or self._clock() < self._next_check:
            return "idle"
        self._next_check = self._clock() + self.interval_s
        if self.index.unindexed_count() < self.min_unindexed:
            return "idle"
        started = time.perf_counter()
        self._copy_position = dict(self._position())
        snapshot_copy(self.index, self._copy)
        self.last_copy_s = time.perf_counter() - started
        self._child = subprocess.Popen(optimize_command(self._copy, self.index.dim, **self._kwargs),
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        log.info("index rebuild started", extra={"copy_s": round(self.last_copy_s, 3)})
        return "started"

    def wait(self, timeout: float | None = None) -> str:
        """Block until the child is done, then finish as :meth:`poll` would (tests, shutdown)."""
        if self._child is None:
            return "idle"
        self._child.wait(timeout)
        return self._finish()

    def _finish(self) -> str:
        child, self._child = self._child, None
        assert child is not None
        out, err = child.communicate()
        if child.returncode != 0:
            log.error("index rebuild failed; keeping the live index", extra={"stderr": err[-2000:]})
            shutil.rmtree(self._copy, ignore_errors=True)
            return "failed"
        started = time.perf_counter()
        self.index.swap_in(self._copy)
        self._rewind(self._copy_position)
        self.last_swap_s = time.perf_counter() - started
        log.info("index rebuild swapped in", extra={"swap_s": round(self.last_swap_s, 3)})
        return "swapped"

    def close(self) -> None:
        """Stop a running child and drop its copy (the live index is untouched)."""
        if self._child is not None:
            self._child.kill()
            self._child.wait()
            self._child = None
        shutil.rmtree(self._copy, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="optimize (build HNSW for) an embedded index directory")
    parser.add_argument("path", type=Path)
    parser.add_argument("--dim", type=int, required=True)
    parser.add_argument("--quantization", default=None)
    parser.add_argument("--hnsw-m", type=int, default=None)
    parser.add_argument("--hnsw-ef-construct", type=int, default=None)
    parser.add_argument("--indexing-threshold-kb", type=int, default=None)
    parser.add_argument("--on-disk", action="store_true")
    args = parser.parse_args(argv)
    with EdgeIndex(args.path, args.dim, create=False, quantization=args.quantization, hnsw_m=args.hnsw_m,
                   hnsw_ef_construct=args.hnsw_ef_construct,
                   indexing_threshold_kb=args.indexing_threshold_kb, on_disk=args.on_disk) as index:
        optimized = index.maybe_optimize(0)
    print(f"optimized={optimized}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
