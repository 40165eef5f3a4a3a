"""The columnar batch path against the per-candidate path it replaced, on random worlds.

Every hydrator, filter and scorer has a batch method over a :class:`CandidateBatch` and the per-query
method over ``Candidate`` lists it replaced (the reference). On random worlds (catalogue, popularity,
co-engagement, affinities, seen sets, muted authors, cold starts, users who are authors, duplicates
from several sources, flits too old or from the future, flits only the index can score) each stage's
batch method must give what its list method gives, and the whole pipeline the same feeds with the same
scores, features, removed counts and errors.
"""

from __future__ import annotations

import numpy as np
import pytest

from flitfeed.index.base import IndexedFlit
from flitfeed.index.memory import MemoryIndex
from flitfeed.ranker.affinity import Affinity
from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.candidates import CandidateBatch, _merge_codes, intern
from flitfeed.ranker.coengagement import CoEngagement
from flitfeed.ranker.engagement import EngagementTracker
from flitfeed.ranker.feeds import build_feed_pipeline
from flitfeed.ranker.model import ActionModel
from flitfeed.ranker.params import RankerParams
from flitfeed.ranker.pipeline import FeedPipeline
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.recent import RecentFlits
from flitfeed.ranker.signals import learn_interaction
from flitfeed.ranker.sources.affinity_hydrator import COLUMNS_FROM_ROWS, AffinityHydrator
from flitfeed.streams.events import Interaction

NOW = 1_700_000_000.0
DIM = 8
DAY = 86400.0
TOPICS = ("rain", "owls", "seeds", "flyway", "nests", "dawn")


class World:
    def __init__(self, seed: int, model: bool = True) -> None:
        rng = np.random.default_rng(seed)
        self.rng = rng
        n = int(rng.integers(80, 300))
        self.index = MemoryIndex(DIM)
        self.recent = RecentFlits(capacity=int(rng.integers(n // 3, n)))
        self.engagement = EngagementTracker(half_life_s=DAY, capacity=10_000)
        self.coengagement = CoEngagement(capacity=64, history=10)
        self.affinity = Affinity(max_users=100, max_entries=8)
        self.authors = [f"author-{i}" for i in range(int(rng.integers(5, 40)))]
        centres = rng.normal(size=(len(TOPICS), DIM))
        self.flits = []
        for i in range(n):
            t = int(rng.integers(len(TOPICS)))
            tags = (TOPICS[t],) if rng.random() < 0.7 else (TOPICS[t], TOPICS[int(rng.integers(len(TOPICS)))])
            # Mostly within the week; some too old, some from too far in the future.
            created = NOW - float(rng.choice([rng.uniform(0, 3 * DAY), rng.uniform(8 * DAY, 9 * DAY),
                                               -rng.uniform(600, 3600)], p=[0.9, 0.07, 0.03]))
            v = (centres[t] + rng.normal(scale=0.6, size=DIM)).astype(np.float32)
            v /= np.linalg.norm(v)
            f = IndexedFlit(f"f{i}", self.authors[int(rng.integers(len(self.authors)))], created, v, "en", tags)
            self.flits.append(f)
        self.index.upsert_many(self.flits)
        for f in self.flits:
            # Some recent flits without a held vector: the index scores those.
            self.recent.add_one(f.flit_id, f.author_id, f.created_at, f.tags, f.lang,
                                f.vector if rng.random() < 0.8 else None)
        self.users = [f"user-{u}" for u in range(12)] + self.authors[:2]
        kinds = ["view", "like", "like", "reflit", "reply", "hide", "report"]
        for _ in range(int(rng.integers(50, 600))):
            f = self.flits[int(rng.integers(n))]
            event = Interaction(event_id=f"e{_}", user_id=self.users[int(rng.integers(len(self.users)))],
                                flit_id=f.flit_id, kind=kinds[int(rng.integers(len(kinds)))],
                                ts=NOW - float(rng.uniform(0, 2 * DAY)))
            learn_interaction(self.engagement, self.coengagement, event, self.affinity, self.recent)
        self.model = ActionModel() if model else None
        if self.model is not None and rng.random() < 0.7:  # a model that has learned something
            from flitfeed.ranker.features import N_FEATURES
            X = rng.uniform(-1, 1, size=(200, N_FEATURES))
            Y = (rng.random((200, 3)) < 0.2).astype(float)
            self.model.learn_many(X, Y)

    def params(self) -> RankerParams:
        rng = self.rng
        return RankerParams(candidates_per_source=int(rng.integers(5, 60)),
                            tag_decay=float(rng.choice([1.0, 0.7])), author_decay=float(rng.choice([1.0, 0.5])),
                            explore_share=float(rng.choice([0.0, 0.3])), popular_share=float(rng.uniform(0.2, 0.8)),
                            max_pushed_seen=int(rng.choice([3, 1000])))

    def pipeline(self, params: RankerParams, collaborative: bool = True) -> FeedPipeline:
        return build_feed_pipeline(self.index, self.engagement, self.recent, params,
                                   self.coengagement if collaborative else None, model=self.model,
                                   affinity=self.affinity if self.model is not None else None)

    def queries(self, count: int) -> list[FeedQuery]:
        rng = self.rng
        out = []
        for j in range(count):
            user = self.users[int(rng.integers(len(self.users)))]
            kind = rng.random()
            taste = None
            if kind > 0.15:
                taste = rng.normal(size=DIM).astype(np.float32)
                taste /= np.linalg.norm(taste)
            seen = frozenset(f.flit_id for f in rng.choice(self.flits, size=int(rng.integers(0, 40))))
            muted = frozenset(rng.choice(self.authors, size=int(rng.integers(0, 3))).tolist())
            out.append(FeedQuery(user_id=user, k=int(rng.integers(1, 16)),
                                 now=NOW if rng.random() < 0.8 else NOW + 600.0, taste=taste, seen=seen,
                                 muted_authors=muted, positives=0 if kind < 0.3 else int(rng.integers(1, 30)),
                                 trigger_id=f"t{j}"))
        return out


def assert_same_feeds(batched, reference) -> None:
    assert len(batched) == len(reference)
    for got, want in zip(batched, reference):
        assert [(c.flit_id, c.author_id, c.source) for c in got.items] == [
            (c.flit_id, c.author_id, c.source) for c in want.items]
        # Within float32 rounding: the batch's cosines come from one matrix product over all its tastes.
        assert [c.score for c in got.items] == pytest.approx([c.score for c in want.items], rel=1e-6, abs=1e-7)
        assert [c.propensity for c in got.items] == [c.propensity for c in want.items]
        for g, w in zip(got.items, want.items):
            assert g.similarity == pytest.approx(w.similarity, abs=1e-6)
            assert g.tags == w.tags and g.created_at == w.created_at
            assert set(g.components) == set(w.components)
            assert [g.components[k] for k in w.components] == pytest.approx(list(w.components.values()), abs=1e-6)
            if w.features is None:
                assert g.features is None
            else:
                np.testing.assert_allclose(g.features, w.features, atol=1e-6)
        assert got.removed == want.removed
        assert got.candidates == want.candidates
        assert got.errors == want.errors
        assert set(got.timings) == set(want.timings)


@pytest.mark.parametrize("seed", range(6))
def test_integer_keys_give_the_codes_of_the_ids(seed: int) -> None:
    """A source that numbers its hits (the catalogue's slots and author numbers) must get the batch the ids
    themselves give: the same codes, in order of first appearance, and the same distinct values."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 400))
    slot_of = rng.permutation(5000)  # any numbering: unrelated to the ids' order
    flit = rng.integers(0, 60, size=n)
    author = rng.integers(0, 9, size=n)
    columns = dict(query=np.sort(rng.integers(0, 5, size=n)), flit_id=np.array([f"f{i}" for i in flit], dtype=object),
                   author_id=np.array([f"a{i}" for i in author], dtype=object), created_at=np.zeros(n),
                   source=np.zeros(n, dtype=np.int64), n_queries=5)
    by_ids = CandidateBatch.build(**columns)
    by_keys = CandidateBatch.build(**columns, flit_key=slot_of[flit], author_key=slot_of[author] * 7)
    for name in ("flit", "author", "flit_ids", "author_ids", "flit_id", "author_id"):
        assert getattr(by_keys, name).tolist() == getattr(by_ids, name).tolist(), name


@pytest.mark.parametrize("seed", range(20))
def test_merged_codes_are_the_codes_of_the_concatenated_values(seed: int) -> None:
    """``concat`` numbers its parts' values into one table without interning the first part again; the
    codes and the table must be what interning all the values in order gives (a first table with a value
    twice, which no batch has, is numbered afresh)."""
    rng = np.random.default_rng(seed)
    tables, codes = [], []
    for j in range(int(rng.integers(1, 4))):
        distinct = list(dict.fromkeys(f"f{int(v)}" for v in rng.integers(0, 40, size=int(rng.integers(1, 30)))))
        if j == 0 and seed % 5 == 4:
            distinct.append(distinct[0])
        tables.append(np.array(distinct, dtype=object))
        codes.append(rng.integers(0, len(distinct), size=int(rng.integers(0, 50))))
    values = np.concatenate([t[c] for t, c in zip(tables, codes)])
    want_codes, want_table = intern(np.concatenate(tables))
    got_codes, got_table = _merge_codes(codes, tables)
    assert got_table.tolist() == want_table.tolist()
    assert got_table[got_codes].tolist() == values.tolist()
    offsets = np.cumsum([0] + [len(t) for t in tables])
    assert got_codes.tolist() == np.concatenate([want_codes[offsets[j]:][c] for j, c in enumerate(codes)]).tolist()


@pytest.mark.parametrize("seed", range(4))
def test_rows_read_back_as_the_candidates_they_were_made_of(seed: int) -> None:
    """``candidates_at`` (the selector's picks become the feed's items through it) gives every field of
    every row asked for, in the order asked, repeats included."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    names = ["similarity", "freshness"][: int(rng.integers(0, 3))]
    made = [[Candidate(flit_id=f"f{int(rng.integers(30))}", author_id=f"a{int(rng.integers(5))}",
                       created_at=float(rng.uniform(0, 1e9)), source=str(rng.choice(["similar", "fresh", "popular"])),
                       similarity=float(rng.normal()), engagement=float(rng.random()),
                       collaborative=float(rng.random()), author_affinity=float(rng.uniform(-1, 1)),
                       tag_affinity=float(rng.uniform(-1, 1)), tags=tuple(rng.choice(TOPICS, int(rng.integers(0, 3)))),
                       lang=rng.choice(["en", None]), components={k: float(rng.random()) for k in names},
                       score=float(rng.normal()), propensity=float(rng.uniform(0.1, 1)))
             for _ in range(int(rng.integers(0, 8)))] for _ in range(n // 8 + 1)]
    flat = [c for cs in made for c in cs]
    batch = CandidateBatch.from_lists(made)
    features = rng.normal(size=(len(flat), 3)) if seed % 2 else None
    batch.features = features
    rows = rng.integers(0, max(1, len(flat)), size=int(rng.integers(0, 20))) if flat else np.zeros(0, np.int64)
    got = batch.candidates_at(rows)
    assert len(got) == len(rows)
    for g, r in zip(got, rows.tolist()):
        want = flat[r]
        for field in ("flit_id", "author_id", "created_at", "source", "similarity", "engagement", "collaborative",
                      "author_affinity", "tag_affinity", "tags", "lang", "components", "score", "propensity"):
            assert getattr(g, field) == getattr(want, field), field
            assert type(getattr(g, field)) is type(getattr(want, field)), field
        assert (g.features is None) if features is None else g.features.tolist() == features[r].tolist()
    assert [c.flit_id for c in batch.candidates(0)] == [c.flit_id for c in made[0]]


@pytest.mark.parametrize("seed", range(12))
def test_the_batch_path_builds_the_feeds_of_the_per_candidate_path(seed: int) -> None:
    world = World(seed, model=seed % 4 != 3)
    pipeline = world.pipeline(world.params(), collaborative=seed % 3 != 2)
    queries = world.queries(int(world.rng.integers(1, 20)))
    reference = pipeline.run_many(queries, columnar=False)
    batched = pipeline.run_many(queries)
    assert_same_feeds(batched, reference)
    # A batch of one is the same feed as in a batch.
    assert_same_feeds([pipeline.run(queries[0])], reference[:1])


@pytest.mark.parametrize("seed", range(8))
def test_each_stage_batch_method_matches_its_list_method(seed: int) -> None:
    world = World(100 + seed)
    pipeline = world.pipeline(world.params())
    queries = world.queries(int(world.rng.integers(1, 12)))
    batch = CandidateBatch.concat([s.fetch_batch(queries) for s in pipeline.sources[-1:]]
                                  + [_remap(s.fetch_batch([queries[i] for i in en]), en)
                                     for s in pipeline.sources[:-1]
                                     if (en := [i for i, q in enumerate(queries) if s.enable(q)])], len(queries))
    lists = [batch.candidates(i) for i in range(len(queries))]
    for hydrator in pipeline.hydrators:
        hydrator.hydrate_batch(queries, batch)
        for q, cs in zip(queries, lists):
            hydrator.hydrate(q, cs)
        for i, cs in enumerate(lists):
            got = batch.candidates(i)
            for field in ("similarity", "engagement", "collaborative", "author_affinity", "tag_affinity"):
                assert [getattr(c, field) for c in got] == pytest.approx([getattr(c, field) for c in cs], abs=1e-6), (
                    hydrator.name, field)
    for flt in pipeline.filters:
        keep = flt.filter_batch(queries, batch)
        for i, (q, cs) in enumerate(zip(queries, lists)):
            kept = flt.filter(q, cs).kept
            rows = batch.rows_of(i)
            assert [c.flit_id for c, k in zip(cs, keep[rows]) if k] == [c.flit_id for c in kept], flt.name
            assert [c.source for c, k in zip(cs, keep[rows]) if k] == [c.source for c in kept], flt.name
            lists[i] = kept
        batch = batch.take(keep)
    for scorer in pipeline.scorers:
        scorer.score_batch(queries, batch)
        for q, cs in zip(queries, lists):
            scorer.score(q, cs)
        for i, cs in enumerate(lists):
            got = batch.candidates(i)
            if scorer.name in ("model", "weighted"):
                assert [c.score for c in got] == pytest.approx([c.score for c in cs], rel=1e-6, abs=1e-7)
            else:
                assert [c.components[scorer.name] for c in got] == pytest.approx(
                    [c.components[scorer.name] for c in cs], abs=1e-6), scorer.name


def _remap(batch: CandidateBatch, enabled: list[int]) -> CandidateBatch:
    batch.query = np.asarray(enabled, dtype=np.int64)[batch.query]
    return batch


def test_a_hydrator_failing_for_one_query_fails_for_that_query_alone() -> None:
    world = World(7)
    pipeline = world.pipeline(RankerParams(candidates_per_source=20, explore_share=0.0))
    queries = world.queries(6)
    queries = [FeedQuery(q.user_id, 5, NOW, taste=q.taste, positives=q.positives, trigger_id=q.trigger_id)
               for q in queries]
    bad = queries[2].user_id
    hydrator = next(h for h in pipeline.hydrators if h.name == "affinity")
    per_feed, per_batch = hydrator.affinity.pair_arrays, hydrator.affinity.pair_columns

    def flaky_feed(user_id, *columns):
        if user_id == bad:
            raise RuntimeError("affinity store unavailable")
        return per_feed(user_id, *columns)

    def flaky_batch(user_ids, *columns):
        if bad in user_ids:
            raise RuntimeError("affinity store unavailable")
        return per_batch(user_ids, *columns)

    # Whichever way the hydrator looks a batch up (by feed or by column: its size decides).
    hydrator.affinity.pair_arrays = flaky_feed  # type: ignore[method-assign]
    hydrator.affinity.pair_columns = flaky_batch  # type: ignore[method-assign]
    results = pipeline.run_many(queries)
    for q, r in zip(queries, results):
        if q.user_id == bad:
            assert r.errors == {("hydrator", "affinity"): "RuntimeError: affinity store unavailable"}
            assert all(c.author_affinity == 0.0 and c.tag_affinity == 0.0 for c in r.items)
        else:
            assert not r.errors
        assert len(r.items) == 5


def test_the_affinity_hydrator_gives_a_large_batch_what_it_gives_each_feed() -> None:
    """Past COLUMNS_FROM_ROWS rows a batch is looked up column-wise, a feed alone per feed: same columns."""
    rng = np.random.default_rng(9)
    affinity = Affinity()
    tags = [f"t{i}" for i in range(20)]
    for j in range(3000):
        affinity.learn_one(f"u{j % 40}", f"a{rng.integers(60)}", tuple(rng.choice(tags, int(rng.integers(1, 3)))),
                           str(rng.choice(["like", "hide", "reflit"])))
    n_feeds = 30
    sizes = rng.integers(50, 150, size=n_feeds)
    flits = rng.integers(0, 1500, size=int(sizes.sum()))
    flit_tags = {f: tuple(rng.choice(tags, int(rng.integers(0, 4)))) for f in set(flits.tolist())}
    batch = CandidateBatch.build(query=np.repeat(np.arange(n_feeds), sizes), flit_id=[f"f{f}" for f in flits],
                                 author_id=[f"a{f % 70}" for f in flits], created_at=np.zeros(len(flits)),
                                 source=np.zeros(len(flits), dtype=np.int64), tags=[flit_tags[f] for f in flits])
    assert len(batch) >= COLUMNS_FROM_ROWS
    queries = [FeedQuery(f"u{i}", 10, NOW) for i in range(n_feeds)]
    hydrator = AffinityHydrator(affinity)
    hydrator.hydrate_batch(queries, batch)
    whole = batch.author_affinity.copy(), batch.tag_affinity.copy()
    assert np.count_nonzero(whole[0]) > 100 and np.count_nonzero(whole[1]) > 100
    batch.author_affinity[:] = batch.tag_affinity[:] = 0.0
    for i, query in enumerate(queries):
        hydrator.hydrate_batch([query], batch.view_of(i))  # writes through the view
    assert batch.author_affinity.tolist() == whole[0].tolist()
    assert batch.tag_affinity.tolist() == whole[1].tolist()
