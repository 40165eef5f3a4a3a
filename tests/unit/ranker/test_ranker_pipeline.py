"""Sources, hydrators and the full feed pipeline over a fake in-memory index."""

from __future__ import annotations

import logging
import zlib
from typing import Sequence

import numpy as np
import pytest

from flitfeed.index.base import Hit, IndexedFlit, SearchFilter
from flitfeed.ranker import (
    Candidate,
    EngagementTracker,
    FeedPipeline,
    FeedQuery,
    RankerParams,
    RecentFlits,
    build_feed_pipeline,
)
from flitfeed.ranker.sources import (
    EngagementHydrator,
    FreshPopularSource,
    SimilarityHydrator,
    VectorNeighboursSource,
)
from flitfeed.ranker.filters import DuplicateFilter
from flitfeed.ranker.stages import Source

NOW = 1_000_000.0
DIM = 4
TOPIC_A = np.array([1, 0, 0, 0], dtype=np.float32)
TOPIC_B = np.array([0, 1, 0, 0], dtype=np.float32)


class FakeIndex:
    """Brute-force cosine search over a dict: the VectorIndex protocol in miniature."""

    dim = DIM

    def __init__(self) -> None:
        self.flits: dict[str, IndexedFlit] = {}
        self.searches: list[SearchFilter | None] = []
        self.batches: list[int] = []
        self.retrieves = 0

    def upsert_many(self, flits: Sequence[IndexedFlit]) -> None:
        for f in flits:
            self.flits[f.flit_id] = f

    def search(self, vector: np.ndarray, limit: int, flt: SearchFilter | None = None) -> list[Hit]:
        self.searches.append(flt)
        flt = flt or SearchFilter()
        ok = [
            f for f in self.flits.values()
            if f.author_id not in flt.exclude_authors
            and f.flit_id not in flt.exclude_flit_ids
            and (flt.min_created_at is None or f.created_at >= flt.min_created_at)
            and (flt.author is None or f.author_id == flt.author)
            and (flt.only_flit_ids is None or f.flit_id in flt.only_flit_ids)
        ]
        if not ok:
            return []
        scores = np.stack([f.vector for f in ok]) @ vector
        order = np.argsort(-scores, kind="stable")[:limit]
        return [Hit(ok[i].flit_id, ok[i].author_id, ok[i].created_at, float(scores[i]), ok[i].lang, ok[i].tags)
                for i in order]

    def search_many(self, vectors: Sequence[np.ndarray], limit: int,
                    filters: Sequence[SearchFilter | None]) -> list[list[Hit]]:
        self.batches.append(len(vectors))
        return [self.search(v, limit, f) for v, f in zip(vectors, filters)]

    def retrieve_many(self, flit_ids: Sequence[str]) -> dict[str, IndexedFlit]:
        self.retrieves += 1
        return {i: self.flits[i] for i in flit_ids if i in self.flits}

    def delete_many(self, flit_ids: Sequence[str]) -> None:
        for i in flit_ids:
            self.flits.pop(i, None)

    def count(self, approximate: bool = False) -> int:
        return len(self.flits)

    def close(self) -> None:
        pass


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


class World:
    """Index, recent flits and engagement kept consistent, as the ranker service does."""

    def __init__(self) -> None:
        self.index = FakeIndex()
        self.recent = RecentFlits(capacity=1000)
        self.engagement = EngagementTracker(half_life_s=24 * 3600.0, capacity=1000)

    def flit(self, fid: str, author: str, topic: np.ndarray, age: float = 3600.0, tags: tuple[str, ...] = ()):
        noise = np.random.default_rng(zlib.crc32(fid.encode())).normal(0, 0.05, DIM)
        created = NOW - age
        vector = unit(topic + noise)
        self.index.upsert_many([IndexedFlit(fid, author, created, vector, tags=tags)])
        # As the ranker service does: the recent store keeps the vector it replicated.
        self.recent.add_one(fid, author, created, tags, vector=vector)

    def pipeline(self, **params) -> FeedPipeline:
        return build_feed_pipeline(self.index, self.engagement, self.recent, RankerParams(**params))


@pytest.fixture
def world() -> World:
    w = World()
    for i in range(12):
        w.flit(f"a{i}", f"author_a{i % 6}", TOPIC_A, age=3600.0 * (i + 1), tags=("topic-a",))
        w.flit(f"b{i}", f"author_b{i % 6}", TOPIC_B, age=3600.0 * (i + 1), tags=("topic-b",))
    return w


def warm(taste=TOPIC_A, **kw) -> FeedQuery:
    return FeedQuery(kw.pop("user_id", "me"), kw.pop("k", 5), NOW, taste=taste, positives=5, **kw)


# --- Sources and hydrators -------------------------------------------------------

def test_vector_source_pushes_exclusions_down(world):
    src = VectorNeighboursSource(world.index, limit=2, max_age_s=5 * 3600.0, max_pushed_seen=2)
    q = warm(seen=frozenset({"a0", "a1", "a2"}), muted_authors=frozenset({"author_a3"}))
    out = src.fetch(q)
    flt = world.index.searches[-1]
    assert flt.exclude_authors == {"me", "author_a3"}
    assert len(flt.exclude_flit_ids) == 2 and flt.exclude_flit_ids <= q.seen
    assert flt.min_created_at == NOW - 5 * 3600.0
    # Of a0..a4 (young enough), a0 and a1 were pushed as seen and a3 is muted.
    assert sorted(c.flit_id for c in out) == ["a2", "a4"] and all(c.source == "similar" for c in out)
    assert all(0.9 < c.similarity <= 1.0 for c in out)
    assert src.enable(q) and not src.enable(FeedQuery("me", 5, NOW))


def test_fresh_popular_source_mixes_popular_and_newest(world):
    for _ in range(5):
        world.engagement.learn_one("b11", "like", NOW - 60)     # oldest flit, but popular
    world.engagement.learn_one("a5", "like", NOW - 60)
    world.engagement.learn_one("ghost", "like", NOW - 60)       # not among the recent flits
    src = FreshPopularSource(world.recent, world.engagement, limit=4, popular_share=0.5)
    out = src.fetch(FeedQuery("me", 5, NOW))
    assert [(c.flit_id, c.source) for c in out[:2]] == [("b11", "popular"), ("a5", "popular")]
    assert {(c.flit_id, c.source) for c in out[2:]} == {("a0", "fresh"), ("b0", "fresh")}  # equally new
    assert all(c.similarity == 0.0 for c in out)
    aged = FreshPopularSource(world.recent, world.engagement, limit=4, max_age_s=3 * 3600.0)
    assert {c.flit_id for c in aged.fetch(FeedQuery("me", 5, NOW))} == {"a0", "b0", "a1", "b1"}


def test_hydrators_fill_engagement_and_missing_similarity_in_one_call(world):
    world.engagement.learn_one("a1", "reflit", NOW)
    cs = [Candidate("a1", "x", NOW, "fresh"), Candidate("b1", "x", NOW, "fresh"),
          Candidate("a2", "x", NOW, "similar", similarity=0.42), Candidate("gone", "x", NOW, "fresh")]
    EngagementHydrator(world.engagement).hydrate(warm(), cs)
    SimilarityHydrator(world.index).hydrate(warm(), cs)
    assert [c.engagement for c in cs] == [1.5, 0.0, 0.0, 0.0]
    assert cs[0].similarity > 0.9 and abs(cs[1].similarity) < 0.2
    assert cs[2].similarity == 0.42 and cs[3].similarity == 0.0
    # One id-restricted search scores them all in the engine (no vectors shipped to Python).
    assert world.index.retrieves == 0
    assert [f.only_flit_ids for f in world.index.searches] == [frozenset({"a1", "b1", "gone"})]
    SimilarityHydrator(world.index).hydrate(FeedQuery("me", 5, NOW), [Candidate("b2", "x", NOW, "fresh")])
    assert len(world.index.searches) == 1  # nothing to compare with for a cold-start user


def test_a_flit_two_sources_returned_gets_one_similarity_and_the_similar_copy_wins(world):
    # The similar source's copy carries the engine's cosine; the fresh copy of the same flit must get
    # exactly that number (not a memory cosine a rounding error higher), so the duplicate filter's
    # similarity tie goes to the preferred source.
    engine_cosine = 0.7000000001
    cs = [Candidate("a1", "x", NOW, "similar", similarity=engine_cosine), Candidate("a1", "x", NOW, "fresh"),
          Candidate("b1", "x", NOW, "fresh")]
    SimilarityHydrator(world.index, world.recent).hydrate(warm(), cs)
    assert cs[1].similarity == engine_cosine and cs[2].similarity != 0.0
    kept = DuplicateFilter().filter(warm(), cs).kept
    assert [(c.flit_id, c.source) for c in kept] == [("a1", "similar"), ("b1", "fresh")]


def test_similarity_hydrator_scores_recent_flits_in_memory_and_asks_the_index_for_the_rest(world):
    world.index.upsert_many([IndexedFlit("old", "x", NOW - 9e5, unit(TOPIC_A))])  # indexed, not recent
    cs = [Candidate(f, "x", NOW, "fresh") for f in ("a1", "b1", "old", "gone")]
    reference = [Candidate(f, "x", NOW, "fresh") for f in ("a1", "b1", "old", "gone")]
    SimilarityHydrator(world.index).hydrate(warm(), reference)  # every cosine from the index
    SimilarityHydrator(world.index, world.recent).hydrate(warm(), cs)
    # The recent flits' cosines are the index's; only the others went to the index, in one search.
    assert [c.similarity for c in cs] == pytest.approx([c.similarity for c in reference], abs=1e-6)
    assert cs[0].similarity > 0.9 and cs[2].similarity > 0.99 and cs[3].similarity == 0.0
    assert world.index.searches[-1].only_flit_ids == frozenset({"old", "gone"})
    searches = len(world.index.searches)
    SimilarityHydrator(world.index, world.recent).hydrate(warm(), [Candidate("a3", "x", NOW, "fresh")])
    assert len(world.index.searches) == searches  # all in memory: the index is not asked


# --- Full pipeline ---------------------------------------------------------------

def test_topic_a_user_gets_topic_a_first(world):
    result = world.pipeline(explore_share=0.0).run(warm(k=5))
    assert [c.flit_id[0] for c in result.items] == ["a"] * 5
    assert len({c.author_id for c in result.items}) == 5  # author diversity among equals
    assert result.candidates > 0 and not result.errors
    scores = [c.score for c in result.items]
    assert scores == sorted(scores, reverse=True)


def test_seen_own_and_muted_never_appear(world):
    world.flit("mine", "me", TOPIC_A, age=60.0)
    q = warm(k=20, seen=frozenset({"a0", "a1"}), muted_authors=frozenset({"author_a2"}))
    for _ in range(3):
        world.engagement.learn_one("mine", "like", NOW)
        world.engagement.learn_one("a0", "like", NOW)
    result = world.pipeline().run(q)
    got = {c.flit_id for c in result.items}
    assert len(result.items) == 20
    assert not got & {"a0", "a1", "mine"}
    assert all(c.author_id not in {"author_a2", "me"} for c in result.items)
    # Only the fresh/popular source can bring them; the index query excluded them already.
    assert result.removed["seen"] >= 1 and result.removed["own_flits"] >= 1 and result.removed["muted_author"] >= 1


def test_cold_start_user_gets_fresh_and_popular(world):
    world.flit("hot", "author_h", TOPIC_B, age=2 * 3600.0)
    for _ in range(10):
        world.engagement.learn_one("hot", "like", NOW - 60)
    result = world.pipeline(explore_share=0.0).run(FeedQuery("newbie", 4, NOW))
    assert ("source", "similar") not in result.timings  # the vector source did not run
    assert len(result.items) == 4
    # Younger flits exist, but ten likes outweigh an hour of age.
    assert result.items[0].flit_id == "hot" and result.items[0].source == "popular"
    assert {c.source for c in result.items} <= {"popular", "fresh"}
    assert all(c.components["similarity"] == 0.0 for c in result.items)


def test_too_old_flits_are_dropped(world):
    world.flit("ancient", "author_x", TOPIC_A, age=30 * 24 * 3600.0)
    result = world.pipeline(max_age_s=24 * 3600.0).run(warm(k=30))
    assert "ancient" not in {c.flit_id for c in result.items}


def test_exploration_slot_surfaces_a_new_author(world):
    for i in range(6):
        for j in range(5):  # make the regular authors prolific
            for topic in "ab":
                world.recent.add_one(f"x{topic}{i}{j}", f"author_{topic}{i}", NOW - 7200.0)
    world.flit("debut", "fresh_face", TOPIC_B, age=120.0)
    result = world.pipeline(explore_share=0.2).run(warm(k=5))
    assert result.items[-1].flit_id == "debut" and result.items[-1].source == "explore"


def test_records_timings_and_removed_for_every_stage(world):
    result = world.pipeline().run(warm(seen=frozenset({"a0"})))
    kinds = {kind for kind, _ in result.timings}
    assert kinds == {"source", "hydrator", "filter", "scorer", "selector"}
    assert all(t >= 0 for t in result.timings.values())
    assert set(result.removed) == {"duplicate", "seen", "own_flits", "muted_author", "max_age"}
    assert result.removed["muted_author"] == 0  # not enabled: no muted authors


class Broken(Source):
    name = "broken"

    def fetch(self, query: FeedQuery) -> list[Candidate]:
        raise ConnectionError("index unreachable")


def test_a_failing_source_degrades_instead_of_raising(world, caplog):
    good = world.pipeline()
    pipeline = FeedPipeline([Broken(), *good.sources], good.hydrators, good.filters, good.scorers, good.selector)
    with caplog.at_level(logging.WARNING):
        result = pipeline.run(warm(k=5))
    assert len(result.items) == 5
    assert result.errors == {("source", "broken"): "ConnectionError: index unreachable"}
    record = next(r for r in caplog.records if getattr(r, "component", None) == "broken")
    assert record.stage == "source" and record.user_id == "me"


def test_a_failing_index_still_yields_a_fresh_feed(world):
    def boom(*a, **kw):
        raise TimeoutError("slow")

    world.index.search = boom
    world.index.search_many = boom
    world.index.retrieve_many = boom
    result = world.pipeline().run(warm(k=5))
    assert len(result.items) == 5
    # The recent flits' similarity comes from memory, so the feed is still personal.
    assert set(result.errors) == {("source", "similar")}
    assert result.items[0].flit_id.startswith("a") and result.items[0].similarity > 0.9
    # A hydrator that needs the index for a candidate fails with it; the feed is still built.
    world.recent = RecentFlits(capacity=1000)
    for fid, flit in world.index.flits.items():
        world.recent.add_one(fid, flit.author_id, flit.created_at, flit.tags)  # no vectors held
    result = world.pipeline().run(warm(k=5))
    assert len(result.items) == 5
    assert set(result.errors) == {("source", "similar"), ("hydrator", "similarity")}


def test_a_batch_gets_the_feeds_its_queries_get_one_by_one_from_one_vector_search(world):
    pipeline = world.pipeline()
    queries = [warm(user_id="u1"), FeedQuery("cold", 5, NOW), warm(taste=TOPIC_B, user_id="u2", k=3),
               warm(user_id="u3", seen=frozenset({"a0", "a1"}))]
    one_by_one = [pipeline.run(q) for q in queries]
    world.index.batches.clear()
    batched = pipeline.run_many(queries)
    assert world.index.batches == [3]          # one search call for the three warm queries (cold: no taste)
    assert [[c.flit_id for c in r.items] for r in batched] == [[c.flit_id for c in r.items] for r in one_by_one]
    assert [[round(c.score, 9) for c in r.items] for r in batched] == [
        [round(c.score, 9) for c in r.items] for r in one_by_one]
    assert all(("source", "similar") in r.timings for r in (batched[0], batched[2], batched[3]))
    assert ("source", "similar") not in batched[1].timings


def test_a_failing_batched_source_fails_each_of_its_queries_and_the_feeds_are_still_built(world):
    def boom(*a, **kw):
        raise TimeoutError("slow")

    world.index.search_many = boom
    results = world.pipeline().run_many([warm(user_id="u1"), warm(user_id="u2")])
    assert [len(r.items) for r in results] == [5, 5]
    assert all(r.errors == {("source", "similar"): "TimeoutError: slow"} for r in results)


def test_duplicate_stage_names_are_rejected(world):
    p = world.pipeline()
    with pytest.raises(ValueError):
        FeedPipeline([*p.sources, *p.sources], p.hydrators, p.filters, p.scorers, p.selector)
