"""DiversitySelector: hand-made cases and a randomised contract."""

from __future__ import annotations

import math
import random
from collections import Counter

import numpy as np
import pytest

from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.params import RankerParams
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.selectors import DiversitySelector
from flitfeed.ranker.selectors.diversity_selector import _contenders, _picks_by_rank

NOW = 1_000_000.0


def cand(fid: str, author: str, score: float, tags: tuple[str, ...] = (), age: float = 10 * 24 * 3600.0,
         source: str = "similar") -> Candidate:
    return Candidate(flit_id=fid, author_id=author, created_at=NOW - age, source=source, tags=tags, score=score)


def q(k: int) -> FeedQuery:
    return FeedQuery("u", k, NOW)


def ids(cs: list[Candidate]) -> list[str]:
    return [c.flit_id for c in cs]


def test_without_decay_it_is_plain_top_k():
    sel = DiversitySelector(RankerParams(author_decay=1.0, tag_decay=1.0, explore_share=0.0))
    cs = [cand("a", "x", 0.1), cand("b", "x", 0.9), cand("c", "x", 0.5), cand("d", "x", 0.7)]
    out = sel.select(q(3), cs)
    assert ids(out) == ["b", "d", "c"]
    assert [c.score for c in out] == [0.9, 0.7, 0.5]


def test_author_decay_multiplies_per_item_already_picked():
    sel = DiversitySelector(RankerParams(author_decay=0.5, tag_decay=1.0))
    cs = [cand("a1", "A", 1.0), cand("a2", "A", 0.9), cand("a3", "A", 0.8), cand("b1", "B", 0.5)]
    out = sel.select(q(4), cs)
    # a1 1.0; then a2 0.45 < b1 0.5; then a2 0.45; then a3 0.8 * 0.25 = 0.2.
    assert ids(out) == ["a1", "b1", "a2", "a3"]
    assert [c.score for c in out] == pytest.approx([1.0, 0.5, 0.45, 0.2])


def test_tag_decay_counts_overlap_with_picked_tags():
    sel = DiversitySelector(RankerParams(author_decay=1.0, tag_decay=0.5))
    cs = [cand("f1", "A", 1.0, ("cats", "pets")), cand("f2", "B", 0.9, ("cats", "pets")),
          cand("f3", "C", 0.6, ("cats",)), cand("f4", "D", 0.4, ("rust",))]
    out = sel.select(q(4), cs)
    # After f1: f2 0.9/4 = 0.225, f3 0.6/2 = 0.3, f4 0.4 -> f4, then f3, then f2.
    assert ids(out) == ["f1", "f4", "f3", "f2"]
    assert [c.score for c in out] == pytest.approx([1.0, 0.4, 0.3, 0.225])


def test_negative_scores_are_never_improved_by_a_penalty():
    sel = DiversitySelector(RankerParams(author_decay=0.5, tag_decay=1.0))
    cs = [cand("a1", "A", 0.5), cand("a2", "A", -0.1), cand("b1", "B", -0.15)]
    # a2 would become -0.05 if simply multiplied; pushed to -0.15 it loses the tie
    # on the multiplier to b1.
    assert ids(sel.select(q(3), cs)) == ["a1", "b1", "a2"]


def test_exploration_slot_goes_to_a_fresh_flit_by_a_new_author():
    counts = {"veteran": 100, "newbie": 1, "old_newbie": 1}
    sel = DiversitySelector(RankerParams(author_decay=1.0, tag_decay=1.0, explore_share=1 / 3),
                            author_flit_count=lambda a: counts.get(a, 0))
    cs = [cand(f"v{i}", "veteran", 1.0 - i / 10, age=60.0) for i in range(5)]
    cs += [cand("n1", "newbie", 0.01, age=60.0, source="fresh"),
           cand("o1", "old_newbie", 0.5, age=10 * 24 * 3600.0)]  # new author, but not fresh
    out = sel.select(q(3), cs)
    assert ids(out) == ["v0", "v1", "n1"]
    assert out[-1].source == "explore" and out[0].source == "similar"


def test_exploration_slot_is_released_when_earned_or_unavailable():
    counts = {"newbie": 1}
    sel = DiversitySelector(RankerParams(author_decay=1.0, tag_decay=1.0, explore_share=0.5),
                            author_flit_count=lambda a: counts.get(a, 100))
    earned = [cand("n1", "newbie", 0.9, age=60.0, source="fresh"), cand("v1", "vet", 0.8), cand("v2", "vet", 0.7)]
    out = sel.select(q(2), earned)
    assert ids(out) == ["n1", "v1"] and out[0].source == "fresh"
    none = [cand("v1", "vet", 0.8), cand("v2", "vet", 0.7)]
    assert ids(sel.select(q(2), none)) == ["v1", "v2"]


def test_exploration_never_takes_the_whole_feed():
    sel = DiversitySelector(RankerParams(explore_share=1.0), author_flit_count=lambda a: 0)
    cs = [cand("best", "vet", 1.0), cand("n1", "new", 0.01, age=1.0)]
    assert ids(sel.select(q(1), cs)) == ["best"]


def test_duplicate_flit_ids_are_returned_once():
    sel = DiversitySelector(RankerParams())
    a = cand("f1", "A", 1.0)
    out = sel.select(q(5), [a, a, cand("f1", "A", 0.5), cand("f2", "B", 0.1)])
    assert ids(out) == ["f1", "f2"] and out[0] is a


def test_empty_and_zero_k():
    sel = DiversitySelector(RankerParams())
    assert sel.select(q(5), []) == []
    assert sel.select(q(0), [cand("f", "a", 1.0)]) == []


# --- Randomised contract -------------------------------------------------------

@pytest.mark.parametrize("author_decay,tag_decay,explore", [(0.5, 0.8, 1), (0.0, 1.0, 0), (1.0, 0.0, 2),
                                                            (0.0, 0.0, 1), (0.3, 0.3, 0)])
def test_selector_contract_randomised(author_decay, tag_decay, explore):
    rng = random.Random(f"{author_decay}-{tag_decay}-{explore}")
    params = RankerParams(author_decay=author_decay, tag_decay=tag_decay, explore_share=explore / 10)
    tags = ["a", "b", "c", "d", "e"]
    for _ in range(300):
        n_authors = rng.randint(1, 12)
        counts = {f"u{i}": rng.randint(0, 6) for i in range(n_authors)}
        sel = DiversitySelector(params, author_flit_count=counts.__getitem__)
        cs = [cand(f"f{rng.randrange(60)}", f"u{rng.randrange(n_authors)}", rng.uniform(-0.5, 1.0),
                   tuple(rng.sample(tags, rng.randint(0, 3))), age=rng.uniform(0, 12 * 3600.0))
              for _ in range(rng.randint(0, 40))]
        k = rng.randint(0, 15)
        out = sel.select(q(k), list(cs))

        distinct = len({c.flit_id for c in cs})
        assert len(out) == min(k, distinct)
        assert len({c.flit_id for c in out}) == len(out)
        assert all(any(c is x for x in cs) for c in out)
        explored = [c for c in out if c.source == "explore"]
        assert len(explored) <= min(math.ceil(k * explore / 10), max(k - 1, 0))
        assert all(0 < c.propensity <= 1 for c in out)
        assert all(c.propensity == 1.0 for c in out if c.source != "explore")


@pytest.mark.parametrize("seed", range(200))
def test_zero_author_decay_gives_one_item_per_author_when_enough_authors(seed):
    rng = random.Random(seed)
    n_authors = rng.randint(1, 10)
    cs = [cand(f"f{i}", f"u{rng.randrange(n_authors)}", rng.random(), tuple(rng.sample("abc", 1)))
          for i in range(rng.randint(0, 30))]
    k = rng.randint(1, 12)
    out = DiversitySelector(RankerParams(author_decay=0.0, tag_decay=0.5)).select(q(k), cs)
    authors_available = len({c.author_id for c in cs})
    per_author = Counter(c.author_id for c in out)
    if authors_available >= k:
        assert max(per_author.values(), default=0) <= 1
    else:
        # Every author gets a slot before any author gets a second one.
        assert len(per_author) == authors_available
        assert len(out) == min(k, len(cs))


@pytest.mark.parametrize("author_decay,tag_decay,explore", [(0.8, 1.0, 1), (0.5, 0.8, 2), (0.0, 0.0, 1)])
def test_a_batch_is_selected_exactly_as_its_feeds_one_by_one(author_decay, tag_decay, explore):
    """select_many picks the whole batch with array operations; every feed, score and propensity must be
    what select gives the same query alone (ties included: the scores are coarse on purpose)."""
    rng = random.Random(f"batch-{author_decay}-{tag_decay}")
    params = RankerParams(author_decay=author_decay, tag_decay=tag_decay, explore_share=explore / 10)
    counts = {f"u{i}": rng.randint(0, 6) for i in range(8)}
    sel = DiversitySelector(params, author_flit_count=counts.__getitem__)

    def batch() -> tuple[list[FeedQuery], list[list[Candidate]]]:
        r = random.Random(7)
        queries = [FeedQuery(f"user{b}", r.randint(0, 12), NOW, trigger_id=f"t{b}") for b in range(25)]
        lists = [[cand(f"f{r.randrange(50)}", f"u{r.randrange(8)}", round(r.uniform(-0.3, 1.0), 1),
                       tuple(r.sample("abcde", r.randint(0, 2))), age=r.uniform(0, 12 * 3600.0))
                  for _ in range(r.randint(0, 40))] for _ in queries]
        return queries, lists

    queries, lists = batch()
    together = sel.select_many(queries, lists)
    queries, lists = batch()  # fresh candidates: selection writes score, propensity and source
    alone = [sel.select(query, cs) for query, cs in zip(queries, lists)]
    assert [[(c.flit_id, c.score, c.propensity, c.source) for c in feed] for feed in together] == \
        [[(c.flit_id, c.score, c.propensity, c.source) for c in feed] for feed in alone]
    assert any(c.source == "explore" for feed in together for c in feed) == (explore > 0)


@pytest.mark.parametrize("author_decay", [0.0, 0.3, 0.8, 1.0])
def test_picks_by_rank_are_the_greedy_loops_picks(author_decay):
    """Without tag decay the selector sorts by each candidate's score at its pick instead of looping one
    step per pick; feeds, scores, propensities and exploration draws must be the loop's, bit for bit
    (coarse scores for ties, negative scores, feeds that run out of qualifying candidates mid-way)."""
    rng = np.random.default_rng(int(author_decay * 10))
    params = RankerParams(author_decay=author_decay, tag_decay=1.0)
    sel = DiversitySelector(params)
    for _ in range(120):
        # Batches of up to 30 x 150 candidates for k <= 14: the larger ones are cut to their contenders first.
        B, C = int(rng.integers(1, 30)), int(rng.integers(1, 150))
        base = np.round(rng.uniform(-0.4, 1.0, size=(B, C)), 1)
        author_of = rng.integers(0, int(rng.choice([2, 8, 60])), size=(B, C))
        if rng.random() < 0.5:  # a few favourite authors fill the top of every feed
            base += np.where(author_of < 3, 1.0, 0.0)
        available = rng.random((B, C)) < 0.8
        author_of[~available] = -1
        explorable = available & (rng.random((B, C)) < rng.choice([0.05, 0.3]))
        ks = np.minimum(rng.integers(0, 15, size=B), available.sum(axis=1))
        if ks.max() <= 0:
            continue
        need = np.array([int(rng.integers(0, k)) if k > 0 else 0 for k in ks])
        powers = np.power(author_decay, np.arange(C + int(ks.max()) + 1, dtype=np.float64))
        seeds = rng.integers(0, 2**32, size=B)

        def rngs() -> dict[int, np.random.Generator]:
            return {b: np.random.default_rng(s) for b, s in enumerate(seeds)}

        by_rank = _picks_by_rank(base, author_of, available.copy(), explorable, ks, need, rngs(), powers)
        looped = sel._picks_step_by_step(base, author_of, available.copy(), explorable, ks, need, rngs(), powers,
                                         lambda b, j: ())
        assert by_rank == looped


def test_contenders_are_the_candidates_at_or_above_the_kth_distinct_authors_best():
    """What the batch path sorts: exactly the candidates scoring at least the k-th distinct author's best
    (all of a feed's candidates when it has fewer than k authors), whether the top of a feed is spread
    over many authors or crowded by a few."""
    rng = np.random.default_rng(11)
    for _ in range(40):
        B, C = int(rng.integers(15, 40)), int(rng.integers(150, 300))  # past the size it starts at
        author_of = rng.integers(0, int(rng.choice([5, 12, 40, 400])), size=(B, C))
        base = np.round(rng.uniform(-0.5, 1.0, size=(B, C)), 2) + np.where(author_of < rng.integers(1, 6), 1.0, 0.0)
        available = rng.random((B, C)) < 0.9
        ks = rng.integers(1, 15, size=B)
        kept = _contenders(base, author_of, available, ks)
        for b in range(B):
            bests = sorted({a: max(base[b, (author_of[b] == a) & available[b]])
                            for a in set(author_of[b, available[b]].tolist())}.values(), reverse=True)
            threshold = bests[ks[b] - 1] if len(bests) >= ks[b] else -np.inf
            assert kept[b].tolist() == (available[b] & (base[b] >= threshold)).tolist()
