"""The ``flitfeed`` command line.

Every subcommand reads its configuration from :class:`~flitfeed.settings.Settings`
(``FLITFEED_*`` environment variables); flags only say *what* to do.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Iterable, Sequence

from pydantic import ValidationError

from flitfeed.settings import Settings, explain
from flitfeed.streams.topics import TOPIC_FEED_REQUESTS, TOPIC_FEEDS, TOPIC_FLITS, TOPIC_INTERACTIONS

log = logging.getLogger("flitfeed.cli")


def index_dir(settings: Settings, service: str) -> Path | None:
    """Where a service's embedded index lives (None with a Qdrant server)."""
    return None if settings.index.qdrant_url else settings.data_dir / "index" / service


def offsets_path(settings: Settings, service: str) -> Path | None:
    """How far the service's index replica has read ``flit-vectors``; kept next to the index."""
    path = index_dir(settings, service)
    return None if path is None else path.with_name(f"{service}.offsets.json")


def drop_index(settings: Settings, service: str) -> None:
    """Delete a service's embedded index and its replica offsets: the next start replays the log."""
    from flitfeed.index.edge import EdgeIndex

    path, offsets = index_dir(settings, service), offsets_path(settings, service)
    if path is not None and path.exists():
        EdgeIndex.destroy(path)
    if offsets is not None:
        offsets.unlink(missing_ok=True)


def open_service_index(settings: Settings, service: str, dim: int, serving: str | None = None,
                       metrics=None, collection: str | None = None):  # noqa: ANN001, ANN201 - Metrics, VectorIndex
    """The service's index; a corrupt embedded index is rebuilt from the log, never served empty. So is one
    that holds another embedding version than ``serving`` (None: whichever it holds). ``service`` names the
    embedded index (one per version: ``index/spaces.py``), ``collection`` the Qdrant server's."""
    from flitfeed.index.base import IndexError_
    from flitfeed.index.factory import open_index
    from flitfeed.streams.replicator import stored_version

    path, offsets = index_dir(settings, service), offsets_path(settings, service)
    held = stored_version(offsets)
    if path is not None and serving is not None and held is not None and held != serving:
        # Two versions' vectors must never meet in one index: this one is rebuilt from the log.
        log.warning("embedded index holds another embedding version; rebuilding it from the flit-vectors log",
                    extra={"service": service, "held": held, "serving": serving})
        drop_index(settings, service)
    if path is not None and offsets is not None and (not path.exists() or not any(path.iterdir())):
        # A new, empty index: offsets left from an old one would claim the log was already applied.
        offsets.unlink(missing_ok=True)
    if settings.index.qdrant_url:
        from flitfeed.startup import open_with_retries

        def on_retry(operation: str) -> None:
            if metrics is not None:
                metrics.index_retries.labels(service=metrics.service, operation=operation).inc()

        return open_with_retries(lambda: open_index(settings.index, dim, data_dir=settings.data_dir, name=service,
                                                    collection=collection, on_retry=on_retry),
                                 settings.startup_timeout_s, what=f"Qdrant server at {settings.index.qdrant_url}")
    try:
        return open_index(settings.index, dim, data_dir=settings.data_dir, name=service)
    except IndexError_ as exc:
        log.error("embedded index unusable; rebuilding it from the flit-vectors log",
                  extra={"service": service, "error": str(exc)})
        drop_index(settings, service)
        return open_index(settings.index, dim, data_dir=settings.data_dir, name=service)


def open_version_index(settings: Settings, service: str, version: str, dim: int, bare: str | None,
                       metrics=None):  # noqa: ANN001, ANN201 - Metrics, (VectorIndex, Path | None)
    """A service's index of one embedding version and where its read position is kept: every version in an
    index of its own (``index/spaces.py``); the one keyed by bare flit id keeps the plain names."""
    from flitfeed.index.spaces import space_collection, space_name

    name = space_name(service, version, bare)
    index = open_service_index(settings, name, dim, serving=version, metrics=metrics,
                               collection=space_collection(settings.index.collection, version, bare))
    return index, offsets_path(settings, name)


def drop_stale_replicas(settings: Settings, service: str, catalog) -> None:  # noqa: ANN001 - VersionCatalog
    """Delete the service's embedded indexes of versions the catalogue no longer holds (dropped while it was
    down): a dropped version's disk is freed on every host, not only on those running at the time."""
    from flitfeed.index.edge import EdgeIndex
    from flitfeed.index.spaces import held_versions, stale_replicas
    from flitfeed.index.versions import bare_version

    if catalog is None or settings.index.qdrant_url:
        return
    for path in stale_replicas(settings.data_dir / "index", service, held_versions(catalog), bare_version(catalog)):
        if path.is_dir():
            EdgeIndex.destroy(path)
        else:
            path.unlink(missing_ok=True)
        log.info("deleted the index of a dropped version", extra={"service": service, "path": str(path)})


# --- broker & topics --------------------------------------------------------------------------------------
def cmd_broker(args: argparse.Namespace, settings: Settings) -> int:
    from flitfeed.kafka.local_broker import run_kafka_script

    rc = run_kafka_script(args.action)
    if rc == 0 and args.action == "start":
        return cmd_topics_create(args, settings)
    return rc


def cmd_topics_create(args: argparse.Namespace, settings: Settings) -> int:
    from flitfeed.kafka.admin import create_topics, wait_for_broker

    wait_for_broker(settings.kafka, timeout_s=60)
    names = create_topics(settings.kafka)
    print(f"topics ready ({settings.kafka.partitions} partitions): {', '.join(names)}")
    return 0


# --- services ---------------------------------------------------------------------------------------------
def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    import faust

    from flitfeed.encoders.factory import EncoderConfigError, check_vector_dim, make_encoder
    from flitfeed.index.versions import bare_version
    from flitfeed.monitoring.metrics import Metrics
    from flitfeed.startup import wait_for_kafka
    from flitfeed.streams.app import create_worker
    from flitfeed.streams.version_log import read_catalog

    check_vector_dim(settings.encoder)
    wait_for_kafka(settings)
    encoder = make_encoder(settings.encoder)
    catalog = read_catalog(settings.kafka)
    drop_stale_replicas(settings, "worker", catalog)
    metrics = Metrics("worker")
    bare = bare_version(catalog) if catalog is not None else encoder.model_version

    def open_space(version: str, model: str, loaded=None):  # noqa: ANN001, ANN202 - Encoder, WorkerSpace
        from flitfeed.encoders.factory import encoder_for_version
        from flitfeed.streams.app import WorkerSpace

        enc = loaded if loaded is not None else encoder_for_version(version, model, settings.encoder)
        return WorkerSpace(version, enc, *open_version_index(settings, "worker", version, enc.dim, bare, metrics))

    live, models = worker_versions(catalog, encoder.model_version)
    spaces = {}
    for version, model in models.items():
        try:
            spaces[version] = open_space(version, model, encoder if version == encoder.model_version else None)
        except EncoderConfigError as exc:
            if version == live:
                raise
            log.error("cannot load a version of the catalogue; not embedding with it",
                      extra={"version": version, "error": str(exc)})
    metrics.serve(settings.monitoring.metrics_host, settings.monitoring.worker_metrics_port, settings.targets_dir(),
                  settings.monitoring.liveness_timeout_s)
    ctx = create_worker(settings, spaces, live, metrics, bare=bare, open_space=open_space)
    worker = faust.Worker(ctx.app, loglevel=settings.log_level, override_logging=False)
    try:
        worker.execute_from_commandline()  # returns (via SystemExit) on SIGTERM/SIGINT after a clean stop
    finally:
        for space in ctx.spaces.values():
            space.index.close()
        if metrics.server is not None:
            metrics.server.stop()
    return 0


def worker_versions(catalog, configured: str) -> tuple[str, dict[str, str]]:  # noqa: ANN001 - VersionCatalog
    """The live version and every version a worker holds (version → model spec; "" = the configured encoder).

    The catalogue decides, not ``FLITFEED_ENCODER``: after ``flitfeed versions switch`` a worker restarted
    with the old setting still embeds with the live version (said in a warning). A configured encoder the
    catalogue does not hold at all is refused: its vectors would be kept out of every ranker's index.
    """
    from flitfeed.encoders.factory import EncoderConfigError
    from flitfeed.index.spaces import held_versions
    from flitfeed.index.versions import entry

    if catalog is None:
        return configured, {configured: ""}
    if entry(catalog, configured) is None:
        raise EncoderConfigError(f"the live embedding version is {catalog.live}, but FLITFEED_ENCODER makes "
                                 f"{configured}, which the catalogue does not hold: configure the live version's "
                                 "model, or register this one with `flitfeed reembed --model` (`flitfeed versions list`)")
    if configured != catalog.live:
        log.warning("FLITFEED_ENCODER is not the live embedding version; following the catalogue",
                    extra={"configured": configured, "live": catalog.live})
    return catalog.live, {v: entry(catalog, v).model for v in held_versions(catalog)}


def cmd_ranker(args: argparse.Namespace, settings: Settings) -> int:
    from flitfeed.encoders.factory import check_vector_dim
    from flitfeed.kafka.clients import ConfluentClients
    from flitfeed.monitoring.metrics import Metrics
    from flitfeed.ranker.service import RankerService
    from flitfeed.startup import wait_for_kafka

    check_vector_dim(settings.encoder)
    wait_for_kafka(settings)
    metrics = Metrics("ranker")
    metrics.serve(settings.monitoring.metrics_host, settings.monitoring.ranker_metrics_port, settings.targets_dir(),
                  settings.monitoring.liveness_timeout_s)
    metrics.health.require("index_open")
    from flitfeed.index.versions import VersionGate, bare_version, entry
    from flitfeed.streams.version_log import read_catalog

    catalog = read_catalog(settings.kafka)
    drop_stale_replicas(settings, "ranker", catalog)
    serving = catalog.live if catalog is not None else None
    bare = bare_version(catalog) if catalog is not None else None

    def open_space(version: str, dim: int, bare: str | None):  # noqa: ANN202 - (VectorIndex, Path | None)
        return open_version_index(settings, "ranker", version, dim, bare, metrics)

    if serving is not None:
        index, offsets = open_space(serving, entry(catalog, serving).dim, bare)
    else:
        index, offsets = open_service_index(settings, "ranker", settings.encoder.vector_dim, metrics=metrics), \
            offsets_path(settings, "ranker")
    metrics.health.ready("index_open")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    # Every Kafka client of the ranker comes from here (its tests pass in-memory ones instead).
    clients = ConfluentClients(settings.kafka)
    service = RankerService(settings, index, offsets, metrics, gate=VersionGate(serving), open_space=open_space,
                            catalog=catalog, clients=clients)
    try:
        service.run(stop)  # closes every version's index it holds
    finally:
        if metrics.server is not None:
            metrics.server.stop()
    return 0


def cmd_index_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    """Drop a service's embedded index; it is rebuilt from ``flit-vectors`` when the service starts."""
    path = index_dir(settings, args.service)
    if path is None:
        print("FLITFEED_QDRANT_URL is set: the server's collection is not rebuilt from here", file=sys.stderr)
        return 2
    drop_index(settings, args.service)
    print(f"removed {path}; `flitfeed {args.service}` replays the flit-vectors log into a new index on start")
    return 0


# --- producing and reading ----------------------------------------------------------------------------------
def _lines(source: str) -> Iterable[bytes]:
    stream = sys.stdin.buffer if source == "-" else open(source, "rb")
    with stream:
        for line in stream:
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield line


def _key_of(line: bytes, field: str) -> bytes | None:
    """The message key taken from the record itself; a line that is not JSON goes unkeyed (and dead-lettered)."""
    try:
        value = json.loads(line).get(field)
    except (ValueError, AttributeError):
        return None
    return value.encode() if isinstance(value, str) else None


def produce_lines(settings: Settings, kind: str, lines: Iterable[bytes]) -> int:
    from confluent_kafka import Producer

    from flitfeed.kafka.config import producer_config
    from flitfeed.kafka.writing import produce_with_room

    topic, key_field = {"flits": (TOPIC_FLITS, "flit_id"), "interactions": (TOPIC_INTERACTIONS, "user_id"),
                        "feed-requests": (TOPIC_FEED_REQUESTS, "user_id")}[kind]
    producer = Producer(producer_config(settings.kafka))
    n = 0
    for line in lines:
        produce_with_room(producer, settings.kafka.topic(topic), key=_key_of(line, key_field), value=line)
        producer.poll(0)
        n += 1
    remaining = producer.flush(30)
    if remaining:
        raise RuntimeError(f"{remaining} messages not delivered to {settings.kafka.bootstrap_servers}")
    return n


def cmd_produce(args: argparse.Namespace, settings: Settings) -> int:
    n = produce_lines(settings, args.kind, _lines(args.source))
    print(f"produced {n} {args.kind}", file=sys.stderr)
    return 0


def cmd_request_feed(args: argparse.Namespace, settings: Settings) -> int:
    from flitfeed.streams.events import FeedRequest

    request = FeedRequest(request_id=args.request_id or f"req-{uuid.uuid4().hex[:12]}", user_id=args.user, k=args.k)
    produce_lines(settings, "feed-requests", [request.to_bytes()])
    print(request.request_id)
    return 0


def format_feed(feed) -> str:  # noqa: ANN001 - Feed
    head = (f"feed for {feed.user_id}  ({len(feed.items)} items, {feed.trigger_kind} {feed.trigger_id}, "
            f"{'cold start, ' if feed.cold_start else ''}model {feed.model_version}, "
            f"{feed.generated_at:%H:%M:%S})")
    rows = [f"  {i + 1:>2}. {it.flit_id:<24} by {it.author_id:<16} score {it.score:7.3f}  [{it.reason}]"
            for i, it in enumerate(feed.items)]
    return "\n".join([head, *rows])


def cmd_tail_feed(args: argparse.Namespace, settings: Settings) -> int:
    from confluent_kafka import Consumer

    from flitfeed.kafka.config import consumer_config
    from flitfeed.streams.events import DecodeError, Feed, decode_internal

    consumer = Consumer(consumer_config(settings.kafka, group_id=f"flitfeed-tail-{uuid.uuid4().hex[:8]}",
                                        **{"auto.offset.reset": "earliest" if args.from_beginning else "latest"}))
    consumer.subscribe([settings.kafka.topic(TOPIC_FEEDS)])
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    shown = 0
    try:
        while deadline is None or time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is None or m.error() is not None:
                continue
            try:
                feed = decode_internal(m.value(), Feed)
            except DecodeError as exc:  # not a feed this version reads: say so and go on
                print(f"skipping {m.topic()}[{m.partition()}]@{m.offset()}: {exc.reason} {exc.detail}",
                      file=sys.stderr, flush=True)
                continue
            if args.user and feed.user_id != args.user:
                continue
            print(json.dumps(feed.model_dump(mode="json")) if args.json else format_feed(feed), flush=True)
            shown += 1
            if args.max and shown >= args.max:
                break
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from flitfeed.demo.runner import run_demo

    return run_demo(settings, duration_s=args.duration, seed=args.seed)


def cmd_owners(args: argparse.Namespace, settings: Settings) -> int:
    """Which worker/ranker replica owns which partition (the broker's view of both consumer groups)."""
    from flitfeed.kafka.groups import owners_report

    print(owners_report(settings.kafka))
    return 0


# --- wiring -----------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flitfeed", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("broker", help="the local Kafka broker (KRaft, 127.0.0.1)")
    b.add_argument("action", choices=["start", "stop", "status"])
    b.set_defaults(func=cmd_broker)

    t = sub.add_parser("topics", help="topic administration")
    t.add_argument("action", choices=["create"])
    t.set_defaults(func=cmd_topics_create)

    sub.add_parser("worker", help="the Faust worker: embeds flits, updates users").set_defaults(func=cmd_worker)
    sub.add_parser("ranker", help="the ranker: publishes feeds").set_defaults(func=cmd_ranker)

    ix = sub.add_parser("index", help="the embedded index")
    ix.add_argument("action", choices=["rebuild"])
    ix.add_argument("--service", choices=["worker", "ranker"], default="ranker")
    ix.set_defaults(func=cmd_index_rebuild)

    pr = sub.add_parser("produce", help="produce JSON lines from FILE or - (stdin)")
    pr.add_argument("kind", choices=["flits", "interactions", "feed-requests"])
    pr.add_argument("source", nargs="?", default="-")
    pr.set_defaults(func=cmd_produce)

    rf = sub.add_parser("request-feed", help="ask the ranker for a user's feed")
    rf.add_argument("user")
    rf.add_argument("--k", type=int, default=10)
    rf.add_argument("--request-id", default=None)
    rf.set_defaults(func=cmd_request_feed)

    tf = sub.add_parser("tail-feed", help="print feeds as they are published")
    tf.add_argument("--user", default=None)
    tf.add_argument("--from-beginning", action="store_true")
    tf.add_argument("--json", action="store_true", help="raw JSON instead of the pretty table")
    tf.add_argument("--max", type=int, default=0, help="stop after N feeds")
    tf.add_argument("--timeout", type=float, default=None, help="stop after N seconds")
    tf.set_defaults(func=cmd_tail_feed)

    d = sub.add_parser("demo", help="start everything and stream a simulated Flutter world")
    d.add_argument("--duration", type=float, default=None, help="seconds (default: until Ctrl-C)")
    d.add_argument("--seed", type=int, default=7)
    d.set_defaults(func=cmd_demo)

    ev = sub.add_parser("evaluate", help="streaming (test-then-learn) evaluation on a MovieLens-shaped dataset")
    ev.add_argument("dataset", type=Path, help="folder with movies.csv, ratings.csv (and tags.csv)")
    ev.add_argument("--out", type=Path, required=True, help="where results.json, report.md and plots go")
    ev.add_argument("--extra-text", type=Path, default=None,
                    help="MeLU movies_extrainfos file (or its folder): adds each movie's plot to its text")
    ev.add_argument("--events", type=int, default=None, help="replay only this many events (a time slice)")
    ev.add_argument("--start", type=int, default=0, help="first event of the slice")
    ev.add_argument("--methods", default=None, help="comma-separated subset of the methods (default: all)")
    ev.add_argument("--no-plots", action="store_true")
    ev.add_argument("--jobs", type=int, default=1, help="replay groups of methods in this many processes")
    ev.add_argument("--holdout-from", type=int, default=None,
                    help="also report each method over the positives from this event on (out of sample when the "
                         "defaults were chosen on the events before it)")
    ev.set_defaults(func=cmd_evaluate)

    sub.add_parser("owners", help="which worker/ranker replica owns which partition").set_defaults(func=cmd_owners)

    re_ = sub.add_parser("reembed", help="build a new embedding version from the flits log (resumable)")
    re_.add_argument("--model", required=True,
                     help="minilm[:onnx-int8|onnx-fp32|torch], static, hashing or a sentence-transformers directory")
    re_.add_argument("--limit", type=int, default=None, help="stop after about this many flits (resume later)")
    re_.add_argument("--wait-workers", type=float, default=120.0,
                     help="seconds to wait for every worker to embed new flits with the version too")
    re_.add_argument("--wait-tastes", type=float, default=300.0,
                     help="once ready, seconds to wait for every worker to rebuild its users' tastes in the "
                          "version (0: do not wait)")
    re_.set_defaults(func=cmd_reembed)

    vs = sub.add_parser("versions", help="embedding versions: list them, compare a model with the live one")
    vsub = vs.add_subparsers(dest="versions_command", required=True)
    vsub.add_parser("list", help="the version catalogue: live, building, ready").set_defaults(func=cmd_versions_list)
    dr = vsub.add_parser("drop", help="delete a version that is not live, its vectors with it (disk freed by compaction)")
    dr.add_argument("version", help="the version, as `flitfeed versions list` names it")
    dr.set_defaults(func=cmd_versions_drop)
    sw = vsub.add_parser("switch", help="make a ready version live (the live one stays ready: the rollback target)")
    sw.add_argument("version", help="the version, as `flitfeed versions list` names it")
    sw.add_argument("--wait-rankers", type=float, default=60.0,
                    help="seconds to wait for every ranker to confirm it ranks with the version")
    sw.add_argument("--force-tastes", action="store_true",
                    help="switch although some workers have not rebuilt their users' tastes in the version "
                         "(those users get cold-start feeds until their next interaction)")
    sw.set_defaults(func=cmd_versions_switch)
    rb = vsub.add_parser("rollback", help="make the version live before live again (no re-embedding)")
    rb.add_argument("--wait-rankers", type=float, default=60.0,
                    help="seconds to wait for every ranker to confirm it ranks with the version")
    rb.add_argument("--force-tastes", action="store_true",
                    help="roll back although some workers have not said their users' tastes are in that version")
    rb.set_defaults(func=cmd_versions_rollback, version=None)
    cmp_ = vsub.add_parser("compare", help="the live model and --model side by side on recent flits (and a dataset)")
    cmp_.add_argument("--model", required=True,
                      help="minilm[:onnx-int8|onnx-fp32|torch], static, hashing or a sentence-transformers directory")
    cmp_.add_argument("--against", default=None, help="the model to compare with (default: the configured encoder)")
    cmp_.add_argument("--recent", type=int, default=2000, help="how many of the latest flits of the log to compare on")
    cmp_.add_argument("--k", type=int, default=10, help="neighbours per flit for the top-k overlap")
    cmp_.add_argument("--dataset", type=Path, default=None,
                      help="also run the streaming evaluation of both on this MovieLens-shaped folder")
    cmp_.add_argument("--events", type=int, default=None, help="evaluate on only this many events of the dataset")
    cmp_.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    cmp_.set_defaults(func=cmd_versions_compare)
    return p


def cmd_reembed(args: argparse.Namespace, settings: Settings) -> int:
    from flitfeed.encoders.factory import encoder_for_spec, make_encoder, parse_model_spec
    from flitfeed.index.versions import VersionError
    from flitfeed.monitoring.metrics import Metrics
    from flitfeed.startup import wait_for_kafka
    from flitfeed.streams.reembed import reembed

    parse_model_spec(args.model)  # a bad spec fails before anything loads or connects
    wait_for_kafka(settings)
    encoder = encoder_for_spec(args.model, settings.encoder)
    live = make_encoder(settings.encoder)
    metrics = Metrics("reembed")
    metrics.serve(settings.monitoring.metrics_host, settings.monitoring.reembed_metrics_port, settings.targets_dir())
    try:
        report = reembed(settings, encoder, args.model, live, metrics=metrics, limit=args.limit,
                         wait_workers_s=args.wait_workers, wait_tastes_s=args.wait_tastes)
    except VersionError as exc:
        print(f"flitfeed reembed: {exc}", file=sys.stderr)
        return 2
    finally:
        if metrics.server is not None:
            metrics.server.stop()
    print(f"{report.version}: {report.embedded:,} flits embedded, {report.skipped:,} invalid skipped in "
          f"{report.seconds:.1f} s" + (" (stopped at --limit; run again to resume)" if args.limit else ""))
    if report.unconfirmed:
        print(f"not ready: worker(s) {', '.join(report.unconfirmed)} did not confirm embedding new flits with it "
              "within --wait-workers; run again once they do", file=sys.stderr)
        return 3
    return report_tastes(report)


def report_tastes(report) -> int:  # noqa: ANN001 - ReembedReport
    """What a finished re-embedding says about switching to the version; 3 while workers' tastes lag."""
    if not report.ready:
        return 0  # stopped at --limit: run again
    if report.tastes_missing is None:
        print(f"{report.version} is ready; not waiting for the workers' tastes (--wait-tastes 0): "
              "`flitfeed versions list` shows them, a switch waits for all")
        return 0
    if report.tastes_missing:
        print(f"{report.version} is ready, but worker(s) {', '.join(report.tastes_missing)} have not rebuilt their "
              "users' tastes in it within --wait-tastes; switch once they have (`flitfeed versions list`)",
              file=sys.stderr)
        return 3
    print(f"ready to switch: flitfeed versions switch {report.version}")
    return 0


def cmd_versions_list(args: argparse.Namespace, settings: Settings) -> int:
    from flitfeed.startup import wait_for_kafka
    from flitfeed.streams.reembed import group_members
    from flitfeed.streams.version_log import read_versions_log

    wait_for_kafka(settings)
    versions = read_versions_log(settings.kafka)
    workers, rankers = group_members(settings.kafka, settings.kafka.app_id), group_members(settings.kafka, settings.kafka.ranker_group)
    print(format_versions(versions, workers, rankers))
    return 0


def format_versions(versions, workers: set[str] | None, rankers: set[str] | None) -> str:  # noqa: ANN001 - VersionsLog
    """``flitfeed versions list``: the catalogue, the rollback target, and per version which workers embed new
    flits with it / rebuilt their users' tastes in it and which rankers rank with it (of the groups' members
    now; None: every instance that ever said so, the group could not be described)."""
    from flitfeed.index.versions import rollback_target

    catalog = versions.catalog
    if catalog is None:
        return "no version catalogue: one version, the workers' encoder (`flitfeed reembed` starts one)"

    def now_in(group: set[str] | None, said: Iterable[str]) -> list[str]:
        return sorted(s for s in said if group is None or s in group)

    serving = versions.serving_now()
    lines = [f"{'version':58s} {'state':9s} {'dim':>5s} {'log read':>10s}  model; workers embedding new flits with it"]
    for v in catalog.versions:
        acked = "" if v.state == "live" else f"; {len(versions.acks.get(v.version, ()))} worker(s)"
        lines.append(f"{v.version:58s} {v.state:9s} {v.dim:5d} {v.flits:10,d}  {v.model}{acked}")
        tastes = now_in(workers, versions.tastes.get(v.version, {}))
        ranking = now_in(rankers, [r for r, version in serving.items() if version == v.version])
        lines.append(f"{'':58s} tastes rebuilt by: {', '.join(tastes) or '-'}; "
                     f"ranked with by: {', '.join(ranking) or '-'}")
    target = rollback_target(catalog)
    lines.append(f"live: {catalog.live}; rollback target: "
                 + (f"{target} (`flitfeed versions rollback`)" if target else "none"))
    return "\n".join(lines)


def cmd_versions_drop(args: argparse.Namespace, settings: Settings) -> int:
    from flitfeed.index.versions import VersionError
    from flitfeed.startup import wait_for_kafka
    from flitfeed.streams.reembed import drop_version

    wait_for_kafka(settings)
    try:
        deleted = drop_version(settings, args.version)
    except VersionError as exc:
        print(f"flitfeed versions drop: {exc}", file=sys.stderr)
        return 2
    print(f"{args.version}: dropped, {deleted:,} records deleted (their disk is freed as the topics compact)")
    return 0


def cmd_versions_switch(args: argparse.Namespace, settings: Settings) -> int:
    """``versions switch VERSION`` and ``versions rollback`` (``args.version`` None): 0 switched and every ranker
    confirmed, 2 refused (nothing changed), 3 switched but some ranker did not confirm in time."""
    from flitfeed.index.versions import VersionError
    from flitfeed.startup import wait_for_kafka
    from flitfeed.streams.reembed import switch_version

    command = "switch" if args.version is not None else "rollback"
    wait_for_kafka(settings)
    try:
        report = switch_version(settings, args.version, wait_rankers_s=args.wait_rankers,
                                force_tastes=args.force_tastes)
    except VersionError as exc:
        print(f"flitfeed versions {command}: {exc}", file=sys.stderr)
        return 2
    return print_switch(report)


cmd_versions_rollback = cmd_versions_switch


def print_switch(report) -> int:  # noqa: ANN001 - SwitchReport
    if report.forced_tastes:
        print(f"switched although worker(s) {', '.join(report.forced_tastes)} had not rebuilt their users' tastes in "
              f"{report.live} (--force-tastes): those users get cold-start feeds until their next interaction",
              file=sys.stderr)
    print(f"live: {report.live} (was {report.left}); rollback target: "
          + (f"{report.rollback_target} (`flitfeed versions rollback`)" if report.rollback_target else "none"))
    if report.rankers_missing:
        print(f"ranker(s) {', '.join(report.rankers_missing)} did not confirm ranking with {report.live} within "
              "--wait-rankers; the switch stands, they follow when they catch up "
              f"(confirmed: {', '.join(report.rankers) or 'none'})", file=sys.stderr)
        return 3
    print(f"rankers ranking with {report.live}: {', '.join(report.rankers) or 'none running (they start with it)'}")
    return 0


def cmd_versions_compare(args: argparse.Namespace, settings: Settings) -> int:
    from flitfeed.encoders.compare import run_compare

    return run_compare(args, settings)


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from flitfeed.evaluation.run import METHODS, evaluate

    methods = tuple(args.methods.split(",")) if args.methods else METHODS
    command = "flitfeed evaluate " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else None
    results, _ = evaluate(args.dataset, args.out, extra_text=args.extra_text, start=args.start, events=args.events,
                          methods=methods, settings=settings, plots=not args.no_plots, command=command,
                          jobs=args.jobs, holdout_from=args.holdout_from)
    for name, row in results["methods"].items():
        print(f"{name:16s} HR@10 {row['hr@10']:.4f}  NDCG@10 {row['ndcg@10']:.4f}  MRR {row['mrr@10']:.4f}  "
              f"coverage {row['coverage']:.3f}  scored {row['events_scored']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from flitfeed.logs import configure

    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"flitfeed: invalid setting: {explain(exc)}", file=sys.stderr)
        return 2
    configure(settings.log_level, service=args.command)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from flitfeed.kafka.local_broker import BrokerScriptMissing
    from flitfeed.encoders.factory import EncoderConfigError
    from flitfeed.kafka.security import SecurityConfigError
    from flitfeed.startup import EXIT_DEPENDENCY, DependencyUnavailable

    try:
        return int(args.func(args, settings) or 0)
    except (DependencyUnavailable, SecurityConfigError, BrokerScriptMissing, EncoderConfigError) as exc:
        # One clear line instead of a traceback: what was missing and what to do.
        log.error("cannot start %s: %s", args.command, exc)
        return EXIT_DEPENDENCY


if __name__ == "__main__":
    sys.exit(main())
