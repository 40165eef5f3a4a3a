"""Fills ``candidate.similarity`` for candidates that came without one."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from flitfeed.index.base import SearchFilter, VectorIndex
from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.candidates import CandidateBatch
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.recent import RecentFlits, unit_or_none
from flitfeed.ranker.stages import Hydrator


class SimilarityHydrator(Hydrator):
    """Cosine similarity to the taste for candidates whose similarity is still 0.

    Fresh, popular and co-engaged candidates do not come from a vector search,
    so without this they would compete with similar ones at similarity 0.
    They are all recent flits, so they are scored against the vectors the
    recent-flit store holds, in one matrix product. Any that store has no
    vector for are scored by one vector search restricted to their ids
    (``SearchFilter.only_flit_ids``): the engine computes the cosines, so no
    vector crosses into Python. Profiles behind this: fetching vectors with
    ``retrieve_many`` and converting them was 46% of the ranker's time; the
    id-restricted search for every candidate, 27% of a feed. Does nothing for
    cold-start users (no taste to compare with). A candidate whose true
    cosine is exactly 0 is looked up again harmlessly; flits missing from
    both keep 0.

    Batched (:meth:`hydrate_batch`): the held vectors of the batch's distinct flits that need one
    are multiplied by all the batch's tastes in one matrix product, and the flits without a held
    vector go to the index in one batched search (``search_many``, one id-restricted query per
    feed). Everything is computed before anything is written, so a failing index leaves the
    columns untouched.
    """

    name = "similarity"

    def __init__(self, index: VectorIndex, recent: RecentFlits | None = None) -> None:
        self.index = index
        self.recent = recent

    def hydrate(self, query: FeedQuery, candidates: list[Candidate]) -> None:
        if query.cold_start or query.taste is None:
            return
        missing = [c for c in candidates if c.similarity == 0.0]
        if not missing:
            return
        # A flit another source already scored keeps that score in every copy: the memory and the
        # engine cosines can differ in the last bits, and the duplicate filter, which keeps the copy
        # with the higher similarity, must not be decided by rounding.
        scores = {c.flit_id: c.similarity for c in candidates if c.similarity != 0.0}
        if self.recent is not None:
            unscored = [c.flit_id for c in missing if c.flit_id not in scores]
            scores.update(self.recent.similarities(query.taste, unscored))
        ids = frozenset(c.flit_id for c in missing if c.flit_id not in scores)
        if ids:
            hits = self.index.search(np.asarray(query.taste, dtype=np.float32), len(ids),
                                     SearchFilter(only_flit_ids=ids))
            scores.update((h.flit_id, min(1.0, max(-1.0, h.score))) for h in hits)
        for c in missing:
            if c.flit_id in scores:
                c.similarity = scores[c.flit_id]

    def hydrate_batch(self, queries: Sequence[FeedQuery], batch: CandidateBatch) -> None:
        n = len(batch)
        if n == 0:
            return
        warm_q = np.fromiter((not (q.cold_start or q.taste is None) for q in queries), dtype=bool, count=len(queries))
        warm = warm_q[batch.query]
        missing = warm & (batch.similarity == 0.0)
        if not missing.any():
            return
        # (query, flit) as one integer: "this flit in this feed".
        key = batch.query * len(batch.flit_ids) + batch.flit
        value = np.zeros(n)
        found = np.zeros(n, dtype=bool)
        # A flit another source already scored keeps that score in every copy of its feed (the last
        # copy's, as a dict update would keep): the memory and the engine cosines can differ in the last
        # bits, and the duplicate filter, which keeps the copy with the higher similarity, must not be
        # decided by rounding.
        scored = np.flatnonzero(warm & (batch.similarity != 0.0))
        if len(scored):
            keys, last = np.unique(key[scored][::-1], return_index=True)
            _lookup(keys, batch.similarity[scored][::-1][last], key, missing, value, found)
        todo = missing & ~found
        if self.recent is not None and todo.any():
            self._from_memory(queries, batch, todo, value, found)
            todo = missing & ~found
        if todo.any():
            self._from_index(queries, batch, todo, key, value, found)
        fill = missing & found
        batch.similarity[fill] = value[fill]

    def _from_memory(self, queries: Sequence[FeedQuery], batch: CandidateBatch, todo: np.ndarray,
                     value: np.ndarray, found: np.ndarray) -> None:
        """Cosines of the held vectors: one float32 product of the distinct flits' vectors with every
        taste, read at each row's (flit, query)."""
        assert self.recent is not None
        flits = np.unique(batch.flit[todo])
        held, vectors = self.recent.vectors_of(batch.flit_ids[flits].tolist())
        if not held.any():
            return
        units = [None if q.taste is None else unit_or_none(q.taste) for q in queries]
        tastes = np.stack([np.zeros(vectors.shape[1], np.float32) if u is None else u for u in units])
        has_taste = np.fromiter((u is not None for u in units), dtype=bool, count=len(units))
        # Same numbers the index computes: both sides unit length, float32; clipped as the engine's are.
        cosines = np.clip((vectors @ tastes.T).astype(np.float64), -1.0, 1.0)
        position = np.full(len(batch.flit_ids), -1, dtype=np.int64)  # flit code → row of `vectors`
        position[flits[held]] = np.arange(int(held.sum()))
        rows = np.flatnonzero(todo)
        at = position[batch.flit[rows]]
        ok = (at >= 0) & has_taste[batch.query[rows]]
        rows, at = rows[ok], at[ok]
        value[rows] = cosines[at, batch.query[rows]]
        found[rows] = True

    def _from_index(self, queries: Sequence[FeedQuery], batch: CandidateBatch, todo: np.ndarray, key: np.ndarray,
                    value: np.ndarray, found: np.ndarray) -> None:
        """The rest: one id-restricted search per feed that has any, all in one ``search_many``."""
        rows = np.flatnonzero(todo)
        wanted: dict[int, frozenset[str]] = {}
        starts = np.searchsorted(batch.query[rows], np.arange(len(queries) + 1))
        for i in range(len(queries)):
            if starts[i] < starts[i + 1]:
                wanted[i] = frozenset(batch.flit_id[rows[starts[i]:starts[i + 1]]].tolist())
        order = list(wanted)
        results = self.index.search_many([np.asarray(queries[i].taste, dtype=np.float32) for i in order],
                                         max(len(ids) for ids in wanted.values()),
                                         [SearchFilter(only_flit_ids=wanted[i]) for i in order])
        code = {f: c for c, f in enumerate(batch.flit_ids.tolist())}
        F = len(batch.flit_ids)
        hit_keys: list[int] = []
        hit_scores: list[float] = []
        for i, hits in zip(order, results, strict=True):
            for h in hits:
                c = code.get(h.flit_id)
                if c is not None and h.flit_id in wanted[i]:
                    hit_keys.append(i * F + c)
                    hit_scores.append(min(1.0, max(-1.0, h.score)))
        if hit_keys:
            keys, first = np.unique(np.array(hit_keys, dtype=np.int64), return_index=True)
            _lookup(keys, np.array(hit_scores, dtype=np.float64)[first], key, todo, value, found)


def _lookup(keys: np.ndarray, values: np.ndarray, key: np.ndarray, rows: np.ndarray, value: np.ndarray,
            found: np.ndarray) -> None:
    """For the ``rows`` (mask) whose ``key`` is among the sorted ``keys``: ``value`` ← the matching
    ``values``, ``found`` ← True. A sorted search instead of a dict: integer array work."""
    idx = np.flatnonzero(rows)
    at = np.minimum(np.searchsorted(keys, key[idx]), len(keys) - 1)
    hit = keys[at] == key[idx]
    value[idx[hit]] = values[at[hit]]
    found[idx[hit]] = True
