"""The five kinds of feed-pipeline stage, and what a filter returns.

A feed is built as ``sources → hydrators → filters → scorers → selector``
(see :mod:`flitfeed.ranker.pipeline`). Every stage is a small named class that
does one thing to a list of :class:`~flitfeed.ranker.candidate.Candidate`:

* it never reads the clock (``query.now`` is "now"), never talks to Kafka or
  metrics, and never calls another stage: the runner owns order, timing and
  error handling;
* hydrators and scorers may mutate the candidates they are given (they are
  per-request objects), but only the fields they own;
* filters never mutate: they split their input into ``kept`` and ``removed``.

The protocols carry default methods, so a stage subclasses its protocol
explicitly (``class SeenFilter(Filter)``) and inherits ``enable``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence, runtime_checkable

from flitfeed.ranker.candidate import Candidate
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


@runtime_checkable
class Hydrator(Protocol):
    """Fills the candidate fields it owns (e.g. ``engagement``) in place."""

    name: str

    def hydrate(self, query: FeedQuery, candidates: list[Candidate]) -> None: ...


@runtime_checkable
class Filter(Protocol):
    """Removes candidates that must not be shown; never mutates them."""

    name: str

    def enable(self, query: FeedQuery) -> bool:
        """Whether this filter runs for ``query`` (default: always)."""
        return True

    def filter(self, query: FeedQuery, candidates: list[Candidate]) -> FilterResult: ...


@runtime_checkable
class Scorer(Protocol):
    """Writes ``candidate.components[self.name]`` (range documented per scorer)."""

    name: str

    def score(self, query: FeedQuery, candidates: list[Candidate]) -> None: ...


@runtime_checkable
class Selector(Protocol):
    """Picks and orders the feed: at most ``query.k`` candidates, ``score`` set."""

    name: str

    def select(self, query: FeedQuery, candidates: list[Candidate]) -> list[Candidate]: ...

    def select_many(self, queries: Sequence[FeedQuery], candidate_lists: Sequence[list[Candidate]]
                    ) -> list[list[Candidate]]:
        """:meth:`select` for each of a batch's queries (the default); a vectorised selector overrides it."""
        return [self.select(q, cs) for q, cs in zip(queries, candidate_lists, strict=True)]
