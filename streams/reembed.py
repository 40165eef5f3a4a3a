"""Re-embedding the flits of the log with another model: building a new embedding version.

``flitfeed reembed --model static`` reads the ``flits`` topic (the source of truth) from where the last
run of the same version stopped, embeds every valid flit with the new model and publishes its vector to
``flit-vectors`` keyed ``<flit_id>|<tag>`` (:func:`~flitfeed.index.versions.vector_key`), next to the live
version's records. Every replica keeps the new version's vectors out of its index
(:class:`~flitfeed.index.versions.VersionGate`), so the live system keeps serving and ingesting
meanwhile. Progress is a line on the terminal, metrics (``flitfeed_reembed_*``) and the catalogue
(``model-versions``): the next offset of each partition is recorded there after its vectors are
acknowledged, so a run killed at any point resumes where the catalogue says, and re-embedding a flit
twice only rewrites the same record.

The decisions are pure (:func:`decode_for_reembed`, :func:`remaining`); :func:`reembed` runs them against
Kafka.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterable, Mapping, Sequence, TextIO

from confluent_kafka import Consumer, Producer, TopicPartition

from flitfeed.encoders.base import Encoder
from flitfeed.index.versions import VersionError, begin_build, catalog_with_live, entry, mark_ready, \
    record_progress, vector_key
from flitfeed.kafka.config import consumer_config, instance_headers, producer_config
from flitfeed.kafka.reading import read_partition
from flitfeed.monitoring.metrics import Metrics
from flitfeed.progress import Progress
from flitfeed.settings import TOPIC_FLIT_VECTORS, TOPIC_FLITS, Settings
from flitfeed.startup import kafka_call
from flitfeed.streams.embedding import flit_text
from flitfeed.streams.events import DecodeError, Flit, FlitVector, decode_flit
from flitfeed.streams.version_log import read_catalog, write_catalog

__all__ = ["ReembedReport", "decode_for_reembed", "reembed", "remaining"]

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
        return decode_flit(value, now=produced_at_s, max_text_chars=settings.max_text_chars,
                           max_tags=settings.max_tags, max_skew_s=settings.max_clock_skew_s,
                           max_age_s=settings.max_event_age_s, max_bytes=settings.max_message_bytes)
    except DecodeError:
        return None


def vector_records(flits: Sequence[Flit], vectors: Iterable[Sequence[float]], version: str,
                   embedded_at: datetime) -> list[tuple[bytes, bytes]]:
    """The ``flit-vectors`` records (key, value) of a re-embedded version."""
    return [(vector_key(f.flit_id, version),
             FlitVector(flit=f, vector=[float(x) for x in v], model_version=version, embedded_at=embedded_at).to_bytes())
            for f, v in zip(flits, vectors, strict=True)]


def _watermarks(settings: Settings) -> dict[int, tuple[int, int]]:
    topic = settings.topic(TOPIC_FLITS)
    probe = Consumer(consumer_config(settings, group_id=f"{settings.app_id}-reembed-unused"))
    try:
        meta = kafka_call(lambda: probe.list_topics(timeout=10), what="topic metadata")
        if topic not in meta.topics:
            raise VersionError(f"topic {topic} does not exist: nothing to re-embed (run `flitfeed topics create`)")
        return {p: kafka_call(lambda p=p: probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10),
                              what=f"offsets of {topic}[{p}]")
                for p in sorted(meta.topics[topic].partitions)}
    finally:
        probe.close()


def reembed(settings: Settings, encoder: Encoder, model: str, live: Encoder | None = None, *,
            metrics: Metrics | None = None, out: TextIO | None = None, limit: int | None = None) -> ReembedReport:
    """Build (or resume, or catch up) the version ``encoder`` makes from the ``flits`` log.

    ``live`` is the encoder the workers run (needed only to write the first catalogue). ``limit`` stops
    after about that many flits (tests, and a kill-and-resume drill). Raises
    :class:`~flitfeed.index.versions.VersionError` for a version that cannot be built (nothing changes).
    """
    metrics = metrics or Metrics("reembed")
    now = datetime.now(timezone.utc)
    catalog = read_catalog(settings)
    if catalog is None:
        if live is None:
            raise VersionError("no version catalogue yet: the live encoder is needed to start one")
        catalog = catalog_with_live(live.model_version, settings.encoder, live.dim, now)
    elif live is not None and live.model_version != catalog.live:
        raise VersionError(f"the live version is {catalog.live}, but FLITFEED_ENCODER makes {live.model_version}: "
                           "run reembed with the services' settings")
    catalog = begin_build(catalog, encoder.model_version, model, encoder.dim, now)
    version = encoder.model_version
    have = entry(catalog, version)
    assert have is not None
    producer = Producer(producer_config(settings))
    write_catalog(settings, producer, catalog)
    watermarks = _watermarks(settings)
    todo = remaining(have.positions, watermarks)
    # Progress counts messages of the log as it is now, read or not: resumed runs start part-way.
    total = sum(high - low for low, high in watermarks.values())
    read = total - sum(end - start for start, end in todo.values())
    report = ReembedReport(version=version, positions=dict(have.positions))
    progress = Progress(f"re-embedding flits with {version}", total, out, unit="flits", done=read)
    gauge = metrics.reembed_progress.labels(version=version)
    gauge.set(read / total if total else 1.0)
    began = time.perf_counter()
    checkpointed = time.monotonic()
    topic, vectors_topic = settings.topic(TOPIC_FLITS), settings.topic(TOPIC_FLIT_VECTORS)
    headers = instance_headers(settings)

    def flush_batch(batch: list[Flit], last_offset: int, partition: int) -> None:
        if batch:
            records = vector_records(batch, encoder.encode_many([flit_text(f) for f in batch]), version,
                                     datetime.now(timezone.utc))
            for key, value in records:
                producer.produce(vectors_topic, key=key, value=value, headers=headers)
                producer.poll(0)
            report.embedded += len(batch)
            metrics.reembed_flits.labels(version=version, outcome="embedded").inc(len(batch))
        # The position moves only once the vectors are acknowledged: a crash re-embeds, never skips.
        if producer.flush(60):
            raise TimeoutError("re-embedded vectors not acknowledged by the broker within 60 s")
        report.positions[partition] = last_offset + 1

    stopped = False
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
                metrics.reembed_flits.labels(version=version, outcome="skipped").inc()
            else:
                batch.append(flit)
            if len(batch) >= settings.encoder_batch_size:
                flush_batch(batch, last, partition)
                batch = []
                progress.update(read)
                gauge.set(read / total if total else 1.0)
                if time.monotonic() - checkpointed >= CHECKPOINT_INTERVAL_S:
                    catalog = record_progress(catalog, version, report.positions, flits=read)
                    write_catalog(settings, producer, catalog)
                    checkpointed = time.monotonic()
                if limit is not None and report.embedded >= limit:
                    stopped = True
                    break
        if not stopped:
            flush_batch(batch, max(last, end - 1), partition)
        catalog = record_progress(catalog, version, report.positions, flits=read)
        write_catalog(settings, producer, catalog)
        progress.update(read)
        gauge.set(read / total if total else 1.0)
        if stopped:
            break
    if not stopped:
        catalog = mark_ready(catalog, version)
        write_catalog(settings, producer, catalog)
        progress.finish()
    report.seconds = time.perf_counter() - began
    log.info("re-embedding %s", "stopped at its limit" if stopped else "done", extra={
        "version": version, "embedded": report.embedded, "skipped": report.skipped, "seconds": round(report.seconds, 1)})
    return report
