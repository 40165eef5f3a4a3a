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

Batch-first: :meth:`FeedPipeline.run_many` builds a batch of feeds as one set of columns, a
:class:`~flitfeed.ranker.candidates.CandidateBatch` holding every candidate of every query: each source
fetches for the whole batch in one call (:meth:`Source.fetch_batch`: one batched vector search), then
each hydrator, filter and scorer runs once over the whole batch with array operations
(``hydrate_batch``, ``filter_batch``, ``score_batch``), and the selector picks every feed of the batch
together (:meth:`Selector.select_batch`). Only each feed's ``k`` items become
:class:`~flitfeed.ranker.candidate.Candidate` objects. A batched stage's time is shared equally by the
batch's feeds (by the feeds it ran for). :meth:`run` is a batch of one.

A hydrator that raises for the batch is run again query by query (on views of each query's rows), so
one query's failure is recorded for that query alone, as when feeds were built one by one.

``run_many(queries, columnar=False)`` is the former path, kept as the reference the columnar one is
tested and benchmarked against: per query, each stage's list method over ``Candidate`` objects.

>>> from flitfeed.ranker.selectors import DiversitySelector
>>> from flitfeed.ranker.params import RankerParams
>>> from flitfeed.ranker.query import FeedQuery
>>> from flitfeed.ranker.scorers import FreshnessScorer
>>> class Newest(Source):
...     name = "newest"
...     def fetch(self, query):
...         return [Candidate(f"f{i}", f"a{i}", query.now - 60.0 * i, "fresh") for i in range(5)]
>>> pipeline = FeedPipeline([Newest()], [], [], [FreshnessScorer(3600.0)], DiversitySelector(RankerParams()))
>>> [r.items[0].flit_id for r in pipeline.run_many([FeedQuery("wren", 2, now=1e6), FeedQuery("robin", 3, now=1e6)])]
['f0', 'f0']
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.candidates import CandidateBatch
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

    def run(self, query: FeedQuery, columnar: bool = True) -> PipelineResult:
        return self.run_many([query], columnar=columnar)[0]

    def run_many(self, queries: Sequence[FeedQuery], columnar: bool = True) -> list[PipelineResult]:
        """The feeds of a batch of queries (see the module docstring; ``columnar=False``: the former
        per-candidate path, the reference)."""
        if not columnar:
            return self._run_many_per_candidate(queries)
        B = len(queries)
        if B == 0:
            return []
        timings: list[dict[tuple[str, str], float]] = [{} for _ in queries]
        errors: list[dict[tuple[str, str], str]] = [{} for _ in queries]
        removed: list[dict[str, int]] = [{} for _ in queries]
        parts: list[CandidateBatch] = []
        for source in self.sources:
            enabled = [i for i, q in enumerate(queries) if source.enable(q)]
            if not enabled:
                continue
            start = time.perf_counter()
            try:
                part = source.fetch_batch([queries[i] for i in enabled])
                part.query = np.asarray(enabled, dtype=np.int64)[part.query]  # its queries → the batch's
                parts.append(part)
            except Exception as exc:
                for i in enabled:
                    self._failed(SOURCE, source.name, exc, queries[i], errors[i])
            share = (time.perf_counter() - start) / len(enabled)
            for i in enabled:
                timings[i][(SOURCE, source.name)] = share
        batch = CandidateBatch.concat(parts, B)
        fetched = batch.counts()

        for hydrator in self.hydrators:
            start = time.perf_counter()
            try:
                hydrator.hydrate_batch(queries, batch)
            except Exception:
                # Again query by query, so that only the queries it fails for lose their fields.
                for i, query in enumerate(queries):
                    try:
                        hydrator.hydrate_batch([query], batch.view_of(i))
                    except Exception as exc:
                        self._failed(HYDRATOR, hydrator.name, exc, query, errors[i])
            share = (time.perf_counter() - start) / B
            for t in timings:
                t[(HYDRATOR, hydrator.name)] = share

        # Rows still in the feed. A row-local filter (one that decides each row on its own) only narrows
        # this mask; the batch is compacted before a filter that compares rows (duplicates) and once
        # after the last filter, whose time that compaction counts in.
        alive: np.ndarray | None = None
        last: tuple[str, np.ndarray] | None = None
        for flt in self.filters:
            enabled_q = np.fromiter((flt.enable(q) for q in queries), dtype=bool, count=B)
            if not enabled_q.any():
                for r in removed:
                    r[flt.name] = 0
                continue
            start = time.perf_counter()
            if alive is not None and not getattr(flt, "row_local", False):
                batch, alive = batch.take(alive), None
            keep = flt.filter_batch(queries, batch) | ~enabled_q[batch.query]
            dropped_rows = ~keep if alive is None else alive & ~keep
            alive = keep if alive is None else alive & keep
            dropped = np.bincount(batch.query[dropped_rows], minlength=B).tolist()
            if flt is self.filters[-1]:
                batch, alive = batch.take(alive), None
            share = (time.perf_counter() - start) / int(enabled_q.sum())
            for i in range(B):
                removed[i][flt.name] = int(dropped[i])
                if enabled_q[i]:
                    timings[i][(FILTER, flt.name)] = share
            last = (flt.name, enabled_q)
        if alive is not None:
            start = time.perf_counter()
            batch = batch.take(alive)
            assert last is not None
            name, enabled_q = last
            share = (time.perf_counter() - start) / int(enabled_q.sum())
            for i in np.flatnonzero(enabled_q).tolist():
                timings[i][(FILTER, name)] += share

        for scorer in self.scorers:
            start = time.perf_counter()
            scorer.score_batch(queries, batch)
            share = (time.perf_counter() - start) / B
            for t in timings:
                t[(SCORER, scorer.name)] = share

        start = time.perf_counter()
        picked = self.selector.select_batch(queries, batch)
        share = (time.perf_counter() - start) / B
        results = []
        for i, (query, items) in enumerate(zip(queries, picked, strict=True)):
            timings[i][(SELECTOR, self.selector.name)] = share
            results.append(PipelineResult(items=items[: query.k], timings=timings[i], removed=removed[i],
                                          candidates=int(fetched[i]), errors=errors[i]))
        return results

    def _run_many_per_candidate(self, queries: Sequence[FeedQuery]) -> list[PipelineResult]:
        """The former path: sources and the selector batched, everything between per query over lists."""
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
