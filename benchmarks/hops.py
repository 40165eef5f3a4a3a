"""Where a feed's latency goes at a steady rate: interaction → user state (worker) → feed (ranker).

Starts a worker as a real process on the local broker (topics of their own), publishes a catalogue
(``--flits``), waits until every flit is embedded and logged, starts a ranker (which reads the log and builds
its graph before it serves), waits for the first feed, then sends likes at ``--rate`` per second and reads back the
``user-states`` and ``feeds`` topics. Each hop is measured by the records' broker timestamps (set when
each process produced them), so the figures split the end-to-end latency of ``end_to_end`` into the
worker's part and the ranker's part::

    python -m benchmarks.hops --rate 25 --events 300          # the latency floor (issue 15: p50 ≤ 15 ms)
    python -m benchmarks.hops --rate 200 --events 2000 --profile /tmp/prof   # + py-spy flame graphs

To compare two versions of the code in the same half hour, run it from two git worktrees in turn
(BENCHMARKS.md, "The ranker's hop").
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from tempfile import TemporaryDirectory

from confluent_kafka import Consumer, Producer

from benchmarks.common import bench_parser, default_json, machine_info, percentiles, print_table, setup_logging, \
    write_json
from benchmarks.service import Service, stop_all
from flitfeed.kafka.admin import create_topics, delete_run_topics
from flitfeed.kafka.config import consumer_config, producer_config
from flitfeed.kafka.writing import produce_with_room
from flitfeed.settings import Settings
from flitfeed.streams.topics import TOPIC_FEEDS, TOPIC_FLIT_VECTORS, TOPIC_FLITS, TOPIC_INTERACTIONS, TOPIC_USER_STATES
from flitfeed.streams.events import Flit, Interaction

log = logging.getLogger("benchmarks.hops")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _reader(settings: Settings, topic: str) -> Consumer:
    c = Consumer(consumer_config(settings.kafka, group_id=f"hops-{uuid.uuid4().hex[:6]}", **{"auto.offset.reset": "earliest"}))
    c.subscribe([settings.kafka.topic(topic)])
    return c


def _wait_for_vectors(settings: Settings, flits: int, services: list[Service]) -> None:
    """Until ``flit-vectors`` holds a vector of every one of the ``flits`` flits, reporting progress."""
    reader = _reader(settings, TOPIC_FLIT_VECTORS)
    seen: set[bytes] = set()
    started = last_report = time.monotonic()
    deadline = started + 300 + flits / 20  # the default encoder embeds 150-300 texts/s on 2 cores
    try:
        while len(seen) < flits:
            seen.update(m.key() for m in reader.consume(5000, timeout=0.5) if m.error() is None and m.value())
            now = time.monotonic()
            if now > deadline or not all(s.alive() for s in services):
                raise RuntimeError(f"{len(seen):,} of {flits:,} flit vectors after {now - started:.0f} s")
            if now - last_report >= 10:
                last_report = now
                log.info("catalogue: %s of %s flits embedded and logged (%.0f s)", f"{len(seen):,}", f"{flits:,}",
                         now - started)
    finally:
        reader.close()


def run(settings: Settings, rate: float, events: int, flits: int, users: int, log_path: Path,
        profile: Path | None = None) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Send ``events`` likes at ``rate``/s; the per-event hop times in ms, and the CPU seconds the worker and
    the ranker used from the first like until the last feed was read (robust to a busy machine, where the
    latencies are not). ``profile``: a folder for py-spy flame graphs of both while the likes are sent."""
    create_topics(settings.kafka)
    services = [Service("worker", settings, log_path).start()]
    producer = Producer(producer_config(settings.kafka))
    feeds, states = _reader(settings, TOPIC_FEEDS), _reader(settings, TOPIC_USER_STATES)
    try:
        for i in range(flits):
            f = Flit(flit_id=f"f{i}", author_id=f"a{i % 50}", text=f"bird post {i} about worms, rain and songs {i % 9}",
                     created_at=_now())
            produce_with_room(producer, settings.kafka.topic(TOPIC_FLITS), key=f.flit_id.encode(), value=f.to_bytes())
        producer.flush(30)
        # The ranker starts once every flit is embedded and logged: it then reads the log and builds its graph
        # before it serves, and no like is measured while the worker still embeds the catalogue (at --flits
        # 100000 that takes minutes of both cores) or the ranker rebuilds its graph for it.
        _wait_for_vectors(settings, flits, services)
        services.append(Service("ranker", settings, log_path).start())
        warm = Interaction(event_id="warm-up", user_id="u0", flit_id="f0", kind="like", ts=_now())
        produce_with_room(producer, settings.kafka.topic(TOPIC_INTERACTIONS), key=b"u0", value=warm.to_bytes())
        producer.flush(30)
        deadline = time.monotonic() + 300
        while not any(m.error() is None for m in feeds.consume(10, timeout=0.5)):
            if time.monotonic() > deadline or not all(s.alive() for s in services):
                raise RuntimeError(f"no first feed; see {log_path}")
        log.info("first feed out; sending %d likes at %.0f/s", events, rate)
        profilers = []
        if profile is not None:
            profile.mkdir(parents=True, exist_ok=True)
            for svc in services:
                profilers.append(subprocess.Popen(
                    [str(Path(sys.executable).with_name("py-spy")), "record", "-p", str(svc.pid), "-o",
                     str(profile / f"{svc.name}-hops-{int(rate)}per_s.svg"), "-d", str(max(1, int(events / rate))),
                     "-r", "50", "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        sent: dict[str, float] = {}
        cpu = {svc.name: -svc.cpu_seconds() for svc in services}
        start = time.time()
        for i in range(events):
            e = Interaction(event_id=f"e{i}", user_id=f"u{i % users}", flit_id=f"f{(i * 7) % flits}", kind="like",
                            ts=_now())
            producer.produce(settings.kafka.topic(TOPIC_INTERACTIONS), key=e.user_id.encode(), value=e.to_bytes())
            producer.poll(0)
            sent[e.event_id] = time.time()
            time.sleep(max(0.0, start + (i + 1) / rate - time.time()))
        producer.flush(30)
        state_at: dict[str, float] = {}
        feed_at: dict[str, float] = {}
        deadline = time.monotonic() + 60
        # Only the likes sent count (the warm-up's state and feed are read too).
        while time.monotonic() < deadline and (len(state_at.keys() & sent.keys()) < events
                                               or len(feed_at.keys() & sent.keys()) < events):
            for m in states.consume(500, timeout=0.1):
                if m.error() is None:
                    state_at.setdefault(json.loads(m.value())["trigger_id"], m.timestamp()[1] / 1000)
            for m in feeds.consume(500, timeout=0.1):
                if m.error() is None:
                    v = json.loads(m.value())
                    for trigger in v.get("covers") or [v["trigger_id"]]:
                        feed_at.setdefault(trigger, m.timestamp()[1] / 1000)
        for svc in services:
            cpu[svc.name] += svc.cpu_seconds()
        for p in profilers:
            p.wait(60)
        return {
            "worker": [1000 * (state_at[e] - t) for e, t in sent.items() if e in state_at],
            "ranker": [1000 * (feed_at[e] - state_at[e]) for e in sent if e in feed_at and e in state_at],
            "total": [1000 * (feed_at[e] - t) for e, t in sent.items() if e in feed_at],
        }, cpu
    finally:
        stop_all(services)
        feeds.close()
        states.close()
        delete_run_topics(settings.kafka)


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=25.0, help="likes per second")
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--flits", type=int, default=200)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="record py-spy flame graphs of the worker and the ranker while the likes are sent")
    args = parser.parse_args(argv)
    setup_logging()
    if args.quick:
        args.events, args.rate = 20, 20.0
    tag = uuid.uuid4().hex[:6]
    with TemporaryDirectory(prefix="hops-") as tmp:
        settings = Settings(bootstrap_servers=args.bootstrap, topic_prefix=f"hops{tag}-", app_id=f"hops-{tag}",
                            ranker_group=f"hops-ranker-{tag}", data_dir=Path(tmp) / "data", worker_metrics_port=0,
                            ranker_metrics_port=0)
        hops, cpu = run(settings, args.rate, args.events, args.flits, args.users, Path(tmp) / "services.log",
                   args.profile)
    # CPU per like: the process of the hop (worker, ranker), all threads, from the first like to the last feed.
    rows = [{"hop": name, "n": len(ms), **percentiles([x / 1000 for x in ms]),
             "cpu_ms_per_like": round(1000 * cpu[name] / args.events, 2) if name in cpu else None}
            for name, ms in hops.items() if ms]
    print_table(f"Hops at {args.rate:.0f} likes/s ({args.events} likes; load {machine_info()['loadavg']})", rows)
    write_json(args.json or default_json("hops", args.quick), "hops",
               {"quick": args.quick, "rate": args.rate, "events": args.events, "flits": args.flits}, rows)
    missing = args.events - len(hops["total"])
    if missing:
        print(f"{missing} likes got no feed within 60 s", file=sys.stderr)
    return 0 if not missing else 1


if __name__ == "__main__":
    sys.exit(main())
