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

The decisions are pure (:func:`decode_for_reembed`, :func:`remaining`); :func:`reembed` runs them against
Kafka.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Mapping, TextIO

from confluent_kafka import Producer

from flitfeed.encoders.base import Encoder
from flitfeed.encoders.factory import model_spec_of
from flitfeed.index.versions import (VersionError, begin_build, catalog_with_live, drop, entry, mark_ready,
                                     over_keep, record_progress, vector_records, version_tag)
from flitfeed.kafka.config import instance_headers, producer_config
from flitfeed.kafka.reading import read_partition, watermarks
from flitfeed.monitoring.metrics import Metrics
from flitfeed.progress import Progress
from flitfeed.settings import TOPIC_FLIT_VECTORS, TOPIC_FLITS, TOPIC_MODEL_VERSIONS, Settings
from flitfeed.streams.embedding import decode_flit_bounded, flit_text
from flitfeed.streams.events import DecodeError, Flit, VersionCatalog
from flitfeed.streams.version_log import read_catalog, write_catalog

__all__ = ["ReembedReport", "decode_for_reembed", "drop_version", "reembed", "remaining"]

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


def decode_for_reembed(value: bytes | None, produced_at_s: float, settings: Settings) -> Flit | None:
    """A log message as the worker decoded it when it arrived (its time checks made against the time it was
    produced, not today), or None for one it rejected."""
    try:
        return decode_flit_bounded(value, settings, produced_at_s)
    except DecodeError:
        return None


def _watermarks(settings: Settings) -> dict[int, tuple[int, int]]:
    found = watermarks(settings, settings.topic(TOPIC_FLITS))
    if not found:
        raise VersionError(f"topic {settings.topic(TOPIC_FLITS)} does not exist: nothing to re-embed "
                           "(run `flitfeed topics create`)")
    return found


def workers_not_following(settings: Settings, version: str) -> set[str]:
    """The worker replicas in the group now that have not acknowledged embedding new flits with ``version``."""
    from confluent_kafka import KafkaException

    from flitfeed.kafka.groups import describe_group
    from flitfeed.streams.version_log import read_versions_log

    try:
        members = set(describe_group(settings, settings.app_id).members)
    except KafkaException:
        return {"(the worker group could not be described)"}
    return members - read_versions_log(settings).acks.get(version, set())


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
        self.headers = instance_headers(settings)

    def run_pass(self, limit: int | None = None) -> bool:
        """Re-embed the log from the stored positions to its end now; False when stopped at ``limit``."""
        settings, version, report = self.settings, self.version, self.report
        watermarks = _watermarks(settings)
        todo = remaining(report.positions, watermarks)
        # Progress counts messages of the log as it is now, read or not: resumed runs start part-way.
        total = sum(high - low for low, high in watermarks.values())
        read = total - sum(end - start for start, end in todo.values())
        progress = Progress(f"re-embedding flits with {version}", total, self.out, unit="flits", done=read)
        gauge = self.metrics.reembed_progress.labels(version=version)
        gauge.set(read / total if total else 1.0)
        checkpointed = time.monotonic()
        topic = settings.topic(TOPIC_FLITS)
        for partition, (start, end) in todo.items():
            batch: list[Flit] = []
            last = start - 1
            for m in read_partition(settings, topic, partition, group_id=f"{settings.app_id}-reembed-unused",
                                    # Reading waits for the embedding: allow for a slow model (≥ 20 flits/s).
                                    start=start, until=end, timeout_s=600 + (end - start) / 20):
                last = m.offset()
                read += 1
                flit = decode_for_reembed(m.value(), m.timestamp()[1] / 1000.0, settings)
                if flit is None:
                    report.skipped += 1
                    self.metrics.reembed_flits.labels(version=version, outcome="skipped").inc()
                else:
                    batch.append(flit)
                if len(batch) < settings.encoder_batch_size:
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
            topic = self.settings.topic(TOPIC_FLIT_VECTORS)
            for key, value in vector_records(batch, vectors, self.version, datetime.now(timezone.utc)):
                self.producer.produce(topic, key=key, value=value, headers=self.headers)
                self.producer.poll(0)
            self.report.embedded += len(batch)
            self.metrics.reembed_flits.labels(version=self.version, outcome="embedded").inc(len(batch))
        # The position moves only once the vectors are acknowledged: a crash re-embeds, never skips.
        if self.producer.flush(60):
            raise TimeoutError("re-embedded vectors not acknowledged by the broker within 60 s")
        self.report.positions[partition] = last_offset + 1

    def _checkpoint(self, read: int) -> None:
        self.catalog = record_progress(self.catalog, self.version, self.report.positions, flits=read)
        write_catalog(self.settings, self.producer, self.catalog)

    def wait_for_workers(self, timeout_s: float) -> set[str]:
        """Wait until every worker in the group embeds new flits with this version too; who still does not."""
        deadline = time.monotonic() + timeout_s
        shown = None
        while True:
            missing = workers_not_following(self.settings, self.version)
            if not missing or time.monotonic() >= deadline:
                return missing
            if missing != shown:
                shown = missing
                print(f"waiting for {len(missing)} worker(s) to embed new flits with {self.version} too: "
                      f"{', '.join(sorted(missing))}", file=self.out or sys.stderr, flush=True)
            time.sleep(0.5)

    def finish(self) -> None:
        self.catalog = mark_ready(self.catalog, self.version)
        write_catalog(self.settings, self.producer, self.catalog)


def reembed(settings: Settings, encoder: Encoder, model: str, live: Encoder | None = None, *,
            metrics: Metrics | None = None, out: TextIO | None = None, limit: int | None = None,
            wait_workers_s: float = 120.0) -> ReembedReport:
    """Build (or resume, or catch up) the version ``encoder`` makes from the ``flits`` log.

    Registers the version (the workers then embed every new flit with it too), re-embeds the log up to its
    end, waits until every worker acknowledged the version, and re-embeds what arrived meanwhile: from then
    on the workers keep it complete, and it is ``ready``. ``live`` is the encoder the workers run (needed
    only to write the first catalogue). ``limit`` stops after about that many flits (tests, and a
    kill-and-resume drill). Raises :class:`~flitfeed.index.versions.VersionError` for a version that cannot
    be built (nothing changes).
    """
    metrics = metrics or Metrics("reembed")
    now = datetime.now(timezone.utc)
    catalog = read_catalog(settings)
    if catalog is None:
        if live is None:
            raise VersionError("no version catalogue yet: the live encoder is needed to start one")
        catalog = catalog_with_live(live.model_version, model_spec_of(settings), live.dim, now)
    elif live is not None and live.model_version != catalog.live:
        raise VersionError(f"the live version is {catalog.live}, but FLITFEED_ENCODER makes {live.model_version}: "
                           "run reembed with the services' settings")
    catalog = begin_build(catalog, encoder.model_version, model, encoder.dim, now)
    producer = Producer(producer_config(settings))
    write_catalog(settings, producer, catalog)
    for old in over_keep(catalog, settings.versions_keep):
        # FLITFEED_VERSIONS_KEEP versions at most: the oldest others go, with their vectors.
        print(f"keeping {settings.versions_keep} versions: dropping {old}", file=out or sys.stderr, flush=True)
        drop_version(settings, old, out=out)
        catalog = read_catalog(settings) or catalog
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
    run.report.seconds = time.perf_counter() - began
    outcome = "done" if done and not run.report.unconfirmed else "stopped"
    log.info("re-embedding %s", outcome, extra={"version": run.version, "embedded": run.report.embedded,
                                                 "skipped": run.report.skipped, "seconds": round(run.report.seconds, 1)})
    return run.report


def drop_version(settings: Settings, version: str, *, out: TextIO | None = None) -> int:
    """Delete a version that is not live: out of the catalogue first (the workers stop embedding with it),
    then a tombstone for every record of it on ``flit-vectors`` and ``model-versions``, so that compaction
    frees their disk. Returns the records deleted.

    Started again after a crash, it finishes the deletion (a version already gone from the catalogue is
    only swept). Raises :class:`~flitfeed.index.versions.VersionError` for the live version.
    """
    catalog = read_catalog(settings)
    producer = Producer(producer_config(settings))
    if catalog is not None and entry(catalog, version) is not None:
        write_catalog(settings, producer, drop(catalog, version, datetime.now(timezone.utc)))
    elif catalog is not None and catalog.live == version:
        raise VersionError(f"{version} is the live version: it cannot be dropped")
    suffix = f"|{version_tag(version)}".encode()
    ack_prefix = f"ack|{version_tag(version)}|".encode()
    deleted = 0
    for name, mine in ((TOPIC_FLIT_VECTORS, lambda key: key.endswith(suffix)),
                       (TOPIC_MODEL_VERSIONS, lambda key: key.startswith(ack_prefix))):
        topic = settings.topic(name)
        marks = watermarks(settings, topic)
        progress = Progress(f"deleting {version} from {topic}", sum(h - lo for lo, h in marks.values()), out,
                            unit="records")
        read = 0
        for partition, (low, high) in marks.items():
            keys: set[bytes] = set()
            for m in read_partition(settings, topic, partition, group_id=f"{settings.app_id}-drop-unused",
                                    start=low, until=high, timeout_s=600 + (high - low) / 1000):
                read += 1
                key = m.key()
                if key is not None and mine(key):
                    if m.value() is None:
                        keys.discard(key)  # already deleted
                    else:
                        keys.add(key)
                if read % 1000 == 0:
                    progress.update(read)
            for key in keys:
                # A tombstone on the record's own partition (the same key hashes there): compaction removes both.
                producer.produce(topic, key=key, value=None, partition=partition)
                producer.poll(0)
            deleted += len(keys)
        progress.finish()
    if producer.flush(60):
        raise TimeoutError("tombstones not acknowledged by the broker within 60 s")
    log.info("version dropped", extra={"version": version, "records": deleted})
    return deleted
