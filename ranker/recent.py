"""The most recently created flits, kept in memory for the fresh/popular source.

A :class:`RecentFlits` holds at most ``capacity`` flits, ordered by
``created_at`` (not by arrival: a flit that arrives late is slotted in where
it belongs, and if it is older than everything in a full store it is simply
not kept). It also counts flits per author among those it holds, which is
what "new author" means to the ranker: an author with few *recent* flits.
Given their vectors it keeps those too (unit length, float32): every
fresh, popular or co-engaged candidate is a recent flit, so its similarity to
a taste is one matrix product in memory rather than a query to the index
(that query was 27% of a feed's time in the ranker benchmark).

Plain, synchronous and not thread-safe.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True, slots=True)
class RecentFlit:
    flit_id: str
    author_id: str
    created_at: float  # epoch seconds
    tags: tuple[str, ...] = ()
    lang: str | None = None


class RecentFlits:
    """Bounded store of the newest flits, idempotent by ``flit_id``.

    >>> r = RecentFlits(capacity=2)
    >>> r.add_one("f1", "a1", 10.0), r.add_one("f1", "a1", 10.0)
    (True, False)
    >>> r.add_one("f2", "a1", 30.0), r.add_one("f3", "a2", 20.0)
    (True, True)
    >>> [f.flit_id for f in r.newest(5)], r.get("f1")     # f1 was the oldest
    (['f2', 'f3'], None)
    >>> r.author_flit_count("a1"), r.author_flit_count("a2"), r.author_flit_count("zz")
    (1, 1, 0)
    >>> [f.flit_id for f in r.newest(5, min_created_at=25.0)]
    ['f2']
    >>> r.add_one("f4", "a3", 40.0, vector=[3.0, 4.0])
    True
    >>> {f: round(c, 4) for f, c in r.similarities([1.0, 0.0], ["f4", "f2", "nope"]).items()}  # f2: no vector
    {'f4': 0.6}
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self._by_id: dict[str, RecentFlit] = {}
        # Sorted ascending; the flit id breaks created_at ties deterministically.
        self._order: list[tuple[float, str]] = []
        self._per_author: Counter[str] = Counter()
        # The held vectors as rows of one matrix (a flit's row: _row_of), so the vectors of a feed's
        # candidates are one fancy index instead of a stack of arrays (the stack was 4% of a feed).
        # Rows of evicted flits are reused; the matrix doubles up to ``capacity`` rows as needed.
        self._row_of: dict[str, int] = {}
        self._free_rows: list[int] = []
        self._matrix: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, flit_id: object) -> bool:
        return flit_id in self._by_id

    def add_one(
        self,
        flit_id: str,
        author_id: str,
        created_at: float,
        tags: tuple[str, ...] = (),
        lang: str | None = None,
        vector: Sequence[float] | np.ndarray | None = None,
    ) -> bool:
        """Remember a flit (and its vector, if given); returns whether it is now held and was not before.

        A vector that is not finite, is all zeros, or has another dimension than the first vector the
        store kept is not kept: the flit is then scored by the index, like one added without a vector
        (a store holds one embedding version's flits). A flit already held gets the new vector (a re-embedded
        flit must score as the index does) and False.
        """
        unit = None if vector is None else _unit(vector)
        if flit_id in self._by_id:
            if unit is not None:
                self._keep_vector(flit_id, unit)
            return False
        key = (float(created_at), flit_id)
        if len(self._order) >= self.capacity and key < self._order[0]:
            return False  # older than everything in a full store: it would be evicted at once
        bisect.insort(self._order, key)
        self._by_id[flit_id] = RecentFlit(flit_id, author_id, float(created_at), tuple(tags), lang)
        self._per_author[author_id] += 1
        while len(self._order) > self.capacity:
            _, old_id = self._order.pop(0)
            old = self._by_id.pop(old_id)
            row = self._row_of.pop(old_id, None)
            if row is not None:
                self._free_rows.append(row)
            self._per_author[old.author_id] -= 1
            if self._per_author[old.author_id] <= 0:
                del self._per_author[old.author_id]
        if unit is not None and flit_id in self._by_id:
            self._keep_vector(flit_id, unit)
        return True

    def _keep_vector(self, flit_id: str, unit: np.ndarray) -> None:
        matrix = self._matrix
        if matrix is not None and unit.shape[0] != matrix.shape[1]:
            return  # another embedding's vector: the index scores this flit
        row = self._row_of.get(flit_id)
        if row is None:
            # Rows in use and free rows are 0..n-1 together: with none free, the next is the count in use.
            row = self._free_rows.pop() if self._free_rows else len(self._row_of)
            self._row_of[flit_id] = row
        if matrix is None or row >= len(matrix):
            grown = np.zeros((min(self.capacity, max(64, 2 * row)), unit.shape[0]), dtype=np.float32)
            if matrix is not None:
                grown[:len(matrix)] = matrix
            self._matrix = matrix = grown
        matrix[row] = unit

    def get(self, flit_id: str) -> RecentFlit | None:
        return self._by_id.get(flit_id)

    def newest(self, n: int, min_created_at: float | None = None) -> list[RecentFlit]:
        """Up to ``n`` flits, newest first, none created before ``min_created_at``."""
        out: list[RecentFlit] = []
        for created_at, flit_id in reversed(self._order):
            if len(out) >= n or (min_created_at is not None and created_at < min_created_at):
                break
            out.append(self._by_id[flit_id])
        return out

    def similarities(self, taste: Sequence[float] | np.ndarray, flit_ids: Sequence[str]) -> dict[str, float]:
        """Cosine of ``taste`` to each of ``flit_ids`` whose vector is held; the others are absent.

        The same cosine the index computes (both sides unit length, float32).
        """
        held, matrix = self.vectors_of(flit_ids)
        unit = _unit(taste)
        if not held.any() or unit is None or unit.shape[0] != matrix.shape[1]:
            return {}
        ids = [fid for fid, h in zip(flit_ids, held.tolist()) if h]
        return {fid: min(1.0, max(-1.0, float(c))) for fid, c in zip(ids, matrix @ unit)}

    def vectors_of(self, flit_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(held, matrix)``: which of ``flit_ids`` have a held vector, and their unit float32 vectors
        stacked, in order (one row per held flit).

        >>> r = RecentFlits(capacity=3)
        >>> _ = r.add_one("f1", "a", 1.0, vector=[3.0, 4.0]); _ = r.add_one("f2", "a", 2.0)
        >>> held, m = r.vectors_of(["f2", "f1"])
        >>> held.tolist(), m.astype(float).round(2).tolist()
        ([False, True], [[0.6, 0.8]])
        """
        get = self._row_of.get
        rows = np.fromiter((get(fid, -1) for fid in flit_ids), dtype=np.int64, count=len(flit_ids))
        held = rows >= 0
        if self._matrix is None or not held.any():
            return held, np.zeros((0, 0), dtype=np.float32)
        return held, self._matrix[rows[held]]

    def author_flit_count(self, author_id: str) -> int:
        """How many of the held flits ``author_id`` wrote."""
        return self._per_author.get(author_id, 0)


def unit_or_none(vector: Sequence[float] | np.ndarray) -> np.ndarray | None:
    """The unit float32 vector the store and its cosines use, or None for one without a direction."""
    return _unit(vector)


def _unit(vector: Sequence[float] | np.ndarray) -> np.ndarray | None:
    # Not encoders.base.l2_normalise: that keeps a zero row at zero, and warns on an infinite one;
    # a vector without a direction must be refused here (the index then scores the flit).
    arr = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(arr))
    if not np.isfinite(norm) or norm == 0.0:
        return None
    unit: np.ndarray = arr / norm
    return unit
