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

Batch-first: :meth:`FeedPipeline.run_many` builds a batch of feeds with each source fetching for the
whole batch in one call (:meth:`Source.fetch_many`: one batched vector search) and the selector picking
every feed of the batch together (:meth:`Selector.select_many`: array operations over the batch); a
batched stage's time is shared equally by the batch's feeds. :meth:`run` is a batch of one.
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
        return self.run_many([query])[0]

    def run_many(self, queries: Sequence[FeedQuery]) -> list[PipelineResult]:
        """The feeds of a batch of queries: each source fetches for the whole batch in one call
        (:meth:`Source.fetch_many`); a batched call's time is shared equally by its queries."""
        timings: list[dict[tuple[str, str], float]] = [{} for _ in queries]
        errors: list[dict[tuple[str, str], str]] = [{} for _ in queries]
        fetched: list[list[Candidate]] = [[] for _ in queries]
        for source in self.sources:
            enabled = [i for i, q in enumerate(queries) if source.enable(q)]
            if not enabled:
                continue
            start = time.perf_counter()
            try:
                lists = source.fetch_many([queries[i] for i in enabled])
            except Exception as exc:
                lists = [[] for _ in enabled]
                for i in enabled:
                    self._failed(SOURCE, source.name, exc, queries[i], errors[i])
            share = (time.perf_counter() - start) / len(enabled)
            for i, found in zip(enabled, lists, strict=True):
                timings[i][(SOURCE, source.name)] = share
                fetched[i].extend(found)
        removed: list[dict[str, int]] = [{} for _ in queries]
        scored = [self._score(q, fetched[i], timings[i], removed[i], errors[i]) for i, q in enumerate(queries)]
        start = time.perf_counter()
        picked = self.selector.select_many(queries, scored)
        share = (time.perf_counter() - start) / len(queries) if queries else 0.0
        results = []
        for i, (query, items) in enumerate(zip(queries, picked, strict=True)):
            timings[i][(SELECTOR, self.selector.name)] = share
            results.append(PipelineResult(items=items[: query.k], timings=timings[i], removed=removed[i],
                                          candidates=len(fetched[i]), errors=errors[i]))
        return results

    def _score(self, query: FeedQuery, candidates: list[Candidate], timings: dict[tuple[str, str], float],
               removed: dict[str, int], errors: dict[tuple[str, str], str]) -> list[Candidate]:
        """Hydrators, filters and scorers over one query's candidates: what the selector picks from."""

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
        return candidates

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
