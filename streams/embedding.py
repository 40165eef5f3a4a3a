"""Embedding a batch of raw flit messages: the domain logic of the embed agent.

Plain Python (no Kafka, no Faust): decode every message, dead-letter what is
invalid, encode the valid texts in one batch, and hand back the points for the
index and the records for the ``flit-vectors`` log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Sequence

import numpy as np

from flitfeed.encoders.base import Encoder
from flitfeed.index.base import IndexedFlit
from flitfeed.settings import Settings
from flitfeed.streams.events import DecodeError, Flit, FlitVector, Reason, decode_flit, to_epoch


@dataclass(frozen=True, slots=True)
class RawMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    #: When the message entered Kafka (epoch seconds).
    timestamp: float


@dataclass(frozen=True, slots=True)
class Rejected:
    message: RawMessage
    reason: Reason
    detail: str


@dataclass
class EmbeddedBatch:
    vectors: list[FlitVector] = field(default_factory=list)
    points: list[IndexedFlit] = field(default_factory=list)


def flit_text(flit: Flit) -> str:
    """What the encoder sees: the text, with tags as extra context."""
    return f"{flit.text} {' '.join('#' + t for t in flit.tags)}" if flit.tags else flit.text


def indexed_flit(record: FlitVector) -> IndexedFlit:
    """The index point of a record read back from the ``flit-vectors`` log."""
    f = record.flit
    return IndexedFlit(flit_id=f.flit_id, author_id=f.author_id, created_at=to_epoch(f.created_at),
                       vector=np.asarray(record.vector, dtype=np.float32), lang=f.lang, tags=tuple(f.tags))


def decode_flits(messages: Sequence[RawMessage], settings: Settings,
                 now: float) -> tuple[list[tuple[Flit, RawMessage]], list[Rejected]]:
    """Valid flits (each with the message it came in) and the rejected messages."""
    flits: dict[str, tuple[Flit, RawMessage]] = {}
    rejected: list[Rejected] = []
    for m in messages:
        try:
            flit = decode_flit(m.value, now=now, max_text_chars=settings.max_text_chars, max_tags=settings.max_tags,
                               max_skew_s=settings.max_clock_skew_s, max_age_s=settings.max_event_age_s,
                               max_bytes=settings.max_message_bytes)
        except DecodeError as e:
            rejected.append(Rejected(m, e.reason, e.detail))
            continue
        # A flit re-sent within one batch is embedded once; the last version wins, as in the index.
        flits[flit.flit_id] = (flit, m)
    return list(flits.values()), rejected


def embed_flits(flits: Sequence[Flit], encoder: Encoder) -> EmbeddedBatch:
    batch = EmbeddedBatch()
    if not flits:
        return batch
    matrix = encoder.encode_many([flit_text(f) for f in flits])
    embedded_at = datetime.now(timezone.utc)
    for flit, row in zip(flits, matrix):
        record = FlitVector(flit=flit, vector=row.tolist(), model_version=encoder.model_version,
                            embedded_at=embedded_at)
        batch.vectors.append(record)
        batch.points.append(IndexedFlit(flit_id=flit.flit_id, author_id=flit.author_id,
                                        created_at=to_epoch(flit.created_at), vector=row, lang=flit.lang,
                                        tags=tuple(flit.tags)))
    return batch
