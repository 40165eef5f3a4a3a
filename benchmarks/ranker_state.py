"""The ranker's per-user state at scale (issue 17: 1M users on one ranker, RSS <= 2 GiB, restart <= 60 s).

``python -m benchmarks.ranker_state [--quick] [--users N] [--partitions 6] [--cache 20000]
[--crash-users 20000] [--json PATH]``

``python -m benchmarks.ranker_state --service [--quick] [--users N] [--flits 20000] [--requests 20000]
[--bootstrap HOST:PORT] [--json PATH]``: the whole ranker (see *The whole ranker* below).

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

**The whole ranker** (``--service``; needs a broker, ``--bootstrap``): a real ``flitfeed ranker`` process
(RocksDB user states, hashing encoder, its embedded index) on topics of its own:

1. N users' ``user-states`` records (as above, produced with confluent-kafka in batches, keyed and
   partitioned like the worker's) and a catalogue of ``--flits`` flit vectors (384-d, fresh) on
   ``flit-vectors``; the ranker group's offsets are committed at the end of ``user-states``, as a ranker
   that served every one of them leaves them;
2. **first start** on an empty data dir, timed to /readyz (index open and caught up with ``flit-vectors``,
   partitions assigned: each partition's store rebuilt from the topic up to the committed offset, no
   feeds built); RSS at ready and its peak (VmHWM), the records its recovery applied, the disk;
3. SIGKILL, and **restart** on the same data dir, timed to /readyz the same way (the group first waits for
   the dead member's session, ``GROUP_SESSION_TIMEOUT_S``);
4. **serving**: ``--requests`` feed requests for users drawn at random among the N (so the LRU is mostly
   cold), until every feed is published: feeds/s, the cold starts among them (a user whose state the
   ranker did not find), RSS at the end and its peak over the phase.

The topics and the data dir are deleted at the end.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
import urllib.request
import uuid
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from benchmarks.common import (bench_parser, machine_info, percentiles, print_table, rss_mib, setup_logging,
                               write_json)
from flitfeed.kafka.writing import produce_with_room

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


# --- the whole ranker (--service) -------------------------------------------------------------------------
def scrape(port: int, name: str, **labels: str) -> float:
    """The sum of a metric's samples matching ``labels`` (NaN while the server does not answer)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except Exception:  # noqa: BLE001
        return float("nan")
    return sum(x.value for fam in text_string_to_metric_families(body) for x in fam.samples
               if x.name == name and all(x.labels.get(k) == v for k, v in labels.items()))


def produce_catalogue(settings: Any, producer: Any, n: int, dim: int) -> None:
    """``n`` fresh flits with random unit vectors on ``flit-vectors``, as the worker writes them; their ids
    are the ones the users' seen lists draw from (``flit-<hex>``)."""
    from datetime import datetime, timezone

    from flitfeed.streams.events import Flit, FlitVector
    from flitfeed.streams.topics import TOPIC_FLIT_VECTORS

    rng = np.random.default_rng(3)
    now = datetime.now(timezone.utc)
    topic = settings.kafka.topic(TOPIC_FLIT_VECTORS)
    for i in range(n):
        v = rng.normal(size=dim)
        flit = Flit(flit_id=f"flit-{i:010x}", author_id=f"author-{i % 5000:06d}", text=f"flit {i} about things",
                    created_at=now)
        record = FlitVector(flit=flit, vector=(v / np.linalg.norm(v)).tolist(), model_version=VERSION,
                            embedded_at=now)
        produce_with_room(producer, topic, key=flit.flit_id.encode(), value=record.to_bytes(), wait_s=0.1)
    assert producer.flush(120) == 0, "flit vectors not delivered"


def produce_states(settings: Any, producer: Any, n: int, dim: int, seen: int) -> tuple[int, float]:
    """N users' ``user-states`` records (the templates of :func:`records`); (bytes, seconds). Progress every 5%."""
    from flitfeed.streams.topics import TOPIC_USER_STATES

    topic = settings.kafka.topic(TOPIC_USER_STATES)
    step, total, started = max(1, n // 20), 0, time.perf_counter()
    for i, (_, uid, value) in enumerate(records(n, 1, dim, seen), 1):
        produce_with_room(producer, topic, key=uid.encode(), value=value, wait_s=0.1)
        total += len(value)
        if i % 1000 == 0:
            producer.poll(0)
        if i % step == 0:
            elapsed = time.perf_counter() - started
            print(f"  user-states: {i:,}/{n:,} records, {total / 2**20:,.0f} MiB, {elapsed:.0f} s, "
                  f"{i / elapsed:,.0f}/s", flush=True)
    assert producer.flush(600) == 0, "user states not delivered"
    return total, time.perf_counter() - started


def commit_at_end(settings: Any) -> int:
    """Commit the ranker group's offsets at the end of every ``user-states`` partition; the records there."""
    from confluent_kafka import Consumer, TopicPartition

    from flitfeed.kafka.config import consumer_config
    from flitfeed.streams.topics import TOPIC_USER_STATES

    topic = settings.kafka.topic(TOPIC_USER_STATES)
    consumer = Consumer(consumer_config(settings.kafka, group_id=settings.kafka.ranker_group))
    try:
        ends = [TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1])
                for p in range(settings.kafka.partitions)]
        consumer.commit(offsets=ends, asynchronous=False)
    finally:
        consumer.close()
    return sum(tp.offset for tp in ends)


def start_ranker(name: str, settings: Any, log_dir: Path, port: int, timeout_s: float) -> tuple[Any, float]:
    """A ``flitfeed ranker`` process, once ready (its partitions assigned); progress every 10 s while it is not."""
    from benchmarks.service import start_until_ready

    return start_until_ready(
        "ranker", name, settings, log_dir, port, timeout_s, "partitions_assigned",
        lambda svc: (f"{scrape(port, 'flitfeed_state_restored_records_total'):,.0f} user-states records applied, "
                     f"{scrape(port, 'flitfeed_index_points'):,.0f} flits indexed, RSS {rss_mib(svc.pid):,.0f} MiB"))


def serve_requests(settings: Any, svc: Any, port: int, n_users: int, n_requests: int,
                   timeout_s: float) -> dict[str, Any]:
    """``n_requests`` feed requests for random users, until every feed is published; RSS sampled meanwhile."""
    from confluent_kafka import Producer

    from flitfeed.kafka.config import producer_config
    from flitfeed.streams.events import FeedRequest
    from flitfeed.streams.topics import TOPIC_FEED_REQUESTS

    def published() -> float:
        return scrape(port, "flitfeed_feeds_published_total", trigger="request")

    before, cold_before = published(), scrape(port, "flitfeed_feeds_published_total", trigger="request",
                                              cold_start="true")
    rng = np.random.default_rng(9)
    producer = Producer(producer_config(settings.kafka, **{"linger.ms": 20}))
    topic = settings.kafka.topic(TOPIC_FEED_REQUESTS)
    started = time.perf_counter()
    for i, u in enumerate(rng.integers(0, n_users, size=n_requests)):
        request = FeedRequest(request_id=f"bench-{i:07d}", user_id=user_id(int(u)), k=10)
        produce_with_room(producer, topic, key=request.user_id.encode(), value=request.to_bytes(), wait_s=0.1)
    assert producer.flush(60) == 0, "feed requests not delivered"
    peak_rss, last_print, done = 0.0, started, 0.0
    while done < n_requests:
        now = time.perf_counter()
        if not svc.alive():
            raise RuntimeError(f"the ranker exited while serving:\n{svc.log_tail(30)}")
        if now - started > timeout_s:
            raise RuntimeError(f"{done:,.0f} of {n_requests:,} feeds after {timeout_s:.0f} s")
        peak_rss = max(peak_rss, rss_mib(svc.pid))
        done = published() - before
        if now - last_print >= 10:
            print(f"  serving: {done:,.0f}/{n_requests:,} feeds, {now - started:.0f} s, RSS {rss_mib(svc.pid):,.0f} MiB",
                  flush=True)
            last_print = now
        time.sleep(0.5)
    seconds = time.perf_counter() - started
    cold = scrape(port, "flitfeed_feeds_published_total", trigger="request", cold_start="true") - cold_before
    return {"start": "serving feed requests (random users)", "requests": n_requests, "seconds": round(seconds, 1),
            "feeds_per_s": round(n_requests / seconds), "cold_starts": int(cold),
            "rss_mib": round(rss_mib(svc.pid)), "peak_rss_mib": round(max(peak_rss, 0)),
            "hwm_mib": round(rss_mib(svc.pid, field="VmHWM"))}


def service_mode(args: Any, n: int) -> list[dict[str, Any]]:
    """The whole ranker's first start, restart after kill -9 and serving at ``n`` users (module docstring)."""
    from confluent_kafka import Producer

    from benchmarks.service import free_port
    from flitfeed.kafka.admin import create_topics, delete_run_topics, wait_for_broker
    from flitfeed.kafka.config import producer_config
    from flitfeed.settings import KafkaConfig, Settings

    n_flits = args.flits or (2_000 if args.quick else 20_000)
    n_requests = args.requests or (2_000 if args.quick else 20_000)
    timeout_s = args.timeout or (300.0 if args.quick else 3600.0)
    wait_for_broker(KafkaConfig(bootstrap_servers=args.bootstrap), timeout_s=60)
    tag, port = uuid.uuid4().hex[:8], free_port()
    run_dir = Path(tempfile.mkdtemp(prefix="flitfeed-bench-ranker-"))
    s = Settings(bootstrap_servers=args.bootstrap, topic_prefix=f"bench{tag}-", app_id=f"bench-ranker-{tag}",
                 ranker_group=f"bench-ranker-{tag}", data_dir=run_dir / "data", ranker_metrics_port=port,
                 ranker_state_store="rocksdb", ranker_state_cache_users=args.cache, encoder="hashing",
                 vector_dim=args.dim)  # type: ignore[arg-type]
    print(f"ranker service: {n:,} users, {n_flits:,} flits, {s.kafka.partitions} partitions, "
          f"topics {s.kafka.topic('user-states')} ...; load {machine_info()['loadavg']}", flush=True)
    create_topics(s.kafka)
    rows: list[dict[str, Any]] = []
    svc = None
    try:
        producer = Producer(producer_config(s.kafka, **{"linger.ms": 50, "batch.size": 1 << 20,
                                                        "queue.buffering.max.kbytes": 1 << 20}))
        produce_catalogue(s, producer, n_flits, args.dim)
        print(f"  flit-vectors: {n_flits:,} flits", flush=True)
        state_bytes, produce_s = produce_states(s, producer, n, args.dim, args.seen)
        committed = commit_at_end(s)
        print(f"  {n:,} user states ({state_bytes / 2**20:,.0f} MiB of JSON) in {produce_s:.0f} s; "
              f"group committed at {committed:,}", flush=True)

        def row(start: str, ready_s: float) -> dict[str, Any]:
            time.sleep(1.0)  # the gauges' next export
            state = s.data_dir / "ranker-state"
            out = {"start": start, "users": n, "flits": n_flits, "ready_s": round(ready_s, 1),
                   "records_applied": int(scrape(port, "flitfeed_state_restored_records_total")),
                   "users_in_state": int(scrape(port, "flitfeed_users_in_state")),
                   "rss_mib": round(rss_mib(svc.pid)), "hwm_mib": round(rss_mib(svc.pid, field="VmHWM")),
                   "state_disk_mib": round(dir_bytes(state) / 2**20, 1) if state.exists() else 0.0,
                   "load": machine_info()["loadavg"]}
            print(f"  {start}: ready in {ready_s:.1f} s, RSS {out['rss_mib']:,} MiB (peak {out['hwm_mib']:,}), "
                  f"{out['records_applied']:,} records applied, {out['users_in_state']:,} users held, "
                  f"{out['state_disk_mib']:,.0f} MiB of user state on disk; load {out['load']}", flush=True)
            return out

        print("first start (empty data dir) ...", flush=True)
        svc, ready_s = start_ranker("ranker-first", s, run_dir, port, timeout_s)
        rows.append(row("first start (empty data dir)", ready_s))
        svc.stop(signal.SIGKILL)
        print("restart after kill -9 ...", flush=True)
        svc, ready_s = start_ranker("ranker-restart", s, run_dir, port, timeout_s)
        rows.append(row("restart after kill -9", ready_s))
        print(f"serving {n_requests:,} feed requests ...", flush=True)
        served = serve_requests(s, svc, port, n, n_requests, timeout_s)
        served |= {"users": n, "flits": n_flits, "users_in_state": int(scrape(port, "flitfeed_users_in_state")),
                   "load": machine_info()["loadavg"]}
        print(f"  served {n_requests:,} feeds in {served['seconds']:.0f} s ({served['feeds_per_s']:,}/s), "
              f"{served['cold_starts']:,} cold starts, RSS {served['rss_mib']:,} MiB (peak {served['peak_rss_mib']:,}); "
              f"load {served['load']}", flush=True)
        rows.append(served)
    finally:
        if svc is not None:
            svc.stop(signal.SIGTERM, timeout=60)
        delete_run_topics(s.kafka)
        shutil.rmtree(run_dir, ignore_errors=True)
    return rows


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
    parser.add_argument("--service", action="store_true",
                        help="the whole ranker (a real `flitfeed ranker` on a broker) instead of the store alone")
    parser.add_argument("--bootstrap", default=os.environ.get("FLITFEED_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
                        help="--service: the broker")
    parser.add_argument("--flits", type=int, default=None, help="--service: the catalogue (default 20,000; quick 2,000)")
    parser.add_argument("--requests", type=int, default=None,
                        help="--service: feed requests served after the restart (default 20,000; quick 2,000)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="--service: seconds a start or the serving may take (default 3600; quick 300)")
    args = parser.parse_args(argv)
    n = args.users or (20_000 if args.quick else 1_000_000)
    if args.service:
        setup_logging()
        print(f"machine: {json.dumps(machine_info())}", flush=True)
        rows = service_mode(args, n)
        print_table(f"the whole ranker at {n:,} users", rows)
        if args.json:
            write_json(args.json, "ranker_state_service", {"quick": args.quick, "users": n, "flits": rows[0]["flits"],
                                                           "requests": rows[-1]["requests"], "dim": args.dim,
                                                           "seen": args.seen, "cache": args.cache}, rows)
        return 0
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
