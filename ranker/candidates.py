"""The candidates of a whole batch of feeds as columns: what hydrators, filters and scorers work on.

A :class:`CandidateBatch` holds every candidate of every query of a batch (``FeedPipeline.run_many``)
as numpy columns, one row per candidate. ``query[r]`` says which query of the batch row ``r``
belongs to; a query's rows are contiguous and in the order its sources produced them (the order the
duplicate filter and the selector break ties by). A stage works on the whole batch with array
operations: a hydrator fills a column, a filter returns a keep mask, a scorer writes a component
column (:attr:`components`) or the :attr:`score` column. Per-candidate Python objects
(:class:`~flitfeed.ranker.candidate.Candidate`) exist only at the edges: a source whose backend
answers with objects, and the ``k`` items of each published feed (:meth:`CandidateBatch.candidates_at`).

>>> b = CandidateBatch.build(query=[0, 0, 1], flit_id=["f1", "f2", "f1"], author_id=["a", "b", "a"],
...                          created_at=[10.0, 20.0, 10.0], source=["similar", "fresh", "popular"],
...                          similarity=[0.5, 0.0, 0.0])
>>> len(b), b.flit.tolist(), list(b.flit_ids), b.rows_of(1)
(3, [0, 1, 0], ['f1', 'f2'], slice(2, 3, None))
>>> kept = b.take(b.similarity > 0)
>>> [c.flit_id for c in kept.candidates(0)], kept.source_name(0)
(['f1'], 'similar')
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from itertools import filterfalse
from typing import Iterable, Sequence

import numpy as np

from flitfeed.ranker.candidate import Candidate

#: The sources a candidate can carry, as ``source`` codes (an unknown name is added at the end).
SOURCE_NAMES: list[str] = ["similar", "co_engaged", "popular", "fresh", "explore"]
_SOURCE_CODE = {name: i for i, name in enumerate(SOURCE_NAMES)}


def source_code(name: str) -> int:
    """The ``source`` column's code of a source name (a new name gets the next code, for good)."""
    code = _SOURCE_CODE.get(name)
    if code is None:
        code = _SOURCE_CODE[name] = len(SOURCE_NAMES)
        SOURCE_NAMES.append(name)
    return code


def _objects(values: Iterable[object], n: int) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype == object and values.shape == (n,):
        return values.copy()  # a C copy of the references, not a Python iteration (hits come as columns)
    # np.fromiter keeps each tuple (tags) as one object; np.array would try to make a 2-D array of them.
    return np.fromiter(values, dtype=object, count=n)


def positions(values: Sequence[str]) -> dict[str, int]:
    """``value → its position`` for values that are each there once (a table of distinct values), built in
    C (``dict(zip(...))``): a batch's tables hold thousands of ids, and a comprehension steps in Python.

    >>> positions(["b", "a"])
    {'b': 0, 'a': 1}
    """
    return dict(zip(values, range(len(values))))


def intern(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, distinct)``: ``distinct[codes] == values``, codes numbered in order of first appearance.

    One dict lookup per value (hashing a string is what grouping strings costs; ``np.unique`` would
    sort them with Python comparisons).

    >>> codes, distinct = intern(np.array(["b", "a", "b"], dtype=object))
    >>> codes.tolist(), distinct.tolist()
    ([0, 1, 0], ['b', 'a'])
    """
    vals = values.tolist()
    # dict.fromkeys and map run their loops in C: the distinct values in order, then one lookup each.
    distinct = list(dict.fromkeys(vals))
    table = positions(distinct)
    codes = np.fromiter(map(table.__getitem__, vals), dtype=np.int64, count=len(vals))
    return codes, _objects(distinct, len(distinct))


def intern_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, first)`` for integer keys, as :func:`intern` numbers values: codes in order of first
    appearance, ``first[code]`` the row where that code first appears. Integer sorting only: for hits
    whose backend numbers them (``HitColumns.flit_key``), hashing each id string again cost more than the
    search that found them.

    >>> codes, first = intern_keys(np.array([7, 3, 7, 9]))
    >>> codes.tolist(), first.tolist()
    ([0, 1, 0, 2], [0, 1, 3])
    """
    if not len(keys):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first)  # the distinct keys by their first row
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank[inverse.reshape(-1)], first[order]


def _codes(values: np.ndarray, keys: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`intern` of ``values``, by their integer ``keys`` when given."""
    if keys is None:
        return intern(values)
    codes, first = intern_keys(np.asarray(keys))
    return codes, values[first]


def _merge_codes(codes: Sequence[np.ndarray], tables: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Codes into one table for several (codes, table) pairs: ``merged[out] == concatenated values``.

    The merged table is what :func:`intern` gives the concatenated tables (values in order of first
    appearance), built without interning the first table again: a part's table holds each value once, so
    the first keeps its codes and only the later tables are looked up. The first part is the vector
    source's (thousands of distinct flits per batch, against ~200 fresh and popular ones), and after the
    search every string it hashes is a cache miss: interning them all again was most of ``concat`` (55 ->
    38 us per feed at batch 32).

    >>> out, merged = _merge_codes([np.array([0, 1, 1]), np.array([1, 0])],
    ...                            [np.array(["a", "b"], dtype=object), np.array(["c", "a"], dtype=object)])
    >>> out.tolist(), merged.tolist()
    ([0, 1, 1, 0, 2], ['a', 'b', 'c'])
    """
    distinct = tables[0].tolist()
    table = positions(distinct)
    if len(table) != len(distinct):  # not a table of distinct values: number them all afresh
        remap, merged = intern(np.concatenate(tables))
        offsets = np.cumsum([0] + [len(t) for t in tables])
        return np.concatenate([remap[offsets[j]:offsets[j + 1]][c] for j, c in enumerate(codes)]), merged
    out = [np.asarray(codes[0], dtype=np.int64)]
    for c, t in zip(codes[1:], tables[1:]):
        values = t.tolist()
        # filterfalse, dict.fromkeys and map loop in C: the values not seen yet, in order, then a lookup each.
        new = list(dict.fromkeys(filterfalse(table.__contains__, values)))
        table.update(zip(new, range(len(distinct), len(distinct) + len(new))))
        distinct += new
        out.append(np.fromiter(map(table.__getitem__, values), dtype=np.int64, count=len(values))[c])
    return np.concatenate(out), _objects(distinct, len(distinct))


#: Columns that hold one value per row (everything :meth:`CandidateBatch.take` must index).
_ROW_COLUMNS = ("query", "flit_id", "author_id", "created_at", "source", "tags", "lang", "similarity",
                "engagement", "collaborative", "author_affinity", "tag_affinity", "score", "propensity", "flit",
                "author")


@dataclass(slots=True, eq=False)
class CandidateBatch:
    """Every candidate of a batch of queries, one row each (see the module docstring).

    Float columns default to 0 (what a :class:`Candidate` defaults to); ``flit`` and ``author`` are
    integer codes into :attr:`flit_ids` / :attr:`author_ids`, so grouping and comparing is integer
    array work.
    """

    #: Row → index of its query in the batch (non-decreasing).
    query: np.ndarray
    flit_id: np.ndarray  # object (str)
    author_id: np.ndarray  # object (str)
    created_at: np.ndarray  # float64, epoch seconds
    source: np.ndarray  # int64 codes into SOURCE_NAMES
    tags: np.ndarray  # object (tuple of str)
    lang: np.ndarray  # object (str or None)
    similarity: np.ndarray
    engagement: np.ndarray
    collaborative: np.ndarray
    author_affinity: np.ndarray
    tag_affinity: np.ndarray
    score: np.ndarray
    propensity: np.ndarray
    #: Codes of ``flit_id`` / ``author_id`` into the distinct values below.
    flit: np.ndarray
    author: np.ndarray
    flit_ids: np.ndarray
    author_ids: np.ndarray
    #: How many queries the batch has (some may have no rows).
    n_queries: int
    #: Per-scorer component columns, e.g. ``{"similarity": ..., "freshness": ...}``.
    components: dict[str, np.ndarray] = field(default_factory=dict)
    #: The ranking model's feature rows, ``(rows, N_FEATURES)``, once the model scorer ran.
    features: np.ndarray | None = None
    _flit_index: dict[str, int] | None = None
    _author_index: dict[str, int] | None = None

    # --- building -----------------------------------------------------------------------
    @classmethod
    def build(cls, *, query: Sequence[int] | np.ndarray, flit_id: Sequence[str], author_id: Sequence[str],
              created_at: Sequence[float] | np.ndarray, source: Sequence[str] | np.ndarray,
              tags: Sequence[tuple[str, ...]] | None = None, lang: Sequence[str | None] | None = None,
              similarity: Sequence[float] | np.ndarray | None = None,
              collaborative: Sequence[float] | np.ndarray | None = None,
              n_queries: int | None = None, flit_key: np.ndarray | None = None,
              author_key: np.ndarray | None = None) -> "CandidateBatch":
        """A batch from per-row values, rows already grouped by query (``source``: names or codes).

        ``flit_key`` / ``author_key``: integers standing for the ids where the caller has them
        (:class:`~flitfeed.index.base.HitColumns`), so the codes come from integer work; the same codes as
        from the strings.
        """
        n = len(flit_id)
        q = np.asarray(query, dtype=np.int64).reshape(n)
        src = np.asarray(source)
        if src.dtype.kind not in "iu":
            src = np.fromiter((source_code(s) for s in src.tolist()), dtype=np.int64, count=n)
        flit_col = _objects(flit_id, n)
        author_col = _objects(author_id, n)
        flit, flit_ids = _codes(flit_col, flit_key)
        author, author_ids = _codes(author_col, author_key)

        def floats(values: Sequence[float] | np.ndarray | None) -> np.ndarray:
            return np.zeros(n) if values is None else np.asarray(values, dtype=np.float64).reshape(n)

        return cls(query=q, flit_id=flit_col, author_id=author_col,
                   created_at=np.asarray(created_at, dtype=np.float64).reshape(n), source=src.astype(np.int64),
                   tags=_objects(tags if tags is not None else [()] * n, n),
                   lang=_objects(lang if lang is not None else [None] * n, n),
                   similarity=floats(similarity), engagement=np.zeros(n), collaborative=floats(collaborative),
                   author_affinity=np.zeros(n), tag_affinity=np.zeros(n), score=np.zeros(n), propensity=np.ones(n),
                   flit=flit, author=author, flit_ids=flit_ids, author_ids=author_ids,
                   n_queries=int(n_queries) if n_queries is not None else int(q.max(initial=-1)) + 1)

    @classmethod
    def empty(cls, n_queries: int = 0) -> "CandidateBatch":
        return cls.build(query=[], flit_id=[], author_id=[], created_at=[], source=np.zeros(0, np.int64),
                         n_queries=n_queries)

    @classmethod
    def from_lists(cls, candidate_lists: Sequence[Sequence[Candidate]]) -> "CandidateBatch":
        """The batch of per-query candidate lists (the edge for sources that answer with objects).

        Hydrated fields, components and scores the candidates carry come along.
        """
        flat = [c for cs in candidate_lists for c in cs]
        n = len(flat)
        batch = cls.build(
            query=np.repeat(np.arange(len(candidate_lists)), [len(cs) for cs in candidate_lists]),
            flit_id=[c.flit_id for c in flat], author_id=[c.author_id for c in flat],
            created_at=[c.created_at for c in flat], source=[c.source for c in flat],
            tags=[c.tags for c in flat], lang=[c.lang for c in flat], similarity=[c.similarity for c in flat],
            collaborative=[c.collaborative for c in flat], n_queries=len(candidate_lists))
        batch.engagement = np.array([c.engagement for c in flat], dtype=np.float64).reshape(n)
        batch.author_affinity = np.array([c.author_affinity for c in flat], dtype=np.float64).reshape(n)
        batch.tag_affinity = np.array([c.tag_affinity for c in flat], dtype=np.float64).reshape(n)
        batch.score = np.array([c.score for c in flat], dtype=np.float64).reshape(n)
        batch.propensity = np.array([c.propensity for c in flat], dtype=np.float64).reshape(n)
        for name in dict.fromkeys(k for c in flat for k in c.components):
            batch.components[name] = np.array([c.components.get(name, 0.0) for c in flat], dtype=np.float64)
        return batch

    @classmethod
    def concat(cls, batches: Sequence["CandidateBatch"], n_queries: int) -> "CandidateBatch":
        """One batch of several (e.g. one per source), each query's rows together, in the order of
        ``batches`` within a query (a stable sort by query: a query's candidates come source by source)."""
        parts = [b for b in batches if len(b)]
        if not parts:
            return cls.empty(n_queries)
        if len(parts) == 1 and (np.diff(parts[0].query) >= 0).all():
            out = parts[0].take(slice(None))  # already grouped by query: a shallow copy will do
            out.n_queries = n_queries
            return out
        query = np.concatenate([b.query for b in parts])
        order = np.argsort(query, kind="stable")
        flit_id = np.concatenate([b.flit_id for b in parts])[order]
        author_id = np.concatenate([b.author_id for b in parts])[order]
        # The parts' codes mapped into one table: a lookup per distinct value of each part, not per row.
        flit, flit_ids = _merge_codes([b.flit for b in parts], [b.flit_ids for b in parts])
        author, author_ids = _merge_codes([b.author for b in parts], [b.author_ids for b in parts])
        flit, author = flit[order], author[order]
        names = list(dict.fromkeys(k for b in parts for k in b.components))
        out = cls(query=query[order], flit_id=flit_id, author_id=author_id,
                  **{name: np.concatenate([getattr(b, name) for b in parts])[order]
                     for name in ("created_at", "source", "tags", "lang", "similarity", "engagement", "collaborative",
                                  "author_affinity", "tag_affinity", "score", "propensity")},
                  flit=flit, author=author, flit_ids=flit_ids, author_ids=author_ids, n_queries=n_queries)
        for name in names:
            out.components[name] = np.concatenate(
                [b.components.get(name, np.zeros(len(b))) for b in parts])[order]
        return out

    # --- reading ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.query)

    def take(self, rows: np.ndarray) -> "CandidateBatch":
        """The batch of the given rows (a boolean mask or indices, kept in batch order for a mask)."""
        out = CandidateBatch(**{f.name: getattr(self, f.name) for f in fields(self)})
        for name in _ROW_COLUMNS:
            setattr(out, name, getattr(self, name)[rows])
        out.components = {name: col[rows] for name, col in self.components.items()}
        out.features = None if self.features is None else self.features[rows]
        return out

    def view_of(self, i: int) -> "CandidateBatch":
        """Query ``i``'s rows as a batch of one query whose columns are views: a stage that writes a
        column in place (``batch.similarity[rows] = ...``) writes the parent batch's rows."""
        rows = self.rows_of(i)
        out = CandidateBatch(**{f.name: getattr(self, f.name) for f in fields(self)})
        for name in _ROW_COLUMNS:
            setattr(out, name, getattr(self, name)[rows])
        out.query = np.zeros(rows.stop - rows.start, dtype=np.int64)
        out.n_queries = 1
        out.components = {name: col[rows] for name, col in self.components.items()}
        out.features = None if self.features is None else self.features[rows]
        return out

    def flit_index(self) -> dict[str, int]:
        """``flit_id`` → its code (built once per set of distinct flits, shared by the batches taken from it)."""
        if self._flit_index is None or len(self._flit_index) != len(self.flit_ids):
            self._flit_index = positions(self.flit_ids.tolist())
        return self._flit_index

    def author_index(self) -> dict[str, int]:
        """``author_id`` → its code, as :meth:`flit_index` (the own-flits and muted-author filters both ask)."""
        if self._author_index is None or len(self._author_index) != len(self.author_ids):
            self._author_index = positions(self.author_ids.tolist())
        return self._author_index

    def bounds(self) -> np.ndarray:
        """``starts`` of length ``n_queries + 1``: query ``i``'s rows are ``starts[i]:starts[i + 1]``."""
        return np.searchsorted(self.query, np.arange(self.n_queries + 1), side="left")

    def rows_of(self, i: int) -> slice:
        """Query ``i``'s rows (a slice: the columns it cuts are views, so a stage may write through them)."""
        return slice(int(np.searchsorted(self.query, i, side="left")), int(np.searchsorted(self.query, i, side="right")))

    def counts(self) -> np.ndarray:
        """Rows per query."""
        return np.bincount(self.query, minlength=self.n_queries)

    def source_name(self, row: int) -> str:
        return SOURCE_NAMES[int(self.source[row])]

    def candidates(self, i: int) -> list[Candidate]:
        """Query ``i``'s rows as :class:`Candidate` objects, in order."""
        s = self.rows_of(i)
        return self.candidates_at(range(s.start, s.stop))

    def candidates_at(self, rows: Sequence[int] | np.ndarray) -> list[Candidate]:
        """The given rows as :class:`Candidate` objects, in that order (the edge: the published feed's items).

        Each column is read once for all of them (one fancy index and one ``tolist``) rather than once
        per row and field: a batch's ~300 picks cost 4.5 us each as scalar reads (a third of the
        selector's time in the ranker benchmark).

        >>> b = CandidateBatch.build(query=[0, 0], flit_id=["f1", "f2"], author_id=["a", "b"],
        ...                          created_at=[10.0, 20.0], source=["similar", "fresh"])
        >>> [(c.flit_id, c.source, c.created_at) for c in b.candidates_at([1, 0])]
        [('f2', 'fresh', 20.0), ('f1', 'similar', 10.0)]
        """
        at = np.asarray(rows, dtype=np.intp).reshape(-1)
        names = list(self.components)
        columns = [self.components[name][at].tolist() for name in names]
        components = (dict(zip(names, values)) for values in zip(*columns)) if names else ({} for _ in at)
        features = self.features[at] if self.features is not None else [None] * len(at)
        return [Candidate(flit_id=f, author_id=a, created_at=t, source=SOURCE_NAMES[s], similarity=sim, engagement=e,
                          collaborative=col, author_affinity=aa, tag_affinity=ta, tags=tags, lang=lang,
                          components=comp, score=score, features=feat, propensity=prop)
                for f, a, t, s, sim, e, col, aa, ta, tags, lang, comp, score, feat, prop
                in zip(self.flit_id[at].tolist(), self.author_id[at].tolist(), self.created_at[at].tolist(),
                       self.source[at].tolist(), self.similarity[at].tolist(), self.engagement[at].tolist(),
                       self.collaborative[at].tolist(), self.author_affinity[at].tolist(),
                       self.tag_affinity[at].tolist(), self.tags[at].tolist(), self.lang[at].tolist(), components,
                       self.score[at].tolist(), features, self.propensity[at].tolist())]

    def per_query(self, values: Sequence[float] | np.ndarray) -> np.ndarray:
        """A per-query value spread over the rows (``values[query]``).

        >>> b = CandidateBatch.build(query=[0, 1, 1], flit_id=["a", "b", "c"], author_id=["x"] * 3,
        ...                          created_at=[0.0] * 3, source=["fresh"] * 3)
        >>> b.per_query([10.0, 20.0]).tolist()
        [10.0, 20.0, 20.0]
        """
        return np.asarray(values)[self.query]
