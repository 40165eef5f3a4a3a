"""Exact in-memory vector index (numpy): the evaluator's fast backend and a reference for tests.

Implements :class:`~flitfeed.index.base.VectorIndex` with brute-force cosine
search over a float32 matrix, honouring every :class:`SearchFilter` field the
Qdrant backends honour. Its answers are the exact nearest neighbours, which is
what the embedded Qdrant Edge index returns before it builds an HNSW graph
(the services never optimise it yet), so a replay over this index ranks as
the services do; the Kafka-mode agreement test checks that end to end.
Nothing persists: it is for in-process replays and tests, never for services.

>>> import numpy as np
>>> from flitfeed.index.base import IndexedFlit, SearchFilter
>>> idx = MemoryIndex(dim=2)
>>> idx.upsert_many([IndexedFlit("f1", "a", 1.0, np.array([1.0, 0.0], dtype=np.float32)),
...                  IndexedFlit("f2", "b", 2.0, np.array([0.6, 0.8], dtype=np.float32))])
>>> [(h.flit_id, round(h.score, 2)) for h in idx.search(np.array([1.0, 0.0], dtype=np.float32), 5)]
[('f1', 1.0), ('f2', 0.6)]
>>> [h.flit_id for h in idx.search(np.array([1.0, 0.0]), 5, SearchFilter(exclude_authors=frozenset({"a"})))]
['f2']
>>> [h.flit_id for h in idx.search(np.array([1.0, 0.0]), 5, SearchFilter(min_created_at=1.5))]
['f2']
>>> sorted(idx.retrieve_many(["f2", "zz"])), idx.count()
(['f2'], 2)
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

from flitfeed.index.base import Hit, IndexedFlit, IndexError_, PointHits, SearchFilter, checked_vector

__all__ = ["MemoryIndex"]


class MemoryIndex:
    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._vectors = np.zeros((0, dim), dtype=np.float32)
        self._created = np.zeros(0, dtype=np.float64)
        self._alive = np.zeros(0, dtype=bool)
        self._flits: list[IndexedFlit | None] = []
        self._row: dict[str, int] = {}
        self._by_author: dict[str, set[int]] = defaultdict(set)
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise IndexError_("index is closed")

    def upsert_many(self, flits: Sequence[IndexedFlit]) -> None:
        self._check_open()
        # Every vector is checked before anything changes: a bad batch leaves the index as it was.
        vectors = [np.asarray(checked_vector(f.vector, self.dim), dtype=np.float32) for f in flits]
        new = [f for f in flits if f.flit_id not in self._row]
        if new:
            n = len(self._flits)
            self._vectors = np.vstack([self._vectors, np.zeros((len(new), self.dim), dtype=np.float32)])
            self._created = np.concatenate([self._created, np.zeros(len(new))])
            self._alive = np.concatenate([self._alive, np.zeros(len(new), dtype=bool)])
            self._flits.extend([None] * len(new))
            for i, f in enumerate(new):
                self._row[f.flit_id] = n + i
        for f, vector in zip(flits, vectors):
            row = self._row[f.flit_id]
            old = self._flits[row]
            if old is not None:
                self._by_author[old.author_id].discard(row)
            vector /= np.linalg.norm(vector)
            self._vectors[row] = vector
            self._created[row] = f.created_at
            self._alive[row] = True
            self._flits[row] = IndexedFlit(f.flit_id, f.author_id, float(f.created_at), vector, f.lang, tuple(f.tags))
            self._by_author[f.author_id].add(row)

    def search_many(self, vectors: Sequence[np.ndarray], limit: int,
                    filters: Sequence[SearchFilter | None]) -> list[list[Hit]]:
        return [self.search(v, limit, f) for v, f in zip(vectors, filters, strict=True)]

    def search_points_many(self, vectors: Sequence[np.ndarray], limit: int,
                           filters: Sequence[SearchFilter | None]) -> PointHits:
        return PointHits.from_hits(self.search_many(vectors, limit, filters))

    def search(self, vector: np.ndarray, limit: int, flt: SearchFilter | None = None) -> list[Hit]:
        self._check_open()
        q = np.asarray(checked_vector(vector, self.dim), dtype=np.float32)
        if limit <= 0 or not self._flits:
            return []
        scores = self._vectors @ (q / np.linalg.norm(q))
        ok = self._alive.copy()
        if flt is not None:
            if flt.min_created_at is not None:
                ok &= self._created >= flt.min_created_at
            if flt.author is not None:
                only = np.zeros_like(ok)
                only[list(self._by_author.get(flt.author, ()))] = True
                ok &= only
            for author in flt.exclude_authors:
                rows = self._by_author.get(author)
                if rows:
                    ok[list(rows)] = False
            rows = [self._row[f] for f in flt.exclude_flit_ids if f in self._row]
            if rows:
                ok[rows] = False
            if flt.only_flit_ids is not None:
                only = np.zeros_like(ok)
                only[[self._row[f] for f in flt.only_flit_ids if f in self._row]] = True
                ok &= only
        candidates = np.flatnonzero(ok)
        if candidates.size == 0:
            return []
        m = min(limit, candidates.size)
        top = candidates[np.argpartition(-scores[candidates], m - 1)[:m]]
        top = top[np.lexsort((top, -scores[top]))]
        out: list[Hit] = []
        for row in top.tolist():
            f = self._flits[row]
            assert f is not None
            out.append(Hit(f.flit_id, f.author_id, f.created_at, float(scores[row]), f.lang, f.tags))
        return out

    def retrieve_many(self, flit_ids: Sequence[str]) -> dict[str, IndexedFlit]:
        self._check_open()
        out: dict[str, IndexedFlit] = {}
        for fid in flit_ids:
            row = self._row.get(fid)
            if row is not None and self._alive[row]:
                f = self._flits[row]
                assert f is not None
                out[fid] = f
        return out

    def delete_many(self, flit_ids: Sequence[str]) -> None:
        self._check_open()
        for fid in flit_ids:
            row = self._row.get(fid)
            if row is not None and self._alive[row]:
                self._alive[row] = False
                f = self._flits[row]
                if f is not None:
                    self._by_author[f.author_id].discard(row)

    def count(self, approximate: bool = False) -> int:
        """Points held (always exact: ``approximate`` is for engines with a cheaper estimate)."""
        self._check_open()
        return int(self._alive.sum())

    def close(self) -> None:
        """Idempotent; afterwards every call raises :class:`~flitfeed.index.base.IndexError_`."""
        self._closed = True
