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
from pathlib import Path

from flitfeed.index.edge import EdgeIndex

log = logging.getLogger(__name__)

__all__ = ["snapshot_copy", "optimize_copy"]


def snapshot_copy(index: EdgeIndex, dest: Path) -> Path:
    """A consistent copy of ``index``'s directory at ``dest`` (flushed first; no writes may run meanwhile)."""
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    index.flush()
    shutil.copytree(index.path, dest)
    return dest


def optimize_copy(path: Path, dim: int, *, timeout: float | None = None, **index_kwargs: object) -> bool:
    """Optimize the index at ``path`` in a child process; True if segments were rebuilt.

    ``index_kwargs`` (``quantization``, ``hnsw_m``, ...) must match how the live
    index was opened, since they apply when the graph is built.
    """
    cmd = [sys.executable, "-m", "flitfeed.index.edge_optimizer", str(path), "--dim", str(dim)]
    for key, value in index_kwargs.items():
        if value is not None:
            cmd += [f"--{key.replace('_', '-')}", str(value)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"optimizer process failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout.strip().endswith("optimized=True")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="optimize (build HNSW for) an embedded index directory")
    parser.add_argument("path", type=Path)
    parser.add_argument("--dim", type=int, required=True)
    parser.add_argument("--quantization", default=None)
    parser.add_argument("--hnsw-m", type=int, default=None)
    parser.add_argument("--hnsw-ef-construct", type=int, default=None)
    parser.add_argument("--indexing-threshold-kb", type=int, default=None)
    args = parser.parse_args(argv)
    with EdgeIndex(args.path, args.dim, create=False, quantization=args.quantization, hnsw_m=args.hnsw_m,
                   hnsw_ef_construct=args.hnsw_ef_construct,
                   indexing_threshold_kb=args.indexing_threshold_kb) as index:
        optimized = index.maybe_optimize(0)
    print(f"optimized={optimized}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
