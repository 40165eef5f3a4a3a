"""Embedding a batch of raw flit messages: the domain logic of the embed agent.

Plain Python (no Kafka, no Faust): :func:`plan_batch` decodes every message and rejects
what is invalid, :func:`embed_isolating` encodes the valid texts in one batch (flit by flit
when the batch fails, so only a poisonous flit is rejected), and :func:`decide_batch` says
what to do with the result: the records for the ``flit-vectors`` log, the dead letters and
the counts. The agent runs the effects.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Awaitable, Callable, Mapping, Sequence

import numpy as np

from flitfeed.encoders.base import Encoder
from flitfeed.index.base import IndexedFlit
from flitfeed.index.versions import key_of, vector_records
from flitfeed.settings import EventLimits
from flitfeed.streams.effects import Count, Effect, ObserveFlits, Publish, RawMessage, Reject
from flitfeed.streams.events import DecodeError, Flit, FlitVector, Reason, decode_flit, to_epoch

__all__ = ["BatchPlan", "EmbeddedBatch", "RawMessage", "decide_batch", "decode_flits", "embed_flits",
           "embed_isolating", "flit_text", "indexed_flit", "plan_batch"]

log = logging.getLogger(__name__)


@dataclass
class EmbeddedBatch:
    #: The live version's vectors, their ``flit-vectors`` keys and index points.
    vectors: list[FlitVector] = field(default_factory=list)
    keys: list[bytes] = field(default_factory=list)
    points: list[IndexedFlit] = field(default_factory=list)
    #: ``flit-vectors`` records (key, value) of the other versions held (``index/versions.py``).
    rebuilt: list[tuple[bytes, bytes]] = field(default_factory=list)
    #: The other versions' index points (version → points), for the worker's replica of each.
    other_points: dict[str, list[IndexedFlit]] = field(default_factory=dict)

    def extend(self, other: "EmbeddedBatch") -> None:
        self.vectors += other.vectors
        self.keys += other.keys
        self.points += other.points
        self.rebuilt += other.rebuilt
        for version, points in other.other_points.items():
            self.other_points.setdefault(version, []).extend(points)


def flit_text(flit: Flit) -> str:
    """What the encoder sees: the text, with tags as extra context."""
    return f"{flit.text} {' '.join('#' + t for t in flit.tags)}" if flit.tags else flit.text


def indexed_flit(record: FlitVector) -> IndexedFlit:
    """The index point of a record read back from the ``flit-vectors`` log."""
    return _point(record.flit, record.vector)


def decode_flits(messages: Sequence[RawMessage], limits: EventLimits,
                 now: float) -> tuple[list[tuple[Flit, RawMessage]], list[Reject]]:
    """Valid flits (each with the message it came in) and the rejected messages (to dead-letter)."""
    flits: dict[str, tuple[Flit, RawMessage]] = {}
    rejected: list[Reject] = []
    for m in messages:
        try:
            flit = decode_flit(m.value, now=now, limits=limits)
        except DecodeError as e:
            rejected.append(Reject(m, e.reason, e.detail))
            continue
        # A flit re-sent within one batch is embedded once; the last version wins, as in the index.
        flits[flit.flit_id] = (flit, m)
    return list(flits.values()), rejected


#: ``embed_flits``'s default: the live version is the one keyed by bare flit id (as before versions).
LIVE_IS_BARE = "<live>"


def embed_flits(flits: Sequence[Flit], encoder: Encoder, builds: Mapping[str, Encoder] | None = None,
                bare: str | None = LIVE_IS_BARE) -> EmbeddedBatch:
    """Embed ``flits`` with the live ``encoder``, and with each other version held (``builds``: version → encoder).

    ``bare``: the version keyed by bare flit id on ``flit-vectors`` (None: none is; default: the live one);
    every other is keyed ``<flit_id>|<tag>`` (``index/versions.py`` ``key_of``). A version being built that fails is logged
    and left out (re-running ``flitfeed reembed`` fills the gap): it must never cost the live version a flit.
    """
    batch = EmbeddedBatch()
    if not flits:
        return batch
    live = encoder.model_version
    bare = live if bare == LIVE_IS_BARE else bare
    texts = [flit_text(f) for f in flits]
    for version, build in (builds or {}).items():
        try:
            vectors = build.encode_many(texts)
        except Exception:
            log.exception("embedding with a version being built failed", extra={"version": version})
            continue
        batch.rebuilt += vector_records(flits, vectors, version, datetime.now(timezone.utc), bare=bare)
        batch.other_points[version] = [_point(f, row) for f, row in zip(flits, vectors)]
    matrix = encoder.encode_many(texts)
    embedded_at = datetime.now(timezone.utc)
    for flit, row in zip(flits, matrix):
        batch.vectors.append(FlitVector(flit=flit, vector=row.tolist(), model_version=live, embedded_at=embedded_at))
        batch.keys.append(key_of(flit.flit_id, live, bare))
        batch.points.append(_point(flit, row))
    return batch


def _point(flit: Flit, row: Sequence[float]) -> IndexedFlit:
    return IndexedFlit(flit_id=flit.flit_id, author_id=flit.author_id, created_at=to_epoch(flit.created_at),
                       vector=np.asarray(row, dtype=np.float32), lang=flit.lang, tags=tuple(flit.tags))


@dataclass(frozen=True)
class BatchPlan:
    """A batch of flit messages, decoded: what to embed, and what to do before embedding anything."""

    topic: str
    #: The valid flits to embed, each with the message it came in (one per flit id: the last version).
    flits: list[tuple[Flit, RawMessage]]
    #: Count the batch as consumed; dead-letter the invalid messages.
    effects: tuple[Effect, ...]
    #: Messages of a flit sent again later in the same batch (embedded once, as its last version).
    superseded: int


def plan_batch(messages: Sequence[RawMessage], limits: EventLimits, now: float) -> BatchPlan:
    """Decode a non-empty batch of messages of one topic."""
    decoded, rejected = decode_flits(messages, limits, now)
    topic = messages[0].topic
    effects: list[Effect] = [Count("consumed", topic, len(messages))]
    effects += rejected
    return BatchPlan(topic=topic, flits=decoded, effects=tuple(effects),
                     superseded=len(messages) - len(rejected) - len(decoded))


async def embed_isolating(flits: Sequence[tuple[Flit, RawMessage]],
                          embed: Callable[[Sequence[Flit]], Awaitable[EmbeddedBatch]]
                          ) -> tuple[EmbeddedBatch, list[Reject]]:
    """``embed`` the flits in one batch; when that fails, flit by flit, so one poisonous flit does not sink
    its batch: only what still fails alone is rejected (``processing_error``)."""
    try:
        return await embed([f for f, _ in flits]), []
    except Exception:
        log.exception("batch embedding failed; retrying flit by flit", extra={"size": len(flits)})
    batch, failed = EmbeddedBatch(), []
    for flit, msg in flits:
        try:
            one = await embed([flit])
        except Exception as exc:
            failed.append(Reject(msg, Reason.PROCESSING_ERROR, repr(exc)))
            continue
        batch.extend(one)
    return batch, failed


def decide_batch(plan: BatchPlan, batch: EmbeddedBatch, failed: Sequence[Reject],
                 searchable_at: float) -> tuple[Effect, ...]:
    """What to do once the batch's flits are embedded and in the index (``searchable_at``, epoch s)."""
    vectors = tuple((key, record.to_bytes()) for key, record in zip(batch.keys, batch.vectors, strict=True))
    # A flit sent twice within one batch is embedded once (the last version wins, as in the index);
    # the earlier copy is applied too, not lost, so it counts as processed and the counts reconcile.
    # The versions being built get the flit too (their own keys), so they stay complete while the live one serves.
    rebuilt = (Publish("flit_vectors", tuple(batch.rebuilt)),) if batch.rebuilt else ()
    return (*failed, ObserveFlits(tuple(batch.points), searchable_at), Publish("flit_vectors", vectors), *rebuilt,
            Count("processed", plan.topic, len(batch.vectors) + plan.superseded))
