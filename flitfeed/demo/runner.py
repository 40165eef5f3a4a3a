"""``flitfeed demo``: the whole system live on one machine.

Starts the local broker (unless one is already up), creates the topics, runs
the worker and the ranker as real processes, and streams a simulated Flutter
world into Kafka: flits, birds browsing, and birds reacting to the feeds the
ranker publishes. Every few seconds it prints how well the feeds match each
bird's hidden interests against a random feed, and the warm-feed match per
10 seconds as the ranker learns. Ctrl-C stops everything it started, in order.

Each run has topics, consumer groups and an index of its own (``demo-<time>-``
prefix, ``<data_dir>/demo-runs/<time>``) and deletes them when it ends, so a second
run is as good and as truthful as the first whatever ran on the broker before.
The services run with the shipped defaults: no weights of the demo's own.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from confluent_kafka import Consumer, Producer

from flitfeed.demo.scoreboard import Scoreboard
from flitfeed.demo.world import World
from flitfeed.kafka.admin import create_topics, delete_run_topics, wait_for_broker
from flitfeed.kafka.local_broker import kafka_script
from flitfeed.kafka.config import consumer_config, producer_config
from flitfeed.kafka.writing import produce_with_room
from flitfeed.monitoring.prometheus import LocalPrometheus
from flitfeed.settings import Settings
from flitfeed.streams.topics import TOPIC_FEED_REQUESTS, TOPIC_FEEDS, TOPIC_FLITS, TOPIC_INTERACTIONS
from flitfeed.streams.events import DecodeError, Feed, FeedRequest, decode_internal

log = logging.getLogger(__name__)



class _Stop(Exception):
    pass


def _feed_of(m) -> Feed | None:  # noqa: ANN001 - confluent Message
    """The feed a consumed message holds; None for an error event or a record this version cannot read
    (logged: the scoreboard goes on with the next feed)."""
    if m.error() is not None:
        return None
    try:
        return decode_internal(m.value(), Feed)
    except DecodeError as exc:
        log.warning("skipping a feed record", extra={"offset": m.offset(), "reason": str(exc.reason)})
        return None


def _broker_running() -> bool:
    return subprocess.call(["bash", str(kafka_script()), "status"], stdout=subprocess.DEVNULL) == 0


def run_settings(settings: Settings, stamp: str) -> Settings:
    """The settings of one demo run: topics, groups and data of its own.

    >>> s = run_settings(Settings(topic_prefix="x-"), "20261125-170000")
    >>> s.kafka.topic("feeds"), s.kafka.ranker_group, s.data_dir.name
    ('x-demo-20261125-170000-feeds', 'flitfeed-ranker-demo-20261125-170000', '20261125-170000')
    """
    return settings.replace(**{
        "topic_prefix": f"{settings.kafka.topic_prefix}demo-{stamp}-",
        "app_id": f"{settings.kafka.app_id}-demo-{stamp}",
        "ranker_group": f"{settings.kafka.ranker_group}-demo-{stamp}",
        "data_dir": settings.data_dir / "demo-runs" / stamp,
    })


def quiet_kafka_logger(log_dir: Path) -> logging.Logger:
    """librdkafka's warnings of the demo's own clients go to a file, not over the scoreboard."""
    logger = logging.getLogger("flitfeed.demo.kafka")
    logger.propagate = False
    if not logger.handlers:
        handler = logging.FileHandler(log_dir / "demo-kafka.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
    return logger


def _spawn(service: str, env: dict[str, str], log_dir: Path) -> subprocess.Popen:
    out = open(log_dir / f"{service}.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "flitfeed.cli", service], env=env, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)


def _stop_process(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def run_demo(settings: Settings, duration_s: float | None = None, seed: int = 7) -> int:
    started_broker = False
    procs: list[subprocess.Popen] = []
    prometheus: LocalPrometheus | None = None
    log_dir = settings.data_dir / "demo-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    base = settings
    settings = run_settings(base, time.strftime("%Y%m%d-%H%M%S", time.gmtime()))
    created = False

    def on_signal(*_: object) -> None:
        raise _Stop

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        if not _broker_running():
            print("starting the local Kafka broker (first run downloads it from Maven Central) ...", flush=True)
            if subprocess.call(["bash", str(kafka_script()), "start"]) != 0:
                print("the broker did not start; see the log above", file=sys.stderr)
                return 1
            started_broker = True
        wait_for_broker(settings.kafka, timeout_s=60)
        create_topics(settings.kafka)
        created = True
        # Processes announce their metrics address here; the demo's Prometheus scrapes what it finds.
        targets_dir = base.targets_dir().resolve()
        env = dict(os.environ, PYTHONUNBUFFERED="1", FLITFEED_METRICS_TARGETS_DIR=str(targets_dir),
                   FLITFEED_TOPIC_PREFIX=settings.kafka.topic_prefix, FLITFEED_APP_ID=settings.kafka.app_id,
                   FLITFEED_RANKER_GROUP=settings.kafka.ranker_group, FLITFEED_DATA_DIR=str(settings.data_dir))
        print(f"this run's topics: {settings.kafka.topic_prefix}* (deleted when it ends)", flush=True)
        print("starting worker and ranker (loading the embedding model takes a few seconds) ...", flush=True)
        procs = [_spawn("worker", env, log_dir), _spawn("ranker", env, log_dir)]
        print(f"  logs:    {log_dir}/worker.log, {log_dir}/ranker.log")
        print(f"  metrics: http://{settings.monitoring.metrics_host}:{settings.monitoring.worker_metrics_port}/metrics (worker), "
              f"http://{settings.monitoring.metrics_host}:{settings.monitoring.ranker_metrics_port}/metrics (ranker); "
              f"/livez and /readyz beside them; a taken port falls back to a free one, listed in {targets_dir}",
              flush=True)
        prometheus = _start_prometheus(base, targets_dir)
        world = World(seed=seed, start=time.time())
        stream_world(settings, world, duration_s, alive=lambda: _check_alive(procs), log_dir=log_dir)
    except (KeyboardInterrupt, _Stop):
        print("\nstopping ...", flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
        for proc in procs:
            _stop_process(proc)
        if prometheus is not None:
            prometheus.stop()
        if created:
            _clean_up(settings)
        if started_broker:
            subprocess.call(["bash", str(kafka_script()), "stop"])
        shutil.rmtree(settings.data_dir, ignore_errors=True)
    print("demo stopped cleanly")
    return 0


def _check_alive(procs: list[subprocess.Popen]) -> bool:
    for proc in procs:
        if proc.poll() is not None:
            raise RuntimeError(f"a service exited with code {proc.returncode}; see its log")
    return True


def _clean_up(settings: Settings) -> None:
    """Delete this run's topics (its Faust app's internal topics too) from a broker that outlives it."""
    try:
        delete_run_topics(settings.kafka)
    except Exception as exc:  # the demo still ends cleanly; the names say what is left
        print(f"could not delete this run's topics ({exc}); they start with {settings.kafka.topic_prefix}", flush=True)


def _start_prometheus(settings: Settings, targets_dir: Path) -> LocalPrometheus | None:
    """Start the project's Prometheus where it is installed; returns it when this demo started it."""
    prom = LocalPrometheus(port=settings.monitoring.prometheus_port, data_dir=settings.data_dir / "prometheus",
                           targets_dir=targets_dir)
    if not prom.installed():
        print("  prometheus: not installed (deploy/prometheus/prometheus.sh install); dashboards: deploy/grafana/",
              flush=True)
        return None
    if prom.running():
        print(f"  prometheus: already running at {prom.url}", flush=True)
        return None
    if prom.start():
        print(f"  prometheus: {prom.url} (alerts: {prom.url}/alerts; Grafana dashboards: deploy/grafana/)", flush=True)
        return prom
    print(f"  prometheus: did not start; see {settings.data_dir / 'prometheus' / 'prometheus.log'}", flush=True)
    return None


def stream_world(settings: Settings, world: World, duration_s: float | None, *,
                 alive: Callable[[], bool] = lambda: True, log_dir: Path | None = None,
                 show: Callable[[str], None] | None = print, print_every_s: float = 5.0) -> Scoreboard:
    """Play the world against the running services until ``duration_s`` (None: until interrupted).

    Every half second: two new flits, two spontaneous interactions, two feed requests; a bird reacts
    to the first three items of a feed it asked for. Returns the scoreboard of every feed seen.
    """
    now = time.time()
    board = Scoreboard(world)
    extra = {} if log_dir is None else {"logger": quiet_kafka_logger(log_dir)}
    producer = Producer(producer_config(settings.kafka, **extra))
    feeds = Consumer(consumer_config(settings.kafka, group_id=f"flitfeed-demo-{int(now)}",
                                     **{"auto.offset.reset": "latest"}, **extra))
    feeds.subscribe([settings.kafka.topic(TOPIC_FEEDS)])

    def send(topic: str, key: str, value: bytes) -> None:
        produce_with_room(producer, settings.kafka.topic(topic), key=key.encode(), value=value)
        producer.poll(0)

    # A first catalogue so birds have something to browse before any feed exists.
    for flit in world.next_flits(60, now):
        send(TOPIC_FLITS, flit.flit_id, flit.to_bytes())
    producer.flush(10)
    # The world's clock starts once a feed comes back with flits in it: the worker loads the embedding
    # model first, and birds reacting meanwhile would be reacting to flits nobody has embedded yet.
    waited = _wait_until_serving(settings, send, producer, feeds, alive, timeout_s=180.0)
    if show is not None:
        show(f"services serving after {waited:.1f} s; the world runs for "
             f"{'ever (Ctrl-C stops)' if duration_s is None else f'{duration_s:g} s'}")
    started = time.monotonic()
    next_tick = next_print = started
    last_feed: Feed | None = None
    try:
        while duration_s is None or time.monotonic() - started < duration_s:
            alive()
            t = time.monotonic()
            if t >= next_tick:
                now = time.time()
                for flit in world.next_flits(2, now):
                    send(TOPIC_FLITS, flit.flit_id, flit.to_bytes())
                for event in world.spontaneous_interactions(2, now):
                    send(TOPIC_INTERACTIONS, event.user_id, event.to_bytes())
                # Birds open the app: each request is answered by a feed they then react to.
                for request in world.feed_requests(2):
                    send(TOPIC_FEED_REQUESTS, request.user_id, request.to_bytes())
                next_tick = t + 0.5
            for m in feeds.consume(num_messages=200, timeout=0.1):
                feed = _feed_of(m)
                if feed is None:
                    continue
                last_feed = feed
                board.record_feed(feed, at=time.monotonic() - started)
                # Only feeds a bird asked for are "seen": reacting to every feed an interaction
                # triggered would snowball into a feedback loop no real user produces.
                if feed.trigger_kind == "request":
                    for event in world.interactions_for_feed(feed, time.time())[:3]:
                        send(TOPIC_INTERACTIONS, event.user_id, event.to_bytes())
            if show is not None and t >= next_print:
                show("\n" + board.render())
                if last_feed is not None:
                    show(_describe(world, last_feed))
                next_print = t + print_every_s
    finally:
        producer.flush(10)
        feeds.close()
    return board


def _wait_until_serving(settings: Settings, send: Callable[[str, str, bytes], None], producer: Producer,
                        feeds: Consumer, alive: Callable[[], bool], timeout_s: float) -> float:
    """Ask for a feed for a user outside the world until one comes back with items (the worker has embedded
    flits and the ranker holds them); returns the seconds it took."""
    start = time.monotonic()
    attempt = 0
    while time.monotonic() - start < timeout_s:
        alive()
        attempt += 1
        request = FeedRequest(request_id=f"demo-probe-{attempt}", user_id="demo-probe", k=1)
        send(TOPIC_FEED_REQUESTS, request.user_id, request.to_bytes())
        producer.flush(5)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            for m in feeds.consume(num_messages=100, timeout=0.2):
                feed = _feed_of(m)
                if feed is not None and m.key() == b"demo-probe" and feed.items:
                    return time.monotonic() - start
    raise RuntimeError(f"the ranker answered no feed request within {timeout_s:g} s; see its log")


def _describe(world: World, feed: Feed) -> str:
    """One feed as the bird sees it: each item's topic, marked * where it is one of its interests."""
    interests = world.interests_of(feed.user_id)
    topics = []
    for item in feed.items:
        topic = world.topic_of(item.flit_id) if world.knows_flit(item.flit_id) else "?"
        topics.append(f"{topic}{'*' if topic in interests else ''}")
    likes = ", ".join(f"{t}:{p:.2f}" for t, p in interests.items())
    return (f"latest feed  {feed.user_id} (likes {likes}; {feed.trigger_kind} {feed.trigger_id}):\n"
            f"  {' '.join(topics)}")
