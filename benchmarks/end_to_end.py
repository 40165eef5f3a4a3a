"""End to end through the real broker: interaction → feed published, flit → searchable, max sustained rate.

``python -m benchmarks.end_to_end [--quick] [--json PATH] [--bootstrap HOST:PORT] [--rates 100,250,500,750]``

Needs a running broker (``make bench`` starts the project's own; default
``$FLITFEED_BOOTSTRAP_SERVERS`` or 127.0.0.1:9092). Every run uses its own topic
prefix and data directory. Set-up: a catalogue of ``--flits`` (100k) flits of a
world with 10k birds is published *pre-embedded* to ``flit-vectors`` (the real
embeddings cached by :mod:`benchmarks.corpus`, so the run does not spend 7
minutes re-embedding them); the worker and the ranker start as real processes
and replicate it into their indexes; the ranker builds its HNSW graph before
serving (``FLITFEED_INDEX_OPTIMIZE_MIN_POINTS``). Then, per step of the
``--rates`` ladder, :class:`flitfeed.loadgen.LoadGenerator` produces
interactions at that rate (open loop) plus live flits at ``--flits-per-s`` for
``--step-s`` seconds, and the benchmark reads the feeds back:

* interaction → feed published: the feed's Kafka timestamp (set by the ranker's
  producer) minus the moment the interaction was produced: p50/p99/max;
* flit → embedded and logged (exact: the ``flit-vectors`` record's timestamp minus
  ``created_at``) and → searchable in the ranker's index (the ranker's
  ``flitfeed_flit_freshness_seconds`` histogram, so the p99 is a bucket bound);
* a step is *sustained* when ≥ 99% of its interactions got their feed before
  the grace period ended and the p99 stayed ≤ 1 s; the highest such rate is
  the maximum sustained rate. The ladder stops at the first step that is not
  sustained (its backlog would pollute the next step).

Quick mode (CI): the hashing encoder, 2k flits, 200 birds, one 5-second step.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, TopicPartition

from benchmarks.common import (bench_parser, machine_busy_s, percentiles, print_table, rss_mib, setup_logging,
                               write_json)
from benchmarks.corpus import Corpus, bench_world
from benchmarks.service import Service, stop_all
from benchmarks.service import free_port
from flitfeed.kafka.admin import create_topics, delete_run_topics, wait_for_broker
from flitfeed.kafka.config import consumer_config
from flitfeed.loadgen import LoadGenerator, SentLog
from flitfeed.settings import Settings
from flitfeed.streams.topics import TOPIC_FEEDS, TOPIC_FLIT_VECTORS, TOPIC_USER_STATES
from flitfeed.streams.events import Feed

log = logging.getLogger("benchmarks.end_to_end")
SUSTAINED_P99_S = 1.0
SUSTAINED_SHARE = 0.99
_TRIGGER = re.compile(rb'"trigger_id":\s*"([^"]+)"')


class Services:
    """The worker and the ranker as real processes, logs under the run's directory."""

    def __init__(self, settings: Settings, log_dir: Path, extra_env: dict[str, str]) -> None:
        self.procs = {name: Service(name, settings, log_dir / f"{name}.log", extra_env).start()
                      for name in ("worker", "ranker")}

    def check(self) -> None:
        for name, svc in self.procs.items():
            if not svc.alive():
                raise RuntimeError(f"{name} exited with code {svc.proc.returncode}; see its log")

    def rss_mib(self) -> dict[str, float]:
        return {f"{name}_rss_mib": round(rss_mib(svc.pid), 1) for name, svc in self.procs.items() if svc.alive()}

    def cpu_s(self) -> dict[str, float]:
        """CPU-seconds each service, this process and the whole machine have used so far (all threads)."""
        return ({name: svc.cpu_seconds() for name, svc in self.procs.items()}
                | {"bench": time.process_time(), "machine": machine_busy_s()})

    @staticmethod
    def cores(before: dict[str, float], after: dict[str, float], wall_s: float) -> dict[str, float]:
        """Cores busy on average between two :meth:`cpu_s` readings: each service's, and the rest of the
        machine's (``other``: the broker, this process's load generator and readers, anything else running),
        of which this process's own (``bench``; so ``other - bench`` is mostly the broker)."""
        used = {name: (after[name] - before[name]) / wall_s for name in before}
        return {"worker_cores": round(used["worker"], 2), "ranker_cores": round(used["ranker"], 2),
                "other_cores": round(used["machine"] - used["worker"] - used["ranker"], 2),
                "bench_cores": round(used["bench"], 2)}

    def stop(self) -> None:
        stop_all(self.procs.values())


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def metric_value(text: str, name: str, labels: str = "") -> float | None:
    m = re.search(rf"^{re.escape(name)}\{{[^}}]*{re.escape(labels)}[^}}]*\}} ([0-9.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else None


def histogram(text: str, name: str, labels: str) -> dict[float, float]:
    """Cumulative bucket counts by upper bound of one labelled histogram."""
    out: dict[float, float] = {}
    for m in re.finditer(rf'^{re.escape(name)}_bucket\{{([^}}]*)\}} ([0-9.e+-]+)$', text, re.M):
        if labels in m.group(1):
            le = re.search(r'le="([^"]+)"', m.group(1))
            if le:
                out[float("inf") if le.group(1) == "+Inf" else float(le.group(1))] = float(m.group(2))
    return out


def bucket_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float | None:
    """The upper bound of the bucket holding quantile ``q`` of what was observed between two scrapes."""
    delta = {le: after.get(le, 0.0) - before.get(le, 0.0) for le in after}
    total = delta.get(float("inf"), 0.0)
    if total <= 0:
        return None
    for le in sorted(delta):
        if delta[le] >= q * total:
            return le
    return None


class Collector:
    """Reads ``feeds``, ``user-states`` and ``flit-vectors`` from their ends on a thread, recording timestamps."""

    def __init__(self, settings: Settings) -> None:
        self.feed_ts: dict[str, float] = {}  # trigger_id → feed's Kafka timestamp (s)
        self.state_ts: dict[str, float] = {}  # trigger_id → user state's Kafka timestamp (s): the worker's hop
        self.vector_ts: dict[str, float] = {}  # flit_id → flit-vectors record's Kafka timestamp (s)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._consumer = Consumer(consumer_config(settings.kafka, group_id=f"bench-{uuid.uuid4().hex[:6]}"))
        parts = []
        self._states = settings.kafka.topic(TOPIC_USER_STATES)
        for topic in (settings.kafka.topic(TOPIC_FEEDS), settings.kafka.topic(TOPIC_FLIT_VECTORS), self._states):
            meta = self._consumer.list_topics(topic, timeout=10)
            parts += [TopicPartition(topic, p, OFFSET_END) for p in meta.topics[topic].partitions]
        self._feeds = settings.kafka.topic(TOPIC_FEEDS)
        self._consumer.assign(parts)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for m in self._consumer.consume(num_messages=1000, timeout=0.1):
                if m.error() is not None:
                    continue
                ts = m.timestamp()[1] / 1000.0
                if m.topic() == self._feeds:
                    with self._lock:
                        for trigger in Feed.model_validate_json(m.value()).answers():
                            self.feed_ts.setdefault(trigger, ts)
                elif m.topic() == self._states:
                    # The trigger id only: decoding 384 floats per state would load the machine measured.
                    trigger = _TRIGGER.search(m.value() or b"")
                    if trigger:
                        with self._lock:
                            self.state_ts.setdefault(trigger.group(1).decode(), ts)
                else:
                    with self._lock:
                        self.vector_ts.setdefault(m.key().decode(), ts)

    def count_feeds(self, ids: dict[str, float]) -> int:
        with self._lock:
            return sum(1 for i in ids if i in self.feed_ts)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._consumer.close()


def wait_for(what: str, condition, timeout: float, services: Services) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        services.check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


def step_row(rate: float, sent: SentLog, col: Collector, before: str, after: str) -> dict[str, Any]:
    lat = [col.feed_ts[e] - t for e, t in sent.interactions.items() if e in col.feed_ts]
    states = [col.state_ts[e] - t for e, t in sent.interactions.items() if e in col.state_ts]
    fresh = [col.vector_ts[f] - t for f, t in sent.flits.items() if f in col.vector_ts]
    delivered = len(lat) / max(1, len(sent.interactions))
    row: dict[str, Any] = {
        "offered_per_s": rate,
        "sent_per_s": round(len(sent.interactions) / sent.duration_s, 1),
        "feeds_delivered": round(delivered, 4),
        **{f"feed_{k}": v for k, v in percentiles(lat).items()},
        # The worker's hop (interaction → its user state); the rest of feed_* is the ranker's.
        **{f"state_{k}": v for k, v in percentiles(states).items() if k != "max_ms"},
        "flits_per_s": round(len(sent.flits) / sent.duration_s, 1),
        **{f"flit_logged_{k}": v for k, v in percentiles(fresh).items() if k != "max_ms"},
    }
    name = "flitfeed_flit_freshness_seconds"
    hb, ha = histogram(before, name, 'service="ranker"'), histogram(after, name, 'service="ranker"')
    for q in (0.5, 0.99):
        bound = bucket_quantile(hb, ha, q)
        row[f"flit_searchable_p{int(q * 100)}_le_s"] = bound
    row["sustained"] = bool(delivered >= SUSTAINED_SHARE and lat and row["feed_p99_ms"] <= SUSTAINED_P99_S * 1000)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=os.environ.get("FLITFEED_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--flits", type=int, default=None, help="catalogue size (default 100000; quick 2000)")
    parser.add_argument("--users", type=int, default=None, help="birds (default 10000; quick 200)")
    parser.add_argument("--rates", default=None, help="interactions/s ladder (default 100,250,500,750; quick 50)")
    parser.add_argument("--flits-per-s", type=float, default=None, help="live flits/s (default 150; quick 20)")
    parser.add_argument("--step-s", type=float, default=None, help="seconds per step (default 20; quick 5)")
    parser.add_argument("--encoder", choices=("minilm", "static"), default="minilm",
                        help="the worker's encoder (default minilm; static: issue 15's flit-rate option; quick: hashing)")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="record py-spy flame graphs of the worker and the ranker during every step into DIR")
    parser.add_argument("--profile-format", choices=("flamegraph", "raw"), default="flamegraph",
                        help="with --profile: svg flame graphs, or raw collapsed stacks (.txt, one line per stack, "
                             "with every thread and idle time: to count where a service's time went)")
    args = parser.parse_args(argv)
    setup_logging()
    quick = args.quick
    n_flits = args.flits or (2000 if quick else 100_000)
    rates = [float(r) for r in (args.rates or ("50" if quick else "100,250,500,750")).split(",")]
    flits_per_s = args.flits_per_s if args.flits_per_s is not None else (20.0 if quick else 150.0)
    step_s = args.step_s or (5.0 if quick else 20.0)
    tag = uuid.uuid4().hex[:8]
    run_dir = Path(tempfile.mkdtemp(prefix=f"flitfeed-bench-e2e-{tag}-"))
    settings = Settings(bootstrap_servers=args.bootstrap, topic_prefix=f"bench{tag}-", app_id=f"bench-{tag}",
                        ranker_group=f"bench-ranker-{tag}", data_dir=run_dir / "data",
                        encoder="hashing" if quick else args.encoder,
                        vector_dim=256 if args.encoder == "static" and not quick else 384,
                        worker_metrics_port=free_port(), ranker_metrics_port=free_port())
    wait_for_broker(settings.kafka, timeout_s=60)
    create_topics(settings.kafka)
    if quick:
        corpus = Corpus.hashing(n_flits, seed=11)
    else:
        from flitfeed.encoders.factory import make_encoder

        # The catalogue embedded by the encoder the worker runs (cached): one space in every index.
        corpus = Corpus.real(n_flits, seed=11, encoder=make_encoder(settings.encoder))
    now = time.time()
    users = args.users or (200 if quick else 10_000)
    from flitfeed.demo.world import World

    catalog_start = now - 2 * 86400
    catalog = (World(seed=11, n_birds=users, n_authors=200, start=catalog_start) if users != 10_000
               else bench_world(11, start=catalog_start))
    flits = []
    for i in range(0, n_flits, 1000):  # created over the last two days, oldest first
        flits += catalog.next_flits(min(1000, n_flits - i), now=catalog_start + 2 * 86400 * i / n_flits)
    if users != 10_000 and not quick:
        log.warning("--users differs from the corpus world: flit texts and vectors no longer match")
    gen = LoadGenerator(settings, catalog=catalog,
                        live=World(seed=12, n_birds=10, n_authors=50, start=now, id_prefix=f"live{tag}"))
    t0 = time.monotonic()
    gen.publish_flit_vectors(flits, corpus.vectors, corpus.model_version)
    log.info("catalogue of %d flits published in %.1f s", n_flits, time.monotonic() - t0)
    services = Services(settings, run_dir, {})
    collector = None
    rows: list[dict[str, Any]] = []
    setup: dict[str, Any] = {}
    try:
        def replicated() -> bool:
            try:
                return all((metric_value(scrape(port), "flitfeed_index_points", f'service="{svc}"') or 0) >= n_flits
                           for svc, port in (("worker", settings.monitoring.worker_metrics_port),
                                             ("ranker", settings.monitoring.ranker_metrics_port)))
            except OSError:
                return False

        t0 = time.monotonic()
        wait_for("both replicas to hold the catalogue", replicated, 1800, services)
        setup["replicated_s"] = round(time.monotonic() - t0, 1)
        collector = Collector(settings)
        # Warm-up (not measured): consumer groups join, the ranker builds its HNSW graph, caches fill.
        warm = gen.run(interactions_per_s=min(rates[0], 50), duration_s=3)
        wait_for("warm-up feeds", lambda: collector.count_feeds(warm.interactions) >= 0.9 * len(warm.interactions),
                 1800, services)
        setup["ready_s"] = round(time.monotonic() - t0, 1)
        setup |= services.rss_mib()
        for i, rate in enumerate(rates):
            profilers = []
            if args.profile:
                args.profile.mkdir(parents=True, exist_ok=True)
                for name, p in services.procs.items():
                    raw = args.profile_format == "raw"
                    out = args.profile / f"{name}-{int(rate)}per_s.{'txt' if raw else 'svg'}"
                    profilers.append(subprocess.Popen(
                        [str(Path(sys.executable).with_name("py-spy")), "record", "-p", str(p.pid), "-o", str(out),
                         "-d", str(int(step_s)), "-r", "50", "--nonblocking",
                         *(["--format", "raw", "--idle", "--threads"] if raw else [])],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            before = scrape(settings.monitoring.ranker_metrics_port)
            cpu_before, t_step = services.cpu_s(), time.monotonic()
            sent = gen.run(interactions_per_s=rate, flits_per_s=flits_per_s, duration_s=step_s)
            deadline = time.monotonic() + max(10.0, step_s / 2)
            while collector.count_feeds(sent.interactions) < len(sent.interactions) and time.monotonic() < deadline:
                services.check()
                time.sleep(0.2)
            time.sleep(1.0)  # the ranker's replica polls flit-vectors between batches
            cpu = services.cores(cpu_before, services.cpu_s(), time.monotonic() - t_step)
            after = scrape(settings.monitoring.ranker_metrics_port)
            for p in profilers:
                p.wait(60)
            row = step_row(rate, sent, collector, before, after) | cpu | services.rss_mib()
            rows.append(row)
            log.info("step %s", row)
            if not row["sustained"] and i < len(rates) - 1:
                # Its backlog would spill into the next step and measure the backlog, not the rate.
                log.info("rate %s not sustained: the ladder stops here", rate)
                break
    finally:
        if collector is not None:
            collector.close()
        services.stop()
        gen.close()
        try:
            delete_run_topics(settings.kafka)
        except Exception:  # cleanup is best effort; the topics are uniquely prefixed
            log.exception("could not delete the run's topics")
    sustained = [r["offered_per_s"] for r in rows if r["sustained"]]
    title = (f"End to end ({settings.encoder.encoder}): {n_flits:,} flits, {users:,} users, {flits_per_s:g} live flits/s, {step_s:g} s steps "
             f"(max sustained: {max(sustained) if sustained else 'none'} interactions/s)")
    print_table(title, rows)
    print_table("End to end: set-up", [setup])
    if args.json:
        write_json(args.json, "end_to_end", {"quick": quick, "encoder": settings.encoder.encoder, "flits": n_flits, "users": users, "rates": rates,
                                             "flits_per_s": flits_per_s, "step_s": step_s, "setup": setup,
                                             "max_sustained_per_s": max(sustained) if sustained else None,
                                             "logs": str(run_dir)}, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
