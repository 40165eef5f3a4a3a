"""The five kinds of feed-pipeline stage, and what a filter returns.

A feed is built as ``sources → hydrators → filters → scorers → selector``
(see :mod:`flitfeed.ranker.pipeline`). Every stage is a small named class that
does one thing to the candidates of a whole batch of feeds, held as columns in a
:class:`~flitfeed.ranker.candidates.CandidateBatch` (its ``*_batch`` method: a
hydrator fills columns, a filter returns a keep mask, a scorer writes a component
or the score column, the selector picks each feed's rows), and, as the reference
the batch methods are tested against, to one query's list of
:class:`~flitfeed.ranker.candidate.Candidate` (``hydrate``, ``filter``, ``score``,
``select``). A stage without a batch method of its own inherits one that runs its
per-query method on each query's rows as ``Candidate`` objects:

* it never reads the clock (``query.now`` is "now"), never talks to Kafka or
  metrics, and never calls another stage: the runner owns order, timing and
  error handling;
* hydrators and scorers may mutate the candidates (or columns) they are given
  (they are per-request objects), but only the fields they own;
* filters never mutate: they split their input into ``kept`` and ``removed``
  (a batch filter returns the mask of rows to keep).

The protocols carry default methods, so a stage subclasses its protocol
explicitly (``class SeenFilter(Filter)``) and inherits ``enable``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.candidates import CandidateBatch
from flitfeed.ranker.query import FeedQuery

#: Stage kinds, as used in :attr:`PipelineResult.timings` keys and metric labels.
SOURCE = "source"
HYDRATOR = "hydrator"
FILTER = "filter"
SCORER = "scorer"
SELECTOR = "selector"


@dataclass(frozen=True, slots=True)
class FilterResult:
    """A filter's verdict: ``kept`` (input order preserved) plus ``removed``.

    ``kept + removed`` is always the filter's input, as a multiset.
    """

    kept: list[Candidate]
    removed: list[Candidate]


def partition(candidates: Sequence[Candidate], drop: Callable[[Candidate], bool]) -> FilterResult:
    """Split ``candidates`` by a predicate, keeping the input order on both sides.

    >>> from flitfeed.ranker.candidate import Candidate
    >>> cs = [Candidate(f"f{i}", "a", 0.0, "fresh") for i in range(4)]
    >>> r = partition(cs, lambda c: c.flit_id in {"f1", "f3"})
    >>> [c.flit_id for c in r.kept], [c.flit_id for c in r.removed]
    (['f0', 'f2'], ['f1', 'f3'])
    """
    kept: list[Candidate] = []
    removed: list[Candidate] = []
    for c in candidates:
        (removed if drop(c) else kept).append(c)
    return FilterResult(kept, removed)


@runtime_checkable
class Source(Protocol):
    """Produces candidates for a query."""

    name: str

    def enable(self, query: FeedQuery) -> bool:
        """Whether this source runs for ``query`` (default: always)."""
        return True

    def fetch(self, query: FeedQuery) -> list[Candidate]:
        """Fresh :class:`Candidate` objects (never shared with another request)."""
        ...

    def fetch_many(self, queries: Sequence[FeedQuery]) -> list[list[Candidate]]:
        """:meth:`fetch` for each of a batch's queries (the default); a source whose backend answers a
        batch in one call (a vector search) overrides it."""
        return [self.fetch(q) for q in queries]

    def fetch_batch(self, queries: Sequence[FeedQuery]) -> CandidateBatch:
        """The candidates of a batch's queries as one :class:`CandidateBatch` (row ``query`` = the index
        into ``queries``); by default the :meth:`fetch_many` lists turned into columns."""
        return CandidateBatch.from_lists(self.fetch_many(queries))


@runtime_checkable
class Hydrator(Protocol):
    """Fills the candidate fields it owns (e.g. ``engagement``) in place."""

    name: str

    def hydrate(self, query: FeedQuery, candidates: list[Candidate]) -> None: ...

    def hydrate_batch(self, queries: Sequence[FeedQuery], batch: CandidateBatch) -> None:
        """Fill the owned columns of every row of the batch (default: :meth:`hydrate` per query, through
        :class:`Candidate` views whose hydrated fields are written back)."""
        for i, query in enumerate(queries):
            rows = batch.rows_of(i)
            cs = batch.candidates(i)
            if not cs:
                continue
            self.hydrate(query, cs)
            for name in ("similarity", "engagement", "collaborative", "author_affinity", "tag_affinity"):
                getattr(batch, name)[rows] = [getattr(c, name) for c in cs]


@runtime_checkable
class Filter(Protocol):
    """Removes candidates that must not be shown; never mutates them.

    A filter that decides each candidate on its own (not by comparing candidates, as the duplicate
    filter does) sets ``row_local = True``: the pipeline then only narrows its mask of rows still in
    the feed instead of copying the batch's columns before it.
    """

    name: str

    def enable(self, query: FeedQuery) -> bool:
        """Whether this filter runs for ``query`` (default: always)."""
        return True

    def filter(self, query: FeedQuery, candidates: list[Candidate]) -> FilterResult: ...

    def filter_batch(self, queries: Sequence[FeedQuery], batch: CandidateBatch) -> np.ndarray:
        """The boolean mask of the batch's rows to keep (default: :meth:`filter` per query, through
        :class:`Candidate` views). Rows of a query the filter is not enabled for are the caller's
        business: it keeps them whatever the mask says."""
        mask = np.ones(len(batch), dtype=bool)
        for i, query in enumerate(queries):
            rows = batch.rows_of(i)
            cs = batch.candidates(i)
            if cs:
                kept = {id(c) for c in self.filter(query, cs).kept}
                mask[rows] = [id(c) in kept for c in cs]
        return mask


@runtime_checkable
class Scorer(Protocol):
    """Writes ``candidate.components[self.name]`` (range documented per scorer)."""

    name: str

    def score(self, query: FeedQuery, candidates: list[Candidate]) -> None: ...

    def score_batch(self, queries: Sequence[FeedQuery], batch: CandidateBatch) -> None:
        """Write ``batch.components[self.name]`` (or the score) for every row (default: :meth:`score`
        per query, through :class:`Candidate` views whose components and score are written back)."""
        for i, query in enumerate(queries):
            rows = batch.rows_of(i)
            cs = batch.candidates(i)
            if not cs:
                continue
            self.score(query, cs)
            for name in dict.fromkeys(k for c in cs for k in c.components):
                col = batch.components.setdefault(name, np.zeros(len(batch)))
                col[rows] = [c.components.get(name, 0.0) for c in cs]
            batch.score[rows] = [c.score for c in cs]


@runtime_checkable
class Selector(Protocol):
    """Picks and orders the feed: at most ``query.k`` candidates, ``score`` set."""

    name: str

    def select(self, query: FeedQuery, candidates: list[Candidate]) -> list[Candidate]: ...

    def select_many(self, queries: Sequence[FeedQuery], candidate_lists: Sequence[list[Candidate]]
                    ) -> list[list[Candidate]]:
        """:meth:`select` for each of a batch's queries (the default); a vectorised selector overrides it."""
        return [self.select(q, cs) for q, cs in zip(queries, candidate_lists, strict=True)]

    def select_batch(self, queries: Sequence[FeedQuery], batch: CandidateBatch) -> list[list[Candidate]]:
        """Each query's feed from the batch's rows (default: :meth:`select_many` over ``Candidate`` views;
        a feed's ``k`` items are ``Candidate`` objects either way: they are what is published)."""
        return self.select_many(queries, [batch.candidates(i) for i in range(len(queries))])
