"""How much attention each flit is getting right now.

An :class:`EngagementTracker` keeps, per flit, two exponentially time-decayed
sums of interactions: positive signals (weighted by :data:`POSITIVE_WEIGHTS`)
and negative ones (:data:`NEGATIVE_WEIGHTS`). Each sum is stored as its value
at the flit's *reference time* (the latest interaction seen for it), so::

    value(now) = value(ref) · 2^(-(now - ref) / half_life)

An interaction newer than the reference decays the stored value to its own
time and becomes the new reference; an older one (arrived late) is added
already decayed, ``weight · 2^(-(ref - ts) / half_life)``. Either way the
result is independent of arrival order.

Memory is bounded: when a new flit takes the count beyond ``capacity``, the
flits with the least decayed signal left are evicted (a tenth of the capacity
at once, so the scan stays cheap).

:meth:`EngagementTracker.top` is read for every feed, so the flits with a
positive net score are kept sorted by their rank key (a leaderboard updated
on each interaction) instead of being ranked from scratch per feed: the
rank key ``log2 net(ref) + ref / h`` does not depend on ``now``, so the order
only changes when a flit's counts do (the full scan was 12% of a feed's time
in the ranker benchmark's profile).

The tracker is plain, synchronous and not thread-safe; the ranker feeds it
from its interaction stream and reads it while ranking.
"""

from __future__ import annotations

import bisect
import heapq
import math
from itertools import compress
from types import MappingProxyType
from typing import Callable, Mapping, Sequence

import numpy as np

from flitfeed.streams.vocabulary import KINDS

#: Weight of one positive interaction of each kind (the vocabulary's ``engagement_weight``; a view
#: is cheap and automatic, weak evidence on its own, but counts on the positive side).
POSITIVE_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {k.name: k.engagement_weight for k in KINDS.values() if k.polarity != "negative"})
#: Weight of one negative interaction of each kind (counted separately).
NEGATIVE_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {k.name: k.engagement_weight for k in KINDS.values() if k.polarity == "negative"})


class _Counts:
    __slots__ = ("positive", "negative", "ref", "rank")

    def __init__(self, ref: float) -> None:
        self.positive = 0.0
        self.negative = 0.0
        self.ref = ref
        #: The flit's key on the leaderboard, None while its net score is <= 0 (not on it).
        self.rank: float | None = None


class EngagementTracker:
    """Exponentially time-decayed engagement per flit, bounded to ``capacity`` flits.

    >>> t = EngagementTracker(half_life_s=3600.0, capacity=100)
    >>> t.learn_one("f1", "like", ts=0.0)
    True
    >>> t.score("f1", now=3600.0)        # one half-life later
    0.5
    >>> t.learn_one("f1", "reflit", ts=3600.0)
    True
    >>> t.learn_one("f1", "like", ts=-3600.0)   # late arrival: already decayed twice
    True
    >>> t.score("f1", now=3600.0)
    2.25
    >>> t.learn_one("f2", "report", ts=3600.0), t.score("f2", now=3600.0)
    (True, -2.0)
    >>> t.learn_one("f1", "follow", ts=3600.0)  # not a flit-engagement kind
    False
    >>> t.top(5, now=3600.0)
    [('f1', 2.25)]
    """

    def __init__(self, half_life_s: float, capacity: int) -> None:
        if not half_life_s > 0:
            raise ValueError(f"half_life_s must be > 0, got {half_life_s}")
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.half_life_s = float(half_life_s)
        self.capacity = int(capacity)
        self._counts: dict[str, _Counts] = {}
        # (rank key, flit id) of every flit with positive > negative, ascending.
        self._board: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._counts)

    def __contains__(self, flit_id: object) -> bool:
        return flit_id in self._counts

    def learn_one(self, flit_id: str, kind: str, ts: float) -> bool:
        """Count one interaction of ``kind`` with ``flit_id`` at epoch time ``ts``.

        Returns False (and changes nothing) for kinds that are not flit
        engagement, so the caller can pass every interaction through.
        """
        if kind in POSITIVE_WEIGHTS:
            weight, positive = POSITIVE_WEIGHTS[kind], True
        elif kind in NEGATIVE_WEIGHTS:
            weight, positive = NEGATIVE_WEIGHTS[kind], False
        else:
            return False
        counts = self._counts.get(flit_id)
        if counts is None:
            counts = self._counts[flit_id] = _Counts(ts)
        if ts > counts.ref:
            decay = self._decay(ts - counts.ref)
            counts.positive *= decay
            counts.negative *= decay
            counts.ref = ts
        else:
            weight *= self._decay(counts.ref - ts)
        if positive:
            counts.positive += weight
        else:
            counts.negative += weight
        self._rerank(flit_id, counts)
        if len(self._counts) > self.capacity:
            self._evict()
        return True

    def positive(self, flit_id: str, now: float) -> float:
        """Decayed positive engagement of ``flit_id`` at ``now`` (0 if unknown)."""
        counts = self._counts.get(flit_id)
        return 0.0 if counts is None else counts.positive * self._decay(now - counts.ref)

    def negative(self, flit_id: str, now: float) -> float:
        """Decayed negative engagement (hides, reports) of ``flit_id`` at ``now``."""
        counts = self._counts.get(flit_id)
        return 0.0 if counts is None else counts.negative * self._decay(now - counts.ref)

    def score(self, flit_id: str, now: float) -> float:
        """Net decayed engagement at ``now``: positive minus negative (0 if unknown)."""
        counts = self._counts.get(flit_id)
        if counts is None:
            return 0.0
        return (counts.positive - counts.negative) * self._decay(now - counts.ref)

    def state_many(self, flit_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(net, ref)`` per flit: the net engagement at its reference time and that time (0, 0 if
        unknown), for :func:`decayed` to read at any ``now`` with array code.

        >>> t = EngagementTracker(half_life_s=3600.0, capacity=10)
        >>> _ = t.learn_one("f1", "like", ts=0.0)
        >>> net, ref = t.state_many(["f1", "nope"])
        >>> decayed(net, ref, np.array([3600.0, 3600.0]), t.half_life_s).tolist()
        [0.5, 0.0]
        """
        counts = list(map(self._counts.get, flit_ids))
        n = len(counts)
        net = np.zeros(n)
        ref = np.zeros(n)
        # Most of a batch's candidates (the vector source's) were never engaged with: only the flits that
        # were are read in Python (compress and map loop in C; a _Counts is always true, None false).
        known = list(compress(range(n), counts))
        if known:
            held = [counts[i] for i in known]
            net[known] = [c.positive - c.negative for c in held]
            ref[known] = [c.ref for c in held]
        return net, ref

    def top(self, n: int, now: float, where: Callable[[str], bool] | None = None) -> list[tuple[str, float]]:
        """The ``n`` flits with the highest positive net score at ``now``, best first.

        The scores returned may have decayed to 0.0 (long idle times); the
        order is still the order of the exact decayed values.

        ``where`` restricts the ranking to flit ids it accepts (e.g. flits still
        young enough to show), so excluded flits do not use up the ``n``.
        """
        if n <= 0:
            return []
        ranked: list[str] = []
        for _, fid in reversed(self._board):
            if where is None or where(fid):
                ranked.append(fid)
                if len(ranked) >= n:
                    break
        return [(fid, self.score(fid, now)) for fid in ranked]

    def _rerank(self, flit_id: str, counts: _Counts) -> None:
        # The log domain, log2 net(ref) + ref / h, orders flits exactly as
        # their decayed scores at any common ``now`` do, but never underflows:
        # after a long quiet spell (a replayed history, a test clock) every
        # decayed score may be 0.0 while the order still matters.
        if counts.rank is not None:
            self._unrank(flit_id, counts)
        if counts.positive > counts.negative:
            counts.rank = math.log2(counts.positive - counts.negative) + counts.ref / self.half_life_s
            bisect.insort(self._board, (counts.rank, flit_id))

    def _unrank(self, flit_id: str, counts: _Counts) -> None:
        assert counts.rank is not None
        entry = (counts.rank, flit_id)
        i = bisect.bisect_left(self._board, entry)
        # The stored key is the very float that was inserted, so it is found exactly.
        assert self._board[i] == entry, "leaderboard out of step with the counts"
        del self._board[i]
        counts.rank = None

    def _decay(self, dt: float) -> float:
        # A read "before" the reference time would extrapolate growth; the
        # signal observed so far is the most there is, so clamp at no decay.
        return 2.0 ** (-max(dt, 0.0) / self.half_life_s)

    def _evict(self) -> None:
        # Compare flits at a common time in the log domain, which never
        # underflows: log2 value(t) = log2 value(ref) + (ref - t) / h, and the
        # common -t / h term drops out. Evicting a tenth at once keeps this
        # scan amortised O(1) per interaction instead of O(capacity).
        excess = len(self._counts) - self.capacity + self.capacity // 10

        def strength(item: tuple[str, _Counts]) -> float:
            c = item[1]
            total = c.positive + c.negative
            return -math.inf if total <= 0 else math.log2(total) + c.ref / self.half_life_s

        for fid, counts in heapq.nsmallest(excess, self._counts.items(), key=strength):
            if counts.rank is not None:
                self._unrank(fid, counts)
            del self._counts[fid]


def decayed(net: np.ndarray, ref: np.ndarray, now: np.ndarray | float, half_life_s: float) -> np.ndarray:
    """:meth:`EngagementTracker.score` as array code: ``net · 2^(-max(now - ref, 0) / half_life)``.

    The same formula, operation for operation, as the tracker's per-flit read (never extrapolating
    growth before the reference time), so a batch reads the same scores as one flit at a time.
    """
    return net * np.power(2.0, -np.maximum(now - ref, 0.0) / half_life_s)


def saturated(engagement: np.ndarray | float, saturation: float) -> np.ndarray | float:
    """Net engagement in (-1, 1) with diminishing returns: ``e / (|e| + saturation)``.

    One rule for the engagement scorer's component and the "mainstream" statistic of the affinity
    model, so that both read popularity the same way.

    >>> float(saturated(5.0, 5.0)), float(saturated(-5.0, 5.0))
    (0.5, -0.5)
    >>> saturated(np.array([0.0, 15.0]), 5.0).tolist()
    [0.0, 0.75]
    """
    return engagement / (np.abs(engagement) + saturation)
