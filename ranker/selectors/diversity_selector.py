"""Picks the feed: best first, spread across authors and tags, with room to explore."""

from __future__ import annotations

import hashlib
from collections import Counter
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
        """The feeds of a whole batch, picked together over ``(queries, candidates)`` matrices. With only
        authors decaying (the default) the greedy loop's picks come from one sort of each feed's
        contenders by their score at their pick (:func:`_merit_order`); with ``tag_decay < 1`` every
        step of the loop is one array operation over the batch. Only exploration draws (and the tag
        bookkeeping of each pick) remain per feed."""
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
        return _feeds(picks, lambda feeds, cols: [pools[b][j] for b, j in zip(feeds, cols)])

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
        return _feeds(picks, lambda feeds, cols: batch.candidates_at(row_of[feeds, cols]))

    def _greedy(self, queries: Sequence[FeedQuery], base: np.ndarray, author_of: np.ndarray, available: np.ndarray,
                explorable: np.ndarray, tags_of: Callable[[int, int], tuple[str, ...]]
                ) -> list[list[tuple[int, float, float, bool]]]:
        """The greedy picks of every feed over the ``(queries, candidates)`` matrices: per feed, in feed
        order, ``(column, adjusted score, propensity, exploring)``. ``available`` marks the real
        candidates (it is consumed)."""
        p = self.params
        B, C = base.shape
        ks = np.minimum(np.array([q.k for q in queries], dtype=np.int64), available.sum(axis=1))
        if B == 0 or C == 0 or ks.max(initial=0) <= 0:
            return [[] for _ in range(B)]
        # A feed draws only among its explorable candidates: one without any never reads its generator, and
        # its reserved slots go by merit whatever their number. Seeding one costs ~12 us (most feeds in a
        # world of established authors have none), so only the feeds that can draw get one: the same
        # draws, the same feeds.
        can_draw = explorable.any(axis=1) if self.author_flit_count is not None and p.explore_share > 0 \
            else np.zeros(B, dtype=bool)
        rngs = {b: np.random.default_rng(_seed(queries[b].user_id, queries[b].trigger_id))
                for b in np.flatnonzero(can_draw).tolist()}
        explore_needed = np.zeros(B, dtype=np.int64)
        for b, rng in rngs.items():
            k = int(ks[b])
            explore_needed[b] = min(int(k * p.explore_share + rng.random()), k - 1) if k > 0 else 0
        steps = int(ks.max())
        # Picks are counted as integers and the decay read from a table of its powers: the very numbers
        # np.power gives (the same call on the same inputs), without a power per candidate per step. Long
        # enough for any author's rank among the candidates, plus the picks already made of it.
        author_powers = np.power(p.author_decay, np.arange(C + steps + 1, dtype=np.float64))
        if p.tag_decay == 1.0:  # the default: tag overlap moves no score
            return _picks_by_rank(base, author_of, available, explorable, ks, explore_needed, rngs, author_powers)
        return self._picks_step_by_step(base, author_of, available, explorable, ks, explore_needed, rngs,
                                        author_powers, tags_of)

    def _picks_step_by_step(self, base: np.ndarray, author_of: np.ndarray, available: np.ndarray,
                            explorable: np.ndarray, ks: np.ndarray, explore_needed: np.ndarray,
                            rngs: dict[int, np.random.Generator], author_powers: np.ndarray,
                            tags_of: Callable[[int, int], tuple[str, ...]]
                            ) -> list[list[tuple[int, float, float, bool]]]:
        """The greedy loop itself, one array step per pick over the whole batch: what tag decay needs (a
        pick changes the scores of every candidate sharing a tag with it)."""
        p = self.params
        B, C = base.shape
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
        steps = int(ks.max())
        tag_powers = np.power(p.tag_decay, np.arange(steps * max(1, _max_tags(holders)) + 1, dtype=np.float64))
        same_author = np.zeros((B, C), dtype=np.int64)
        tag_overlap = np.zeros((B, C), dtype=np.int64)
        pick_of = np.zeros((B, steps), dtype=np.int64)
        score_of = np.zeros((B, steps), dtype=np.float64)
        propensity_of = np.ones((B, steps), dtype=np.float64)
        explored = np.zeros((B, steps), dtype=bool)
        explore_needed = explore_needed.copy()
        for step in range(steps):
            active = np.flatnonzero(step < ks)
            factor = author_powers[same_author]
            if track_tags:
                factor = factor * tag_powers[tag_overlap]
            adjusted = _adjusted(base, factor)
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
        out: list[list[tuple[int, float, float, bool]]] = []
        for b in range(B):
            k = int(ks[b])
            out.append(list(zip(pick_of[b, :k].tolist(), score_of[b, :k].tolist(), propensity_of[b, :k].tolist(),
                                explored[b, :k].tolist())))
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


def _adjusted(base: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """A score under a diversity multiplier: scaled down when positive, pushed further down when negative."""
    return np.where(base >= 0, base * factor, base * (2.0 - factor))


def _merit_order(base: np.ndarray, author_of: np.ndarray, available: np.ndarray, author_powers: np.ndarray,
                 picked_per_author: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The available candidates of every row in the order the greedy loop picks them when only authors
    decay, each with its adjusted score at its pick: ``(rows, columns, adjusted)``, rows ascending.

    Why no loop is needed: an author's candidates all carry the same multiplier at any step, so the
    greedy loop always picks an author's best remaining one first, and the ``r``-th best (counting
    ``picked_per_author[row, author]`` picks made before) is picked at multiplier ``decay ** r``. Its
    score at its pick is therefore known up front; within an author it only falls with ``r``, so
    picking the best such score each step is sorting by it (ties as the loop breaks them: the larger
    multiplier, then the larger base score, then the earlier column).
    """
    rows, cols = np.nonzero(available)
    b = base[rows, cols]
    a = author_of[rows, cols]
    # np.nonzero lists a row's columns in order and lexsort is stable: equal keys stay in column order.
    by_author = np.lexsort((-b, a, rows))
    r_s, a_s = rows[by_author], a[by_author]
    first = np.ones(len(by_author), dtype=bool)
    first[1:] = (r_s[1:] != r_s[:-1]) | (a_s[1:] != a_s[:-1])
    position = np.arange(len(by_author))
    rank = np.empty(len(by_author), dtype=np.int64)
    rank[by_author] = position - np.maximum.accumulate(np.where(first, position, 0))
    if picked_per_author is not None:
        rank += picked_per_author[rows, a]
    factor = author_powers[rank]
    adjusted = _adjusted(b, factor)
    order = np.lexsort((-b, -factor, -adjusted, rows))
    return rows[order], cols[order], adjusted[order]


def _contenders(base: np.ndarray, author_of: np.ndarray, available: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """The candidates that can be among a feed's ``k`` picks by merit when only authors decay: those
    scoring at least as much as the ``k``-th distinct author's best. A candidate's score at its pick is
    never above its base score and each author's best keeps its base score, so those ``k`` bests beat
    anything lower. Sorting a dozen candidates per feed instead of hundreds is most of the selector's
    saving on a batch (a stable sort of 10k floats costs ~0.7 ms here).

    The threshold is looked for among each feed's best ``m = 3 k`` base scores, then twice as many for
    the feeds whose best ``m`` come from fewer than ``k`` authors (a user whose favourite authors fill
    the top), and so on; a feed with fewer than ``k`` authors keeps every candidate. Finding it costs
    ~50 us, what sorting ~2,000 candidates costs: a smaller batch (one feed of 300) keeps them all.
    """
    B, C = base.shape
    if B * C <= 2048:
        return available
    scores = np.where(available, base, -np.inf)
    threshold = np.full(B, -np.inf)
    todo = np.arange(B)
    m = 3 * int(ks.max())
    while len(todo):
        m = min(m, C)
        row = todo[:, None]
        best = np.argpartition(-scores[todo], m - 1, axis=1)[:, :m]
        best = best[np.arange(len(todo))[:, None], np.argsort(-scores[row, best], axis=1)]  # best first
        authors = author_of[row, best]
        # An author's first appearance among them: the first of its run once sorted by author (stable).
        by_author = np.argsort(authors, axis=1, kind="stable")
        grouped = np.take_along_axis(authors, by_author, axis=1)
        starts = np.ones(grouped.shape, dtype=bool)
        starts[:, 1:] = grouped[:, 1:] != grouped[:, :-1]
        first = np.zeros(grouped.shape, dtype=bool)
        np.put_along_axis(first, by_author, starts, axis=1)
        nth = np.cumsum(first, axis=1)
        k = ks[todo]
        done = nth[:, -1] >= k
        kth = np.argmax(nth >= k[:, None], axis=1)  # the k-th distinct author's best
        threshold[todo[done]] = scores[todo[done], best[done, kth[done]]]
        todo = todo[~done]
        if m == C:
            break  # the feeds left have fewer than k authors
        m *= 2
    return available & (base >= threshold[:, None])


def _picks_by_rank(base: np.ndarray, author_of: np.ndarray, available: np.ndarray, explorable: np.ndarray,
                   ks: np.ndarray, explore_needed: np.ndarray, rngs: dict[int, np.random.Generator],
                   author_powers: np.ndarray) -> list[list[tuple[int, float, float, bool]]]:
    """The greedy loop's picks without the loop, when only authors decay (see :func:`_merit_order`):
    the same feeds, scores and draws (tests/unit/ranker/test_ranker_selector.py checks it against the loop).

    Exploration is the only step-by-step part left, and only for the feeds that reach a reserved slot:
    until then the picks are the merit order, each qualifying pick using up a reserved slot.
    """
    B = len(base)
    rows, cols, adjusted = _merit_order(base, author_of, _contenders(base, author_of, available, ks), author_powers)
    # Each feed's first k picks by merit as (feeds, steps) matrices (what lies past a feed's k is not used).
    steps = int(ks.max())
    step = np.arange(steps)
    row = np.arange(B)[:, None]
    at = np.minimum(np.searchsorted(rows, np.arange(B))[:, None] + step, len(cols) - 1)
    merit, merit_score = cols[at], adjusted[at]
    # Slots still reserved before each step (a qualifying pick on merit uses one up), and the first step
    # whose remaining slots are all reserved (k where none is).
    qualifying = explorable[row, merit].astype(np.int64)
    left = np.maximum(0, explore_needed[:, None] - (np.cumsum(qualifying, axis=1) - qualifying))
    reserved = (left > 0) & (ks[:, None] - step <= left) & (step < ks[:, None])
    reserved_from = np.where(reserved.any(axis=1), reserved.argmax(axis=1), ks)
    # What each feed with a reserved slot draws from: its qualifying candidates not picked on merit before.
    pool = available & explorable & (reserved_from < ks)[:, None]
    before = np.nonzero(step < reserved_from[:, None])
    pool[before[0], merit[before]] = False
    pool_rows, pool_cols = np.nonzero(pool)
    pool_starts = np.searchsorted(pool_rows, np.arange(B + 1)).tolist()
    merit_author = author_of[row, merit].tolist() if len(pool_cols) else []
    out: list[list[tuple[int, float, float, bool]]] = []
    for b, (m, sc, r, k) in enumerate(zip(merit.tolist(), merit_score.tolist(), reserved_from.tolist(), ks.tolist())):
        if r < k and pool_starts[b] < pool_starts[b + 1]:
            feed = list(zip(m[:r], sc[:r], [1.0] * r, [False] * r))
            feed += _explore_tail(b, base, author_of, available, feed, Counter(merit_author[b][:r]),
                                  pool_cols[pool_starts[b]:pool_starts[b + 1]].tolist(), k, rngs[b], author_powers)
        else:  # no reserved slot, or nothing to draw for one: merit all the way
            feed = list(zip(m[:k], sc[:k], [1.0] * k, [False] * k))
        out.append(feed)
    return out


def _explore_tail(b: int, base: np.ndarray, author_of: np.ndarray, available: np.ndarray,
                  head: list[tuple[int, float, float, bool]], picked: Counter[int], eligible: list[int], k: int,
                  rng: np.random.Generator, author_powers: np.ndarray) -> list[tuple[int, float, float, bool]]:
    """Feed ``b``'s reserved slots after the picks ``head`` (``picked``: their authors): each draws uniformly
    among the qualifying candidates left (``eligible``, in column order, as the loop draws); once none is
    left, the rest go by merit (the authors' earlier picks, draws included, counting towards their decay).
    Plain Python per draw: a feed has one or two reserved slots, and array calls per draw cost more
    than the draw."""
    tail: list[tuple[int, float, float, bool]] = []
    while len(head) + len(tail) < k:
        if not eligible:
            left = available[b].copy()
            left[[j for j, *_ in head + tail]] = False
            counts = np.zeros((1, int(author_of[b].max()) + 1), dtype=np.int64)
            for author, n_picked in picked.items():
                counts[0, author] = n_picked
            _, rest, scores = _merit_order(base[b:b + 1], author_of[b:b + 1], left[None], author_powers, counts)
            n = k - len(head) - len(tail)
            tail += zip(rest[:n].tolist(), scores[:n].tolist(), [1.0] * n, [False] * n)
            break
        n_eligible = len(eligible)
        j = eligible.pop(int(rng.integers(n_eligible)))
        author = int(author_of[b, j])
        score, factor = float(base[b, j]), float(author_powers[picked[author]])
        # What _adjusted computes, on Python floats (the same IEEE arithmetic).
        tail.append((j, score * factor if score >= 0 else score * (2.0 - factor), 1.0 / n_eligible, True))
        picked[author] += 1
    return tail


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
           candidates: Callable[[list[int], list[int]], list[Candidate]]) -> list[list[Candidate]]:
    """The picked candidates of each feed, with their score and propensity set; an exploration pick is
    marked as such. ``candidates(feeds, columns)`` gives the candidates at those (feed, column) pairs, all
    in one call (a batch reads its columns once for all the picks)."""
    feed_of = [b for b, picked in enumerate(picks) for _ in picked]
    chosen = iter(candidates(feed_of, [j for picked in picks for j, *_ in picked]))
    out: list[list[Candidate]] = []
    for picked in picks:
        feed = []
        for (_, score, propensity, exploring), c in zip(picked, chosen):
            c.score = score
            c.propensity = propensity
            if exploring:
                c.source = EXPLORE
            feed.append(c)
        out.append(feed)
    return out
