"""Picks the feed: best first, spread across authors and tags, with room to explore."""

from __future__ import annotations

import hashlib
from typing import Callable, Sequence

import numpy as np

from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.candidates import CandidateBatch
from flitfeed.ranker.params import RankerParams
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.stages import Selector

#: The ``source`` (published as the feed item's reason) of an exploration pick.
EXPLORE = "explore"


class DiversitySelector(Selector):
    """Greedy top-k over the base score (``candidate.score``) with diversity decay.

    At every step each remaining candidate's score is multiplied by
    ``author_decay ** a * tag_decay ** t``, where ``a`` is how many picked
    items share its author and ``t`` how many of its tags already appear among
    the picked items; the best adjusted candidate is picked (ties: the larger
    multiplier, then the larger base score, then input order). A negative base
    score is pushed further down instead (``base · (2 - multiplier)``), so a
    penalty never improves a score. ``candidate.score`` is set to the adjusted
    score at the moment of the pick.

    Exploration: when ``author_flit_count`` is given, a share ``params.explore_share``
    of the slots (``⌊k · share + u⌋`` with ``u`` uniform in [0, 1), so the
    expected share is exact; at most ``k - 1``) is reserved at the end of the
    feed for fresh flits (age ≤ ``exploration_max_age_s``) by new authors
    (≤ ``new_author_max_flits`` recent flits). Each reserved slot is drawn
    uniformly from the qualifying flits left, so the pick's ``propensity`` is
    ``1 / their number`` (logged with the impression: what the model learns
    from exploration is not what the ranking chose); it gets
    ``source = "explore"``. A qualifying flit that earns a slot on its own
    merit uses up a reserved slot. With no qualifying candidate left the slot
    is filled normally. The draw is seeded by the query's user and trigger, so
    the same request on the same state gives the same feed on any replica.

    Returns ``min(k, distinct flits)`` candidates, never one flit twice.
    """

    name = "diversity"

    def __init__(self, params: RankerParams, author_flit_count: Callable[[str], int] | None = None) -> None:
        self.params = params
        self.author_flit_count = author_flit_count

    def select(self, query: FeedQuery, candidates: list[Candidate]) -> list[Candidate]:
        return self.select_many([query], [candidates])[0]

    def select_many(self, queries: Sequence[FeedQuery], candidate_lists: Sequence[list[Candidate]]
                    ) -> list[list[Candidate]]:
        """The feeds of a whole batch, picked together: every step is one array operation over a
        ``(queries, candidates)`` matrix, so the cost of the greedy loop is paid once per batch, not
        once per feed (only an exploration draw and, with ``tag_decay < 1``, the tag bookkeeping of
        each pick remain per feed)."""
        pools = [_first_of_each_flit(cs) for cs in candidate_lists]
        B = len(pools)
        C = max((len(pool) for pool in pools), default=0)
        base = np.zeros((B, C), dtype=np.float64)
        author_of = np.full((B, C), -1, dtype=np.int64)
        available = np.zeros((B, C), dtype=bool)
        explorable = np.zeros((B, C), dtype=bool)
        authors: dict[str, int] = {}
        for b, (query, pool) in enumerate(zip(queries, pools)):
            n = len(pool)
            base[b, :n] = [c.score for c in pool]
            author_of[b, :n] = [authors.setdefault(c.author_id, len(authors)) for c in pool]
            available[b, :n] = True
            if self.author_flit_count is not None:
                explorable[b, :n] = [self._explorable(query, c) for c in pool]
        picks = self._greedy(queries, base, author_of, available, explorable,
                             lambda b, j: pools[b][j].tags)
        return _feeds(picks, lambda b, j: pools[b][j])

    def select_batch(self, queries: Sequence[FeedQuery], batch: CandidateBatch) -> list[list[Candidate]]:
        """:meth:`select_many` straight from the batch's columns: the ``(queries, candidates)`` matrices
        are scattered from them with array operations; only each feed's ``k`` picks become
        :class:`Candidate` objects."""
        B = len(queries)
        if len(batch) == 0 or B == 0:
            return [[] for _ in queries]
        # The first row of each flit per query (the duplicate filter normally left no other).
        key = batch.query * len(batch.flit_ids) + batch.flit
        _, first = np.unique(key, return_index=True)
        rows = np.arange(len(batch)) if len(first) == len(batch) else np.sort(first)
        query = batch.query[rows]
        starts = np.searchsorted(query, np.arange(B + 1))
        pos = np.arange(len(rows)) - starts[query]
        C = int(pos.max()) + 1
        base = np.zeros((B, C), dtype=np.float64)
        author_of = np.full((B, C), -1, dtype=np.int64)
        available = np.zeros((B, C), dtype=bool)
        explorable = np.zeros((B, C), dtype=bool)
        row_of = np.full((B, C), -1, dtype=np.int64)
        base[query, pos] = batch.score[rows]
        author_of[query, pos] = batch.author[rows]
        available[query, pos] = True
        row_of[query, pos] = rows
        if self.author_flit_count is not None:
            p = self.params
            now = np.array([q.now for q in queries], dtype=np.float64)
            fresh = now[query] - batch.created_at[rows] <= p.exploration_max_age_s
            # The authors of fresh candidates only, each once: the same authors recur across the feeds.
            authors = np.unique(batch.author[rows][fresh])
            new_author = np.zeros(len(batch.author_ids), dtype=bool)
            new_author[authors] = np.fromiter((self.author_flit_count(a) <= p.new_author_max_flits
                                               for a in batch.author_ids[authors].tolist()), dtype=bool,
                                              count=len(authors))
            explorable[query, pos] = fresh & new_author[batch.author[rows]]
        picks = self._greedy(queries, base, author_of, available, explorable,
                             lambda b, j: batch.tags[row_of[b, j]])
        return _feeds(picks, lambda b, j: batch.candidate(int(row_of[b, j])))

    def _greedy(self, queries: Sequence[FeedQuery], base: np.ndarray, author_of: np.ndarray, available: np.ndarray,
                explorable: np.ndarray, tags_of: Callable[[int, int], tuple[str, ...]]
                ) -> list[list[tuple[int, float, float, bool]]]:
        """The greedy picks of every feed over the ``(queries, candidates)`` matrices: per feed, in feed
        order, ``(column, adjusted score, propensity, exploring)``. ``available`` marks the real
        candidates (it is consumed)."""
        p = self.params
        B, C = base.shape
        out: list[list[tuple[int, float, float, bool]]] = [[] for _ in range(B)]
        ks = np.minimum(np.array([q.k for q in queries], dtype=np.int64), available.sum(axis=1))
        if B == 0 or C == 0 or ks.max(initial=0) <= 0:
            return out
        # Tag overlap only moves scores when tags decay (the default, 1.0, leaves it out entirely).
        track_tags = p.tag_decay != 1.0
        holders: list[dict[str, list[int]]] = []
        picked_tags: list[set[str]] = [set() for _ in range(B)]
        if track_tags:
            for b in range(B):
                h: dict[str, list[int]] = {}
                for j in np.flatnonzero(available[b]).tolist():
                    for tag in set(tags_of(b, j)):
                        h.setdefault(tag, []).append(j)
                holders.append(h)
        rngs = [np.random.default_rng(_seed(q.user_id, q.trigger_id)) for q in queries]
        explore_needed = np.zeros(B, dtype=np.int64)
        if self.author_flit_count is not None and p.explore_share > 0:
            explore_needed = np.array([min(int(k * p.explore_share + rng.random()), k - 1) if k > 0 else 0
                                       for k, rng in zip(ks, rngs)], dtype=np.int64)

        steps = int(ks.max())
        # Picks are counted as integers and the decay read from a table of its powers: the very numbers
        # np.power gives (the same call on the same inputs), without a power per candidate per step.
        author_powers = np.power(p.author_decay, np.arange(steps + 1, dtype=np.float64))
        tag_powers = np.power(p.tag_decay, np.arange(steps * max(1, _max_tags(holders)) + 1, dtype=np.float64))
        same_author = np.zeros((B, C), dtype=np.int64)
        tag_overlap = np.zeros((B, C), dtype=np.int64)
        rows = np.arange(B)
        pick_of = np.zeros((B, steps), dtype=np.int64)
        score_of = np.zeros((B, steps), dtype=np.float64)
        propensity_of = np.ones((B, steps), dtype=np.float64)
        explored = np.zeros((B, steps), dtype=bool)
        for step in range(steps):
            active = np.flatnonzero(step < ks)
            factor = author_powers[same_author]
            if track_tags:
                factor = factor * tag_powers[tag_overlap]
            adjusted = np.where(base >= 0, base * factor, base * (2.0 - factor))
            picks = _best_per_row(np.where(available, adjusted, -np.inf), factor, base)
            # Reserved exploration slots: the feeds whose remaining slots are all reserved draw one.
            for b in active[(explore_needed[active] > 0) & (ks[active] - step <= explore_needed[active])].tolist():
                eligible = np.flatnonzero(available[b] & explorable[b])
                if len(eligible):
                    picks[b] = int(eligible[rngs[b].integers(len(eligible))])
                    explored[b, step] = True
                    propensity_of[b, step] = 1.0 / len(eligible)
            picked = picks[active]
            # A qualifying flit picked on its merit uses up a reserved slot too.
            explore_needed[active] -= explorable[active, picked] & (explore_needed[active] > 0)
            pick_of[active, step] = picked
            score_of[active, step] = adjusted[active, picked]
            if track_tags:
                for b, pick in zip(active.tolist(), picked.tolist()):
                    for tag in set(tags_of(b, pick)) - picked_tags[b]:
                        tag_overlap[b, holders[b][tag]] += 1
                        picked_tags[b].add(tag)
            available[active, picked] = False
            same_author[active] += author_of[active] == author_of[active, picked][:, None]
        for b in rows.tolist():
            k = int(ks[b])
            out[b] = list(zip(pick_of[b, :k].tolist(), score_of[b, :k].tolist(), propensity_of[b, :k].tolist(),
                              explored[b, :k].tolist()))
        return out

    def _explorable(self, query: FeedQuery, c: Candidate) -> bool:
        if self.author_flit_count is None:
            return False
        return (query.now - c.created_at <= self.params.exploration_max_age_s
                and self.author_flit_count(c.author_id) <= self.params.new_author_max_flits)


def _max_tags(holders: list[dict[str, list[int]]]) -> int:
    """The most distinct tags any feed's candidates have: a bound on how far a tag overlap can count."""
    return max((len(h) for h in holders), default=0)


def _best_per_row(masked: np.ndarray, factor: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Column of each row's best candidate: the largest ``masked`` (adjusted) score, ties to the larger
    multiplier, then the larger base score, then the earlier column. Ties are rare: only rows that have
    one are sorted."""
    picks = masked.argmax(axis=1)
    top = masked[np.arange(len(masked)), picks]
    tied = np.flatnonzero(((masked == top[:, None]).sum(axis=1) > 1) & (top > -np.inf))
    for b in tied:
        idx = np.flatnonzero(masked[b] == top[b])
        picks[b] = idx[np.lexsort((-idx, base[b, idx], factor[b, idx]))[-1]]
    return picks


def _seed(user_id: str, trigger_id: str) -> int:
    # A stable hash (Python's hash() of a str changes per process).
    return int.from_bytes(hashlib.blake2b(f"{user_id}\x00{trigger_id}".encode(), digest_size=8).digest(), "big")


def _first_of_each_flit(candidates: list[Candidate]) -> list[Candidate]:
    seen: set[str] = set()
    out: list[Candidate] = []
    for c in candidates:
        if c.flit_id not in seen:
            seen.add(c.flit_id)
            out.append(c)
    return out


def _feeds(picks: list[list[tuple[int, float, float, bool]]],
           candidate: Callable[[int, int], Candidate]) -> list[list[Candidate]]:
    """The picked candidates of each feed (``candidate(feed, column)``), with their score and propensity set; an
    exploration pick is marked as such."""
    out: list[list[Candidate]] = []
    for b, picked in enumerate(picks):
        feed = []
        for j, score, propensity, exploring in picked:
            c = candidate(b, j)
            c.score = score
            c.propensity = propensity
            if exploring:
                c.source = EXPLORE
            feed.append(c)
        out.append(feed)
    return out
