"""What the worker's decisions ask for: effects, plain data that the agents carry out.

The domain functions (:func:`flitfeed.streams.user_updates.decide`,
:func:`flitfeed.streams.embedding.plan_batch` and :func:`~flitfeed.streams.embedding.decide_batch`)
return effects instead of sending, writing or counting themselves, so every decision is tested
without Kafka or Faust; ``streams/agents/common.py`` (``run_effects``) runs them in order.

>>> Count("processed", "flits", 3)
Count(counter='processed', topic='flits', n=3)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

import numpy as np

from flitfeed.index.base import IndexedFlit
from flitfeed.streams.events import ParkedInteraction, Reason


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A consumed message as flitfeed decodes it: raw bytes and where they came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    #: When the message entered Kafka (epoch seconds).
    timestamp: float


@dataclass(frozen=True, slots=True)
class Publish:
    """Produce ``records`` (key, value) to one of the worker's output topics (timed as the ``publish`` stage)."""

    topic: Literal["flit_vectors", "user_states"]
    records: tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class Park:
    """Send an interaction to ``interactions-parked`` (key: its user id) for another try; counted as parked."""

    record: ParkedInteraction


@dataclass(frozen=True, slots=True)
class Reject:
    """Dead-letter ``message`` (its original key and bytes) with a reason; counted by the dead-letter helper."""

    message: RawMessage
    reason: Reason
    detail: str


@dataclass(frozen=True, slots=True)
class StoreProfile:
    """Write a user's profile (``UserProfile.to_bytes()``) to the table; its changelog record is with the
    Kafka client before the event is acked."""

    user_id: str
    profile: bytes


@dataclass(frozen=True, slots=True)
class Count:
    """Add ``n`` to a per-topic event counter (``flitfeed_events_<counter>_total``)."""

    counter: Literal["consumed", "processed", "duplicates"]
    topic: str
    n: int = 1


@dataclass(frozen=True, slots=True, eq=False)
class ObserveTaste:
    """A user's taste moved from ``before`` to ``after`` (drift monitoring)."""

    before: np.ndarray | None
    after: np.ndarray | None


@dataclass(frozen=True, slots=True, eq=False)
class ObserveFlits:
    """Flits became searchable at ``searchable_at`` (epoch s): freshness and embedding drift."""

    points: tuple[IndexedFlit, ...]
    searchable_at: float


Effect = Union[Publish, Park, Reject, StoreProfile, Count, ObserveTaste, ObserveFlits]
