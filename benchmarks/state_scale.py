"""State that scales (issue 17): a real worker holding N users, in memory vs RocksDB: RSS, disk, restart to ready.

``python -m benchmarks.state_scale [--quick] [--users N] [--events 20] [--stores rocksdb,memory] [--json PATH]``

Needs a running broker (``make bench`` starts the project's own; ``--bootstrap``). Long mode: 1,000,000 users
(the issue's target: worker RSS <= 2 GiB, restart to ready <= 60 s); ``--quick``: 20,000 users.

For each store the benchmark:

1. writes N profiles of ``--events`` interactions each straight to the profiles table's changelog topic, exactly
   as the worker writes them (``UserProfile.to_bytes()`` as they are, keys through Faust's JSON codec, partitioned
   like the worker's own records): what a worker that applied N x events interactions leaves behind. The profiles
   are real ones (``UserProfile.learn_one``, 384-d vectors); 2,000 distinct ones are built and reused with
   each user's own ids (building a million through ``learn_one`` alone would take an hour);
2. starts a real worker (``flitfeed worker``, hashing encoder, no flits) on an empty data dir and times it
   to /readyz (which waits for the table's recovery): the whole changelog is read;
3. SIGKILLs it and starts it again on the same data dir (with ``memory`` the whole changelog is read again,
   with ``rocksdb`` the worker opens its files and reads only the tail), then stops that one with SIGTERM and
   starts it once more (a kill -9 costs a restart the group's session timeout, a SIGTERM does not);
4. reports each worker's RSS when ready and its peak (VmHWM), the RocksDB files' size, and the changelog
   records each start applied (``flitfeed_state_restored_records_total``).

A worker with no users is measured first (its RSS is the baseline the per-user bytes are counted from).
Progress is printed while it runs; the topics are deleted at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import bench_parser, machine_info, print_table, setup_logging, write_json
from benchmarks.service import Service, free_port, start_until_ready

DISTINCT = 2000


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def metric(port: int, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(s.value for fam in text_string_to_metric_families(body) for s in fam.samples if s.name == name)


def templates(events: int, rng: np.random.Generator) -> list[Any]:
    """``DISTINCT`` real profiles of ``events`` interactions each (as ``benchmarks.user_memory`` builds them)."""
    import dataclasses

    from benchmarks.user_memory import build
    from flitfeed.settings import Settings
    from flitfeed.streams.user_updates import taste_params

    params = dataclasses.replace(taste_params(Settings().worker), version="bench")
    return build(DISTINCT, events, params, rng)


def profile_of(template: Any, u: int) -> bytes:
    """The template as user ``u``'s own, stored: its id and its flits' ids are the user's (no two users share
    bytes)."""
    import dataclasses

    return dataclasses.replace(template, user_id=user_id(u), seen=[f"{f}-{u:07d}" for f in template.seen],
                               last_event_id=f"{template.last_event_id}-{u:07d}").to_bytes()


def user_id(u: int) -> str:
    return f"bird-{u:07d}"


def write_changelog(settings: Any, topic: str, n_users: int, tmpl: list[Any]) -> tuple[int, float]:
    """N profiles on the changelog (created compacted, like Faust creates it). Returns (bytes, seconds)."""
    from aiokafka.partitioner import murmur2
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    from faust.serializers import codecs

    from flitfeed.kafka.config import client_config, producer_config
    from flitfeed.kafka.writing import produce_with_room

    admin = AdminClient(client_config(settings.kafka))
    fut = admin.create_topics([NewTopic(topic, settings.kafka.partitions, settings.kafka.replication_factor,
                                        config={"cleanup.policy": "compact"})])[topic]
    fut.result(30)
    producer = Producer(producer_config(settings.kafka) | {"linger.ms": 50, "batch.size": 1 << 20,
                                                     "queue.buffering.max.kbytes": 1 << 20})
    started, total = time.perf_counter(), 0
    for u in range(n_users):
        key = user_id(u)
        value = profile_of(tmpl[u % len(tmpl)], u)  # the table's values are raw bytes
        total += len(value)
        # The partition of the user's interactions (raw key), whose record the table writes on.
        partition = (murmur2(key.encode()) & 0x7FFFFFFF) % settings.kafka.partitions
        produce_with_room(producer, topic, key=codecs.dumps("json", key), value=value, partition=partition,
                          wait_s=0.1)
        if u % 10_000 == 0:
            producer.poll(0)
        if u and u % 100_000 == 0:
            print(f"  changelog: {u:,} of {n_users:,} profiles written ({total / 2**20:,.0f} MiB, "
                  f"{u / (time.perf_counter() - started):,.0f}/s)", flush=True)
    assert producer.flush(300) == 0, "changelog records not delivered"
    return total, time.perf_counter() - started


def start_worker(name: str, settings: Any, log_dir: Path, port: int, timeout_s: float) -> tuple[Service, float]:
    """A ``flitfeed worker`` process, once ready with its profiles recovered; progress every 10 s meanwhile."""
    return start_until_ready(
        "worker", name, settings, log_dir, port, timeout_s, "user_state_recovered",
        lambda svc: (f"{_try(lambda: metric(port, 'flitfeed_state_restored_records_total')):,.0f} changelog "
                     f"records applied, RSS {status_kib(svc.pid, 'VmRSS') / 1024:,.0f} MiB"))


def _try(f: Any) -> float:
    try:
        return float(f())
    except Exception:
        return float("nan")


def measure_store(store: str, n_users: int, tmpl: list[Any], bootstrap: str, run_dir: Path,
                  timeout_s: float) -> list[dict[str, Any]]:
    from flitfeed.kafka.admin import create_topics, delete_run_topics
    from flitfeed.settings import Settings
    from flitfeed.streams.app import USER_PROFILES_TABLE

    tag = uuid.uuid4().hex[:8]
    port = free_port()
    s = Settings(bootstrap_servers=bootstrap, topic_prefix=f"bench{tag}-", app_id=f"bench-state-{tag}",
                 data_dir=run_dir / f"{store}-{tag}", worker_metrics_port=port, state_store=store,  # type: ignore[arg-type]
                 encoder="hashing")
    changelog = f"{s.kafka.app_id}-{USER_PROFILES_TABLE}-changelog"
    create_topics(s.kafka)
    rows = []
    try:
        if n_users:
            print(f"{store}: writing {n_users:,} profiles to {changelog}", flush=True)
            value_bytes, write_s = write_changelog(s, changelog, n_users, tmpl)
            print(f"{store}: {value_bytes / 2**20:,.0f} MiB of profiles written in {write_s:.0f} s", flush=True)
        else:
            value_bytes = 0
        # Each start is ended by the next one's cause: a kill -9 (the group waits for the dead member's
        # session to expire: group_session_timeout_s) and a SIGTERM (it leaves the group at once).
        for start, stop in (("first start (empty data dir)", signal.SIGKILL), ("restart after kill -9", signal.SIGTERM),
                            ("restart after SIGTERM", signal.SIGKILL)):
            print(f"{store}: {start} ...", flush=True)
            svc, ready_s = start_worker(f"{store}-{n_users}-{len(rows)}", s, run_dir, port, timeout_s)
            time.sleep(1.0)  # the gauges' first export
            rss, hwm = status_kib(svc.pid, "VmRSS") / 1024, status_kib(svc.pid, "VmHWM") / 1024
            restored = _try(lambda: metric(port, "flitfeed_state_restored_records_total"))
            tables = s.data_dir / "faust"
            disk = dir_bytes(tables) if tables.exists() else 0
            row = {"store": store, "users": n_users, "start": start, "ready_s": round(ready_s, 1),
                   "rss_mib": round(rss), "peak_rss_mib": round(hwm), "records_applied": int(restored),
                   "disk_mib": round(disk / 2**20, 1), "changelog_mib": round(value_bytes / 2**20, 1)}
            print(f"{store}: {start}: ready in {ready_s:.1f} s, RSS {rss:,.0f} MiB (peak {hwm:,.0f}), "
                  f"{restored:,.0f} records applied, {disk / 2**20:,.0f} MiB on disk", flush=True)
            rows.append(row)
            svc.stop(stop, timeout=120)
            if store == "memory" and n_users == 0:
                break
    finally:
        delete_run_topics(s.kafka)
        shutil.rmtree(s.data_dir, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=os.environ.get("FLITFEED_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--users", type=int, default=None, help="users (default 1,000,000; quick 20,000)")
    parser.add_argument("--events", type=int, default=20, help="interactions per user (default 20)")
    parser.add_argument("--stores", default="rocksdb,memory", help="stores to measure (default rocksdb,memory)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds a start may take to be ready "
                                                                   "(default 1800; quick 300)")
    args = parser.parse_args(argv)
    setup_logging()
    from flitfeed.kafka.admin import wait_for_broker
    from flitfeed.settings import KafkaConfig

    n = args.users if args.users is not None else (20_000 if args.quick else 1_000_000)
    timeout_s = args.timeout or (300.0 if args.quick else 1800.0)
    wait_for_broker(KafkaConfig(bootstrap_servers=args.bootstrap), timeout_s=60)
    print(f"machine: {json.dumps(machine_info())}", flush=True)
    print(f"building {DISTINCT:,} real profiles of {args.events} interactions ...", flush=True)
    tmpl = templates(args.events, np.random.default_rng(5))
    run_dir = Path(tempfile.mkdtemp(prefix="flitfeed-bench-state-"))
    rows: list[dict[str, Any]] = []
    try:
        baseline = measure_store("rocksdb", 0, tmpl, args.bootstrap, run_dir, timeout_s)
        rows += baseline
        base_rss = baseline[-1]["rss_mib"]
        for store in args.stores.split(","):
            rows += measure_store(store, n, tmpl, args.bootstrap, run_dir, timeout_s)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    for row in rows:
        if row["users"]:
            row["rss_bytes_per_user"] = round((row["rss_mib"] - base_rss) * 2**20 / row["users"])
            row["disk_bytes_per_user"] = round(row["disk_mib"] * 2**20 / row["users"])
    print_table(f"Worker state at {n:,} users x {args.events} interactions (baseline: an empty worker)", rows)
    if args.json:
        write_json(args.json, "state_scale", {"quick": args.quick, "users": n, "events": args.events}, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
