"""Scale-out: throughput of 1 vs 2 processes per role (worker, ranker) on this machine.

For each process count the benchmark starts that many workers and rankers as real processes on
fresh topics of the broker in ``FLITFEED_BOOTSTRAP_SERVERS``, waits until both consumer groups are
stable with every replica owning partitions, then pushes three backlogs produced at once from the
seeded Flutter world (``flitfeed.demo.world.World``) and measures how fast they drain:

* flits → flit vectors published (embedding, worker);
* interactions → user states published (worker) and → feeds published (worker + ranker);
* feed requests → feeds published (ranker).

A rate is ``count / (last output's broker timestamp - first input's produce time)``, so the reading
side's own speed does not count. Beside each rate, the work per CPU-second the services consumed in
that phase (from /proc): on a shared machine the rates follow the CPU share the processes get, the
per-CPU-second figures do not.

``--pin`` gives each replica a core of its own, as if it had a machine: replica *i* (its worker and
its ranker) runs on core *i* only, so one replica per role gets one core and two get two. The broker
and this process are not pinned; with one replica they have the other core mostly to themselves, so the
ratio measured this way is, if anything, low. Usage::

    python -m benchmarks.scale_out --quick                  # CI smoke: hashing encoder, small backlogs
    python -m benchmarks.scale_out --json benchmarks/results/scale_out.json   # MiniLM, larger backlogs
    python -m benchmarks.scale_out --pin --json benchmarks/results/scale_out-pinned.json
    python -m benchmarks.scale_out --processes 1 2 3 --encoder hashing

Results and their reading: BENCHMARKS.md "Scale-out".
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from benchmarks.common import BusyCores, bench_parser, machine_info, print_table, write_json
from benchmarks.service import Service, stop_all
from flitfeed.demo.world import World
from flitfeed.kafka.admin import create_topics, delete_run_topics, wait_for_broker
from flitfeed.kafka.config import client_config, consumer_config, producer_config
from flitfeed.kafka.groups import describe_group
from flitfeed.kafka.writing import produce_with_room
from flitfeed.settings import Settings
from flitfeed.streams.topics import (TOPIC_FEED_REQUESTS, TOPIC_FEEDS, TOPIC_FLIT_VECTORS, TOPIC_FLITS,
                                     TOPIC_INTERACTIONS, TOPIC_USER_STATES)

log = logging.getLogger("benchmarks.scale_out")


@dataclass(frozen=True)
class Sizes:
    flits: int
    interactions: int
    requests: int
    users: int
    timeout_s: float


QUICK = Sizes(flits=60, interactions=300, requests=200, users=40, timeout_s=120)
FULL = Sizes(flits=6000, interactions=16000, requests=12000, users=1600, timeout_s=600)


class Outputs:
    """Reads an output topic from the beginning and remembers the broker timestamp of each wanted id."""

    def __init__(self, settings: Settings, topic: str, ids_of: Callable[[dict], list[str]]) -> None:
        # Assigned, not subscribed: an idle reader must not be evicted from a group (max.poll.interval.ms).
        self.consumer = Consumer(consumer_config(settings.kafka, group_id=f"bench-{uuid.uuid4().hex[:8]}"))
        name = settings.kafka.topic(topic)
        partitions = self.consumer.list_topics(name, timeout=10).topics[name].partitions
        self.consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in sorted(partitions)])
        self.ids_of = ids_of
        self.seen: dict[str, float] = {}

    def poll(self) -> None:
        for m in self.consumer.consume(num_messages=1000, timeout=0.2):
            if m.error() is None:
                for key in self.ids_of(json.loads(m.value())):
                    self.seen.setdefault(key, m.timestamp()[1] / 1000.0)

    def last_of(self, ids: set[str]) -> float | None:
        """Broker time of the last of ``ids`` to appear, once all have."""
        self.poll()
        if not ids <= self.seen.keys():
            return None
        return max(self.seen[i] for i in ids)

    def close(self) -> None:
        self.consumer.close()


def wait_for(predicate: Callable[[], object], timeout_s: float, what: str, processes: list[Service]) -> object:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        dead = [p for p in processes if not p.alive()]
        if dead:
            raise RuntimeError(f"{dead[0].name} exited while waiting for {what}:\n{dead[0].log_tail(30)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.2)


def groups_ready(settings: Settings, admin: AdminClient, n: int) -> bool:
    try:
        workers = describe_group(settings.kafka, settings.kafka.app_id, admin=admin)
        rankers = describe_group(settings.kafka, settings.kafka.ranker_group, admin=admin)
    except KafkaException:
        return False  # coordinator still loading
    w = workers.owners(settings.kafka.topic(TOPIC_INTERACTIONS))
    r = rankers.owners(settings.kafka.topic(TOPIC_FEED_REQUESTS))
    return (workers.state == rankers.state == "stable" and len(w) == len(r) == settings.kafka.partitions
            and len(set(w.values())) == len(set(r.values())) == n)


def produce(producer: Producer, topic: str, records: Iterable[tuple[str, bytes]]) -> float:
    """Produce everything, wait for the broker; returns the time the first record was handed over."""
    start = time.time()
    for key, value in records:
        produce_with_room(producer, topic, key=key.encode(), value=value)
    if producer.flush(60) != 0:
        raise RuntimeError(f"records to {topic} not delivered")
    return start


def run_one(base: Settings, n: int, sizes: Sizes, encoder: str, workdir: Path, pin: bool = False) -> dict:
    tag = uuid.uuid4().hex[:6]
    settings = base.replace(**{
        "topic_prefix": f"bench-{tag}-", "app_id": f"bench-{tag}", "ranker_group": f"bench-{tag}-ranker",
        "encoder": encoder, "vector_dim": 384, "group_session_timeout_s": 6.0, "worker_metrics_port": 0,
        "ranker_metrics_port": 0, "data_dir": workdir / tag})
    create_topics(settings.kafka)
    admin = AdminClient(client_config(settings.kafka))
    processes: list[Service] = []
    outputs: list[Outputs] = []
    try:
        started = time.monotonic()
        for i in range(n):
            for role in ("worker", "ranker"):
                instance = f"{role[0]}{i + 1}"
                replica = settings.replace(**{"instance_id": instance, "data_dir": workdir / tag / instance})
                cpus = {i % os.cpu_count()} if pin else None
                processes.append(Service(role, replica, workdir / f"{instance}.log", cpus=cpus).start())
        wait_for(lambda: groups_ready(settings, admin, n), sizes.timeout_s, f"{n}+{n} replicas in their groups",
                 processes)
        startup_s = time.monotonic() - started

        vectors = Outputs(settings, TOPIC_FLIT_VECTORS, lambda v: [v["flit"]["flit_id"]])
        states = Outputs(settings, TOPIC_USER_STATES, lambda v: [v["trigger_id"]])
        # A feed answers every trigger it covers (several state changes of one user in one ranker batch).
        feeds = Outputs(settings, TOPIC_FEEDS, lambda v: v.get("covers") or [v["trigger_id"]])
        outputs += [vectors, states, feeds]
        producer = Producer(producer_config(settings.kafka, **{"linger.ms": 20}))
        world = World(seed=5, n_birds=sizes.users, n_authors=max(4, sizes.users // 10), start=time.time())

        workers = [p for p in processes if p.name == "worker"]
        rankers = [p for p in processes if p.name == "ranker"]

        def cpu(group: list[Service]) -> float:
            return sum(p.cpu_seconds() for p in group)

        flits = world.next_flits(sizes.flits)
        cpu0, busy0 = cpu(workers), BusyCores().start()
        t0 = produce(producer, settings.kafka.topic(TOPIC_FLITS), ((f.flit_id, f.to_bytes()) for f in flits))
        ids = {f.flit_id for f in flits}
        t_vec = wait_for(lambda: vectors.last_of(ids), sizes.timeout_s, "flit vectors", processes)
        log.info("%d flits embedded in %.1f s", len(ids), t_vec - t0)
        embed_cpu, embed_busy = cpu(workers) - cpu0, busy0.stop()

        events = world.spontaneous_interactions(sizes.interactions, now=time.time())
        cpu1, busy1 = cpu(processes), BusyCores().start()
        t1 = produce(producer, settings.kafka.topic(TOPIC_INTERACTIONS), ((e.user_id, e.to_bytes()) for e in events))
        ids = {e.event_id for e in events}
        t_state = wait_for(lambda: states.last_of(ids), sizes.timeout_s, "user states", processes)
        t_ifeed = wait_for(lambda: feeds.last_of(ids), sizes.timeout_s, "feeds for interactions", processes)
        log.info("%d interactions: states in %.1f s, feeds in %.1f s", len(ids), t_state - t1, t_ifeed - t1)
        interaction_cpu, interaction_busy = cpu(processes) - cpu1, busy1.stop()

        requests = world.feed_requests(sizes.requests)
        cpu2, busy2 = cpu(rankers), BusyCores().start()
        t2 = produce(producer, settings.kafka.topic(TOPIC_FEED_REQUESTS), ((r.user_id, r.to_bytes()) for r in requests))
        ids = {r.request_id for r in requests}
        t_rfeed = wait_for(lambda: feeds.last_of(ids), sizes.timeout_s, "feeds for requests", processes)
        log.info("%d requests answered in %.1f s", len(ids), t_rfeed - t2)
        request_cpu, request_busy = cpu(rankers) - cpu2, busy2.stop()
        return {
            "processes_per_role": n,
            "cores": min(n, os.cpu_count()) if pin else "any",
            "encoder": encoder,
            "partitions": settings.kafka.partitions,
            "flits_embedded_per_s": sizes.flits / max(t_vec - t0, 1e-3),
            "interactions_to_state_per_s": sizes.interactions / max(t_state - t1, 1e-3),
            "interactions_to_feed_per_s": sizes.interactions / max(t_ifeed - t1, 1e-3),
            "requests_to_feed_per_s": sizes.requests / max(t_rfeed - t2, 1e-3),
            # Work per CPU-second of the services: independent of how much CPU the machine gave them, so
            # equal figures for 1 and 2 processes mean splitting the work costs nothing extra.
            "flits_per_worker_cpu_s": sizes.flits / max(embed_cpu, 1e-3),
            "interactions_per_cpu_s": sizes.interactions / max(interaction_cpu, 1e-3),
            "requests_per_ranker_cpu_s": sizes.requests / max(request_cpu, 1e-3),
            # Cores the whole machine kept busy in each phase (services, broker, this process, others), from
            # its first record produced until its last output was seen: near the core count, the machine
            # itself is the limit, not the number of replicas.
            "busy_cores_flits": embed_busy,
            "busy_cores_interactions": interaction_busy,
            "busy_cores_requests": request_busy,
            "startup_s": startup_s,
        }
    finally:
        for o in outputs:
            o.close()
        stop_all(processes)
        try:
            delete_run_topics(settings.kafka)
        except Exception:  # best effort: the names start with the run's prefix
            log.exception("could not delete the run's topics")


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2], help="processes per role to compare")
    parser.add_argument("--pin", action="store_true",
                        help="replica i (worker and ranker) on core i only: one core per replica")
    parser.add_argument("--encoder", choices=("minilm", "hashing"),
                        help="default: minilm, hashing with --quick (no torch start-up cost)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    sizes = QUICK if args.quick else FULL
    encoder = args.encoder or ("hashing" if args.quick else "minilm")
    base = Settings()
    wait_for_broker(base.kafka, timeout_s=60)
    rows = []
    with tempfile.TemporaryDirectory(prefix="flitfeed-scale-out-") as tmp:
        for n in args.processes:
            log.info("measuring %d process(es) per role", n)
            rows.append(run_one(base, n, sizes, encoder, Path(tmp), pin=args.pin))
    print_table(f"Scale-out throughput ({'quick' if args.quick else 'full'}, {encoder} encoder, "
                f"{machine_info()['cores']} cores)", rows)
    if args.json:
        write_json(args.json, "scale_out", {"quick": args.quick, "encoder": encoder, "sizes": sizes.__dict__,
                                            "processes": args.processes, "pin": args.pin}, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
