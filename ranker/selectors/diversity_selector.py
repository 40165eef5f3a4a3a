"""Picks the feed: best first, spread across authors and tags, with room to explore."""

from __future__ import annotations

import hashlib
from typing import Callable

import numpy as np

from flitfeed.ranker.candidate import Candidate
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
        pool = _first_of_each_flit(candidates)
        k = min(query.k, len(pool))
        if k <= 0:
            return []
        p = self.params
        base = np.array([c.score for c in pool], dtype=np.float64)
        authors: dict[str, int] = {}
        author_of = np.array([authors.setdefault(c.author_id, len(authors)) for c in pool], dtype=np.int64)
        holders: dict[str, list[int]] = {}
        for i, c in enumerate(pool):
            for tag in set(c.tags):
                holders.setdefault(tag, []).append(i)
        explorable = np.array([self._explorable(query, c) for c in pool], dtype=bool)
        rng = np.random.default_rng(_seed(query.user_id, query.trigger_id))
        explore_needed = 0
        if self.author_flit_count is not None and p.explore_share > 0:
            explore_needed = min(int(k * p.explore_share + rng.random()), k - 1)

        same_author = np.zeros(len(pool), dtype=np.float64)
        tag_overlap = np.zeros(len(pool), dtype=np.float64)
        available = np.ones(len(pool), dtype=bool)
        picked_tags: set[str] = set()
        out: list[Candidate] = []
        for step in range(k):
            factor = np.power(p.author_decay, same_author) * np.power(p.tag_decay, tag_overlap)
            adjusted = np.where(base >= 0, base * factor, base * (2.0 - factor))
            mask = available
            exploring = False
            if 0 < explore_needed and k - step <= explore_needed:
                eligible = available & explorable
                if eligible.any():
                    mask, exploring = eligible, True
            idx = np.flatnonzero(mask)
            if exploring:
                best = int(idx[rng.integers(len(idx))])
            else:
                best = int(idx[np.lexsort((-idx, base[idx], factor[idx], adjusted[idx]))[-1]])

            c = pool[best]
            c.score = float(adjusted[best])
            c.propensity = 1.0
            if explorable[best] and explore_needed > 0:
                explore_needed -= 1
            if exploring:
                c.source = EXPLORE
                c.propensity = 1.0 / len(idx)
            out.append(c)

            available[best] = False
            same_author[author_of == author_of[best]] += 1
            for tag in set(c.tags) - picked_tags:
                tag_overlap[holders[tag]] += 1
                picked_tags.add(tag)
        return out

    def _explorable(self, query: FeedQuery, c: Candidate) -> bool:
        if self.author_flit_count is None:
            return False
        return (query.now - c.created_at <= self.params.exploration_max_age_s
                and self.author_flit_count(c.author_id) <= self.params.new_author_max_flits)


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
