"""Every point of an index held beside it as numpy columns, searched exactly by one matrix product per batch.

Why: the ranker's vector source was 79% of a feed (ranker benchmark, 20k flits): Qdrant Edge answers a
``query_batch`` no faster than its queries one by one, and each of its 200 hits per query comes back as
a payload dict that Python turns into objects. At the ranker's catalogue sizes an exact scan is cheaper:
a batch of 32 tastes against 20k 384-d vectors is one BLAS product (~0.2 ms per query on one core), the
pushed-down filters become ``-inf`` entries in its rows, ``np.argpartition`` picks each row's top ``limit``,
and the hits' author, time, tags and language are gathered from columns by slot instead of decoded from
payloads. It costs a second copy of the vectors in RAM (1.5 KB per 384-d point), so a catalogue holds
vectors up to ``max_points`` only (:attr:`VectorCatalogue.exact` then turns false for good and its owner
searches the index's graph instead, which above ~100k points is faster anyway). It keeps the points'
other fields beyond that, up to ``max_columns``: the index's graph then answers point ids and scores
alone (:meth:`~flitfeed.index.base.VectorIndex.search_points_many`) and :meth:`VectorCatalogue.columns_of`
fills in the rest, instead of a payload per hit turned into Python objects (a third of a batch's search
at 100k flits). Past ``max_columns`` it gives up holding anything (:attr:`VectorCatalogue.usable`).

A catalogue is a *mirror*, not a source of truth: its owner feeds it every write its index gets (the
ranker: every record its replica applies, ``ranker/service.py``), and a reader checks that both hold the
same number of points before trusting it (``ranker/sources/vector_neighbours_source.py``).

It answers exactly what the Qdrant backends answer for every :class:`~flitfeed.index.base.SearchFilter`
field, as exact nearest neighbours (the HNSW graph finds ~99% of them), best first; equal scores among
the hits are ordered by slot (which of several equal scores at the cut makes it is arbitrary, as in
the engines).

>>> from flitfeed.index.base import IndexedFlit, SearchFilter
>>> c = VectorCatalogue(dim=2)
>>> c.upsert_many([IndexedFlit("f1", "a", 1.0, np.array([1.0, 0.0], dtype=np.float32), "en", ("x",)),
...                IndexedFlit("f2", "b", 2.0, np.array([3.0, 4.0], dtype=np.float32))])
>>> [(h.flit_id, round(h.score, 2)) for h in c.search(np.array([1.0, 0.0]), 5)]
[('f1', 1.0), ('f2', 0.6)]
>>> found = c.search_columns([np.array([1.0, 0.0])] * 2, 5, [SearchFilter(exclude_authors=frozenset({"a"})), None])
>>> found.counts.tolist(), found.flit_id.tolist(), found.tags.tolist()
([1, 2], ['f2', 'f1', 'f2'], [(), ('x',), ()])
>>> c.delete_many(["f1"]); len(c), [h.flit_id for h in c.search(np.array([1.0, 0.0]), 5)]
(1, ['f2'])
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Sequence

import numpy as np
from threadpoolctl import ThreadpoolController

from flitfeed.index.base import Hit, HitColumns, IndexedFlit, IndexError_, PointHits, SearchFilter, point_key

__all__ = ["VectorCatalogue", "top_k_rows"]

#: Slots allocated when the first point arrives; capacity then doubles (amortised O(1) per point).
_INITIAL_CAPACITY = 1024
#: OpenBLAS's single-precision kernel on this AVX2 machine works in steps of four queries: 2 or 3 queries
#: took longer than 4 (20k points: 2.9 and 3.9 ms against 2.4), one product per query 0.7 ms each. So a
#: batch below this many is scored one query at a time, a larger one padded to a multiple of it (_scores).
_QUERY_STEP = 4


#: Points added since the sorted copy of ``_by_point`` was made before it is made again (at least; or 1/64
#: of the points): sorting 100k keys takes a few ms, so at 20 new flits/s it is done about once a minute.
_RESORT_MIN = 1024


class _SortedPoints:
    """A sorted copy of a ``point key → slot`` dict, for finding many keys at once (see ``_slots_of``).

    >>> sp = _SortedPoints(); sp.build({30: 0, 10: 1, 20: 2})
    >>> sp.find(np.array([20, 10, 99], dtype=np.uint64)).tolist()
    [2, 1, -1]
    """

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.keys = np.zeros(0, dtype=np.uint64)
        self.slots = np.zeros(0, dtype=np.intp)
        #: Keys put into the dict since the copy was made; past a threshold a new copy is made. An empty
        #: copy counts as stale, so the first lookup makes one.
        self.added = _RESORT_MIN + 1

    def build(self, by_point: dict[int, int]) -> None:
        keys = np.fromiter(by_point.keys(), dtype=np.uint64, count=len(by_point))
        slots = np.fromiter(by_point.values(), dtype=np.intp, count=len(by_point))
        order = np.argsort(keys, kind="stable")
        self.keys, self.slots, self.added = keys[order], slots[order], 0

    def find(self, points: np.ndarray) -> np.ndarray:
        """The copy's slot of each point, -1 where the copy lacks it."""
        if not len(self.keys):
            return np.full(len(points), -1, dtype=np.intp)
        # Sorted needles: numpy's binary search starts from the previous answer, half the time of the
        # hits in their search order (their keys are random).
        order = np.argsort(points)
        pos = np.empty(len(points), dtype=np.intp)
        pos[order] = np.searchsorted(self.keys, points[order])
        np.minimum(pos, len(self.keys) - 1, out=pos)
        return np.where(self.keys[pos] == points, self.slots[pos], -1)


def top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(columns, values)``: each row's ``k`` highest entries, best first, equal ones by column.

    Both are ``(rows, min(k, columns))``. Rows of ``scores`` hold ``-inf`` where an entry is excluded:
    such entries fill a row's tail when it has fewer than ``k`` others, and the caller drops them
    (``np.isfinite(values)``). Pure numpy: ``argpartition`` per row (linear), then a sort of only the
    ``k`` picked.

    >>> s = np.array([[0.1, 0.75, -np.inf, 0.75], [0.5, -np.inf, 0.125, 0.25]], dtype=np.float32)
    >>> cols, vals = top_k_rows(s, 2)
    >>> cols.tolist(), vals.tolist()
    ([[1, 3], [0, 3]], [[0.75, 0.75], [0.5, 0.25]])
    """
    n = scores.shape[1]
    k = min(k, n)
    if k < n:
        top = np.argpartition(scores, n - k, axis=1)[:, n - k:]
    else:
        top = np.broadcast_to(np.arange(n), scores.shape).copy()
    # Column order first, then a stable sort by score: equal scores stay in column (slot) order.
    top.sort(axis=1)
    values = np.take_along_axis(scores, top, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(values, order, axis=1)


class VectorCatalogue:
    """Points (vector, author, creation time, tags, language) by flit id, in growable numpy columns.

    Implements :class:`~flitfeed.index.base.VectorIndex` (upsert, search, delete, retrieve, count) with
    the same answers as the Qdrant backends, plus :meth:`search_columns`, which hands a batch's hits
    back as columns. ``max_points``: the most points it holds vectors for; one more and it drops its
    vectors for good (:attr:`exact` false), the default being about where an exact scan stops beating
    the HNSW graph on one core. ``max_columns``: the most points it holds at all; one more and it drops
    everything and stays unusable (a mirror with a hole would answer wrong, silently). ``blas_threads``: BLAS threads for the
    product (None: as BLAS is configured). One by default: a ranker is scaled out as one process per
    core, and OpenBLAS's own threads spin for ~0.1 s after each product, taking the core of whatever
    else runs there (ranker benchmark on one core: the engine's next call waited 1-4 ms for its
    thread; on two loaded cores the product itself ran 1.8x slower than on one thread). Not
    thread-safe: the ranker feeds and searches it from its one loop.
    """

    def __init__(self, dim: int, max_points: int = 50_000, blas_threads: int | None = 1,
                 max_columns: int = 1_000_000) -> None:
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        if not 1 <= max_points <= max_columns:
            raise ValueError(f"need 1 <= max_points <= max_columns, got {max_points} and {max_columns}")
        self.dim = dim
        self.max_points = max_points
        self.max_columns = max_columns
        self._exact = True
        self._blas_threads = blas_threads
        self._blas = ThreadpoolController() if blas_threads is not None else None
        self._usable = True
        self._closed = False
        self._allocate(0)

    def _allocate(self, capacity: int) -> None:
        # Unit rows: a dot is the cosine. None of them once the catalogue outgrew max_points. Column-major
        # (each dimension's values of all points side by side): the batch's product then reads the points
        # as a plain (dim × points) matrix, which OpenBLAS multiplies 1.2-2.4x faster than the transposed view
        # of row-major points (see _scores). A point's vector is a strided row: written once, read rarely.
        self._vectors = _vector_columns(capacity if self._exact else 0, self.dim)
        self._created = np.zeros(capacity, dtype=np.float64)
        self._alive = np.zeros(capacity, dtype=bool)
        self._flit_id = np.empty(capacity, dtype=object)
        self._author_id = np.empty(capacity, dtype=object)
        self._tags = np.empty(capacity, dtype=object)
        self._lang = np.empty(capacity, dtype=object)
        self._point = np.zeros(capacity, dtype=np.uint64)  # point_key(flit_id): how PointHits name a hit
        # Authors numbered once, when a point arrives: hits then carry integer author keys (HitColumns). A
        # number outlives its author's points (one int per author ever seen, as _by_author's keys do).
        self._author_key = np.zeros(capacity, dtype=np.int64)
        self._author_codes: dict[str, int] = {}
        self._slot: dict[str, int] = {}
        self._by_point: dict[int, int] = {}
        self._points = _SortedPoints()
        self._by_author: dict[str, set[int]] = defaultdict(set)
        self._free: list[int] = []  # slots of deleted points, reused first
        self._size = 0  # slots ever used: the columns' live prefix
        # The oldest creation time held, or a bound below it once a point went or was replaced (what
        # narrowed() needs: a bound too low only keeps a condition that could have been dropped).
        self._oldest = np.inf
        self._oldest_exact = True

    # ------------------------------------------------------------------ state

    @property
    def usable(self) -> bool:
        """False once it outgrew ``max_columns`` (or was closed): it then holds nothing and answers nothing."""
        return self._usable and not self._closed

    @property
    def exact(self) -> bool:
        """Whether it holds every point's vector, so it can search (false for good past ``max_points``)."""
        return self.usable and self._exact

    def __len__(self) -> int:
        return len(self._slot)

    def count(self, approximate: bool = False) -> int:
        """Points held (always exact)."""
        self._check_open()
        return len(self._slot)

    def close(self) -> None:
        """Frees the columns. Idempotent; afterwards every call raises :class:`~flitfeed.index.base.IndexError_`."""
        self._closed = True
        self._allocate(0)

    def _check_open(self) -> None:
        if self._closed:
            raise IndexError_("catalogue is closed")

    # ----------------------------------------------------------------- writes

    def upsert_many(self, flits: Sequence[IndexedFlit]) -> None:
        """Insert or replace by ``flit_id`` (the last one wins). Raises ``ValueError`` for a vector the
        indexes refuse (wrong shape, non-finite, zero) before changing anything."""
        self._check_open()
        if not self._usable:
            return
        vectors = [self._checked(f.vector) for f in flits]
        for f, vector in zip(flits, vectors):
            slot = self._slot.get(f.flit_id)
            if slot is None:
                if len(self._slot) >= self.max_columns:
                    # Dropping everything (not just refusing this point) makes the state impossible to
                    # misread: an owner that checks counts would otherwise see a catalogue one point short.
                    self._usable = False
                    self._allocate(0)
                    return
                if self._exact and len(self._slot) >= self.max_points:
                    self._exact = False  # the same for the vectors: all of them go, for good
                    self._vectors = _vector_columns(0, self.dim)
                slot = self._new_slot()
                self._slot[f.flit_id] = slot
                key = point_key(f.flit_id)
                self._point[slot] = key
                if key in self._by_point:
                    self._points.clear()  # two flits with one key (~1 in 10^9 at 10^5 points): the later wins
                self._by_point[key] = slot
                self._points.added += 1
            else:
                self._by_author[self._author_id[slot]].discard(slot)
                self._oldest_exact = False
            self._oldest = min(self._oldest, float(f.created_at))
            if self._exact:
                # Qdrant stores cosine vectors normalised; so must the mirror, or its dots would not be cosines.
                self._vectors[slot] = vector / np.linalg.norm(vector)
            self._created[slot] = float(f.created_at)
            self._alive[slot] = True
            self._flit_id[slot] = f.flit_id
            self._author_id[slot] = f.author_id
            self._author_key[slot] = self._author_codes.setdefault(f.author_id, len(self._author_codes))
            self._tags[slot] = tuple(f.tags)
            self._lang[slot] = f.lang
            self._by_author[f.author_id].add(slot)

    def _checked(self, vector: np.ndarray) -> np.ndarray:
        """The vector as float32, refused as the indexes refuse it (``checked_vector``) without its list of
        Python floats: the ranker feeds the catalogue one record at a time, the whole log at start-up."""
        arr = np.asarray(vector, dtype=np.float32)
        if arr.shape != (self.dim,):
            raise ValueError(f"vector shape {arr.shape}, expected ({self.dim},)")
        if not np.isfinite(arr).all() or not arr.any():
            raise ValueError("vector must be finite and non-zero")
        return arr

    def _new_slot(self) -> int:
        if self._free:
            return self._free.pop()
        if self._size == len(self._created):
            self._grow(max(_INITIAL_CAPACITY, 2 * self._size))
        self._size += 1
        return self._size - 1

    def _grow(self, capacity: int) -> None:
        def grown(column: np.ndarray) -> np.ndarray:
            out = np.zeros((capacity, *column.shape[1:]), dtype=column.dtype) if column.dtype != object \
                else np.empty(capacity, dtype=object)
            out[: len(column)] = column
            return out

        if self._exact:
            vectors = _vector_columns(capacity, self.dim)
            vectors[: len(self._vectors)] = self._vectors
            self._vectors = vectors
        self._created, self._alive = grown(self._created), grown(self._alive)
        self._flit_id, self._author_id = grown(self._flit_id), grown(self._author_id)
        self._tags, self._lang, self._point = grown(self._tags), grown(self._lang), grown(self._point)
        self._author_key = grown(self._author_key)

    def delete_many(self, flit_ids: Sequence[str]) -> None:
        """Delete by ``flit_id``; unknown ids are ignored."""
        self._check_open()
        for fid in flit_ids:
            slot = self._slot.pop(fid, None)
            if slot is None:
                continue
            self._alive[slot] = False
            self._by_author[self._author_id[slot]].discard(slot)
            self._oldest_exact = False
            key = int(self._point[slot])
            if self._by_point.get(key) == slot:  # (not if a later flit with the same key took it over)
                del self._by_point[key]
            # (the sorted copy of _by_point may still name this slot: _slots_of checks each slot it gives)
            self._flit_id[slot] = self._author_id[slot] = self._tags[slot] = self._lang[slot] = None
            self._point[slot] = 0
            self._free.append(slot)

    # ------------------------------------------------------------------ reads

    def retrieve_many(self, flit_ids: Sequence[str]) -> dict[str, IndexedFlit]:
        """The held points among ``flit_ids`` (vectors as stored: unit length)."""
        self._check_exact()
        out: dict[str, IndexedFlit] = {}
        for fid in flit_ids:
            slot = self._slot.get(fid)
            if slot is not None:
                out[fid] = IndexedFlit(fid, self._author_id[slot], float(self._created[slot]),
                                       self._vectors[slot].copy(), self._lang[slot], self._tags[slot])
        return out

    def narrowed(self, flt: SearchFilter | None) -> SearchFilter | None:
        """``flt`` without what no point held could fail: a ``min_created_at`` every point meets, excluded
        authors and flits it does not hold (None when nothing is left).

        The same points pass both, so an engine's search finds the same hits with either (checked on a
        100k-point Qdrant Edge graph: the same ids and scores), but an engine checks each condition at
        every point its graph search visits: at 100k points the ranker's usual filter (its seen flits,
        the user as an author, the age bound) made a search 50% dearer than none, and the user is
        rarely an author and the bound rarely bites. Only as true as this catalogue mirrors the index;
        a search's callers keep their own filters (a wrong guess costs hits, never lets one through).

        >>> c = VectorCatalogue(dim=2)
        >>> c.upsert_many([IndexedFlit("f1", "a", 100.0, np.array([1.0, 0.0], dtype=np.float32))])
        >>> c.narrowed(SearchFilter(exclude_authors=frozenset({"a", "me"}), exclude_flit_ids=frozenset({"f9"}),
        ...                         min_created_at=50.0)) == SearchFilter(exclude_authors=frozenset({"a"}))
        True
        >>> c.narrowed(SearchFilter(exclude_authors=frozenset({"me"}), min_created_at=100.0)) is None
        True
        """
        self._check_open()
        if flt is None:
            return None
        by_author, slot = self._by_author, self._slot
        authors = frozenset(a for a in flt.exclude_authors if by_author.get(a))
        flits = frozenset(filter(slot.__contains__, flt.exclude_flit_ids))
        # The keys of the flits held, read from their slots: the engine then hashes none of them.
        keys = frozenset(self._point[[slot[f] for f in flits]].tolist()) if flits else None
        bound = flt.min_created_at
        if bound is not None and self._oldest_at() >= bound:
            bound = None
        if not authors and not flits and bound is None and flt.author is None and flt.only_flit_ids is None:
            return None
        return dataclasses.replace(flt, exclude_authors=authors, exclude_flit_ids=flits, exclude_point_keys=keys,
                                   min_created_at=bound)

    def _oldest_at(self) -> float:
        """The oldest creation time held (inf when empty), found again after a point went or was replaced."""
        if not self._oldest_exact:
            live = self._created[: self._size][self._alive[: self._size]]
            self._oldest = float(live.min()) if live.size else np.inf
            self._oldest_exact = True
        return self._oldest

    def search(self, vector: np.ndarray, limit: int, flt: SearchFilter | None = None) -> list[Hit]:
        return self.search_many([vector], limit, [flt])[0]

    def search_many(self, vectors: Sequence[np.ndarray], limit: int,
                    filters: Sequence[SearchFilter | None]) -> list[list[Hit]]:
        """:meth:`search_columns` as one list of :class:`~flitfeed.index.base.Hit` per vector."""
        return self.search_columns(vectors, limit, filters).hits()

    def search_columns(self, vectors: Sequence[np.ndarray], limit: int,
                       filters: Sequence[SearchFilter | None]) -> HitColumns:
        """The nearest ``limit`` points to each vector honouring its filter, as columns grouped by query.

        One ``(queries × points)`` product; each filter only writes ``-inf`` into its own row.
        """
        self._check_exact()
        if len(vectors) != len(filters):
            raise ValueError(f"{len(vectors)} vectors but {len(filters)} filters")
        queries = np.array([self._checked(v) for v in vectors], dtype=np.float32).reshape(-1, self.dim)
        if limit <= 0 or not len(queries) or not self._slot:
            return HitColumns.empty(len(queries))
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        size = self._size
        scores = self._scores(queries, size)
        dead = np.flatnonzero(~self._alive[:size])
        too_old: dict[float, np.ndarray] = {}  # a batch's queries mostly share their max-age bound
        for row, flt in zip(scores, filters):
            if dead.size:
                row[dead] = -np.inf
            if flt is not None:
                self._apply(row, flt, too_old)
        slots, values = top_k_rows(scores, limit)
        found = np.isfinite(values)  # -inf: excluded (or dead); never a hit
        picked = slots[found]
        return HitColumns(counts=found.sum(axis=1), flit_id=self._flit_id[picked], flit_key=picked.astype(np.int64),
                          author_key=self._author_key[picked],
                          author_id=self._author_id[picked], created_at=self._created[picked],
                          score=values[found].astype(np.float64), tags=self._tags[picked], lang=self._lang[picked])

    def search_points_many(self, vectors: Sequence[np.ndarray], limit: int,
                           filters: Sequence[SearchFilter | None]) -> PointHits:
        found = self.search_columns(vectors, limit, filters)
        return PointHits(counts=found.counts, point=np.fromiter((point_key(f) for f in found.flit_id), dtype=np.uint64,
                                                                count=len(found.flit_id)), score=found.score)

    def columns_of(self, hits: PointHits) -> HitColumns | None:
        """The fields of an index's hits (:meth:`~flitfeed.index.base.VectorIndex.search_points_many`) from
        the columns, or None when a hit is a point this catalogue does not hold (it is not a mirror of
        that index now: the caller asks the index for payloads instead).

        >>> c = VectorCatalogue(dim=2, max_points=1)
        >>> c.upsert_many([IndexedFlit("f1", "a", 1.0, np.array([1.0, 0.0], dtype=np.float32)),
        ...                IndexedFlit("f2", "b", 2.0, np.array([0.0, 1.0], dtype=np.float32), "en", ("x",))])
        >>> c.exact, len(c)
        (False, 2)
        >>> cols = c.columns_of(PointHits.from_lists([[point_key("f2"), point_key("f1")]], [[0.9, 0.1]]))
        >>> cols.flit_id.tolist(), cols.author_id.tolist(), cols.tags.tolist(), cols.score.tolist()
        (['f2', 'f1'], ['b', 'a'], [('x',), ()], [0.9, 0.1])
        >>> c.columns_of(PointHits.from_lists([[point_key("f3")]], [[0.5]])) is None
        True
        """
        self._check_open()
        if not self._usable:
            raise IndexError_("catalogue outgrew max_columns: ask the index for payloads")
        picked = self._slots_of(hits.point)
        if picked is None:
            return None
        return HitColumns(counts=hits.counts, flit_id=self._flit_id[picked], author_id=self._author_id[picked],
                          created_at=self._created[picked], score=hits.score, tags=self._tags[picked],
                          lang=self._lang[picked], flit_key=picked.astype(np.int64), author_key=self._author_key[picked])

    def _slots_of(self, points: np.ndarray) -> np.ndarray | None:
        """The slots of the live points ``points`` (uint64 keys), or None when one is not held.

        ``_by_point`` is the truth; a sorted copy of it answers the batch with one ``searchsorted``
        (a dict lookup per hit was 4% of the ranker's loop at 150 interactions/s). A slot from the copy is
        taken only where that slot still holds that point now; the rest (points added since the copy,
        slots freed and reused) ask the dict. The copy is made again once enough points were added.
        """
        if self._points.added > max(_RESORT_MIN, len(self._by_point) // 64):
            self._points.build(self._by_point)
        if not self._size or not len(points):
            return None if len(points) else np.zeros(0, dtype=np.intp)
        slots = self._points.find(points)  # -1 where the copy lacks a point; any other is a slot ever used
        found = slots >= 0
        slots = np.where(found, slots, 0)
        good = found & (self._point[slots] == points) & self._alive[slots]
        if not good.all():
            get = self._by_point.get
            for row in np.flatnonzero(~good).tolist():
                slot = get(int(points[row]))
                if slot is None:
                    return None
                slots[row] = slot
        return slots

    def _check_exact(self) -> None:
        self._check_open()
        if not self._usable:
            raise IndexError_("catalogue outgrew max_columns: search the index")
        if not self._exact:
            raise IndexError_("catalogue outgrew max_points (it holds no vectors): search the index")

    def _scores(self, queries: np.ndarray, size: int) -> np.ndarray:
        """``(queries × points)`` cosines of the first ``size`` slots (C order: a row per query, for the
        filters' masks and the top-k), on ``blas_threads`` BLAS threads."""
        if self._blas is None:
            return _scores(self._vectors, queries, size)
        with self._blas.limit(limits=self._blas_threads, user_api="blas"):  # ~10 us per call
            return _scores(self._vectors, queries, size)

    def _apply(self, row: np.ndarray, flt: SearchFilter, too_old: dict[float, np.ndarray]) -> None:
        """Write ``-inf`` into ``row`` wherever ``flt`` excludes a point."""
        if flt.min_created_at is not None:
            bound = float(flt.min_created_at)
            old = too_old.get(bound)
            if old is None:
                old = too_old[bound] = np.flatnonzero(self._created[: len(row)] < bound)
            row[old] = -np.inf
        for author in flt.exclude_authors:
            slots = self._by_author.get(author)
            if slots:
                row[np.fromiter(slots, dtype=np.intp, count=len(slots))] = -np.inf
        if flt.exclude_flit_ids:
            get = self._slot.get
            excluded = [s for s in map(get, flt.exclude_flit_ids) if s is not None]
            row[excluded] = -np.inf
        if flt.author is not None:
            _keep_only(row, sorted(self._by_author.get(flt.author, ())))
        if flt.only_flit_ids is not None:
            get = self._slot.get
            _keep_only(row, [s for s in map(get, flt.only_flit_ids) if s is not None])


def _vector_columns(capacity: int, dim: int) -> np.ndarray:
    """Zeroed ``(capacity × dim)`` float32 unit-vector storage, column-major (``VectorCatalogue._allocate``)."""
    return np.zeros((capacity, dim), dtype=np.float32, order="F")


def _scores(vectors: np.ndarray, queries: np.ndarray, size: int) -> np.ndarray:
    """``queries @ vectors[:size].T``: a row per query (C order, for the filters' masks and the top-k).

    ``vectors`` is column-major, so ``vectors[:size].T`` is a plain row-major ``(dim × size)`` matrix and
    the product needs no transposed operand. Batches below ``_QUERY_STEP`` go one query at a time, larger
    ones are padded with zero queries to a multiple of four (OpenBLAS's step; the padding's rows are
    dropped): 20k points, one core, against the row-major blocks this replaced: 0.64 against 1.20 ms for one
    query, 2.2 against 3.5 for four, 6.7 against 8.3 for 32 (BENCHMARKS.md "Session 18").
    """
    points = vectors[:size].T
    n = len(queries)
    if n < _QUERY_STEP:
        out = np.empty((n, size), dtype=np.float32)
        for row, query in enumerate(queries):
            np.matmul(query, points, out=out[row])  # (np.dot with out= skips BLAS here: 4x slower)
        return out
    padded = -(-n // _QUERY_STEP) * _QUERY_STEP
    if padded != n:
        queries = np.concatenate([queries, np.zeros((padded - n, queries.shape[1]), dtype=queries.dtype)])
    return (queries @ points)[:n]


def _keep_only(row: np.ndarray, slots: list[int]) -> None:
    """``-inf`` everywhere in ``row`` except at ``slots`` (a must-condition of a filter)."""
    kept = row[slots]
    row[:] = -np.inf
    row[slots] = kept
