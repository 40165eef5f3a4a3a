"""Runs the feed stages in order and reports what each one cost.

:class:`FeedPipeline` is the only place that knows the order
``sources → hydrators → filters → scorers → selector``; the stages themselves
are listed once, in :mod:`flitfeed.ranker.feeds`. The runner times every stage
(``time.perf_counter``, seconds, keyed by ``(kind, name)``), counts what each
filter removed, and contains failures of the stages that talk to other
systems: a source or hydrator that raises is logged and recorded in
:attr:`PipelineResult.errors`, and the feed is built from what is left (a
failed source contributes nothing; a failed hydrator leaves its fields at
their defaults). Filters, scorers and the selector are pure in-memory code;
an exception there is a bug and propagates.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Sequence

from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.stages import (
    FILTER,
    HYDRATOR,
    SCORER,
    SELECTOR,
    SOURCE,
    Filter,
    Hydrator,
    Scorer,
    Selector,
    Source,
)

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PipelineResult:
    #: The feed, best first: at most ``query.k`` candidates with ``score`` set.
    items: list[Candidate]
    #: Seconds spent per stage, keyed by ``(kind, name)``, kind being one of
    #: ``source``, ``hydrator``, ``filter``, ``scorer``, ``selector``.
    #: Stages that were not enabled for the query are absent.
    timings: dict[tuple[str, str], float]
    #: Candidates removed per filter name (0 for a filter not enabled).
    removed: dict[str, int]
    #: Candidates the sources produced in total (before any filter).
    candidates: int
    #: ``(kind, name)`` → ``"ExceptionType: message"`` for each stage that failed.
    errors: dict[tuple[str, str], str] = field(default_factory=dict)


class FeedPipeline:
    def __init__(
        self,
        sources: Sequence[Source],
        hydrators: Sequence[Hydrator],
        filters: Sequence[Filter],
        scorers: Sequence[Scorer],
        selector: Selector,
    ) -> None:
        self.sources = tuple(sources)
        self.hydrators = tuple(hydrators)
        self.filters = tuple(filters)
        self.scorers = tuple(scorers)
        self.selector = selector
        names = [(SOURCE, s.name) for s in self.sources] + [(HYDRATOR, h.name) for h in self.hydrators] + [
            (FILTER, f.name) for f in self.filters] + [(SCORER, s.name) for s in self.scorers]
        if len(set(names)) != len(names):
            # Timings, removed counts and errors are keyed by name.
            raise ValueError(f"stage names must be unique per kind: {names}")

    def run(self, query: FeedQuery) -> PipelineResult:
        timings: dict[tuple[str, str], float] = {}
        removed: dict[str, int] = {}
        errors: dict[tuple[str, str], str] = {}

        candidates: list[Candidate] = []
        for source in self.sources:
            if not source.enable(query):
                continue
            start = time.perf_counter()
            try:
                fetched = source.fetch(query)
            except Exception as exc:
                fetched = []
                self._failed(SOURCE, source.name, exc, query, errors)
            timings[(SOURCE, source.name)] = time.perf_counter() - start
            candidates.extend(fetched)
        produced = len(candidates)

        for hydrator in self.hydrators:
            start = time.perf_counter()
            try:
                hydrator.hydrate(query, candidates)
            except Exception as exc:
                self._failed(HYDRATOR, hydrator.name, exc, query, errors)
            timings[(HYDRATOR, hydrator.name)] = time.perf_counter() - start

        for flt in self.filters:
            if not flt.enable(query):
                removed[flt.name] = 0
                continue
            start = time.perf_counter()
            result = flt.filter(query, candidates)
            timings[(FILTER, flt.name)] = time.perf_counter() - start
            removed[flt.name] = len(result.removed)
            candidates = result.kept

        for scorer in self.scorers:
            start = time.perf_counter()
            scorer.score(query, candidates)
            timings[(SCORER, scorer.name)] = time.perf_counter() - start

        start = time.perf_counter()
        items = self.selector.select(query, candidates)[: query.k]
        timings[(SELECTOR, self.selector.name)] = time.perf_counter() - start

        return PipelineResult(items=items, timings=timings, removed=removed, candidates=produced, errors=errors)

    @staticmethod
    def _failed(kind: str, name: str, exc: Exception, query: FeedQuery, errors: dict[tuple[str, str], str]) -> None:
        errors[(kind, name)] = f"{type(exc).__name__}: {exc}"
        log.warning(
            "feed %s %r failed; continuing without it",
            kind,
            name,
            exc_info=exc,
            extra={"stage": kind, "component": name, "user_id": query.user_id, "error": type(exc).__name__},
        )
