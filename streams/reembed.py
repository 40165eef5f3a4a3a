"""Re-embedding the flits of the log with another model: building a new embedding version.

``flitfeed reembed --model static`` reads the ``flits`` topic (the source of truth) from where the last
run of the same version stopped, embeds every valid flit with the new model and publishes its vector to
``flit-vectors`` keyed ``<flit_id>|<tag>`` (:func:`~flitfeed.index.versions.vector_key`), next to the live
version's records. Every replica keeps the new version's vectors out of its index
(:class:`~flitfeed.index.versions.VersionGate`), so the live system keeps serving and ingesting
meanwhile. Once the version is registered, every worker embeds each new flit with it too and says so
(a ``VersionAck``); after its first pass the run waits for those acknowledgements and re-embeds what
arrived in between, after which the version is ``ready`` and the workers keep it complete. Progress is a line on the terminal, metrics (``flitfeed_reembed_*``) and the catalogue
(``model-versions``): the next offset of each partition is recorded there after its vectors are
acknowledged, so a run killed at any point resumes where the catalogue says, and re-embedding a flit
twice only rewrites the same record.

Once ready, the run waits (``--wait-tastes``) until every worker says it rebuilt its users' tastes in the
version (a ``tastes`` acknowledgement): then it can be switched to. :func:`switch_version` makes a ready
version live (or, given none, rolls back to the version live before) and waits for every ranker to say it
serves it (a ``serving`` acknowledgement).

The decisions are pure (:func:`decode_for_reembed`, :func:`remaining`, :func:`plan_switch`,
:func:`keys_to_delete`); :func:`reembed`, :func:`switch_version` and :func:`drop_version` run them against
Kafka.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, Mapping, TextIO

from confluent_kafka import Producer

from flitfeed.encoders.base import Encoder
from flitfeed.encoders.factory import model_spec_of
from flitfeed.index.factory import is_shared
from flitfeed.index.versions import (ACK_KINDS, VersionError, ack_prefix, bare_version, begin_build,
                                     catalog_with_live, drop, entry, make_room, mark_ready, record_progress,
                                     rollback, rollback_target, switch, vector_records, version_tag)
from flitfeed.kafka.config import instance_headers, producer_config
from flitfeed.kafka.reading import read_partition, watermarks
from flitfeed.kafka.writing import produce_with_room
from flitfeed.monitoring.metrics import Metrics
from flitfeed.progress import Progress
from flitfeed.settings import EventLimits, KafkaConfig, Settings
from flitfeed.streams.topics import TOPIC_FLIT_VECTORS, TOPIC_FLITS, TOPIC_MODEL_VERSIONS
from flitfeed.streams.embedding import flit_text
from flitfeed.streams.events import DecodeError, Flit, VersionCatalog, decode_flit
from flitfeed.streams.version_log import VersionsLog, read_catalog, read_versions_log, write_catalog

__all__ = ["ReembedReport", "SwitchReport", "collections_to_drop", "decode_for_reembed", "drop_version",
           "group_members", "keys_to_delete",
           "plan_switch", "rankers_not_serving", "reembed", "remaining", "switch_version", "workers_not_following",
           "workers_without_tastes"]

log = logging.getLogger(__name__)

#: The catalogue's progress is written at most this often (and at the end of every partition).
CHECKPOINT_INTERVAL_S = 2.0


@dataclass
class ReembedReport:
    version: str
    #: Flits embedded and published by this run.
    embedded: int = 0
    #: Messages of the log that are not valid flits (the worker dead-lettered them when they arrived).
    skipped: int = 0
    #: ``flits`` partition → the next offset now re-embedded.
    positions: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0
    #: Workers that did not confirm embedding new flits with the version: it stays ``building``.
    unconfirmed: list[str] = field(default_factory=list)
    #: The version is ``ready`` (the log re-embedded and every worker keeps it complete).
    ready: bool = False
    #: Ready, but these workers had not rebuilt their users' tastes in it within ``--wait-tastes`` (None:
    #: not waited for, ``--wait-tastes 0``): a switch is refused until they have.
    tastes_missing: list[str] | None = None


def remaining(positions: Mapping[int, int], watermarks: Mapping[int, tuple[int, int]]) -> dict[int, tuple[int, int]]:
    """The ``[start, end)`` offsets still to re-embed per partition, from the stored ``positions`` and each
    partition's ``(low, high)`` watermarks (records below ``low`` were deleted by retention).

    >>> remaining({0: 5, 1: 9}, {0: (0, 8), 1: (0, 9), 2: (3, 4)})
    {0: (5, 8), 2: (3, 4)}
    """
    todo = {}
    for p, (low, high) in sorted(watermarks.items()):
        start = max(low, positions.get(p, 0))
        if start < high:
            todo[p] = (start, high)
    return todo


def decode_for_reembed(value: bytes | None, produced_at_s: float, limits: EventLimits) -> Flit | None:
    """A log message as the worker decoded it when it arrived (its time checks made against the time it was
    produced, not today), or None for one it rejected."""
    try:
        return decode_flit(value, now=produced_at_s, limits=limits)
    except DecodeError:
        return None


def _watermarks(kafka: KafkaConfig) -> dict[int, tuple[int, int]]:
    found = watermarks(kafka, kafka.topic(TOPIC_FLITS))
    if not found:
        raise VersionError(f"topic {kafka.topic(TOPIC_FLITS)} does not exist: nothing to re-embed "
                           "(run `flitfeed topics create`)")
    return found


#: What a membership check names when the broker cannot describe the group (nobody can be confirmed).
UNDESCRIBED = "(the {role} group could not be described)"


def group_members(kafka: KafkaConfig, group: str) -> set[str] | None:
    """The instances in consumer group ``group`` now (their client id), or None when it cannot be described."""
    from confluent_kafka import KafkaException

    from flitfeed.kafka.groups import describe_group

    try:
        return set(describe_group(kafka, group).members)
    except KafkaException:
        return None


def workers_not_following(kafka: KafkaConfig, version: str) -> set[str]:
    """The worker replicas in the group now that have not acknowledged embedding new flits with ``version``."""
    members = group_members(kafka, kafka.app_id)
    if members is None:
        return {UNDESCRIBED.format(role="worker")}
    return members - read_versions_log(kafka).acks.get(version, set())


def workers_without_tastes(kafka: KafkaConfig, version: str, log: VersionsLog | None = None) -> set[str]:
    """The worker replicas in the group now that have not said they rebuilt their users' tastes in ``version``."""
    members = group_members(kafka, kafka.app_id)
    if members is None:
        return {UNDESCRIBED.format(role="worker")}
    return (log or read_versions_log(kafka)).without_tastes(version, members)


def rankers_not_serving(kafka: KafkaConfig, version: str, since: datetime, log: VersionsLog | None = None) -> set[str]:
    """The ranker replicas in the group now that have not said they rank with ``version`` from ``since`` on."""
    members = group_members(kafka, kafka.ranker_group)
    if members is None:
        return {UNDESCRIBED.format(role="ranker")}
    return (log or read_versions_log(kafka)).not_serving(version, members, since)


def _wait(missing: Callable[[], set[str]], timeout_s: float, waiting_for: str, out: TextIO | None) -> set[str]:
    """Poll ``missing`` until it is empty or ``timeout_s`` passed; a line each time who is awaited changes."""
    deadline = time.monotonic() + timeout_s
    shown = None
    while True:
        left = missing()
        if not left or time.monotonic() >= deadline:
            return left
        if left != shown:
            shown = left
            print(f"waiting for {len(left)} {waiting_for} ({max(0, deadline - time.monotonic()):.0f} s left): "
                  f"{', '.join(sorted(left))}", file=out or sys.stderr, flush=True)
        time.sleep(0.5)


class Reembedding:
    """One run of ``flitfeed reembed``: passes over the log, and the catalogue kept up to date."""

    def __init__(self, settings: Settings, encoder: Encoder, catalog: VersionCatalog, producer: Producer,
                 metrics: Metrics, out: TextIO | None) -> None:
        self.settings, self.encoder, self.catalog, self.producer = settings, encoder, catalog, producer
        self.metrics, self.out = metrics, out
        self.version = encoder.model_version
        have = entry(catalog, self.version)
        assert have is not None
        self.report = ReembedReport(version=self.version, positions=dict(have.positions))
        self.headers = instance_headers(settings.kafka)

    def run_pass(self, limit: int | None = None) -> bool:
        """Re-embed the log from the stored positions to its end now; False when stopped at ``limit``."""
        settings, version, report = self.settings, self.version, self.report
        watermarks = _watermarks(settings.kafka)
        todo = remaining(report.positions, watermarks)
        # Progress counts messages of the log as it is now, read or not: resumed runs start part-way.
        total = sum(high - low for low, high in watermarks.values())
        read = total - sum(end - start for start, end in todo.values())
        progress = Progress(f"re-embedding flits with {version}", total, self.out, unit="flits", done=read)
        gauge = self.metrics.reembed_progress.labels(version=version)
        gauge.set(read / total if total else 1.0)
        checkpointed = time.monotonic()
        topic = settings.kafka.topic(TOPIC_FLITS)
        for partition, (start, end) in todo.items():
            batch: list[Flit] = []
            last = start - 1
            for m in read_partition(settings.kafka, topic, partition, group_id=f"{settings.kafka.app_id}-reembed-unused",
                                    # Reading waits for the embedding: allow for a slow model (≥ 20 flits/s).
                                    start=start, until=end, timeout_s=600 + (end - start) / 20):
                last = m.offset()
                read += 1
                flit = decode_for_reembed(m.value(), m.timestamp()[1] / 1000.0, settings.events)
                if flit is None:
                    report.skipped += 1
                    self.metrics.reembed_flits.labels(version=version, outcome="skipped").inc()
                else:
                    batch.append(flit)
                if len(batch) < settings.encoder.encoder_batch_size:
                    continue
                self._flush(batch, last, partition)
                batch = []
                progress.update(read)
                gauge.set(read / total if total else 1.0)
                if time.monotonic() - checkpointed >= CHECKPOINT_INTERVAL_S:
                    self._checkpoint(read)
                    checkpointed = time.monotonic()
                if limit is not None and report.embedded >= limit:
                    self._checkpoint(read)
                    return False
            self._flush(batch, max(last, end - 1), partition)
            self._checkpoint(read)
            progress.update(read)
            gauge.set(read / total if total else 1.0)
        progress.finish()
        return True

    def _flush(self, batch: list[Flit], last_offset: int, partition: int) -> None:
        if batch:
            vectors = self.encoder.encode_many([flit_text(f) for f in batch])
            topic = self.settings.kafka.topic(TOPIC_FLIT_VECTORS)
            # A version keyed by bare flit id (one live before the catalogue, rebuilt after a switch) keeps
            # that key: one record per flit and version, which the workers write under the same rule.
            for key, value in vector_records(batch, vectors, self.version, datetime.now(timezone.utc),
                                             bare=bare_version(self.catalog)):
                produce_with_room(self.producer, topic, key=key, value=value, headers=self.headers)
                self.producer.poll(0)
            self.report.embedded += len(batch)
            self.metrics.reembed_flits.labels(version=self.version, outcome="embedded").inc(len(batch))
        # The position moves only once the vectors are acknowledged: a crash re-embeds, never skips.
        if self.producer.flush(60):
            raise TimeoutError("re-embedded vectors not acknowledged by the broker within 60 s")
        self.report.positions[partition] = last_offset + 1

    def _checkpoint(self, read: int) -> None:
        self.catalog = record_progress(self.catalog, self.version, self.report.positions, flits=read)
        write_catalog(self.settings.kafka, self.producer, self.catalog)

    def wait_for_workers(self, timeout_s: float) -> set[str]:
        """Wait until every worker in the group embeds new flits with this version too; who still does not."""
        return _wait(lambda: workers_not_following(self.settings.kafka, self.version), timeout_s,
                     f"worker(s) to embed new flits with {self.version} too", self.out)

    def wait_for_tastes(self, timeout_s: float) -> set[str]:
        """Wait until every worker in the group rebuilt its users' tastes in this version; who still has not."""
        return _wait(lambda: workers_without_tastes(self.settings.kafka, self.version), timeout_s,
                     f"worker(s) to rebuild their users' tastes in {self.version}", self.out)

    def finish(self) -> None:
        self.catalog = mark_ready(self.catalog, self.version)
        write_catalog(self.settings.kafka, self.producer, self.catalog)


def reembed(settings: Settings, encoder: Encoder, model: str, live: Encoder | None = None, *,
            metrics: Metrics | None = None, out: TextIO | None = None, limit: int | None = None,
            wait_workers_s: float = 120.0, wait_tastes_s: float = 300.0) -> ReembedReport:
    """Build (or resume, or catch up) the version ``encoder`` makes from the ``flits`` log.

    Registers the version (the workers then embed every new flit with it too), re-embeds the log up to its
    end, waits until every worker acknowledged the version, and re-embeds what arrived meanwhile: from then
    on the workers keep it complete, and it is ``ready``. Then it waits up to ``wait_tastes_s`` (0: not at
    all) for every worker to rebuild its users' tastes in it (``report.tastes_missing``). ``live`` is the
    encoder the workers run (needed only to write the first catalogue). ``limit`` stops after about that many flits (tests, and a
    kill-and-resume drill). Raises :class:`~flitfeed.index.versions.VersionError` for a version that cannot
    be built (nothing changes), among them one that would have to drop the rollback target to be kept.
    """
    metrics = metrics or Metrics("reembed")
    now = datetime.now(timezone.utc)
    catalog = read_catalog(settings.kafka)
    if catalog is None:
        if live is None:
            raise VersionError("no version catalogue yet: the live encoder is needed to start one")
        catalog = catalog_with_live(live.model_version, model_spec_of(settings.encoder), live.dim, now)
    elif live is not None and live.model_version != catalog.live:
        raise VersionError(f"the live version is {catalog.live}, but FLITFEED_ENCODER makes {live.model_version}: "
                           "run reembed with the services' settings")
    catalog = begin_build(catalog, encoder.model_version, model, encoder.dim, now)
    doomed = make_room(catalog, encoder.model_version, settings.encoder.versions_keep)  # refused before anything is written
    producer = Producer(producer_config(settings.kafka))
    write_catalog(settings.kafka, producer, catalog)
    for old in doomed:
        # FLITFEED_VERSIONS_KEEP versions at most: the oldest others go, with their vectors.
        print(f"keeping {settings.encoder.versions_keep} versions: dropping {old}", file=out or sys.stderr, flush=True)
        drop_version(settings, old, out=out)
        catalog = read_catalog(settings.kafka) or catalog
    run = Reembedding(settings, encoder, catalog, producer, metrics, out)
    began = time.perf_counter()
    done = run.run_pass(limit)
    if done:
        # Flits that arrived before a worker picked the version up were embedded with the live model only.
        missing = run.wait_for_workers(wait_workers_s)
        if missing:
            run.report.unconfirmed = sorted(missing)
        else:
            run.run_pass()
            run.finish()
            run.report.ready = True
            if wait_tastes_s > 0:
                run.report.tastes_missing = sorted(run.wait_for_tastes(wait_tastes_s))
    run.report.seconds = time.perf_counter() - began
    outcome = "done" if done and not run.report.unconfirmed else "stopped"
    log.info("re-embedding %s", outcome, extra={"version": run.version, "embedded": run.report.embedded,
                                                 "skipped": run.report.skipped, "seconds": round(run.report.seconds, 1)})
    return run.report


@dataclass
class SwitchReport:
    """What ``flitfeed versions switch`` / ``rollback`` did."""

    #: The version live now, and the one live before.
    live: str
    left: str
    #: Where a rollback would go now (None: nowhere).
    rollback_target: str | None
    #: When the catalogue was written: rankers' serving acknowledgements count from then.
    written_at: datetime
    #: Workers that had not rebuilt their users' tastes in ``live`` (switched anyway: ``--force-tastes``).
    forced_tastes: list[str] = field(default_factory=list)
    #: The ranker group's members that confirmed ranking with ``live``, and those that did not in time.
    rankers: list[str] = field(default_factory=list)
    rankers_missing: list[str] = field(default_factory=list)


def plan_switch(log: VersionsLog, version: str | None, workers: set[str] | None, now: datetime, *,
                force_tastes: bool = False) -> tuple[VersionCatalog, set[str]]:
    """The catalogue after switching to ``version`` (None: rolling back), and the ``workers`` (the worker
    group's members, None: it could not be described) switched without their users' tastes rebuilt in it.

    Pure; raises :class:`VersionError` (nothing is written) for a switch the catalogue refuses
    (:func:`~flitfeed.index.versions.switch`) and, unless ``force_tastes``, while a worker has not rebuilt its
    users' tastes in the version: their feeds would be cold-start ones until their next interaction.
    """
    if log.catalog is None:
        raise VersionError("no version catalogue yet: nothing to switch to (`flitfeed reembed --model MODEL` "
                           "builds a version)")
    after = switch(log.catalog, version, now) if version is not None else rollback(log.catalog, now)
    missing = ({UNDESCRIBED.format(role="worker")} if workers is None
               else log.without_tastes(after.live, workers))
    if missing and not force_tastes:
        raise VersionError(f"worker(s) {', '.join(sorted(missing))} have not rebuilt their users' tastes in "
                           f"{after.live} yet: wait for them (`flitfeed versions list`), or pass --force-tastes "
                           "(their users get cold-start feeds until their next interaction)")
    return after, missing


def switch_version(settings: Settings, version: str | None, *, wait_rankers_s: float = 60.0,
                   force_tastes: bool = False, out: TextIO | None = None) -> SwitchReport:
    """Make ``version`` live (None: roll back to the version live before), then wait up to ``wait_rankers_s``
    for every ranker in the group to say it ranks with it.

    Everything is checked before the catalogue is written (:func:`plan_switch`); the write waits for the
    broker. Rankers that do not confirm in time are reported, and the switch stands: they follow the
    catalogue when they catch up.
    """
    log_now = read_versions_log(settings.kafka)
    before = log_now.catalog
    after, forced = plan_switch(log_now, version, group_members(settings.kafka, settings.kafka.app_id), datetime.now(timezone.utc),
                                force_tastes=force_tastes)
    assert before is not None  # plan_switch refuses without a catalogue
    write_catalog(settings.kafka, Producer(producer_config(settings.kafka)), after)
    log.info("embedding version switched", extra={"version": after.live, "previous": before.live,
                                                   "forced_tastes": sorted(forced)})
    report = SwitchReport(live=after.live, left=before.live, rollback_target=rollback_target(after),
                          written_at=after.written_at, forced_tastes=sorted(forced))
    missing = _wait(lambda: rankers_not_serving(settings.kafka, after.live, after.written_at), wait_rankers_s,
                    f"ranker(s) to rank with {after.live}", out)
    members = group_members(settings.kafka, settings.kafka.ranker_group) or set()
    report.rankers = sorted(members - missing)
    report.rankers_missing = sorted(missing)
    return report


def keys_to_delete(records: Iterable[tuple[bytes | None, bytes | None]],
                   mine: Callable[[bytes, bytes], bool]) -> set[bytes]:
    """The keys whose latest record (in log order, one partition) is ``mine`` (key, value): those to tombstone.

    A key whose latest record is a tombstone, or no longer ``mine`` (a bare flit id the live version
    rewrote), is left alone.

    >>> keys_to_delete([(b"a", b"x"), (b"b", b"x"), (b"a", None), (b"c", b"y")], lambda k, v: v == b"x")
    {b'b'}
    """
    keys: set[bytes] = set()
    for key, value in records:
        if key is None:
            continue
        if value is not None and mine(key, value):
            keys.add(key)
        else:
            keys.discard(key)
    return keys


def _of_version(version: str) -> Callable[[bytes, bytes], bool]:
    """Whether a ``flit-vectors`` record belongs to ``version``: keyed ``<flit_id>|<tag>``, or keyed by bare
    flit id with a value of that ``model_version`` (the bare-keyed version's records, :func:`bare_version`).

    >>> from flitfeed.streams.events import Flit, FlitVector
    >>> from datetime import datetime
    >>> t = datetime(2026, 11, 26)
    >>> rec = FlitVector(flit=Flit(flit_id="f", author_id="a", text="x", created_at=t), vector=[1.0],
    ...                  model_version="a@1", embedded_at=t).to_bytes()
    >>> mine = _of_version("a@1")
    >>> mine(b"f", rec), mine(b"f|" + version_tag("a@1").encode(), rec), _of_version("b@2")(b"f", rec)
    (True, True, False)
    """
    suffix = f"|{version_tag(version)}".encode()
    # A cheap look for the version's name before decoding: nearly every bare record is another version's.
    needle = json.dumps(version, ensure_ascii=False)[1:-1].encode()

    def mine(key: bytes, value: bytes) -> bool:
        if key.endswith(suffix):
            return True
        if b"|" in key or needle not in value:
            return False
        try:
            return json.loads(value).get("model_version") == version
        except (ValueError, AttributeError):
            return False

    return mine


def drop_version(settings: Settings, version: str, *, out: TextIO | None = None) -> int:
    """Delete a version that is not live: out of the catalogue first (the workers stop embedding with it),
    then a tombstone for every record of it on ``flit-vectors`` (keyed ``<flit_id>|<tag>``, or, for the
    bare-keyed version, by flit id with its ``model_version``) and each of its acknowledgements on
    ``model-versions`` (embedding, tastes, serving), so that compaction frees their disk; with a Qdrant
    server, last, its collection there (:func:`collections_to_drop`; the services only close theirs).
    Returns the records deleted.

    Started again after a crash, it finishes the deletion (a version already gone from the catalogue is
    only swept). Raises :class:`~flitfeed.index.versions.VersionError` for the live version.
    """
    catalog = read_catalog(settings.kafka)
    producer = Producer(producer_config(settings.kafka))
    if catalog is not None and catalog.live == version:
        raise VersionError(f"{version} is the live version: it cannot be dropped")
    if catalog is not None and entry(catalog, version) is not None:
        after = drop(catalog, version, datetime.now(timezone.utc))
        if version == rollback_target(catalog):
            print(f"{version} was the rollback target; it is now {rollback_target(after) or 'none (no rollback)'}",
                  file=out or sys.stderr, flush=True)
        write_catalog(settings.kafka, producer, after)
    acks = tuple(ack_prefix(version, kind) for kind in ACK_KINDS)  # type: ignore[arg-type]
    deleted = 0
    for name, mine in ((TOPIC_FLIT_VECTORS, _of_version(version)),
                       (TOPIC_MODEL_VERSIONS, lambda key, value: key.startswith(acks))):
        topic = settings.kafka.topic(name)
        marks = watermarks(settings.kafka, topic)
        progress = Progress(f"deleting {version} from {topic}", sum(h - lo for lo, h in marks.values()), out,
                            unit="records")
        read = 0

        def records(partition: int, low: int, high: int) -> Iterable[tuple[bytes | None, bytes | None]]:
            nonlocal read
            for m in read_partition(settings.kafka, topic, partition, group_id=f"{settings.kafka.app_id}-drop-unused",
                                    start=low, until=high, timeout_s=600 + (high - low) / 1000):
                read += 1
                if read % 1000 == 0:
                    progress.update(read)
                yield m.key(), m.value()

        for partition, (low, high) in marks.items():
            keys = keys_to_delete(records(partition, low, high), mine)
            for key in keys:
                # A tombstone on the record's own partition (the same key hashes there): compaction removes both.
                produce_with_room(producer, topic, key=key, value=None, partition=partition)
                producer.poll(0)
            deleted += len(keys)
        progress.finish()
    if producer.flush(60):
        raise TimeoutError("tombstones not acknowledged by the broker within 60 s")
    if is_shared(settings.index):
        # Last, once every service had time to stop using it (they follow the catalogue within a second):
        # the version's collection on the Qdrant server, and with it its disk there.
        from flitfeed.index.server import drop_collection

        for name in collections_to_drop(settings.index.collection, version, catalog):
            if drop_collection(settings.index.qdrant_url, name, api_key=settings.index.qdrant_api_key_value() or None,
                               ca_file=settings.index.qdrant_ca_file):
                print(f"deleted collection {name} from the Qdrant server", file=out or sys.stderr, flush=True)
    log.info("version dropped", extra={"version": version, "records": deleted})
    return deleted


def collections_to_drop(collection: str, version: str, catalog: VersionCatalog | None) -> list[str]:
    """The Qdrant server collections to delete with ``version``, from the catalogue read before dropping it
    (``index/spaces.py``): ``<collection>-<tag>``, or the plain ``collection`` for the version keyed by bare
    flit id. A drop started again after it left the catalogue no longer knows which version was bare-keyed:
    when none is any more, the plain collection is no held version's and goes too. Never the live
    version's; nothing without a catalogue (its one collection is the live one).

    >>> from datetime import datetime
    >>> from flitfeed.index.versions import begin_build, catalog_with_live, drop, mark_ready, record_progress, switch
    >>> t = datetime(2026, 11, 26)
    >>> cat = begin_build(catalog_with_live("a@1", "minilm", 384, t), "b@2", "hashing", 384, t)
    >>> cat = mark_ready(record_progress(cat, "b@2", {0: 3}, flits=3), "b@2")
    >>> collections_to_drop("flits", "b@2", cat), collections_to_drop("flits", "a@1", cat)
    (['flits-efbb534b'], [])
    >>> cat = switch(cat, "b@2", t)             # a@1, bare-keyed, is now the rollback target
    >>> collections_to_drop("flits", "a@1", cat), collections_to_drop("flits", "b@2", cat)
    (['flits'], [])
    >>> collections_to_drop("flits", "a@1", drop(cat, "a@1", t))  # started again after a crash
    ['flits-fc6dbfe2', 'flits']
    >>> collections_to_drop("flits", "a@1", None)
    []
    """
    from flitfeed.index.spaces import space_collection

    if catalog is None or version == catalog.live:
        return []
    bare = bare_version(catalog)
    live = space_collection(collection, catalog.live, bare)
    names = [space_collection(collection, version, bare)]
    if entry(catalog, version) is None and bare is None:
        names.append(collection)
    return [name for name in names if name != live]
