"""The in-memory catalogue (``index/catalogue.py``) against the indexes it mirrors, and the vector source's use of it.

The catalogue must answer every search as the exact indexes do (the numpy reference :class:`MemoryIndex` and
Qdrant Edge before it builds a graph), under every filter field, after replacements and deletions; the
vector source must use it only while it mirrors the index, and the feeds must not change with it.
"""

from __future__ import annotations

import numpy as np
import pytest

from flitfeed.index.base import HitColumns, IndexedFlit, IndexError_, PointHits, SearchFilter, point_key
from flitfeed.index.catalogue import VectorCatalogue, top_k_rows
from flitfeed.index.edge import EdgeIndex
from flitfeed.index.memory import MemoryIndex
from flitfeed.ranker.params import RankerParams
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.sources import VectorNeighboursSource

DIM = 16
NOW = 1_700_000_000.0


def random_flits(rng: np.random.Generator, n: int, authors: int = 12, prefix: str = "f") -> list[IndexedFlit]:
    out = []
    for i in range(n):
        v = rng.normal(size=DIM).astype(np.float32) * float(rng.uniform(0.5, 3.0))  # not unit: both normalise
        out.append(IndexedFlit(f"{prefix}{i}", f"a{int(rng.integers(authors))}", NOW - float(rng.uniform(0, 1e5)), v,
                               str(rng.choice(["en", "de"])) if rng.random() < 0.8 else None,
                               tuple(rng.choice(["x", "y", "z"], size=int(rng.integers(0, 3))).tolist())))
    return out


def random_filter(rng: np.random.Generator, flits: list[IndexedFlit]) -> SearchFilter | None:
    if rng.random() < 0.15:
        return None
    ids = [f.flit_id for f in flits]
    pick = lambda k: frozenset(rng.choice(ids, size=k).tolist()) if ids else frozenset()  # noqa: E731
    return SearchFilter(
        exclude_authors=frozenset(f"a{a}" for a in rng.integers(12, size=int(rng.integers(0, 4)))),
        exclude_flit_ids=pick(int(rng.integers(0, 30))),
        min_created_at=NOW - float(rng.uniform(0, 1e5)) if rng.random() < 0.5 else None,
        author=f"a{int(rng.integers(12))}" if rng.random() < 0.15 else None,
        only_flit_ids=pick(int(rng.integers(0, 40))) if rng.random() < 0.15 else None)


def hits_of(results) -> list[list[tuple[str, str, str | None, tuple[str, ...]]]]:  # noqa: ANN001
    return [[(h.flit_id, h.author_id, h.lang, tuple(h.tags)) for h in found] for found in results]


def assert_same(got, want) -> None:  # noqa: ANN001
    assert hits_of(got) == hits_of(want)
    for g, w in zip(got, want):
        assert [h.score for h in g] == pytest.approx([h.score for h in w], abs=1e-5)
        # Qdrant Edge's payload gives an epoch back within a few hundred nanoseconds; the catalogue exactly.
        assert [h.created_at for h in g] == pytest.approx([h.created_at for h in w], abs=1e-6)


@pytest.mark.parametrize("seed", range(10))
def test_it_answers_every_filter_as_the_exact_numpy_index_does(seed: int) -> None:
    rng = np.random.default_rng(seed)
    flits = random_flits(rng, int(rng.integers(1, 400)))
    catalogue, reference = VectorCatalogue(DIM), MemoryIndex(DIM)
    for index in (catalogue, reference):
        index.upsert_many(flits)
    n = int(rng.integers(1, 40))
    vectors = [rng.normal(size=DIM).astype(np.float32) for _ in range(n)]
    filters = [random_filter(rng, flits) for _ in range(n)]
    limit = int(rng.integers(1, 60))
    assert_same(catalogue.search_many(vectors, limit, filters), reference.search_many(vectors, limit, filters))
    # The columns are the same hits, grouped by query.
    columns = catalogue.search_columns(vectors, limit, filters)
    assert hits_of(columns.hits()) == hits_of(catalogue.search_many(vectors, limit, filters))
    assert columns.counts.sum() == len(columns.flit_id) == len(columns.score) == len(columns.tags)


def test_every_batch_size_gives_each_query_the_reference_hits() -> None:
    """Small batches are scored a query at a time, larger ones padded to OpenBLAS's step of four (``_scores``):
    every size, with slots to spare past the points held, gives each query the reference's hits."""
    rng = np.random.default_rng(7)
    flits = random_flits(rng, 1500)  # past the first allocation: the columns grew once and have spare slots
    catalogue, reference = VectorCatalogue(DIM), MemoryIndex(DIM)
    for index in (catalogue, reference):
        index.upsert_many(flits)
    vectors = [rng.normal(size=DIM).astype(np.float32) for _ in range(10)]
    for n in range(1, 10):
        assert_same(catalogue.search_many(vectors[:n], 30, [None] * n), reference.search_many(vectors[:n], 30, [None] * n))


@pytest.mark.parametrize("seed", range(4))
def test_it_answers_as_qdrant_edge_searching_exactly(seed: int, tmp_path) -> None:  # noqa: ANN001
    """Edge before its graph is built scans every point: the same neighbours, the same scores."""
    rng = np.random.default_rng(100 + seed)
    flits = random_flits(rng, 300)
    catalogue = VectorCatalogue(DIM)
    catalogue.upsert_many(flits)
    with EdgeIndex(tmp_path / "flits", DIM) as edge:
        edge.upsert_many(flits)
        vectors = [rng.normal(size=DIM).astype(np.float32) for _ in range(8)]
        filters = [SearchFilter(exclude_authors=frozenset({"a1", "a2"}),
                                exclude_flit_ids=frozenset(f.flit_id for f in flits[:: 7]),
                                min_created_at=NOW - 5e4)] * 4 + [random_filter(rng, flits) for _ in range(4)]
        assert_same(catalogue.search_many(vectors, 50, filters), edge.search_many(vectors, 50, filters))


@pytest.mark.parametrize("seed", range(6))
def test_replacements_and_deletions_are_respected(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    flits = random_flits(rng, 150)
    catalogue, reference = VectorCatalogue(DIM), MemoryIndex(DIM)
    for step in range(6):
        batch = random_flits(rng, int(rng.integers(1, 60)))  # the same ids again: new vectors, authors, times
        gone = [f"f{i}" for i in rng.integers(0, 160, size=int(rng.integers(0, 40)))]
        for index in (catalogue, reference):
            index.upsert_many(flits if step == 0 else batch)
            index.delete_many(gone)
        assert len(catalogue) == catalogue.count() == reference.count()
        vectors = [rng.normal(size=DIM).astype(np.float32) for _ in range(5)]
        filters = [random_filter(rng, flits) for _ in range(5)]
        got = catalogue.search_many(vectors, 40, filters)
        assert_same(got, reference.search_many(vectors, 40, filters))
        assert not {h.flit_id for found in got for h in found} & (set(gone) - {f.flit_id for f in batch})
        for fid, f in catalogue.retrieve_many([f"f{i}" for i in range(160)]).items():
            want = reference.retrieve_many([fid])[fid]
            assert (f.author_id, f.created_at, f.tags, f.lang) == (want.author_id, want.created_at, want.tags, want.lang)
            np.testing.assert_allclose(f.vector, want.vector, atol=1e-6)


def test_a_deleted_slot_is_reused_and_excluded_authors_follow_a_replaced_author() -> None:
    v = np.eye(DIM, dtype=np.float32)
    catalogue = VectorCatalogue(DIM)
    catalogue.upsert_many([IndexedFlit("f1", "a", 1.0, v[0]), IndexedFlit("f2", "a", 1.0, v[1])])
    catalogue.delete_many(["f1", "nope"])
    catalogue.upsert_many([IndexedFlit("f3", "b", 1.0, v[0]), IndexedFlit("f2", "c", 1.0, v[1])])
    assert len(catalogue) == 2
    everyone = catalogue.search(v[0] + v[1], 10)
    assert sorted(h.flit_id for h in everyone) == ["f2", "f3"]
    assert [h.flit_id for h in catalogue.search(v[0] + v[1], 10, SearchFilter(exclude_authors=frozenset({"a"})))] \
        == [h.flit_id for h in everyone]  # f2 is c's now
    assert [h.flit_id for h in catalogue.search(v[1], 10, SearchFilter(exclude_authors=frozenset({"c"})))] == ["f3"]
    assert [h.flit_id for h in catalogue.search(v[1], 10, SearchFilter(author="c"))] == ["f2"]


def test_a_bad_vector_changes_nothing() -> None:
    catalogue = VectorCatalogue(DIM)
    good = IndexedFlit("f1", "a", 1.0, np.ones(DIM, dtype=np.float32))
    for bad in (np.zeros(DIM), np.full(DIM, np.nan), np.ones(DIM + 1)):
        with pytest.raises(ValueError):
            catalogue.upsert_many([good, IndexedFlit("f2", "a", 1.0, bad.astype(np.float32))])
    assert len(catalogue) == 0
    with pytest.raises(ValueError):
        catalogue.search_columns([np.zeros(DIM)], 5, [None])


def test_past_max_points_it_drops_its_vectors_and_past_max_columns_everything() -> None:
    rng = np.random.default_rng(1)
    catalogue = VectorCatalogue(DIM, max_points=10, max_columns=20)
    catalogue.upsert_many(random_flits(rng, 10))
    assert catalogue.exact and len(catalogue) == 10
    catalogue.upsert_many(random_flits(rng, 10))  # replacements: still 10
    assert catalogue.exact
    flits = random_flits(rng, 11)
    catalogue.upsert_many(flits)
    assert catalogue.usable and not catalogue.exact and len(catalogue) == 11
    with pytest.raises(IndexError_):
        catalogue.search(np.ones(DIM), 5)
    with pytest.raises(IndexError_):
        catalogue.retrieve_many(["f1"])
    # It still names every point's fields, also after a deletion and more points.
    catalogue.delete_many(["f2"])
    catalogue.upsert_many([IndexedFlit(f"g{i}", "z", NOW, np.ones(DIM, dtype=np.float32)) for i in range(9)])
    assert len(catalogue) == 19
    wanted = [f for f in flits if f.flit_id != "f2"][:3]
    cols = catalogue.columns_of(PointHits.from_lists([[point_key(f.flit_id) for f in wanted]], [[0.3, 0.2, 0.1]]))
    assert cols is not None and [(f, a, c) for f, a, c in zip(cols.flit_id, cols.author_id, cols.created_at)] == \
        [(f.flit_id, f.author_id, f.created_at) for f in wanted]
    assert catalogue.columns_of(PointHits.from_lists([[point_key("f2")]], [[0.5]])) is None  # deleted
    catalogue.upsert_many([IndexedFlit("g9", "z", NOW, np.ones(DIM, dtype=np.float32)),
                           IndexedFlit("g10", "z", NOW, np.ones(DIM, dtype=np.float32))])
    assert not catalogue.usable and len(catalogue) == 0
    with pytest.raises(IndexError_):
        catalogue.columns_of(PointHits.from_lists([[]], [[]]))


@pytest.mark.parametrize("seed", range(4))
def test_columns_of_names_every_point_through_writes_deletions_and_reused_slots(seed: int) -> None:
    """``columns_of`` finds slots through a sorted copy of its point table, made again only now and then:
    between copies, points added, deleted, replaced and slots reused must still be named as the truth
    (a point held: its own fields; one not held: None), and the hits' integer keys must stand for their ids."""
    rng = np.random.default_rng(300 + seed)
    catalogue = VectorCatalogue(DIM, max_points=10, max_columns=100_000)
    held: dict[str, IndexedFlit] = {}
    ids = [f"f{i}" for i in range(3000)]
    for step in range(40):
        # Big first steps make and use a copy; later small ones stay below the threshold for a new copy.
        fresh = random_flits(rng, int(rng.integers(1500, 2500)) if step < 2 else int(rng.integers(1, 80)),
                             authors=40, prefix="f")
        fresh = [IndexedFlit(ids[int(rng.integers(len(ids)))], f.author_id, f.created_at, f.vector, f.lang, f.tags)
                 for f in fresh]
        gone = [ids[int(i)] for i in rng.integers(0, len(ids), size=int(rng.integers(0, 60)))]
        catalogue.upsert_many(fresh)
        held.update({f.flit_id: f for f in fresh})
        catalogue.delete_many(gone)
        for fid in gone:
            held.pop(fid, None)
        live = sorted(held)
        wanted = [[live[int(i)] for i in row] for row in rng.integers(0, len(live), size=(3, 60))]
        cols = catalogue.columns_of(PointHits.from_lists([[point_key(f) for f in q] for q in wanted],
                                                         [[0.5] * 60 for _ in wanted]))
        assert cols is not None
        flat = [f for q in wanted for f in q]
        assert cols.flit_id.tolist() == flat
        assert cols.author_id.tolist() == [held[f].author_id for f in flat]
        assert cols.created_at.tolist() == [held[f].created_at for f in flat]
        assert cols.tags.tolist() == [tuple(held[f].tags) for f in flat]
        for ids_col, keys in ((cols.flit_id, cols.flit_key), (cols.author_id, cols.author_key)):
            pairs = set(zip(ids_col.tolist(), keys.tolist()))
            assert len(pairs) == len({i for i, _ in pairs}) == len({k for _, k in pairs})  # one key per id
        dead = [f for f in ids if f not in held]
        if dead:
            missing = [live[0], dead[int(rng.integers(len(dead)))]]
            assert catalogue.columns_of(PointHits.from_lists([[point_key(f) for f in missing]], [[0.5, 0.4]])) is None


def test_columns_of_names_the_later_of_two_flits_sharing_a_point_key(monkeypatch) -> None:  # noqa: ANN001
    """Two ids with one 64-bit key (~1 in 10^9 at 10^5 points): the later takes the key over, also when the
    sorted copy was made before it arrived."""
    import flitfeed.index.catalogue as module

    monkeypatch.setattr(module, "point_key", lambda fid: 42 if fid in ("f1", "f2") else point_key(fid))
    catalogue = VectorCatalogue(DIM, max_points=10)
    catalogue.upsert_many([IndexedFlit(f"g{i}", "a", NOW, np.ones(DIM, dtype=np.float32)) for i in range(3)]
                          + [IndexedFlit("f1", "a", NOW, np.ones(DIM, dtype=np.float32))])
    assert catalogue.columns_of(PointHits.from_lists([[42]], [[0.5]])).flit_id.tolist() == ["f1"]  # copy made
    catalogue.upsert_many([IndexedFlit("f2", "b", NOW, np.ones(DIM, dtype=np.float32))])
    assert catalogue.columns_of(PointHits.from_lists([[42]], [[0.5]])).flit_id.tolist() == ["f2"]


def test_empty_catalogue_and_zero_limit() -> None:
    catalogue = VectorCatalogue(DIM)
    assert catalogue.search_many([np.ones(DIM)] * 3, 5, [None] * 3) == [[], [], []]
    catalogue.upsert_many([IndexedFlit("f1", "a", 1.0, np.ones(DIM, dtype=np.float32))])
    assert catalogue.search_columns([np.ones(DIM)], 0, [None]).counts.tolist() == [0]
    assert catalogue.search_columns([], 5, []).counts.tolist() == []
    empty = VectorCatalogue(DIM)
    assert empty.columns_of(PointHits.from_lists([[point_key("f1")]], [[0.5]])) is None
    assert empty.columns_of(PointHits.from_lists([[]], [[]])).counts.tolist() == [0]


def test_top_k_rows_orders_ties_by_column_and_never_returns_more_than_the_row() -> None:
    scores = np.array([[0.5, 0.5, 0.9, 0.5]], dtype=np.float32)
    cols, vals = top_k_rows(scores, 3)
    # Which two of the three tied make the cut is arbitrary (as in the engines); they come in column order.
    assert cols[0, 0] == 2 and cols[0, 1] < cols[0, 2] and vals.tolist() == [[pytest.approx(0.9), 0.5, 0.5]]
    cols, _ = top_k_rows(scores, 10)
    assert cols.tolist() == [[2, 0, 1, 3]]


def test_hit_columns_round_trip() -> None:
    rng = np.random.default_rng(5)
    catalogue = VectorCatalogue(DIM)
    catalogue.upsert_many(random_flits(rng, 50))
    hits = catalogue.search_many([rng.normal(size=DIM) for _ in range(3)], 7, [None] * 3)
    assert hits_of(HitColumns.from_hits(hits).hits()) == hits_of(hits)


def passing(index: MemoryIndex, flt: SearchFilter | None) -> set[str]:
    """The flits ``flt`` lets through, by the reference index (every point: a query from the origin)."""
    return {h.flit_id for h in index.search(np.ones(DIM, dtype=np.float32), index.count() + 1, flt)}


@pytest.mark.parametrize("seed", range(6))
def test_narrowed_filters_let_the_same_points_through_writes_replacements_and_deletions(seed: int) -> None:
    rng = np.random.default_rng(600 + seed)
    catalogue, reference = VectorCatalogue(DIM), MemoryIndex(DIM)
    flits = random_flits(rng, 200)
    for step in range(5):
        batch = flits if step == 0 else random_flits(rng, int(rng.integers(1, 60)))  # ids again: replaced
        gone = [f"f{i}" for i in rng.integers(0, 210, size=int(rng.integers(0, 50)))]
        for index in (catalogue, reference):
            index.upsert_many(batch)
            index.delete_many(gone)
        for _ in range(20):
            flt = random_filter(rng, flits)
            if flt is not None and rng.random() < 0.5:  # authors and flits it does not hold, a bound below all
                flt = SearchFilter(exclude_authors=flt.exclude_authors | {"nobody"},
                                   exclude_flit_ids=flt.exclude_flit_ids | {"gone", *gone[:3]},
                                   min_created_at=NOW - 2e5 if flt.min_created_at is None else flt.min_created_at,
                                   author=flt.author, only_flit_ids=flt.only_flit_ids)
            narrowed = catalogue.narrowed(flt)
            assert passing(reference, narrowed) == passing(reference, flt)
            if narrowed is not None:  # and nothing is left that no point could fail
                held = {h.flit_id for h in reference.search(np.ones(DIM, dtype=np.float32), 10_000)}
                assert narrowed.exclude_flit_ids <= held
                # with their keys, for an engine that names points by key (None: no flit to exclude)
                assert narrowed.exclude_point_keys == (frozenset(map(point_key, narrowed.exclude_flit_ids)) or None)
                assert all(reference.search(np.ones(DIM), 1, SearchFilter(author=a)) for a in narrowed.exclude_authors)
                if narrowed.min_created_at is not None:
                    assert passing(reference, SearchFilter(min_created_at=narrowed.min_created_at)) != held


def test_narrowing_follows_the_points_held() -> None:
    v = np.eye(DIM, dtype=np.float32)
    catalogue = VectorCatalogue(DIM)
    assert catalogue.narrowed(SearchFilter(min_created_at=5.0)) is None  # nothing held: nothing could fail
    catalogue.upsert_many([IndexedFlit("old", "a", 10.0, v[0]), IndexedFlit("new", "b", 20.0, v[1])])
    bound = SearchFilter(min_created_at=15.0)
    assert catalogue.narrowed(bound) == bound
    catalogue.delete_many(["old"])
    assert catalogue.narrowed(bound) is None
    # a's only flit went: neither a nor that flit can fail a point now.
    assert catalogue.narrowed(SearchFilter(exclude_authors=frozenset({"a", "b"}), exclude_flit_ids=frozenset(
        {"old", "new"}))) == SearchFilter(exclude_authors=frozenset({"b"}), exclude_flit_ids=frozenset({"new"}),
                                          exclude_point_keys=frozenset({point_key("new")}))
    catalogue.upsert_many([IndexedFlit("new", "b", 12.0, v[1])])  # replaced by an older one
    assert catalogue.narrowed(bound) == bound
    catalogue.upsert_many([IndexedFlit("new", "b", 16.0, v[1])])  # and back
    assert catalogue.narrowed(bound) is None
    assert catalogue.narrowed(SearchFilter(author="zz")) == SearchFilter(author="zz")  # kept as asked
    assert catalogue.narrowed(None) is None


def test_an_edge_graph_finds_the_same_hits_with_narrowed_filters(tmp_path) -> None:  # noqa: ANN001
    """Why narrowing is only a saving: the engine's graph search visits the same points either way."""
    rng = np.random.default_rng(7)
    flits = random_flits(rng, 3000, authors=40)
    catalogue = VectorCatalogue(DIM)
    catalogue.upsert_many(flits)
    with EdgeIndex(tmp_path / "flits", DIM, indexing_threshold_kb=10) as edge:
        edge.upsert_many(flits)
        edge.maybe_optimize(0)
        assert edge.unindexed_count() == 0  # searched through its graph
        vectors = [rng.normal(size=DIM).astype(np.float32) for _ in range(24)]
        filters = [SearchFilter(exclude_authors=frozenset({f"a{int(rng.integers(40))}", f"u{i}"}),
                                exclude_flit_ids=frozenset(f.flit_id for f in rng.choice(flits, size=30)) | {"x"},
                                min_created_at=NOW - 2e5) for i in range(24)]
        narrowed = [catalogue.narrowed(f) for f in filters]
        assert all(n is not None and n.min_created_at is None and len(n.exclude_authors) == 1 for n in narrowed)
        full, less = edge.search_points_many(vectors, 100, filters), edge.search_points_many(vectors, 100, narrowed)
        assert full.counts.tolist() == less.counts.tolist() == [100] * 24
        assert full.point.tolist() == less.point.tolist()
        assert full.score.tolist() == less.score.tolist()


# --- the vector source ------------------------------------------------------------------------------------

class CountingIndex(MemoryIndex):
    """The reference index, counting the searches that reach it."""

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.searches = 0
        self.point_searches = 0

    def search_many(self, vectors, limit, filters):  # noqa: ANN001, ANN201
        self.searches += 1
        return super().search_many(vectors, limit, filters)

    def search_points_many(self, vectors, limit, filters):  # noqa: ANN001, ANN201
        self.point_searches += 1
        return PointHits.from_hits(MemoryIndex.search_many(self, vectors, limit, filters))


def queries(rng: np.random.Generator, flits: list[IndexedFlit], n: int) -> list[FeedQuery]:
    out = []
    for u in range(n):
        taste = rng.normal(size=DIM).astype(np.float32)
        out.append(FeedQuery(user_id=f"a{u % 12}", k=10, now=NOW, taste=taste / np.linalg.norm(taste),
                             seen=frozenset(f.flit_id for f in rng.choice(flits, size=10)),
                             muted_authors=frozenset({f"a{int(rng.integers(12))}"}), positives=3))
    return out


def candidates_of(batch) -> list[tuple[int, str, str, float, tuple[str, ...], str | None]]:  # noqa: ANN001
    return [(int(q), f, a, float(c), t, lang) for q, f, a, c, t, lang in
            zip(batch.query, batch.flit_id, batch.author_id, batch.created_at, batch.tags, batch.lang)]


def test_the_source_searches_the_catalogue_while_it_mirrors_the_index_and_the_index_otherwise() -> None:
    rng = np.random.default_rng(9)
    flits = random_flits(rng, 300)
    index, catalogue = CountingIndex(DIM), VectorCatalogue(DIM)
    index.upsert_many(flits)
    catalogue.upsert_many(flits)
    source = VectorNeighboursSource(index, 30, max_age_s=5e4, catalogue=catalogue)
    plain = VectorNeighboursSource(index, 30, max_age_s=5e4)
    qs = queries(rng, flits, 9)
    got = source.fetch_batch(qs)
    assert index.searches == 0  # answered by the catalogue
    want = plain.fetch_batch(qs)
    assert index.searches == 1
    assert candidates_of(got) == candidates_of(want)
    np.testing.assert_allclose(got.similarity, want.similarity, atol=1e-5)
    assert [[c.flit_id for c in cs] for cs in source.fetch_many(qs)] == [[c.flit_id for c in cs] for cs in
                                                                        plain.fetch_many(qs)]
    # The index got a point the catalogue missed: the index answers, with that point.
    extra = IndexedFlit("extra", "nobody", NOW, qs[0].taste)
    index.upsert_many([extra])
    before = index.searches
    assert "extra" in set(source.fetch_batch(qs[:1]).flit_id.tolist())
    assert index.searches == before + 1
    # Mirrored again (a replaced point and a deletion applied to both): the catalogue answers again.
    for i in (index, catalogue):
        i.upsert_many([extra, IndexedFlit("f3", "a5", NOW, -qs[1].taste)])
        i.delete_many(["f4"])
    before = index.searches
    assert candidates_of(source.fetch_batch(qs)) == candidates_of(plain.fetch_batch(qs))
    assert index.searches == before + 1  # plain's search only


def test_the_source_leaves_small_batches_over_a_large_catalogue_to_the_index() -> None:
    rng = np.random.default_rng(11)
    flits = random_flits(rng, 100)
    index, catalogue = CountingIndex(DIM), VectorCatalogue(DIM)
    index.upsert_many(flits)
    catalogue.upsert_many(flits)
    source = VectorNeighboursSource(index, 20, catalogue=catalogue, max_scan_per_query=40)
    plain = VectorNeighboursSource(index, 20)
    qs = queries(rng, flits, 2)
    got = source.fetch_batch(qs)  # 100 points > 40 per query × 2: the index's points, the catalogue's fields
    assert (index.point_searches, index.searches) == (1, 0)
    assert candidates_of(got) == candidates_of(plain.fetch_batch(qs))
    source.fetch_batch(queries(rng, flits, 3))  # 100 <= 120: the catalogue alone
    assert (index.point_searches, index.searches) == (1, 1)
    # An unusable catalogue (outgrown) is never asked: the index answers with payloads.
    small = VectorCatalogue(DIM, max_points=40, max_columns=50)
    small.upsert_many(flits[:60])
    assert not small.usable
    VectorNeighboursSource(index, 20, catalogue=small).fetch_batch(queries(rng, flits, 4))
    assert (index.point_searches, index.searches) == (1, 2)


def test_past_max_points_the_source_searches_the_index_for_points_and_the_catalogue_names_them() -> None:
    rng = np.random.default_rng(12)
    flits = random_flits(rng, 200)
    index, catalogue = CountingIndex(DIM), VectorCatalogue(DIM, max_points=50)
    index.upsert_many(flits)
    catalogue.upsert_many(flits)
    assert not catalogue.exact
    source, plain = VectorNeighboursSource(index, 25, catalogue=catalogue), VectorNeighboursSource(index, 25)
    qs = queries(rng, flits, 7)
    got = source.fetch_batch(qs)
    assert (index.point_searches, index.searches) == (1, 0)
    want = plain.fetch_batch(qs)
    assert candidates_of(got) == candidates_of(want)
    np.testing.assert_allclose(got.similarity, want.similarity)
    # As many points, but one the catalogue does not hold: the index's payloads answer, with that point.
    extra = IndexedFlit("extra", "nobody", NOW, qs[0].taste)
    index.upsert_many([extra])
    catalogue.upsert_many([IndexedFlit("other", "nobody", NOW, qs[0].taste)])
    got = source.fetch_batch(qs[:1])
    assert "extra" in set(got.flit_id.tolist()) and index.searches == 2


@pytest.mark.parametrize("seed", range(6))
def test_feeds_are_the_same_with_the_catalogue(seed: int) -> None:
    from tests.unit.ranker.test_ranker_batch import World, assert_same_feeds
    from flitfeed.ranker.feeds import build_feed_pipeline

    world = World(300 + seed)
    params = world.params()
    catalogue = VectorCatalogue(world.index.dim)
    catalogue.upsert_many(world.flits)
    with_catalogue = build_feed_pipeline(world.index, world.engagement, world.recent, params, world.coengagement,
                                         model=world.model, affinity=world.affinity, catalogue=catalogue)
    queries_ = world.queries(int(world.rng.integers(1, 20)))
    assert_same_feeds(with_catalogue.run_many(queries_), world.pipeline(params).run_many(queries_))
    assert_same_feeds(with_catalogue.run_many(queries_, columnar=False),
                      world.pipeline(params).run_many(queries_, columnar=False))


def test_ranker_params_default_limit_fits_the_catalogue_search() -> None:
    """The source asks for ``candidates_per_source`` hits: more than a small catalogue holds is fine."""
    rng = np.random.default_rng(2)
    flits = random_flits(rng, 20)
    catalogue = VectorCatalogue(DIM)
    catalogue.upsert_many(flits)
    found = catalogue.search_columns([rng.normal(size=DIM)], RankerParams().candidates_per_source, [None])
    assert found.counts.tolist() == [20]


def test_edge_approximate_count_follows_upserts_replacements_deletions_and_optimizes(tmp_path) -> None:  # noqa: ANN001
    """The source checks the mirror against it once per batch: it must be the exact count, only cheaper."""
    rng = np.random.default_rng(4)
    with EdgeIndex(tmp_path / "flits", DIM, indexing_threshold_kb=10) as edge:
        def both() -> tuple[int, int]:
            return edge.count(approximate=True), edge.count()

        edge.upsert_many(random_flits(rng, 400))
        assert both() == (400, 400)
        edge.maybe_optimize(0)
        edge.upsert_many(random_flits(rng, 100) + random_flits(rng, 30, prefix="g"))  # 100 replaced, 30 new
        assert both() == (430, 430)
        edge.delete_many([f"f{i}" for i in range(0, 400, 3)] + ["nope"])
        assert both() == (296, 296)
        edge.maybe_optimize(0)
        assert both() == (296, 296)
