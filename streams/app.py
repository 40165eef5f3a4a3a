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
from typing import Any, Callable, Mapping, Sequence

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
from flitfeed.settings import Settings
from flitfeed.streams.topics import (TOPIC_DEAD_LETTERS, TOPIC_FLIT_VECTORS, TOPIC_FLITS, TOPIC_INTERACTIONS,
                                     TOPIC_MODEL_VERSIONS, TOPIC_PARKED, TOPIC_USER_STATES)
from flitfeed.streams import faust_compat
from flitfeed.streams.faust_compat import ChangelogHandover
from flitfeed.streams.replicator import AsyncFlitVectorReplicator, FlitVectorReplicator
from flitfeed.streams.faust_compat.tables import owned_users, profiles_table, table_recovered
from flitfeed.streams.state_store import store_url
from flitfeed.streams.user_updates import taste_params

log = logging.getLogger(__name__)

#: The Faust table holding every owned user's profile (changelog-backed: survives restarts).
USER_PROFILES_TABLE = "user_profiles"


@dataclass
class WorkerSpace:
    """One embedding version the worker holds: its encoder and its own index replica.

    The live version's index answers the interactions (which flit, which vector); every other version held
    (being built, or kept for a rollback) gets every new flit too, and keeps each user's taste in its space,
    so a switch finds everything ready and a rollback needs no re-embedding.
    """

    version: str
    encoder: Encoder
    index: VectorIndex
    offsets_path: Path | None
    replicator: AsyncFlitVectorReplicator | None = None
    #: Every owned user's taste rebuilt in this version, and said so (``tastes`` ack).
    swept: bool = False
    #: Dropped from the catalogue: the replication task closes and deletes it.
    retired: bool = False

    def vectors_of(self, flit_ids: "Sequence[str]") -> dict[str, Any]:
        """The vectors this version's index holds for ``flit_ids`` (those it does not know are left out)."""
        return {f: p.vector for f, p in self.index.retrieve_many(list(flit_ids)).items()}


@dataclass
class WorkerContext:
    """Everything an agent needs, passed explicitly instead of module globals."""

    settings: Settings
    #: The live version's encoder, index and taste parameters (swapped together at a switch).
    encoder: Encoder
    index: VectorIndex
    metrics: Metrics
    params: TasteParams
    app: faust.App
    profiles: Any  # faust Table: user_id -> UserProfile.to_bytes() (older forms read by UserProfile.from_stored)
    flits: faust.TopicT
    interactions: faust.TopicT
    parked: faust.TopicT
    flit_vectors: faust.TopicT
    user_states: faust.TopicT
    dead_letters: faust.TopicT
    changelog: ChangelogHandover
    model_versions: faust.TopicT
    #: Every version held, the live one included (version → space).
    spaces: dict[str, WorkerSpace] = dataclasses.field(default_factory=dict)
    #: The version keyed by bare flit id on ``flit-vectors`` (``index/spaces.py``).
    bare: str | None = None
    #: Opens the space of a version the catalogue adds (blocking: called off the loop).
    open_space: Callable[[str, str], WorkerSpace] | None = None
    monitors: WorkerMonitors | None = None
    #: Held by an agent from reading profiles to storing them (the interactions' batches, the parked
    #: retries): a batch awaits its sends in between, and a retry of one of its users storing meanwhile
    #: would be overwritten by the batch's older copy.
    profile_writes: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)

    @property
    def live(self) -> str:
        return self.encoder.model_version

    @property
    def builds(self) -> dict[str, Encoder]:
        """The other versions held (version → encoder): every new flit is embedded with them too."""
        return {v: s.encoder for v, s in self.spaces.items() if v != self.live and not s.retired}

    @property
    def replicator(self) -> AsyncFlitVectorReplicator | None:
        space = self.spaces.get(self.live)
        return None if space is None else space.replicator

    def others(self) -> dict[str, Callable[[Sequence[str]], dict[str, Any]]]:
        """Flit-vector lookups in every version held: the tastes kept in each (the live one's rebuilds a taste
        that had to start anew, e.g. a user whose taste the sweep had not reached before a switch)."""
        return {v: s.vectors_of for v, s in self.spaces.items() if not s.retired}

    def make_live(self, version: str) -> None:
        """Switch: new flits' interactions are looked up, and tastes published, in ``version`` from now on."""
        space, before = self.spaces[version], self.spaces.get(self.live)
        for held, reports in ((before, False), (space, True)):
            if held is not None and held.replicator is not None:
                held.replicator.reports = reports
        self.encoder, self.index = space.encoder, space.index
        self.params = dataclasses.replace(self.params, version=version)
        self.metrics.model.info({"model_version": version, "dim": str(space.encoder.dim)})
        self.metrics.version_switches.labels(service=self.metrics.service).inc()
        # Drift is measured within one space: the new version's reference starts from its own vectors
        # (another model, possibly another dimension).
        self.monitors = WorkerMonitors(self.settings.monitoring, self.metrics, space.encoder.dim)

    async def send(self, topic: faust.TopicT, key: bytes | None, value: bytes) -> "asyncio.Future[Any]":
        """Hand a record to the Kafka client; returns once it is queued there, with the future of its delivery
        (the broker's acknowledgement), which the caller may await."""
        # Every record names the replica that produced it (header flitfeed-instance).
        delivery = await topic.send(key=key, value=value, headers=instance_headers(self.settings.kafka))
        self.metrics.produced.labels(service=self.metrics.service, topic=topic.get_topic_name()).inc()
        return delivery  # type: ignore[return-value]


def _raw_topic(app: faust.App, settings: Settings, name: str) -> faust.TopicT:
    return app.topic(settings.kafka.topic(name), key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw", partitions=settings.kafka.partitions)


def create_worker(settings: Settings, spaces: Mapping[str, WorkerSpace], live: str, metrics: Metrics, *,
                  bare: str | None, open_space: Callable[[str, str], WorkerSpace] | None = None) -> WorkerContext:
    """The worker, holding ``spaces`` (every version the catalogue holds, loaded by the caller before any flit
    is processed, so none escapes them); ``live``: the version feeds are ranked with; ``bare``: the version
    keyed by bare flit id; ``open_space(version, model)``: opens a version the catalogue adds later."""
    brokers = [f"kafka://{b.strip()}" for b in settings.kafka.bootstrap_servers.split(",") if b.strip()]
    # Faust keeps its own files there; with a Qdrant server nothing else creates the data dir.
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.kafka.app_id,
        broker=brokers,
        # The profiles table's store (settings.worker.state_store; streams/state_store.py): the app's only table.
        store=store_url(settings.worker),
        # Faust's default datadir is "<app id>-data" in the working directory; keep it with our data.
        datadir=str(settings.data_dir / "faust"),
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        consumer_auto_offset_reset="earliest",
        # Commit often: on a crash, what was applied but not committed is re-delivered and skipped by event id.
        broker_commit_every=100,
        broker_commit_interval=1.0,
        # A crashed worker's partitions move to a new member after this (not Faust's 60 s default).
        broker_session_timeout=settings.kafka.group_session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.kafka.group_session_timeout_s / 3),
        web_enabled=False,
        autodiscover=False,
        # TLS/SASL from the same settings as the confluent-kafka clients (None = PLAINTEXT).
        broker_credentials=faust_credentials(settings.kafka),
        # The instance id names this replica in the group's member list.
        broker_client_id=settings.kafka.instance(),
        # The Kafka clients, tuned for latency under load (BENCHMARKS.md "Worker batches"): a short linger and
        # batches that hold more than one user state let a batch's records share a few requests.
        producer_linger=settings.worker.worker_producer_linger_ms / 1000.0,
        producer_max_batch_size=settings.worker.worker_producer_batch_bytes,
    )
    def count_refetch(tp: Any, offset: int, outcome: str) -> None:
        metrics.refetched.labels(service=metrics.service, topic=tp.topic, outcome=outcome).inc()

    # Faust may skip or drop messages it should process (README, Known limits): every workaround, on this
    # app only. Refuses a faust-streaming release they were not verified against. The parked-retry agent
    # holds a record unacked for up to park_max_delay_s on purpose.
    workarounds = faust_compat.install(app, count_refetch, held_unacked_s=settings.worker.park_max_delay_s)
    encoder = spaces[live].encoder
    ctx = WorkerContext(
        settings=settings, encoder=encoder, index=spaces[live].index, metrics=metrics, app=app,
        # The taste is learned in the live version's space, and says so; the others are kept beside it.
        params=dataclasses.replace(taste_params(settings.worker), version=live),
        # In memory or in RocksDB files (settings.worker.state_store): streams/state_store.py.
        profiles=profiles_table(app, USER_PROFILES_TABLE, settings.worker, settings.kafka.partitions, metrics),
        flits=_raw_topic(app, settings, TOPIC_FLITS),
        interactions=_raw_topic(app, settings, TOPIC_INTERACTIONS),
        parked=_raw_topic(app, settings, TOPIC_PARKED),
        flit_vectors=_raw_topic(app, settings, TOPIC_FLIT_VECTORS),
        user_states=_raw_topic(app, settings, TOPIC_USER_STATES),
        dead_letters=_raw_topic(app, settings, TOPIC_DEAD_LETTERS),
        changelog=workarounds.changelog,
        model_versions=_raw_topic(app, settings, TOPIC_MODEL_VERSIONS),
        spaces=dict(spaces), bare=bare, open_space=open_space,
    )
    metrics.model.info({"model_version": encoder.model_version, "dim": str(encoder.dim)})
    ctx.monitors = WorkerMonitors(settings.monitoring, metrics, encoder.dim)
    # /readyz: partitions assigned (no rebalance in progress) and the index replica caught up with the log.
    # ... and the profiles read back (the changelog's tail, or all of it): until then no interaction is applied.
    metrics.health.require("partitions_assigned", "flit_vectors_caught_up", "user_state_recovered")

    from flitfeed.streams.agents import embed_flits, retry_parked, update_users

    embed_flits.register(ctx)
    update_users.register(ctx)
    retry_parked.register(ctx)

    @app.task
    async def replicate_flit_vectors() -> None:
        # Flits embedded by *other* worker processes reach this process's indexes through the log, one
        # replica per version held; versions the catalogue adds or drops start or end theirs.
        await replicate_spaces(ctx)

    @app.task
    async def follow_versions() -> None:
        # Versions added, switched, made ready or dropped: follow the catalogue (``follow_catalog``).
        await follow_catalog(ctx)

    @app.timer(interval=1.0)
    async def heartbeat() -> None:
        # Runs on the event loop: a loop blocked by a stuck agent stops the beat and /livez turns 503.
        metrics.health.beat()
        metrics.health.ready("partitions_assigned", not app.rebalancing and bool(app.consumer.assignment()))
        metrics.health.ready("flit_vectors_caught_up", ctx.replicator is not None and ctx.replicator.caught_up)
        metrics.health.ready("user_state_recovered", table_recovered(app))

    @app.timer(interval=settings.monitoring.monitoring_interval_s)
    async def export_gauges() -> None:
        metrics.users.labels(service=metrics.service).set(owned_users(ctx.profiles))
        metrics.index_points.labels(service=metrics.service).set(ctx.index.count())
        if ctx.monitors is not None:
            ctx.monitors.export()

    @app.task
    async def report_lag() -> None:
        # A daemon thread with its own consumer (never joins the group); it ends with the process.
        start_lag_reporter(settings.kafka, settings.monitoring, metrics, settings.kafka.app_id, [
            settings.kafka.topic(TOPIC_FLITS), settings.kafka.topic(TOPIC_INTERACTIONS), settings.kafka.topic(TOPIC_PARKED)])

    return ctx


async def replicate_spaces(ctx: WorkerContext) -> None:
    """Run one replica per version held until the worker stops; a retired version's replica is closed and
    its index deleted (the version was dropped: its disk is freed)."""
    running: dict[str, asyncio.Task] = {}
    try:
        while not ctx.app.should_stop:
            for version, space in list(ctx.spaces.items()):
                if version not in running and not space.retired:
                    running[version] = asyncio.ensure_future(_replicate(ctx, space))
            for version, task in list(running.items()):
                space = ctx.spaces.get(version)
                if not task.done():
                    continue
                del running[version]  # a replica that failed to open is started again next round
                if space is not None and space.retired:
                    del ctx.spaces[version]
                    await asyncio.get_running_loop().run_in_executor(None, _destroy, space)
            await asyncio.sleep(0.2)
    finally:
        await asyncio.gather(*running.values(), return_exceptions=True)


def _destroy(space: WorkerSpace) -> None:
    from flitfeed.index.spaces import destroy_replica

    destroy_replica(space.index, space.offsets_path)
    log.info("dropped version's index deleted", extra={"version": space.version})


async def _replicate(ctx: WorkerContext, space: WorkerSpace) -> None:
    settings, metrics = ctx.settings, ctx.metrics
    # With a Qdrant server the agents write the live version (and new flits of every version); the versions
    # being rebuilt from the log get their re-embedded vectors from their replicas (idempotent upserts).
    write = not is_shared(settings.index) or space.version != ctx.live
    # The replicator's Kafka calls block: they run on a thread of their own, never on this loop.
    space.replicator = replicator = await AsyncFlitVectorReplicator.open(
        lambda: FlitVectorReplicator(settings, space.index, space.offsets_path, metrics, write_index=write,
                                     gate=VersionGate(space.version)))
    replicator.reports = space.version == ctx.live
    try:
        while not ctx.app.should_stop and not space.retired:
            try:
                await replicator.poll_once(timeout=0.05)  # waits for records off the loop
            except Exception:  # keep replicating; the error is logged with its traceback
                log.exception("flit-vector replication failed", extra={"version": space.version})
                await asyncio.sleep(1.0)
    finally:
        await replicator.close()  # stores the final read position (saves are throttled while running)


async def follow_catalog(ctx: WorkerContext) -> None:
    """Keep the worker's versions equal to the catalogue's (``index/spaces.py`` ``held_versions``): open the
    space of a version added (and say it embeds new flits with it), retire a dropped one, switch the live
    one, and rebuild every owned user's taste in a version once it is ready (and say so). The follower's
    Kafka calls and model loading run off the loop."""
    from concurrent.futures import ThreadPoolExecutor

    from flitfeed.index.spaces import held_versions
    from flitfeed.index.versions import entry
    from flitfeed.streams.version_log import CatalogFollower, ack_record

    settings, loop = ctx.settings, asyncio.get_running_loop()
    thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-versions")
    for version in ctx.builds:  # opened before the agents started
        await ctx.send(ctx.model_versions, *ack_record(settings.kafka, version))
    follower, catalog = None, None
    failed: set[str] = set()
    try:
        follower = await loop.run_in_executor(thread, CatalogFollower, settings.kafka)
        while not ctx.app.should_stop:
            try:
                newer = await loop.run_in_executor(thread, follower.poll, 1.0)
            except Exception:  # keep following; the error is logged with its traceback
                log.exception("reading model-versions failed")
                await asyncio.sleep(1.0)
                continue
            catalog = newer or catalog
            if catalog is None:
                continue
            if newer is not None:
                wanted = held_versions(catalog)
                for version, space in ctx.spaces.items():
                    if version not in wanted and version != ctx.live and not space.retired:
                        space.retired = True
                        log.info("no longer holding a version", extra={"version": version})
                for version in wanted:
                    if version in ctx.spaces or version in failed or ctx.open_space is None:
                        continue
                    try:
                        spec = entry(catalog, version)
                        ctx.spaces[version] = await loop.run_in_executor(None, ctx.open_space, version, spec.model)
                    except Exception:
                        failed.add(version)
                        log.exception("cannot open a version of the catalogue; not embedding with it",
                                      extra={"version": version})
                        continue
                    await ctx.send(ctx.model_versions, *ack_record(settings.kafka, version))
                    log.info("embedding new flits with a version of the catalogue too", extra={"version": version})
                if catalog.live != ctx.live and catalog.live in ctx.spaces:
                    previous = ctx.live
                    ctx.make_live(catalog.live)
                    log.info("switched the live embedding version", extra={"version": catalog.live,
                                                                           "previous": previous})
            for version, space in list(ctx.spaces.items()):
                held = entry(catalog, version)
                if (version != ctx.live and not space.swept and not space.retired and held is not None
                        and held.state == "ready" and space.replicator is not None and owns_its_users(ctx)):
                    if await sweep_tastes(ctx, space):
                        space.swept = True
                        await ctx.send(ctx.model_versions, *ack_record(settings.kafka, version, kind="tastes"))
    finally:
        if follower is not None:
            await loop.run_in_executor(thread, follower.close)
        thread.shutdown(wait=False)


def owns_its_users(ctx: WorkerContext) -> bool:
    """Partitions assigned, no rebalance under way, and the profiles table recovered: a sweep before that
    would miss users and still say it rebuilt them all."""
    app = ctx.app
    recovery = getattr(app.tables, "recovery", None)
    recovered = recovery is None or recovery.completed.is_set()
    return recovered and not app.rebalancing and bool(app.assignor.assigned_actives())


async def sweep_tastes(ctx: WorkerContext, space: WorkerSpace, timeout_s: float = 600.0) -> bool:
    """Rebuild in ``space``'s version the taste of every user this worker owns that lacks one, and publish
    their states (same trigger: the ranker takes the taste in without publishing a feed).

    First the space's replica reads ``flit-vectors`` to the end it has now (the re-embedding wrote every
    vector before it marked the version ready). The profiles are not stored (Faust writes a table only
    from its own partition's stream); the next interaction of a user rebuilds the taste into its profile
    from the same history. False when the replica did not catch up within ``timeout_s`` (tried again).
    """
    import time as _time

    from aiokafka.partitioner import murmur2  # the partitioner of Faust and of our producers (Java's)

    from flitfeed.streams.user_updates import refresh_tastes

    loop = asyncio.get_running_loop()
    replicator = space.replicator
    assert replicator is not None
    end = await loop.run_in_executor(None, replicator.log_end)
    deadline = _time.monotonic() + timeout_s
    while any(replicator.position().get(p, 0) < high for p, high in end.items() if high > 0):
        if _time.monotonic() > deadline or ctx.app.should_stop:
            log.warning("version's replica did not catch up; tastes not rebuilt yet", extra={"version": space.version})
            return False
        await asyncio.sleep(0.2)
    topic = ctx.interactions.get_topic_name()
    mine = {tp.partition for tp in ctx.app.assignor.assigned_actives() if tp.topic == topic}
    others = {space.version: space.vectors_of}
    rebuilt, started = 0, _time.monotonic()
    users = list(ctx.profiles.keys())
    log.info("rebuilding tastes in a version", extra={"version": space.version, "profiles": len(users)})
    for n, user_id in enumerate(users):
        # Read now, not from a snapshot: the agents go on applying interactions meanwhile, and a state built
        # from an older profile would replace the user's newer one (ranker and compacted topic alike).
        stored = ctx.profiles.get(user_id)
        if n and n % 10_000 == 0:  # a sweep over a million profiles takes minutes: say how far it is
            log.info("rebuilding tastes", extra={"version": space.version, "done": n, "of": len(users),
                                                 "rebuilt": rebuilt,
                                                 "per_s": round(n / max(1e-9, _time.monotonic() - started))})
        # The table also holds standby copies of other workers' users: theirs are theirs to publish.
        if stored is None or (murmur2(str(user_id).encode()) & 0x7FFFFFFF) % ctx.settings.kafka.partitions not in mine:
            continue
        refreshed = refresh_tastes(stored, others, ctx.params, _time.time())
        if refreshed is not None:
            await ctx.send(ctx.user_states, str(user_id).encode(), refreshed[1].to_bytes())
            rebuilt += 1
        if n % 200 == 0:
            await asyncio.sleep(0)  # let the agents run
    log.info("tastes rebuilt in a version", extra={"version": space.version, "users": rebuilt})
    return True
