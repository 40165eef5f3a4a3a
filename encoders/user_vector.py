"""A user's taste, learned one interaction at a time.

The taste is a time-decayed, weighted sum of the vectors of the flits the user
interacted with::

    u(T) = Σ_i  w(kind_i) · 2^(-(T - t_i) / half_life) · v_i,    T = latest event time

Positive kinds (like, reflit, reply, and weakly view) pull the taste towards a
flit; negative kinds (hide, report) push it away and mute the flit's author.
Because every term is decayed to the *latest* timestamp, the result does not
depend on arrival order: an event that arrives late is decayed by how much
older it is (this is the documented out-of-order rule). Applying an event
whose ``event_id`` was already applied changes nothing (idempotence), within a
bounded memory of recent event ids, kept as 8-byte hashes (:func:`event_hash`: 16 KB for 2,000 ids
instead of ~140 KB of strings; two ids share a hash with probability ~2⁻⁶⁴ per pair).

>>> import numpy as np
>>> p = UserProfile("u1")
>>> params = TasteParams(half_life_s=10.0)
>>> p.learn_one("e1", "like", 100.0, np.array([1.0, 0.0], dtype=np.float32), "a1", "f1", params)
True
>>> p.learn_one("e1", "like", 100.0, np.array([1.0, 0.0], dtype=np.float32), "a1", "f1", params)
False
>>> p.learn_one("e2", "like", 110.0, np.array([0.0, 1.0], dtype=np.float32), "a2", "f2", params)
True
>>> np.round(p.taste, 3).tolist()    # the older like has halved after one half-life
[0.5, 1.0]
>>> p.learn_one("e3", "hide", 110.0, np.array([0.0, 1.0], dtype=np.float32), "a2", "f3", params)
True
>>> p.muted_authors, p.seen
(['a2'], ['f1', 'f2', 'f3'])
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flitfeed.encoders.base import l2_normalise

from flitfeed.streams.vocabulary import FULL_DWELL_MS, KINDS, negative_kinds

#: How strongly each kind of interaction moves the taste (the vocabulary's ``taste_weight``). Negative = push away.
KIND_WEIGHTS: dict[str, float] = {name: kind.taste_weight for name, kind in KINDS.items()}
NEGATIVE_KINDS = negative_kinds()


@dataclass(frozen=True, slots=True)
class TasteParams:
    half_life_s: float = 3 * 24 * 3600.0
    seen_capacity: int = 500
    muted_capacity: int = 200
    dedup_capacity: int = 2000
    #: The embedding version of the flit vectors learned from (the worker's encoder); empty = not tracked.
    version: str = ""


def interaction_weight(kind: str, dwell_ms: int | None = None) -> float:
    """Weight of one interaction; a view is scaled by its dwell time when known.

    >>> interaction_weight("like"), interaction_weight("view", 5_000), interaction_weight("hide")
    (1.0, 0.1, -1.0)
    """
    weight = KIND_WEIGHTS[kind]
    if kind == "view" and dwell_ms is not None:
        weight *= min(dwell_ms, FULL_DWELL_MS) / FULL_DWELL_MS
    return weight


def event_hash(event_id: str) -> int:
    """An event id as the 64-bit number the profile remembers it by.

    >>> event_hash("e1") == event_hash("e1") != event_hash("e2")
    True
    """
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "little")


def _push_hash(hashes: np.ndarray, h: int, capacity: int) -> np.ndarray:
    """``hashes`` with ``h`` as the most recent (a previous copy dropped), the oldest beyond capacity dropped."""
    kept = hashes[hashes != np.uint64(h)]
    out = np.append(kept, np.uint64(h))
    return out[-capacity:] if len(out) > capacity else out


def _push_bounded(items: list[str], item: str, capacity: int) -> None:
    """Append ``item`` as the most recent, dropping a previous copy and the oldest beyond capacity."""
    if item in items:
        items.remove(item)
    items.append(item)
    if len(items) > capacity:
        del items[: len(items) - capacity]


@dataclass
class UserProfile:
    user_id: str
    taste: np.ndarray | None = None  # unnormalised decayed sum, float32
    last_ts: float = 0.0
    positives: int = 0
    negatives: int = 0
    seen: list[str] = field(default_factory=list)
    muted_authors: list[str] = field(default_factory=list)
    #: :func:`event_hash` of the most recent applied event ids, oldest first (uint64).
    event_hashes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    #: The last event applied: re-published if it is delivered again after a crash.
    last_event_id: str = ""
    #: The embedding version ``taste`` is in (empty: learned before versions were tracked).
    taste_version: str = ""

    def has_applied(self, event_id: str) -> bool:
        return bool((self.event_hashes == np.uint64(event_hash(event_id))).any())

    def learn_one(self, event_id: str, kind: str, ts: float, vector: np.ndarray, author_id: str,
                  flit_id: str, params: TasteParams, dwell_ms: int | None = None) -> bool:
        """Apply one interaction. Returns False (and changes nothing) for a duplicate ``event_id``."""
        if self.has_applied(event_id):
            return False
        if params.version and params.version != self.taste_version:
            if self.taste_version and self.taste is not None:
                # A taste in another embedding space is never mixed with this one's vectors: start anew.
                self.taste = None
            self.taste_version = params.version
        weight = interaction_weight(kind, dwell_ms)
        v = np.asarray(vector, dtype=np.float32)
        if self.taste is None:
            self.taste = np.zeros_like(v)
            self.last_ts = ts
        if ts >= self.last_ts:
            self.taste = self.taste * np.float32(2.0 ** (-(ts - self.last_ts) / params.half_life_s)) + weight * v
            self.last_ts = ts
        else:
            self.taste = self.taste + np.float32(weight * 2.0 ** (-(self.last_ts - ts) / params.half_life_s)) * v
        if kind in NEGATIVE_KINDS:
            self.negatives += 1
            _push_bounded(self.muted_authors, author_id, params.muted_capacity)
        elif weight > 0:
            self.positives += 1
        _push_bounded(self.seen, flit_id, params.seen_capacity)
        self.event_hashes = _push_hash(self.event_hashes, event_hash(event_id), params.dedup_capacity)
        self.last_event_id = event_id
        return True

    def query_vector(self) -> np.ndarray | None:
        """The normalised taste to search with, or None while the user is cold (no positive signal)."""
        if self.taste is None or self.positives == 0:
            return None
        q = l2_normalise(self.taste)
        return q if float(np.linalg.norm(q)) > 0 else None

    # --- serialisation for the Faust table (compact: float32 bytes in base64) ---
    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "taste": None if self.taste is None else base64.b64encode(self.taste.astype("<f4").tobytes()).decode(),
            "last_ts": self.last_ts,
            "positives": self.positives,
            "negatives": self.negatives,
            "seen": self.seen,
            "muted_authors": self.muted_authors,
            "event_hashes": base64.b64encode(self.event_hashes.astype("<u8").tobytes()).decode(),
            "last_event_id": self.last_event_id,
            "taste_version": self.taste_version,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "UserProfile":
        taste = d.get("taste")
        return cls(
            user_id=d["user_id"],
            taste=None if taste is None else np.frombuffer(base64.b64decode(taste), dtype="<f4").copy(),
            last_ts=float(d.get("last_ts", 0.0)),
            positives=int(d.get("positives", 0)),
            negatives=int(d.get("negatives", 0)),
            seen=list(d.get("seen", [])),
            muted_authors=list(d.get("muted_authors", [])),
            event_hashes=_hashes_of(d),
            last_event_id=str(d.get("last_event_id", "")),
            taste_version=str(d.get("taste_version", "")),
        )


def _hashes_of(d: dict[str, Any]) -> np.ndarray:
    if "event_hashes" in d:
        return np.frombuffer(base64.b64decode(d["event_hashes"]), dtype="<u8").astype(np.uint64)
    # A profile stored before hashing: its event ids, hashed.
    return np.array([event_hash(e) for e in d.get("recent_event_ids", [])], dtype=np.uint64)
