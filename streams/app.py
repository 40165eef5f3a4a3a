"""The Faust worker: one App, its topics and table, and the agents.

Build it with :func:`create_worker`; the agents live in ``streams/agents/``
(one per file) and call the plain domain functions in ``streams/embedding.py``
and ``streams/user_updates.py``. All inputs are read as raw bytes and decoded
by flitfeed itself, so a message Faust could not deserialize still reaches the
dead-letter topic with its original bytes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust

from flitfeed.encoders.base import Encoder
from flitfeed.encoders.user_vector import TasteParams
from flitfeed.index.base import VectorIndex
from flitfeed.index.factory import is_shared
from flitfeed.index.versions import VersionGate
from flitfeed.kafka.config import instance_headers
from flitfeed.kafka.security import faust_credentials
from flitfeed.monitoring.metrics import Metrics
from flitfeed.monitoring.monitors import WorkerMonitors, start_lag_reporter
from flitfeed.settings import (TOPIC_DEAD_LETTERS, TOPIC_FLIT_VECTORS, TOPIC_FLITS, TOPIC_INTERACTIONS,
                               TOPIC_MODEL_VERSIONS, TOPIC_PARKED, TOPIC_USER_STATES, Settings)
from flitfeed.streams import faust_compat
from flitfeed.streams.faust_compat import ChangelogHandover
from flitfeed.streams.replicator import AsyncFlitVectorReplicator, FlitVectorReplicator
from flitfeed.streams.user_updates import taste_params

log = logging.getLogger(__name__)

#: The Faust table holding every owned user's profile (changelog-backed: survives restarts).
USER_PROFILES_TABLE = "user_profiles"


@dataclass
class WorkerContext:
    """Everything an agent needs, passed explicitly instead of module globals."""

    settings: Settings
    encoder: Encoder
    index: VectorIndex
    metrics: Metrics
    params: TasteParams
    app: faust.App
    profiles: Any  # faust Table: user_id -> UserProfile.to_dict()
    flits: faust.TopicT
    interactions: faust.TopicT
    parked: faust.TopicT
    flit_vectors: faust.TopicT
    user_states: faust.TopicT
    dead_letters: faust.TopicT
    changelog: ChangelogHandover
    model_versions: faust.TopicT
    #: Versions being built (version → encoder): every new flit is embedded with them too.
    builds: dict[str, Encoder] = dataclasses.field(default_factory=dict)
    replicator: AsyncFlitVectorReplicator | None = None
    monitors: WorkerMonitors | None = None

    async def send(self, topic: faust.TopicT, key: bytes | None, value: bytes) -> None:
        # Every record names the replica that produced it (header flitfeed-instance).
        await topic.send(key=key, value=value, headers=instance_headers(self.settings))
        self.metrics.produced.labels(service=self.metrics.service, topic=topic.get_topic_name()).inc()


def _raw_topic(app: faust.App, settings: Settings, name: str) -> faust.TopicT:
    return app.topic(settings.topic(name), key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw", partitions=settings.partitions)


def create_worker(settings: Settings, encoder: Encoder, index: VectorIndex, metrics: Metrics,
                  offsets_path: Path | None, builds: dict[str, Encoder] | None = None) -> WorkerContext:
    """The worker; ``builds``: the versions being built when it starts (version → encoder, loaded by the caller
    before any flit is processed, so none escapes them)."""
    brokers = [f"kafka://{b.strip()}" for b in settings.bootstrap_servers.split(",") if b.strip()]
    # Faust keeps its own files there; with a Qdrant server nothing else creates the data dir.
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=brokers,
        store="memory://",
        # Faust's default datadir is "<app id>-data" in the working directory; keep it with our data.
        datadir=str(settings.data_dir / "faust"),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        consumer_auto_offset_reset="earliest",
        # Commit often: on a crash, what was applied but not committed is re-delivered and skipped by event id.
        broker_commit_every=100,
        broker_commit_interval=1.0,
        # A crashed worker's partitions move to a new member after this (not Faust's 60 s default).
        broker_session_timeout=settings.group_session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.group_session_timeout_s / 3),
        web_enabled=False,
        autodiscover=False,
        # TLS/SASL from the same settings as the confluent-kafka clients (None = PLAINTEXT).
        broker_credentials=faust_credentials(settings),
        # The instance id names this replica in the group's member list.
        broker_client_id=settings.instance(),
    )
    def count_refetch(tp: Any, offset: int, outcome: str) -> None:
        metrics.refetched.labels(service=metrics.service, topic=tp.topic, outcome=outcome).inc()

    # Faust may skip or drop messages it should process (README, Known limits): every workaround, on this
    # app only. Refuses a faust-streaming release they were not verified against. The parked-retry agent
    # holds a record unacked for up to park_max_delay_s on purpose.
    workarounds = faust_compat.install(app, count_refetch, held_unacked_s=settings.park_max_delay_s)
    ctx = WorkerContext(
        settings=settings, encoder=encoder, index=index, metrics=metrics, app=app,
        # The taste is learned in the encoder's space, and says so (a taste of another version is started anew).
        params=dataclasses.replace(taste_params(settings), version=encoder.model_version),
        # Values are plain JSON dicts: value_type=dict makes Faust look for a Record codec on recovery.
        profiles=app.Table(USER_PROFILES_TABLE, default=None, partitions=settings.partitions, key_type=str),
        flits=_raw_topic(app, settings, TOPIC_FLITS),
        interactions=_raw_topic(app, settings, TOPIC_INTERACTIONS),
        parked=_raw_topic(app, settings, TOPIC_PARKED),
        flit_vectors=_raw_topic(app, settings, TOPIC_FLIT_VECTORS),
        user_states=_raw_topic(app, settings, TOPIC_USER_STATES),
        dead_letters=_raw_topic(app, settings, TOPIC_DEAD_LETTERS),
        changelog=workarounds.changelog,
        model_versions=_raw_topic(app, settings, TOPIC_MODEL_VERSIONS),
        builds=dict(builds or {}),
    )
    metrics.model.info({"model_version": encoder.model_version, "dim": str(encoder.dim)})
    ctx.monitors = WorkerMonitors(settings, metrics, encoder.dim)
    # /readyz: partitions assigned (no rebalance in progress) and the index replica caught up with the log.
    metrics.health.require("partitions_assigned", "flit_vectors_caught_up")

    from flitfeed.streams.agents import embed_flits, retry_parked, update_users

    embed_flits.register(ctx)
    update_users.register(ctx)
    retry_parked.register(ctx)

    @app.task
    async def replicate_flit_vectors() -> None:
        # Flits embedded by *other* worker processes reach this process's index through the log. The
        # replicator's Kafka calls block: they run on a thread of their own, never on this loop.
        ctx.replicator = replicator = await AsyncFlitVectorReplicator.open(
            lambda: FlitVectorReplicator(settings, index, offsets_path, metrics, write_index=not is_shared(settings),
                                         gate=VersionGate(encoder.model_version)))
        try:
            while not app.should_stop:
                try:
                    await replicator.poll_once(timeout=0.05)  # waits for records off the loop
                except Exception:  # keep replicating; the error is logged with its traceback
                    log.exception("flit-vector replication failed")
                    await asyncio.sleep(1.0)
        finally:
            await replicator.close()  # stores the final read position (saves are throttled while running)

    @app.task
    async def follow_versions() -> None:
        # Versions being built: embed every new flit with them too, and say so (re-embedding waits for it).
        await follow_builds(ctx)

    @app.timer(interval=1.0)
    async def heartbeat() -> None:
        # Runs on the event loop: a loop blocked by a stuck agent stops the beat and /livez turns 503.
        metrics.health.beat()
        metrics.health.ready("partitions_assigned", not app.rebalancing and bool(app.consumer.assignment()))
        metrics.health.ready("flit_vectors_caught_up", ctx.replicator is not None and ctx.replicator.caught_up)

    @app.timer(interval=settings.monitoring_interval_s)
    async def export_gauges() -> None:
        metrics.users.labels(service=metrics.service).set(len(ctx.profiles))
        metrics.index_points.labels(service=metrics.service).set(index.count())
        if ctx.monitors is not None:
            ctx.monitors.export()

    @app.task
    async def report_lag() -> None:
        # A daemon thread with its own consumer (never joins the group); it ends with the process.
        start_lag_reporter(settings, metrics, settings.app_id, [
            settings.topic(TOPIC_FLITS), settings.topic(TOPIC_INTERACTIONS), settings.topic(TOPIC_PARKED)])

    return ctx


async def follow_builds(ctx: WorkerContext) -> None:
    """Keep ``ctx.builds`` equal to the catalogue's versions being built, acknowledging each one the worker
    embeds with. The follower's Kafka calls and model loading run off the loop."""
    from concurrent.futures import ThreadPoolExecutor

    from flitfeed.encoders.factory import encoder_for_version
    from flitfeed.index.versions import builds
    from flitfeed.streams.version_log import CatalogFollower, ack_record

    settings, loop = ctx.settings, asyncio.get_running_loop()
    thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-versions")
    for version in ctx.builds:  # loaded before the agents started
        await ctx.send(ctx.model_versions, *ack_record(settings, version))
    follower = None
    try:
        follower = await loop.run_in_executor(thread, CatalogFollower, settings)
        failed: set[str] = set()
        while not ctx.app.should_stop:
            try:
                catalog = await loop.run_in_executor(thread, follower.poll, 1.0)
            except Exception:  # keep following; the error is logged with its traceback
                log.exception("reading model-versions failed")
                await asyncio.sleep(1.0)
                continue
            if catalog is None:
                continue
            wanted = {v.version: v for v in builds(catalog)}
            for version in [v for v in ctx.builds if v not in wanted]:
                del ctx.builds[version]
                log.info("no longer embedding with a version", extra={"version": version})
            for version, spec in wanted.items():
                if version in ctx.builds or version in failed:
                    continue
                try:
                    encoder = await loop.run_in_executor(None, encoder_for_version, version, spec.model, settings)
                except Exception:
                    failed.add(version)
                    log.exception("cannot load the model of a version being built; not embedding with it",
                                  extra={"version": version})
                    continue
                ctx.builds[version] = encoder
                await ctx.send(ctx.model_versions, *ack_record(settings, version))
                log.info("embedding new flits with a version being built too", extra={"version": version})
    finally:
        if follower is not None:
            await loop.run_in_executor(thread, follower.close)
        thread.shutdown(wait=False)
