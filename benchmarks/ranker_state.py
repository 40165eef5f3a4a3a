"""The ranker's per-user state at scale (issue 17: 1M users on one ranker, RSS <= 2 GiB, restart <= 60 s).

``python -m benchmarks.ranker_state [--quick] [--users N] [--partitions 6] [--cache 20000]
[--crash-users 20000] [--json PATH]``

Long mode: 1,000,000 users; ``--quick``: 20,000. No broker: the store (``ranker/user_store.py``) is driven
directly, each phase in a fresh process so its RSS is its own:

1. **write** (RocksDB): N users' ``user-states`` records, as the worker publishes them (``UserState`` JSON: a
   384-d taste, 20 seen flit ids, 0-3 muted authors), decoded and stored exactly as a ranker rebuilding a
   partition from the topic does (``decode_internal`` → ``HeldState.of`` → ``apply_records``, 1,000 per
   atomic batch with the offset). Its rate is the rebuild's, less the Kafka fetch. 2,000 distinct records
   are built and reused with each user's own id (building a million 384-float JSON records alone would
   take minutes); the store's cache is not what is measured here.
2. **crash**: a process updates 20,000 users (``--crash-users``; the next records of the topic) and is
   SIGKILLed: those writes are only in RocksDB's write-ahead log, as a ranker killed mid-stream leaves them.
3. **restart** (RocksDB): opens the N users' partitions as a restarted ranker would, times it to the first
   ``get`` served (the write-ahead log replayed; the restart's cost before the topic's tail, which is read
   at step 1's rate), then ``get`` latency for random users with the LRU cold (decoded from RocksDB; the
   OS page cache is warm, as it is on a ranker restarted on the same host), the same users again with it
   warm, and ``get_many`` of a poll's 200 users. RSS at ready and at the end (VmRSS, VmHWM) over the
   process's RSS before opening.
4. **memory**: ``MemoryUserStore`` (today's ranker) with min(N, 100,000) users: its RSS per user.

Bytes per user on disk: the partition directories after a flush, divided by N. Progress is printed while
it runs; the data directory is deleted at the end unless ``--dir`` names one.
"""

from __future__ import annotations

import multiprocessing
import shutil
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from benchmarks.common import bench_parser, machine_info, percentiles, print_table, rss_mib, write_json

DISTINCT = 2000
VERSION = "minilm@1"
PLACEHOLDER = "__user_id__"


def user_id(i: int) -> str:
    return f"user-{i:08d}"


def partition_of(uid: str, partitions: int) -> int:
    return zlib.crc32(uid.encode()) % partitions


def templates(dim: int, seen: int, seed: int = 7) -> list[bytes]:
    """``DISTINCT`` ``UserState`` records (JSON bytes as on the topic) with a placeholder user id."""
    from flitfeed.streams.events import UserState

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(DISTINCT):
        taste = rng.normal(size=dim)
        taste /= np.linalg.norm(taste)
        state = UserState(user_id=PLACEHOLDER, taste=taste.tolist(), positives=int(rng.integers(1, seen + 1)),
                          negatives=int(rng.integers(0, 5)), last_ts=1.7e9, updated_at=1.7e9,
                          seen=[f"flit-{int(f):010x}" for f in rng.integers(0, 200_000, size=seen)],
                          muted_authors=[f"author-{int(a):06d}"
                                         for a in rng.integers(0, 50_000, size=rng.integers(0, 4))],
                          trigger_id=f"ev-{int(rng.integers(0, 2**48)):012x}", trigger_ts=1.7e9, model_version=VERSION)
        out.append(state.to_bytes())
    return out


def records(n: int, partitions: int, dim: int, seen: int) -> Iterator[tuple[int, str, bytes]]:
    """``(partition, user id, record)`` for users 0..n-1."""
    base = templates(dim, seen)
    marker = PLACEHOLDER.encode()
    for i in range(n):
        uid = user_id(i)
        yield partition_of(uid, partitions), uid, base[i % DISTINCT].replace(marker, uid.encode())


def to_held(value: bytes | None):  # noqa: ANN201 - HeldState | None
    """What a ranker rebuilding a partition does with one record."""
    from flitfeed.ranker.held import HeldState
    from flitfeed.streams.events import DecodeError, UserState, decode_internal

    try:
        return HeldState.of(decode_internal(value, UserState), VERSION)
    except DecodeError:
        return None


def fill(store: Any, n: int, partitions: int, dim: int, seen: int, label: str) -> float:
    """Apply n users' records to ``store`` as a rebuild does; seconds taken. Prints progress every 5%."""
    from flitfeed.ranker.user_store import apply_records

    # Offsets go on from what the store applied: a second fill is the next records of the same topic.
    offsets = [store.open_partition(p) for p in range(partitions)]
    pending: list[list[tuple[int, bytes]]] = [[] for _ in range(partitions)]
    step, start = max(1, n // 20), time.perf_counter()

    def apply(p: int) -> None:
        apply_records(store, p, pending[p], to_held, batch=1000)
        pending[p] = []

    for i, (p, _, value) in enumerate(records(n, partitions, dim, seen), 1):
        pending[p].append((offsets[p], value))
        offsets[p] += 1
        if len(pending[p]) == 1000:
            apply(p)
        if i % step == 0:
            elapsed = time.perf_counter() - start
            print(f"  {label}: {i:,}/{n:,} users, {elapsed:.0f} s, {i / elapsed:,.0f}/s, RSS {rss_mib():,.0f} MiB",
                  flush=True)
    for p in range(partitions):
        apply(p)
    return time.perf_counter() - start


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def phase_write(directory: str, n: int, partitions: int, dim: int, seen: int, cache: int) -> dict[str, Any]:
    from flitfeed.ranker.user_store import RocksUserStore

    store = RocksUserStore(directory, cache_users=cache)
    seconds = fill(store, n, partitions, dim, seen, "write")
    assert store.count() == n, (store.count(), n)
    store.flush()
    store.close()
    disk = dir_bytes(Path(directory))
    return {"phase": "write (rebuild from records)", "users": n, "seconds": round(seconds, 1),
            "users_per_s": round(n / seconds), "disk_mib": round(disk / 2**20, 1),
            "disk_bytes_per_user": round(disk / n),
            "peak_rss_mib": round(rss_mib(field="VmHWM"), 1)}


def phase_crash(directory: str, n: int, partitions: int, dim: int, seen: int, cache: int) -> None:
    """Update the first n users (new records after the written ones) and die by SIGKILL: no flush, no close,
    the memtables only in RocksDB's write-ahead log, as a ranker killed mid-stream leaves them."""
    import os
    import signal

    from flitfeed.ranker.user_store import RocksUserStore

    store = RocksUserStore(directory, cache_users=cache)
    fill(store, n, partitions, dim, seen, "crash")
    print(f"  crash: {n:,} updates applied, applied offsets {[store.applied_offset(p) for p in range(partitions)]}, "
          f"SIGKILL", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def timed(calls: list[Callable[[], Any]]) -> list[float]:
    out = []
    for call in calls:
        t = time.perf_counter()
        call()
        out.append(time.perf_counter() - t)
    return out


def phase_restart(directory: str, n: int, partitions: int, cache: int, sample: int) -> list[dict[str, Any]]:
    from flitfeed.ranker.user_store import RocksUserStore

    base = rss_mib()
    t = time.perf_counter()
    store = RocksUserStore(directory, cache_users=cache)
    for p in range(partitions):
        store.open_partition(p)
    first = user_id(0)
    assert store.get(partition_of(first, partitions), first) is not None
    ready_s = time.perf_counter() - t
    rss_ready = rss_mib()
    assert store.count() == n, (store.count(), n)
    applied = [store.applied_offset(p) for p in range(partitions)]
    print(f"  restart: {store.count():,} users, applied offsets {applied}", flush=True)
    rng = np.random.default_rng(1)
    picked = [user_id(int(i)) for i in rng.choice(n, size=min(sample, n), replace=False)]
    keys = [(partition_of(u, partitions), u) for u in picked]

    def get(key: tuple[int, str]) -> Callable[[], Any]:
        return lambda: store.get(*key)

    cold = timed([get(k) for k in keys])
    hot = keys[-min(cache, len(keys)):]  # the users the cold pass left in the LRU
    warm = timed([get(k) for k in hot])
    others = [user_id(int(i)) for i in rng.choice(n, size=min(n, 200 * 20), replace=False)]
    batches = [[(partition_of(u, partitions), u) for u in others[j:j + 200]] for j in range(0, len(others), 200)]
    cached_before = len(store.cache)
    many = timed([(lambda b=b: store.get_many(b)) for b in batches])
    rss_end = rss_mib()
    store.close()
    common = {"users": n, "cache_users": cache}
    return [
        {"phase": "restart after kill -9: open to first get", **common, "seconds": round(ready_s, 3),
         "records_applied": sum(applied),
         "rss_mib": round(rss_ready, 1), "rss_over_base_mib": round(rss_ready - base, 1)},
        {"phase": "get, LRU cold", **common, "samples": len(cold), **percentiles(cold)},
        {"phase": "get, LRU warm", **common, "samples": len(warm), **percentiles(warm)},
        {"phase": "get_many of 200, LRU mostly cold", **common, "samples": len(many), **percentiles(many),
         "cached_before": cached_before},
        {"phase": "restart: after the gets", **common, "rss_mib": round(rss_end, 1),
         "rss_over_base_mib": round(rss_end - base, 1), "rss_bytes_per_user": round((rss_end - base) * 2**20 / n),
         "peak_rss_mib": round(rss_mib(field="VmHWM"), 1)},
    ]


def phase_memory(n: int, partitions: int, dim: int, seen: int) -> dict[str, Any]:
    from flitfeed.ranker.user_store import MemoryUserStore

    templates(dim, seen)  # the templates' own memory is not the users'
    store = MemoryUserStore()
    base = rss_mib()
    seconds = fill(store, n, partitions, dim, seen, "memory")
    grown = rss_mib() - base
    assert store.count() == n
    return {"phase": "memory store (today's ranker)", "users": n, "seconds": round(seconds, 1),
            "users_per_s": round(n / seconds), "rss_over_base_mib": round(grown, 1),
            "rss_bytes_per_user": round(grown * 2**20 / n), "projected_1m_gib": round(grown * 1e6 / n / 1024, 2)}


def _child(queue: Any, fn: Callable[..., Any], args: tuple) -> None:
    queue.put(fn(*args))


def in_process(fn: Callable[..., Any], *args: Any, killed: bool = False) -> Any:
    """``fn(*args)`` in a fresh process (spawned: nothing of this one's memory), its result back; with
    ``killed``, a process that ends by SIGKILL, with no result."""
    import signal

    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, fn, args))
    proc.start()
    if killed:
        proc.join()
        if proc.exitcode != -signal.SIGKILL:
            raise RuntimeError(f"{fn.__name__} ended with exit code {proc.exitcode}, not by SIGKILL")
        return None
    result = queue.get()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"{fn.__name__} failed with exit code {proc.exitcode}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser("the ranker's per-user state at scale: disk, RSS, restart, get latency")
    parser.add_argument("--users", type=int, default=None, help="users (default 1,000,000; --quick 20,000)")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--seen", type=int, default=20)
    parser.add_argument("--cache", type=int, default=20_000, help="the LRU's users (ranker_state_cache_users)")
    parser.add_argument("--samples", type=int, default=None, help="gets timed (default 20,000; --quick 2,000)")
    parser.add_argument("--memory-users", type=int, default=None, help="users in the memory store (<= 100,000)")
    parser.add_argument("--crash-users", type=int, default=20_000,
                        help="users updated after the write, then the process SIGKILLed before the restart")
    parser.add_argument("--dir", type=Path, default=None, help="keep the RocksDB files here")
    args = parser.parse_args(argv)
    n = args.users or (20_000 if args.quick else 1_000_000)
    samples = args.samples or (2_000 if args.quick else 20_000)
    memory_users = args.memory_users or min(n, 100_000)
    directory = args.dir or Path(tempfile.mkdtemp(prefix="ranker-state-"))
    print(f"ranker state: {n:,} users, {args.partitions} partitions, {args.dim}-d, {args.seen} seen, "
          f"cache {args.cache:,}, in {directory}; load {machine_info()['loadavg']}", flush=True)
    try:
        rows = [in_process(phase_write, str(directory), n, args.partitions, args.dim, args.seen, args.cache)]
        print_table("write", rows)
        in_process(phase_crash, str(directory), min(n, args.crash_users), args.partitions, args.dim, args.seen,
                   args.cache, killed=True)
        rows += in_process(phase_restart, str(directory), n, args.partitions, args.cache, samples)
        rows.append(in_process(phase_memory, memory_users, args.partitions, args.dim, args.seen))
    finally:
        if args.dir is None:
            shutil.rmtree(directory, ignore_errors=True)
    print_table(f"ranker state, {n:,} users", rows)
    print(f"load after: {machine_info()['loadavg']}", flush=True)
    if args.json:
        write_json(args.json, "ranker_state", {"quick": args.quick, "users": n, "partitions": args.partitions,
                                               "dim": args.dim, "seen": args.seen, "cache": args.cache,
                                               "samples": samples, "memory_users": memory_users}, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
