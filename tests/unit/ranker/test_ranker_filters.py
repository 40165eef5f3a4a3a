"""Each filter on hand-made cases, plus the contract every filter must keep."""

from __future__ import annotations

import copy
import random
from collections import Counter

import pytest

from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.filters import DuplicateFilter, MaxAgeFilter, MutedAuthorFilter, OwnFlitsFilter, SeenFilter
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.stages import Filter

NOW = 1_000_000.0
ALL_FILTERS = [DuplicateFilter(), SeenFilter(), OwnFlitsFilter(), MutedAuthorFilter(), MaxAgeFilter(3600.0, 60.0)]


def cand(fid: str, author: str = "a1", age: float = 0.0, source: str = "fresh", sim: float = 0.0) -> Candidate:
    return Candidate(flit_id=fid, author_id=author, created_at=NOW - age, source=source, similarity=sim)


def query(**kw) -> FeedQuery:
    kw.setdefault("user_id", "me")
    kw.setdefault("k", 10)
    kw.setdefault("now", NOW)
    return FeedQuery(**kw)


def ids(cs: list[Candidate]) -> list[str]:
    return [c.flit_id for c in cs]


def test_seen_filter():
    r = SeenFilter().filter(query(seen=frozenset({"f2"})), [cand("f1"), cand("f2"), cand("f3")])
    assert ids(r.kept) == ["f1", "f3"] and ids(r.removed) == ["f2"]
    assert not SeenFilter().enable(query())


def test_own_flits_filter():
    r = OwnFlitsFilter().filter(query(), [cand("f1", "me"), cand("f2", "you")])
    assert ids(r.kept) == ["f2"] and ids(r.removed) == ["f1"]


def test_muted_author_filter():
    q = query(muted_authors=frozenset({"troll"}))
    r = MutedAuthorFilter().filter(q, [cand("f1", "troll"), cand("f2", "nice"), cand("f3", "troll")])
    assert ids(r.kept) == ["f2"] and ids(r.removed) == ["f1", "f3"]
    assert not MutedAuthorFilter().enable(query())


def test_max_age_filter_drops_old_and_far_future():
    f = MaxAgeFilter(max_age_s=3600.0, future_skew_s=60.0)
    cs = [cand("old", age=3601), cand("edge", age=3600), cand("new", age=0), cand("skew", age=-60),
          cand("future", age=-61)]
    r = f.filter(query(), cs)
    assert ids(r.kept) == ["edge", "new", "skew"] and ids(r.removed) == ["old", "future"]


def test_duplicate_filter_keeps_highest_similarity_then_preferred_source():
    cs = [
        cand("f1", source="fresh", sim=0.0),
        cand("f2", source="popular"),
        cand("f1", source="similar", sim=0.7),   # higher similarity wins, at its own position
        cand("f2", source="similar"),            # tie on similarity: "similar" is preferred
        cand("f3", source="fresh"),
        cand("f3", source="fresh"),              # full tie: the first copy stays
    ]
    r = DuplicateFilter().filter(query(), cs)
    assert [(c.flit_id, c.source) for c in r.kept] == [("f1", "similar"), ("f2", "similar"), ("f3", "fresh")]
    assert r.kept[2] is cs[4]
    assert len(r.removed) == 3


# --- Contract ----------------------------------------------------------------

def random_candidates(rng: random.Random, n: int) -> list[Candidate]:
    sources = ["similar", "popular", "fresh"]
    return [
        cand(f"f{rng.randrange(n)}", author=rng.choice(["me", "troll", "a1", "a2", "a3"]),
             age=rng.uniform(-200, 5000), source=rng.choice(sources), sim=rng.choice([0.0, rng.random()]))
        for _ in range(n)
    ]


def _key(c: Candidate) -> int:
    return id(c)


@pytest.mark.parametrize("flt", ALL_FILTERS, ids=lambda f: f.name)
@pytest.mark.parametrize("seed", range(20))
def test_filter_contract(flt: Filter, seed: int):
    rng = random.Random(seed)
    cs = random_candidates(rng, rng.randrange(0, 40))
    q = query(seen=frozenset(f"f{i}" for i in range(0, 40, 3)), muted_authors=frozenset({"troll"}))
    before = copy.deepcopy(cs)
    original = list(cs)

    result = flt.filter(q, cs)

    # kept + removed is the input, as a multiset of the very same objects.
    assert Counter(map(_key, result.kept + result.removed)) == Counter(map(_key, cs))
    # kept preserves input order.
    positions = {id(c): i for i, c in enumerate(cs)}
    kept_pos = [positions[id(c)] for c in result.kept]
    assert kept_pos == sorted(kept_pos)
    # Neither the list nor the candidates were touched.
    assert cs == original and all(a is b for a, b in zip(cs, original))
    assert cs == before


@pytest.mark.parametrize("table", [True, False], ids=["marks", "isin"])
@pytest.mark.parametrize("seed", range(10))
def test_seen_filter_batch_drops_each_feeds_seen_flits(table: bool, seed: int, monkeypatch):
    """A batch drops, per feed, exactly the rows whose flit that feed's user has seen, whether its seen
    flits are marked in a (feed, flit) table or, past the table's size limit, matched by sorting."""
    from flitfeed.ranker.candidates import CandidateBatch
    from flitfeed.ranker.filters import seen_filter

    if not table:
        monkeypatch.setattr(seen_filter, "_MAX_TABLE", 0)
    rng = random.Random(seed)
    lists = [random_candidates(rng, rng.randrange(0, 40)) for _ in range(rng.randrange(1, 8))]
    # Some users have seen a few flits (looked up by code), some more than their feed holds (row by row).
    queries = [query(seen=frozenset(f"f{rng.randrange(60)}" for _ in range(rng.choice([0, 3, 80]))))
               for _ in lists]
    keep = SeenFilter().filter_batch(queries, CandidateBatch.from_lists(lists))
    want = [c.flit_id not in q.seen for q, cs in zip(queries, lists) for c in cs]
    assert keep.tolist() == want
