"""A user's taste, learned one interaction at a time, in every embedding version the worker holds.

The taste is a time-decayed, weighted sum of the vectors of the flits the user
interacted with::

    u(T) = Σ_i  w(kind_i) · 2^(-(T - t_i) / half_life) · v_i,    T = latest event time

Positive kinds (like, reflit, reply, and weakly view) pull the taste towards a
flit; negative kinds (hide, report) push it away and mute the flit's author.
Because every term is decayed to the *latest* timestamp, the result does not
depend on arrival order: an event that arrives late is decayed by how much
older it is (this is the documented out-of-order rule). Applying an event
whose ``event_id`` was already applied changes nothing (idempotence), within a
small window of recent event ids, kept as 8-byte hashes (:func:`event_hash`; two ids share a hash with
probability ~2⁻⁶⁴ per pair). The worker adds an exact memory of the Kafka positions it applied
(:meth:`UserProfile.is_decided`, :meth:`UserProfile.is_waiting`): ``streams/user_updates.py`` says how the
two together keep a re-delivered or duplicate interaction from changing anything.

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

**Several versions.** The same sum is kept in each embedding version the worker holds (``tastes``, by
version; ``taste`` is the one in ``taste_version``, the version learnt with last), so that switching the
live version finds every user's taste ready in the new space. ``learn_one`` gets the flit's vector in
the primary version (``params.version``) and, in ``others``, in each other held version (None: not known
there, so that version's taste is dropped, to be rebuilt). Since the sum is linear, a taste in a new
version is rebuilt from the user's history (:meth:`UserProfile.rebuild`): each remembered flit's summed,
decayed weight. The history is the documented horizon: the last ``seen_capacity`` distinct flits; older
interactions are left out of a rebuilt taste.

>>> v1, v2 = TasteParams(half_life_s=10.0, version="v1"), TasteParams(half_life_s=10.0, version="v2")
>>> in_v2 = {"f1": np.array([0.0, 0.0, 1.0], dtype=np.float32), "f2": np.array([0.0, 1.0, 0.0], dtype=np.float32)}
>>> q = UserProfile("u2")
>>> q.learn_one("e1", "like", 100.0, np.array([1.0, 0.0], dtype=np.float32), "a1", "f1", v1, others={"v2": None})
True
>>> sorted(q.tastes)                 # f1 is not known in v2 yet: no taste there
['v1']
>>> q.rebuild("v2", lambda ids: {f: in_v2[f] for f in ids if f in in_v2}, v1.half_life_s)
True
>>> q.learn_one("e2", "like", 110.0, np.array([0.0, 1.0], dtype=np.float32), "a2", "f2", v1,
...             others={"v2": in_v2["f2"]})
True
>>> np.round(q.tastes["v2"], 3).tolist()
[0.0, 1.0, 0.5]
>>> q.learn_one("e3", "like", 110.0, in_v2["f1"], "a1", "f1", v2,     # the switch: v2 is primary now
...             others={"v1": np.array([1.0, 0.0], dtype=np.float32)})
True
>>> q.taste_version, sorted(q.tastes), q.tastes["v1"].tolist()     # v1 kept, for a rollback
('v2', ['v1', 'v2'], [1.5, 1.0])
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

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
    #: Applied event ids remembered (hashed) per user: the window that catches a copy of an event at a new
    #: position (a producer's retry, a topic produced again); re-deliveries are caught by offset instead.
    dedup_capacity: int = 128
    #: Offsets of decided messages remembered exactly per user and partition (``UserProfile.decided``).
    decided_capacity: int = 128
    #: Positions of parked interactions remembered per user (``UserProfile.waiting``).
    parked_capacity: int = 32
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
class DecidedOffsets:
    """The offsets of one user's messages decided on one partition of ``interactions``: the latest
    ``capacity`` exactly, and every offset at or below ``floor`` (the highest one forgotten) as decided.

    Exact, not a high-water mark: Faust's stream can drop a message and the commit guard fetch it again
    after later ones were processed (``streams/faust_compat/offset_guard.py``); that message is not among
    the decided ones, so it is applied, unless ``capacity`` later ones of the same user came first.

    >>> d = DecidedOffsets()
    >>> for o in (3, 9, 5, 12): d.add(o, capacity=3)
    >>> d.offsets.tolist(), d.floor, [o in d for o in (2, 3, 4, 5, 9, 10, 12, 13)]
    ([5, 9, 12], 3, [True, True, False, True, True, False, True, False])
    """

    #: Ascending (int64).
    offsets: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    #: The highest offset forgotten: every offset up to it counts as decided. -1: none forgotten.
    floor: int = -1

    def __contains__(self, offset: int) -> bool:
        if offset <= self.floor:
            return True
        i = int(np.searchsorted(self.offsets, offset))
        return i < len(self.offsets) and int(self.offsets[i]) == offset

    def add(self, offset: int, capacity: int) -> None:
        if offset in self:
            return
        self.offsets = np.insert(self.offsets, np.searchsorted(self.offsets, offset), np.int64(offset))
        if len(self.offsets) > capacity:
            drop = len(self.offsets) - capacity
            self.floor = max(self.floor, int(self.offsets[drop - 1]))
            self.offsets = self.offsets[drop:]


#: No offset decided on a partition.
_NOTHING = DecidedOffsets()


@dataclass
class UserProfile:
    user_id: str
    #: The taste in each embedding version, by version: unnormalised decayed sums (float32), all decayed to
    #: ``last_ts``. The key ``""`` is a taste learnt before versions were tracked.
    tastes: dict[str, np.ndarray] = field(default_factory=dict)
    last_ts: float = 0.0
    positives: int = 0
    negatives: int = 0
    #: The most recent distinct flits interacted with, oldest first (a repeat moves to the end).
    seen: list[str] = field(default_factory=list)
    muted_authors: list[str] = field(default_factory=list)
    #: :func:`event_hash` of the most recent applied event ids, oldest first (uint64).
    event_hashes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    #: The last event applied: re-published if it is delivered again after a crash.
    last_event_id: str = ""
    #: The primary version: the one learnt with last, whose taste is ``taste`` (empty: not tracked).
    taste_version: str = ""
    #: Parallel to ``seen``: the summed weight of the user's interactions with each flit, decayed to
    #: ``history_ts`` (float32), the latest of them (float64): what :meth:`rebuild` sums. NaN = unknown (a
    #: flit remembered by a profile stored before weights were kept): left out of rebuilds.
    history_w: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    history_ts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))
    #: Per partition of ``interactions``: the offsets of this user's messages decided there (applied, or
    #: parked: then in ``waiting`` as well), the latest ``decided_capacity`` exactly and the older ones as a
    #: floor (:class:`DecidedOffsets`). A message among them is a re-delivery.
    decided: dict[int, "DecidedOffsets"] = field(default_factory=dict)
    #: Positions (partition, offset) in ``interactions`` of this user's parked interactions not applied yet,
    #: oldest first (at most ``parked_capacity``): only a parked record of one of these may still be applied.
    waiting: list[tuple[int, int]] = field(default_factory=list)

    @property
    def taste(self) -> np.ndarray | None:
        """The taste in the primary version (``taste_version``), unnormalised; None if there is none."""
        return self.tastes.get(self.taste_version)

    @taste.setter
    def taste(self, value: np.ndarray | None) -> None:
        if value is None:
            self.tastes.pop(self.taste_version, None)
        else:
            self.tastes[self.taste_version] = np.asarray(value, dtype=np.float32)

    def has_applied(self, event_id: str) -> bool:
        """Whether ``event_id`` is among the last ``dedup_capacity`` events applied."""
        return bool((self.event_hashes == np.uint64(event_hash(event_id))).any())

    def is_decided(self, partition: int, offset: int) -> bool:
        """Whether the ``interactions`` message at (``partition``, ``offset``) was decided before: a re-delivery.

        >>> p = UserProfile("u")
        >>> p.mark_decided(2, 17, capacity=8); p.is_decided(2, 17), p.is_decided(2, 16), p.is_decided(0, 17)
        (True, False, False)
        """
        offsets = self.decided.get(partition)
        return offsets is not None and offset in offsets

    def mark_decided(self, partition: int, offset: int, capacity: int) -> None:
        """Remember the message at (``partition``, ``offset``) as decided (applied or parked)."""
        self.decided.setdefault(partition, DecidedOffsets()).add(offset, capacity)

    def is_waiting(self, partition: int, offset: int) -> bool:
        """Whether the interaction at this position was parked and not applied since."""
        return (partition, offset) in self.waiting

    def wait_for(self, partition: int, offset: int, capacity: int) -> bool:
        """Remember a parked interaction's position. With ``capacity`` positions held, those at or below
        their partition's floor go first (older than the user's latest ``decided_capacity`` decided messages:
        expired long ago); if none is, the position is not remembered: False.

        >>> p = UserProfile("u")
        >>> [p.wait_for(0, o, capacity=2) for o in (5, 6, 7)], p.waiting
        ([True, True, False], [(0, 5), (0, 6)])
        >>> for o in range(20, 23): p.mark_decided(0, o, capacity=2)
        >>> p.wait_for(0, 7, capacity=2), p.stop_waiting(0, 7), p.stop_waiting(0, 7), p.waiting
        (True, True, False, [])
        """
        if (partition, offset) in self.waiting:
            return True
        if len(self.waiting) >= capacity:
            self.waiting = [(p, o) for p, o in self.waiting if o > self.decided.get(p, _NOTHING).floor]
            if len(self.waiting) >= capacity:
                return False
        self.waiting.append((partition, offset))
        return True

    def stop_waiting(self, partition: int, offset: int) -> bool:
        """Forget a parked position (its interaction was applied); False if it was not remembered."""
        try:
            self.waiting.remove((partition, offset))
        except ValueError:
            return False
        return True

    def learn_one(self, event_id: str, kind: str, ts: float, vector: np.ndarray, author_id: str,
                  flit_id: str, params: TasteParams, dwell_ms: int | None = None,
                  others: Mapping[str, np.ndarray | None] | None = None) -> bool:
        """Apply one interaction. Returns False (and changes nothing) for a duplicate ``event_id``.

        ``vector`` is the flit's vector in ``params.version``, which becomes the primary version (an empty
        ``params.version`` keeps ``taste_version``). ``others``: the flit's vector in each other version the
        caller holds (None = not known in it). Each held taste gets the same update; a taste whose version
        has no vector for this flit would now be wrong, so it is dropped (rebuilt later from the history),
        and so is a taste of a version the caller no longer holds. ``others=None`` (a caller that does not
        track versions) holds no other version: only the primary taste is kept, as before versions. A
        profile's first event starts a taste in every version of ``others`` that knows the flit.

        A taste of another version is never mixed with this one's vectors: when the primary version has
        no taste yet, it starts anew (the caller may :meth:`rebuild` it), the old primary staying only if
        it is in ``others``. A taste learnt before versions were tracked (version ``""``) is adopted.
        """
        if self.has_applied(event_id):
            return False
        if params.version and params.version != self.taste_version:
            if not self.taste_version and "" in self.tastes and params.version not in self.tastes:
                self.tastes[params.version] = self.tastes.pop("")
            self.taste_version = params.version
        primary = self.taste_version
        # A profile's first event starts a taste in every version that knows the flit: exact, nothing before it.
        first = not self.seen and not self.tastes
        v = np.asarray(vector, dtype=np.float32)
        vectors = {primary: v}
        for version, other in (others or {}).items():
            if version != primary and other is not None and (version in self.tastes or first):
                vectors[version] = np.asarray(other, dtype=np.float32)
        # Only the tastes that get this event's vector stay exact; the others are dropped.
        self.tastes = {version: t for version, t in self.tastes.items() if version in vectors}
        for version, vec in vectors.items():
            if version not in self.tastes:  # the primary anew, or a first event's: decayed to last_ts, zero is zero
                self.tastes[version] = np.zeros_like(vec)
        weight = interaction_weight(kind, dwell_ms)
        if ts >= self.last_ts:
            decay = np.float32(2.0 ** (-(ts - self.last_ts) / params.half_life_s))
            self.tastes = {version: t * decay + weight * vectors[version] for version, t in self.tastes.items()}
            self.last_ts = ts
        else:
            late = np.float32(weight * 2.0 ** (-(self.last_ts - ts) / params.half_life_s))
            self.tastes = {version: t + late * vectors[version] for version, t in self.tastes.items()}
        if kind in NEGATIVE_KINDS:
            self.negatives += 1
            _push_bounded(self.muted_authors, author_id, params.muted_capacity)
        elif weight > 0:
            self.positives += 1
        self._remember(flit_id, weight, ts, params)
        self.event_hashes = _push_hash(self.event_hashes, event_hash(event_id), params.dedup_capacity)
        self.last_event_id = event_id
        return True

    def _remember(self, flit_id: str, weight: float, ts: float, params: TasteParams) -> None:
        """``flit_id`` as the most recent of ``seen``, its history entry combined with this interaction.

        The decayed sum is linear, so two interactions with one flit are one term of weight
        ``w_old·2^(-(t_new-t_old)/h) + w_new`` at ``t_new`` (the older one decayed to the newer, whichever
        arrived first): a rebuild gives what the incremental update gave. NaN (unknown) stays NaN.
        """
        w, t = np.float64(weight), float(ts)
        if flit_id in self.seen:
            i = self.seen.index(flit_id)
            old_w, old_t = np.float64(self.history_w[i]), float(self.history_ts[i])
            if t >= old_t:
                w = old_w * 2.0 ** (-(t - old_t) / params.half_life_s) + w
            else:
                w, t = old_w + w * 2.0 ** (-(old_t - t) / params.half_life_s), old_t
            del self.seen[i]
            self.history_w = np.delete(self.history_w, i)
            self.history_ts = np.delete(self.history_ts, i)
        self.seen.append(flit_id)
        self.history_w = np.append(self.history_w, np.float32(w)).astype(np.float32)
        self.history_ts = np.append(self.history_ts, t).astype(np.float64)
        if len(self.seen) > params.seen_capacity:  # the horizon: the oldest arrival goes
            drop = len(self.seen) - params.seen_capacity
            del self.seen[:drop]
            self.history_w, self.history_ts = self.history_w[drop:], self.history_ts[drop:]

    def history_flits(self) -> list[str]:
        """The remembered flits a rebuild can use (known weight), oldest first."""
        return [self.seen[i] for i in np.flatnonzero(~np.isnan(self.history_w))]

    def rebuild(self, version: str, vectors_of: Callable[[Sequence[str]], Mapping[str, np.ndarray]],
                half_life_s: float) -> bool:
        """Set the taste in ``version`` from the history: ``Σ_i w_i·2^(-(last_ts - t_i)/h)·v_i``.

        ``vectors_of``: called once with every usable history flit id, returns ``{flit_id: vector}`` in
        ``version`` for those it knows; the others are left out, as are flits with unknown weight (stored
        before weights were kept) and interactions beyond the horizon (``seen_capacity`` distinct flits).
        Within it, the result equals the incrementally learnt taste (up to float32 rounding). Returns False,
        setting nothing, when no flit contributed.

        >>> import numpy as np
        >>> p = UserProfile("u")
        >>> p.learn_one("e1", "like", 0.0, np.array([1.0, 0.0], dtype=np.float32), "a", "f1", TasteParams(10.0))
        True
        >>> p.rebuild("v2", lambda ids: {"f1": np.array([0.0, 2.0, 0.0], dtype=np.float32)}, 10.0)
        True
        >>> p.tastes["v2"].tolist(), p.rebuild("v3", lambda ids: {}, 10.0)
        ([0.0, 2.0, 0.0], False)
        """
        rows = np.flatnonzero(~np.isnan(self.history_w))
        if len(rows) == 0:
            return False
        got = vectors_of([self.seen[i] for i in rows])
        rows = np.array([i for i in rows if self.seen[i] in got], dtype=np.intp)
        if len(rows) == 0:
            return False
        matrix = np.stack([np.asarray(got[self.seen[i]], dtype=np.float32) for i in rows])
        # float64 coefficients: the incremental sum decays in float32 steps, this in one step.
        coef = self.history_w[rows].astype(np.float64) * np.exp2(-(self.last_ts - self.history_ts[rows]) / half_life_s)
        self.tastes[version] = (coef @ matrix.astype(np.float64)).astype(np.float32)
        return True

    def query_vector(self, version: str | None = None) -> np.ndarray | None:
        """The normalised taste in ``version`` (default: ``taste_version``) to search with, or None while
        the user is cold (no positive signal) or has no taste in that version."""
        taste = self.tastes.get(self.taste_version if version is None else version)
        if taste is None or self.positives == 0:
            return None
        q = l2_normalise(taste)
        return q if float(np.linalg.norm(q)) > 0 else None

    # --- serialisation for the Faust table -------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The profile as the worker's table stores it: binary, ~3x smaller than :meth:`to_dict`'s JSON.

        A fixed header (``_HEAD``: format, ``last_ts``, counts and sizes), then little-endian arrays: each
        taste's length, the tastes (float32), the history weights (float32) and times (float32 seconds
        before ``last_ts``, on a 1/1024 s grid, so that decoding and encoding again gives the same bytes),
        the event hashes (uint64), the decided offsets (per partition: the partition, the latest offset and
        the floor, then each offset as uint32 below the latest) and the waiting positions (int32
        partitions, int64 offsets); last the strings (user id, last event id, versions, seen flits and
        muted authors one per line), length-prefixed and zlib-compressed together (ids share prefixes: 500
        flit ids and 200 authors take ~3 KB instead of ~10.7). The first byte is 0, never the ``{`` of an
        older JSON value (:meth:`from_stored`).

        >>> import numpy as np
        >>> p = UserProfile("u")
        >>> p.learn_one("e1", "like", 1.7e9, np.array([1.0, 0.0], dtype=np.float32), "a1", "f1", TasteParams())
        True
        >>> p.mark_decided(3, 41, capacity=8)
        >>> back = UserProfile.from_stored(p.to_bytes())
        >>> back.seen, back.is_decided(3, 41), back.has_applied("e1"), back.to_bytes() == p.to_bytes()
        (['f1'], True, True, True)
        """
        versions = list(self.tastes)
        tastes = [np.ascontiguousarray(self.tastes[v], dtype="<f4").ravel() for v in versions]
        if not len(self.history_w) == len(self.history_ts) == len(self.seen):
            raise ValueError("the history is not parallel to the seen flits")
        texts = [self.user_id, self.last_event_id, self.taste_version, _lines(self.seen), _lines(self.muted_authors),
                 *versions]
        text = zlib.compress(b"".join(_field(t) for t in texts), _ZLIB_LEVEL)
        # Seconds before last_ts on a 1/1024 s grid: float32 holds them to 1 ms for the last 4.5 h and to
        # ~0.2 s a month back, far below what a decay with a half-life of days can tell apart.
        ages = (np.round((self.last_ts - self.history_ts.astype(np.float64)) * _AGE_GRID) / _AGE_GRID).astype("<f4")
        parts, tops, floors, below = [], [], [], []
        for partition, d in self.decided.items():
            top = int(d.offsets[-1]) if len(d.offsets) else d.floor
            gaps = top - d.offsets
            # An offset over 4 billion below the latest is forgotten (counted in the floor): uint32 gaps.
            forgotten = gaps > _MAX_GAP
            parts.append(partition)
            tops.append(top)
            floors.append(max(d.floor, int(d.offsets[forgotten].max())) if forgotten.any() else d.floor)
            below.append(gaps[~forgotten].astype("<u4"))
        return b"".join([
            _HEAD.pack(_MAGIC, _FORMAT, self.last_ts, self.positives, self.negatives, len(versions), len(self.seen),
                       len(self.event_hashes), len(parts), len(self.waiting), len(text)),
            np.array([t.size for t in tastes], dtype="<u4").tobytes(), *(t.tobytes() for t in tastes),
            self.history_w.astype("<f4").tobytes(), ages.tobytes(), self.event_hashes.astype("<u8").tobytes(),
            np.array(parts, dtype="<i4").tobytes(), np.array(tops, dtype="<i8").tobytes(),
            np.array(floors, dtype="<i8").tobytes(), np.array([len(b) for b in below], dtype="<u4").tobytes(),
            *(b.tobytes() for b in below),
            np.array([p for p, _ in self.waiting], dtype="<i4").tobytes(),
            np.array([o for _, o in self.waiting], dtype="<i8").tobytes(),
            text,
        ])

    @classmethod
    def from_bytes(cls, raw: bytes) -> "UserProfile":
        """A profile from :meth:`to_bytes`; raises ``ValueError`` for bytes of another format or cut short."""
        try:
            (magic, fmt, last_ts, positives, negatives, n_tastes, n_seen, n_hashes, n_parts, n_waiting,
             n_text) = _HEAD.unpack_from(raw, 0)
        except struct.error as exc:
            raise ValueError(f"not a stored profile: {exc}") from exc
        if magic != _MAGIC or fmt != _FORMAT:
            raise ValueError(f"not a stored profile of format {_FORMAT}: {bytes(raw[:4])!r}")
        at = _HEAD.size

        def take(dtype: str, n: int) -> np.ndarray:
            nonlocal at
            size = np.dtype(dtype).itemsize * n
            if at + size > len(raw):
                raise ValueError("a stored profile cut short")
            out = np.frombuffer(raw, dtype=dtype, count=n, offset=at)
            at += size
            return out

        dims = take("<u4", n_tastes)
        vectors = [take("<f4", int(d)).astype(np.float32) for d in dims]
        history_w = take("<f4", n_seen).astype(np.float32)
        ages = take("<f4", n_seen).astype(np.float64)
        hashes = take("<u8", n_hashes).astype(np.uint64)
        parts, tops, floors = take("<i4", n_parts).tolist(), take("<i8", n_parts), take("<i8", n_parts).tolist()
        counts = take("<u4", n_parts).tolist()
        decided = {}
        for partition, top, floor, n in zip(parts, tops, floors, counts):
            offsets = (top - take("<u4", n).astype(np.int64)).astype(np.int64)
            decided[partition] = DecidedOffsets(offsets, floor)
        waiting = list(zip(take("<i4", n_waiting).tolist(), take("<i8", n_waiting).tolist()))
        if at + n_text != len(raw):
            raise ValueError("a stored profile of the wrong length")
        user_id, last_event_id, taste_version, seen, muted, *versions = _fields(zlib.decompress(raw[at:]))
        if len(versions) != n_tastes:
            raise ValueError("a stored profile's tastes and versions differ in number")
        seen_ids = seen.split("\n") if seen else []
        if len(seen_ids) != n_seen:
            raise ValueError("a stored profile's history and seen flits differ in number")
        return cls(user_id=user_id, tastes=dict(zip(versions, vectors)), last_ts=last_ts, positives=positives,
                   negatives=negatives, seen=seen_ids, muted_authors=muted.split("\n") if muted else [],
                   event_hashes=hashes,
                   last_event_id=last_event_id, taste_version=taste_version, history_w=history_w,
                   history_ts=last_ts - ages, decided=decided, waiting=waiting)

    @classmethod
    def from_stored(cls, value: bytes | bytearray | memoryview | str | Mapping[str, Any]) -> "UserProfile":
        """A profile from whatever the table holds for a user: :meth:`to_bytes`, or an older value, the JSON
        of :meth:`to_dict` (as bytes: what a table reading raw bytes gets from a changelog record or a
        RocksDB value written before) or that dict itself (what a memory table held)."""
        if isinstance(value, Mapping):
            return cls.from_dict(value)
        raw = value.encode() if isinstance(value, str) else bytes(value)
        if raw[:1] == b"{":
            return cls.from_dict(json.loads(raw))
        return cls.from_bytes(raw)

    def to_dict(self) -> dict[str, Any]:
        """The profile as JSON-ready values: the form the table stored before :meth:`to_bytes` (base64
        arrays, id lists as one string each), still read by :meth:`from_dict`; for reading and tests."""
        return {
            "user_id": self.user_id,
            "tastes": {version: _b64(t, "<f4") for version, t in self.tastes.items()},
            "last_ts": self.last_ts,
            "positives": self.positives,
            "negatives": self.negatives,
            # Ids joined by a space (ids never contain whitespace: events.Ident): one string instead of a
            # list of strings, ~50 bytes less per id in a table held in memory, 3 less in JSON.
            "seen": _join(self.seen),
            "history_w": _b64(self.history_w, "<f4"),
            "history_ts": _b64(self.history_ts, "<f8"),
            "muted_authors": _join(self.muted_authors),
            "event_hashes": _b64(self.event_hashes, "<u8"),
            "last_event_id": self.last_event_id,
            "taste_version": self.taste_version,
            # JSON object keys are strings.
            "decided": {str(p): {"floor": d.floor, "offsets": d.offsets.tolist()} for p, d in self.decided.items()},
            "waiting": [[p, o] for p, o in self.waiting],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "UserProfile":
        """A profile from :meth:`to_dict`, or from a dict stored before versions (one ``taste``, in
        ``taste_version``), before history weights (its remembered flits get NaN: never rebuilt from),
        before hashed event ids (``recent_event_ids``) or before decided offsets (none: re-deliveries are
        then recognised by the event ids the profile holds)."""
        version = str(d.get("taste_version", ""))
        if "tastes" in d:
            tastes = {str(v): _unb64(t, "<f4", np.float32) for v, t in d["tastes"].items()}
        else:
            tastes = {} if d.get("taste") is None else {version: _unb64(d["taste"], "<f4", np.float32)}
        seen = _ids(d.get("seen", []))
        history_w = _unb64(d["history_w"], "<f4", np.float32) if "history_w" in d else None
        history_ts = _unb64(d["history_ts"], "<f8", np.float64) if "history_ts" in d else None
        if history_w is None or history_ts is None or not len(history_w) == len(history_ts) == len(seen):
            history_w, history_ts = np.full(len(seen), np.nan, np.float32), np.zeros(len(seen), np.float64)
        return cls(
            user_id=d["user_id"],
            tastes=tastes,
            last_ts=float(d.get("last_ts", 0.0)),
            positives=int(d.get("positives", 0)),
            negatives=int(d.get("negatives", 0)),
            seen=seen,
            muted_authors=_ids(d.get("muted_authors", [])),
            event_hashes=_hashes_of(d),
            last_event_id=str(d.get("last_event_id", "")),
            taste_version=version,
            history_w=history_w,
            history_ts=history_ts,
            decided={int(p): DecidedOffsets(np.array(v["offsets"], dtype=np.int64), int(v["floor"]))
                     for p, v in d.get("decided", {}).items()},
            waiting=[(int(p), int(o)) for p, o in d.get("waiting", [])],
        )


#: :meth:`UserProfile.to_bytes`: a first byte 0 (never JSON's ``{``), then "up" and the format number.
_MAGIC, _FORMAT = b"\x00up", 1
#: magic, format, last_ts, positives, negatives, and the counts: tastes, seen flits, event hashes,
#: partitions with decided offsets, waiting positions, compressed string bytes.
_HEAD = struct.Struct("<3sBdqqHIIHHI")
#: The most a decided offset is stored below its partition's latest one (uint32).
_MAX_GAP = 2**32 - 1
#: History times are stored on this grid (1/1024 s), which makes a decode-encode round trip exact.
_AGE_GRID = 1024.0
#: 3.0 KB for 500 flit ids and 200 authors in 37 µs; zlib's default (6) gives 2.7 KB in 120 µs: the worker
#: encodes a profile per interaction. A typical user's ~20 ids take ~170 bytes either way.
_ZLIB_LEVEL = 1


def _lines(ids: Sequence[str]) -> str:
    """Ids joined by newlines (ids hold no control characters: events.Ident), checked: the count of newlines
    is cheaper than :func:`_join`'s split of every id."""
    joined = "\n".join(ids)
    if ids and joined.count("\n") != len(ids) - 1:
        raise ValueError("an id holds a newline")
    return joined


def _field(text: str) -> bytes:
    b = text.encode("utf-8")
    return struct.pack("<I", len(b)) + b


def _fields(blob: bytes) -> list[str]:
    """The strings :func:`_field` wrote, in order."""
    out, at = [], 0
    while at < len(blob):
        (n,) = struct.unpack_from("<I", blob, at)
        at += 4
        if at + n > len(blob):
            raise ValueError("a stored profile's strings cut short")
        out.append(blob[at:at + n].decode("utf-8"))
        at += n
    return out


def _join(ids: Sequence[str]) -> str:
    """Ids as one space-separated string (:func:`_ids` reads it back).

    >>> _join(["f1", "f2"]), _ids(_join(["f1", "f2"])), _ids(_join([])), _ids(["f1"])
    ('f1 f2', ['f1', 'f2'], [], ['f1'])
    """
    joined = " ".join(ids)
    if len(joined.split()) != len(ids):  # str.split() splits on any whitespace and drops empty parts
        raise ValueError("an id is empty or holds whitespace")
    return joined


def _ids(stored: str | Sequence[str]) -> list[str]:
    """Ids stored by :func:`_join`, or as a list (a profile stored before they were joined)."""
    if isinstance(stored, str):
        return stored.split(" ") if stored else []
    return list(stored)


def _b64(a: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.asarray(a).astype(dtype).tobytes()).decode()


def _unb64(s: str, dtype: str, native: Any) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype=dtype).astype(native)


def _hashes_of(d: Mapping[str, Any]) -> np.ndarray:
    if "event_hashes" in d:
        return _unb64(d["event_hashes"], "<u8", np.uint64)
    # A profile stored before hashing: its event ids, hashed.
    return np.array([event_hash(e) for e in d.get("recent_event_ids", [])], dtype=np.uint64)
