"""Contract tests for the vector-index backends.

Every ``test_contract_*`` runs over both backends: :class:`EdgeIndex` on a
temporary directory and :class:`ServerIndex` on qdrant-client's in-memory local
mode. Results are compared against exact cosine top-k computed with numpy, so
a wrong filter, ordering or payload mapping fails. Edge-only tests cover
persistence, corruption detection and the manual optimizer.
"""

from __future__ import annotations

import json
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from qdrant_client import QdrantClient

from flitfeed.index import IndexedFlit, IndexError_, SearchFilter, VectorIndex, open_index
from flitfeed.index.base import _NAMESPACE, key_of_uuid, point_key, point_uuid
from flitfeed.index.edge import MARKER_NAME, EdgeIndex
from flitfeed.index.server import ServerIndex
from flitfeed.settings import IndexConfig

DIM = 16
T0 = 1_700_000_000.0
AUTHORS = ("alice", "bob", "carol", "dave", "erin")
LANGS = ("en", "de", None)


def unit_vectors(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    v = rng.normal(size=(n, dim)).astype(np.float32)
    normalised: np.ndarray = v / np.linalg.norm(v, axis=1, keepdims=True)
    return normalised


def make_flits(n: int, seed: int = 7, prefix: str = "f", dim: int = DIM) -> list[IndexedFlit]:
    vectors = unit_vectors(np.random.default_rng(seed), n, dim)
    return [
        IndexedFlit(
            flit_id=f"{prefix}{i}",
            author_id=AUTHORS[i % len(AUTHORS)],
            created_at=T0 + 60.0 * i + 0.25,
            vector=vectors[i],
            lang=LANGS[i % len(LANGS)],
            tags=tuple(f"t{j}" for j in range(i % 3)),
        )
        for i in range(n)
    ]


def meta(flit: IndexedFlit) -> tuple[object, ...]:
    """Everything but the vector (numpy arrays do not compare with ==)."""
    return (flit.flit_id, flit.author_id, flit.created_at, flit.lang, flit.tags)


def exact_top(
    flits: Sequence[IndexedFlit],
    query: np.ndarray,
    k: int,
    keep: Callable[[IndexedFlit], bool] = lambda f: True,
) -> list[tuple[str, float]]:
    """Brute-force cosine top-k (ids and scores) among the flits ``keep`` accepts."""
    pool = [f for f in flits if keep(f)]
    if not pool:
        return []
    scores = np.stack([f.vector for f in pool]) @ query
    order = np.argsort(-scores, kind="stable")[:k]
    return [(pool[i].flit_id, float(scores[i])) for i in order]


def assert_same_ranking(index: VectorIndex, flits: Sequence[IndexedFlit], query: np.ndarray, k: int,
                        flt: SearchFilter | None = None,
                        keep: Callable[[IndexedFlit], bool] = lambda f: True) -> None:
    hits = index.search(query, k, flt)
    expected = exact_top(flits, query, k, keep)
    assert [h.flit_id for h in hits] == [fid for fid, _ in expected]
    np.testing.assert_allclose([h.score for h in hits], [s for _, s in expected], atol=1e-5)


# --------------------------------------------------------------------------- fixtures


#: The memory-lean embedded configuration: int8 copies searched, originals and payloads on disk.
LEAN = {"quantization": "int8", "oversampling": 2.0, "on_disk": True}


@pytest.fixture(params=["edge", "edge-uuid", "edge-lean", "server", "memory"])
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorIndex]:
    idx: VectorIndex
    if request.param == "edge":
        idx = EdgeIndex(tmp_path / "idx", DIM)
    elif request.param == "edge-uuid":  # a shard created before integer point ids (UUID-named points)
        idx = EdgeIndex(tmp_path / "idx", DIM, point_ids="uuid")
    elif request.param == "edge-lean":
        idx = EdgeIndex(tmp_path / "idx", DIM, **LEAN)
    elif request.param == "memory":  # the evaluator's exact numpy backend (issue 4)
        from flitfeed.index.memory import MemoryIndex

        idx = MemoryIndex(DIM)
    else:
        idx = ServerIndex(QdrantClient(":memory:"), "flits", DIM)
    yield idx
    idx.close()


@pytest.fixture
def corpus() -> list[IndexedFlit]:
    return make_flits(200)


@pytest.fixture
def filled(index: VectorIndex, corpus: list[IndexedFlit]) -> VectorIndex:
    index.upsert_many(corpus)
    return index


def queries(n: int = 8, seed: int = 99) -> np.ndarray:
    return unit_vectors(np.random.default_rng(seed), n)


# --------------------------------------------------------------------------- contract


def test_contract_implements_protocol(index: VectorIndex) -> None:
    assert isinstance(index, VectorIndex)
    assert index.dim == DIM
    assert index.count() == 0
    assert index.search(queries(1)[0], 10) == []


def test_only_the_embedded_engine_is_maintained_by_its_process(index: VectorIndex) -> None:
    from flitfeed.index.base import MaintainedIndex

    assert isinstance(index, MaintainedIndex) == isinstance(index, EdgeIndex)


def test_contract_search_matches_exact_cosine_topk(filled: VectorIndex, corpus: list[IndexedFlit]) -> None:
    assert filled.count() == len(corpus)
    for q in queries():
        assert_same_ranking(filled, corpus, q, 10)


def test_contract_hits_carry_the_payload(filled: VectorIndex, corpus: list[IndexedFlit]) -> None:
    by_id = {f.flit_id: f for f in corpus}
    hits = filled.search(queries(1)[0], len(corpus))
    assert len(hits) == len(corpus)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    for hit in hits:
        flit = by_id[hit.flit_id]
        assert (hit.author_id, hit.created_at, hit.lang, hit.tags) == (
            flit.author_id, flit.created_at, flit.lang, flit.tags,
        )


def test_contract_query_equal_to_a_point_finds_it_first(filled: VectorIndex, corpus: list[IndexedFlit]) -> None:
    for flit in corpus[:20]:
        top = filled.search(flit.vector, 1)[0]
        assert top.flit_id == flit.flit_id
        assert top.score == pytest.approx(1.0, abs=1e-5)


def test_contract_scores_are_cosine_not_dot(filled: VectorIndex, corpus: list[IndexedFlit]) -> None:
    q = queries(1)[0]
    unit = filled.search(q, 10)
    scaled = filled.search(3.0 * q, 10)
    assert [h.flit_id for h in scaled] == [h.flit_id for h in unit]
    np.testing.assert_allclose([h.score for h in scaled], [h.score for h in unit], atol=1e-5)


def test_contract_limit(filled: VectorIndex, corpus: list[IndexedFlit]) -> None:
    q = queries(1)[0]
    assert len(filled.search(q, 3)) == 3
    assert len(filled.search(q, 10_000)) == len(corpus)
    assert filled.search(q, 0) == []


def test_contract_upsert_is_idempotent_and_latest_wins(filled: VectorIndex, corpus: list[IndexedFlit]) -> None:
    filled.upsert_many(corpus[:50])
    assert filled.count() == len(corpus)

    new_vector = unit_vectors(np.random.default_rng(5), 1)[0]
    changed = replace(corpus[3], author_id="zed", created_at=T0 - 1.0, vector=new_vector, lang="fr", tags=("x",))
    filled.upsert_many([changed])
    assert filled.count() == len(corpus)

    top = filled.search(new_vector, 1)[0]
    assert (top.flit_id, top.author_id, top.created_at, top.lang, top.tags) == ("f3", "zed", T0 - 1.0, "fr", ("x",))
    stored = filled.retrieve_many(["f3"])["f3"]
    assert meta(stored) == meta(changed)
    np.testing.assert_allclose(stored.vector, new_vector, atol=1e-6)
    updated = [changed if f.flit_id == "f3" else f for f in corpus]
    for q in [corpus[3].vector, *queries(4)]:
        assert_same_ranking(filled, updated, q, 10)
    assert filled.search(new_vector, 5, SearchFilter(author="zed"))[0].flit_id == "f3"
    assert all(h.flit_id != "f3" for h in filled.search(new_vector, 200, SearchFilter(author=corpus[3].author_id)))


def test_contract_duplicate_ids_in_one_batch_last_wins(index: VectorIndex) -> None:
    a, b = make_flits(2)
    index.upsert_many([a, replace(b, flit_id=a.flit_id, author_id="second")])
    assert index.count() == 1
    stored = index.retrieve_many([a.flit_id])[a.flit_id]
    assert stored.author_id == "second"
    np.testing.assert_allclose(stored.vector, b.vector, atol=1e-6)


FILTER_CASES: dict[str, tuple[SearchFilter, Callable[[IndexedFlit], bool]]] = {
    "none": (SearchFilter(), lambda f: True),
    "exclude_authors": (
        SearchFilter(exclude_authors=frozenset({"alice", "carol"})),
        lambda f: f.author_id not in {"alice", "carol"},
    ),
    "exclude_unknown_author": (SearchFilter(exclude_authors=frozenset({"nobody"})), lambda f: True),
    "exclude_flit_ids": (
        SearchFilter(exclude_flit_ids=frozenset(f"f{i}" for i in range(0, 200, 3))),
        lambda f: int(f.flit_id[1:]) % 3 != 0,
    ),
    # Inclusive bound exactly on flit f120's timestamp.
    "min_created_at": (SearchFilter(min_created_at=T0 + 60.0 * 120 + 0.25), lambda f: f.created_at >= T0 + 7200.25),
    "author": (SearchFilter(author="bob"), lambda f: f.author_id == "bob"),
    "only_flit_ids": (
        SearchFilter(only_flit_ids=frozenset({"f3", "f77", "f150", "nope"})),
        lambda f: f.flit_id in {"f3", "f77", "f150"},
    ),
    "only_and_exclude": (
        SearchFilter(only_flit_ids=frozenset({"f3", "f77", "f150"}), exclude_flit_ids=frozenset({"f77"})),
        lambda f: f.flit_id in {"f3", "f150"},
    ),
    "author_and_recent": (
        SearchFilter(author="dave", min_created_at=T0 + 60.0 * 100),
        lambda f: f.author_id == "dave" and f.created_at >= T0 + 6000.0,
    ),
    "exclusions_and_recent": (
        SearchFilter(
            exclude_authors=frozenset({"erin"}),
            exclude_flit_ids=frozenset({"f150", "f151", "f152", "f199"}),
            min_created_at=T0 + 60.0 * 50,
        ),
        lambda f: f.author_id != "erin" and f.flit_id not in {"f150", "f151", "f152", "f199"}
        and f.created_at >= T0 + 3000.0,
    ),
    "all_fields": (
        SearchFilter(
            exclude_authors=frozenset({"alice"}),
            exclude_flit_ids=frozenset({"f2", "f7", "f12"}),
            min_created_at=T0,
            author="carol",
        ),
        lambda f: f.author_id == "carol" and f.flit_id not in {"f2", "f7", "f12"},
    ),
    "author_also_excluded": (
        SearchFilter(author="bob", exclude_authors=frozenset({"bob"})),
        lambda f: False,
    ),
    "nothing_recent_enough": (SearchFilter(min_created_at=T0 + 1e9), lambda f: False),
}


@pytest.mark.parametrize("case", list(FILTER_CASES))
def test_contract_filters(filled: VectorIndex, corpus: list[IndexedFlit], case: str) -> None:
    flt, keep = FILTER_CASES[case]
    allowed = {f.flit_id for f in corpus if keep(f)}
    everything = filled.search(queries(1)[0], len(corpus), flt)
    assert {h.flit_id for h in everything} == allowed
    for q in queries(4):
        assert_same_ranking(filled, corpus, q, 10, flt, keep)


def test_contract_search_many_answers_each_query_as_search_does(filled: VectorIndex) -> None:
    cases = [FILTER_CASES[c][0] for c in ("none", "exclude_flit_ids", "author", "nothing_recent_enough")]
    qs = list(queries(len(cases), seed=5))
    batched = filled.search_many(qs, 10, cases)
    assert len(batched) == len(cases)
    for q, flt, hits in zip(qs, cases, batched):
        one = filled.search(q, 10, flt)
        assert [h.flit_id for h in hits] == [h.flit_id for h in one]
        np.testing.assert_allclose([h.score for h in hits], [h.score for h in one], atol=1e-5)
    assert filled.search_many([], 10, []) == []


def test_contract_search_points_many_names_the_hits_of_search_many(filled: VectorIndex) -> None:
    cases = [FILTER_CASES[c][0] for c in ("none", "exclude_flit_ids", "author", "nothing_recent_enough")]
    qs = list(queries(len(cases), seed=6))
    points = filled.search_points_many(qs, 10, cases)
    hits = filled.search_many(qs, 10, cases)
    assert points.counts.tolist() == [len(h) for h in hits]
    assert points.point.tolist() == [point_key(h.flit_id) for found in hits for h in found]
    np.testing.assert_allclose(points.score, [h.score for found in hits for h in found], atol=1e-5)
    assert filled.search_points_many([], 10, []).counts.tolist() == []


def test_contract_retrieve_many(filled: VectorIndex, corpus: list[IndexedFlit]) -> None:
    wanted = ["f0", "f17", "f17", "missing", "f199"]
    got = filled.retrieve_many(wanted)
    assert set(got) == {"f0", "f17", "f199"}
    by_id = {f.flit_id: f for f in corpus}
    for fid, stored in got.items():
        original = by_id[fid]
        assert stored.vector.dtype == np.float32 and stored.vector.shape == (DIM,)
        np.testing.assert_allclose(stored.vector, original.vector, atol=1e-6)
        assert meta(stored) == meta(original)
    assert filled.retrieve_many([]) == {}
    assert filled.retrieve_many(["nope"]) == {}


def test_contract_delete_many(filled: VectorIndex, corpus: list[IndexedFlit]) -> None:
    gone = [f.flit_id for f in corpus[:40]]
    filled.delete_many(gone + ["never-existed"])
    assert filled.count() == len(corpus) - 40
    assert filled.retrieve_many(gone) == {}
    rest = corpus[40:]
    for q in queries(4):
        assert_same_ranking(filled, rest, q, 10)
    assert filled.search(corpus[0].vector, 1)[0].flit_id != corpus[0].flit_id
    filled.delete_many([])
    assert filled.count() == len(rest)


def test_contract_rejects_bad_vectors(index: VectorIndex) -> None:
    good = make_flits(1)[0]
    for bad in (np.ones(DIM + 1, np.float32), np.full(DIM, np.nan, np.float32), np.zeros(DIM, np.float32)):
        with pytest.raises(ValueError):
            index.upsert_many([replace(good, vector=bad)])
        with pytest.raises(ValueError):
            index.search(bad, 5)
    assert index.count() == 0


def test_contract_closed_index_raises(index: VectorIndex) -> None:
    index.close()
    with pytest.raises(IndexError_):
        index.count()
    with pytest.raises(IndexError_):
        index.search(queries(1)[0], 5)
    index.close()  # idempotent


# --------------------------------------------------------------------------- server-only


def test_server_refuses_collection_of_other_dim() -> None:
    client = QdrantClient(":memory:")
    ServerIndex(client, "flits", DIM).close()
    with pytest.raises(IndexError_, match="16-d"):
        ServerIndex(client, "flits", 8)
    # The caller's client is not closed by the index.
    assert ServerIndex(client, "flits", DIM).count() == 0


def test_server_persists_in_local_path_mode(tmp_path: Path) -> None:
    flits = make_flits(30)
    client = QdrantClient(path=str(tmp_path / "q"))
    ServerIndex(client, "flits", DIM).upsert_many(flits)
    client.close()
    client = QdrantClient(path=str(tmp_path / "q"))
    idx = ServerIndex(client, "flits", DIM)
    assert idx.count() == 30
    assert_same_ranking(idx, flits, queries(1)[0], 5)
    client.close()


# --------------------------------------------------------------------------- factory


def test_factory_selects_backend(tmp_path: Path) -> None:
    server = open_index(IndexConfig(qdrant_url=":memory:", qdrant_api_key=""), DIM, data_dir=tmp_path)
    assert isinstance(server, ServerIndex)
    server.close()
    edge = open_index(IndexConfig(qdrant_url=""), DIM, data_dir=tmp_path, name="test")
    assert isinstance(edge, EdgeIndex)
    assert edge.path == tmp_path / "index" / "test"
    edge.close()
    assert (tmp_path / "index" / "test" / MARKER_NAME).is_file()


def test_factory_builds_the_lean_edge_config_from_settings(tmp_path: Path) -> None:
    lean_cfg = IndexConfig(qdrant_url="", index_quantization="int8", index_oversampling=3.0, index_on_disk=True)
    lean = open_index(lean_cfg, DIM, data_dir=tmp_path, name="lean")
    plain = open_index(IndexConfig(qdrant_url=""), DIM, data_dir=tmp_path, name="plain")
    assert isinstance(lean, EdgeIndex) and isinstance(plain, EdgeIndex)
    assert lean.build_options["quantization"] == "int8" and lean.build_options["on_disk"] is True
    assert plain.build_options["quantization"] is None and plain.build_options["on_disk"] is None
    lean.close()
    plain.close()


def test_off_process_rebuild_of_a_lean_index_keeps_its_storage_and_exact_results(tmp_path: Path) -> None:
    # The child optimizer must open the copy as the live index was opened; IndexRebuilder
    # passes the index's build options, so the rebuilt graph has the int8 copies and on-disk originals.
    from flitfeed.index.edge_optimizer import optimize_command, optimize_copy, snapshot_copy

    flits = make_flits(2000)
    with EdgeIndex(tmp_path / "live", DIM, indexing_threshold_kb=1, hnsw_ef=128, **LEAN) as idx:
        idx.upsert_many(flits)
        cmd = optimize_command(idx.path, DIM, **idx.build_options)
        assert "--on-disk" in cmd and cmd[cmd.index("--quantization") + 1] == "int8"
        copy = snapshot_copy(idx, tmp_path / "copy")
        assert optimize_copy(copy, DIM, **idx.build_options) is True
        idx.swap_in(copy)
        assert idx.unindexed_count() == 0
        for q in queries():
            assert_same_ranking(idx, flits, q, 10)


# --------------------------------------------------------------------------- edge-only


@pytest.fixture
def edge_path(tmp_path: Path) -> Path:
    return tmp_path / "edge"


def closed_edge_with(path: Path, flits: Sequence[IndexedFlit]) -> None:
    with EdgeIndex(path, DIM) as idx:
        idx.upsert_many(flits)


def test_edge_persists_across_close_and_reopen(edge_path: Path, corpus: list[IndexedFlit]) -> None:
    with EdgeIndex(edge_path, DIM) as idx:
        idx.upsert_many(corpus)
        idx.delete_many(["f5"])
        before = [idx.search(q, 10) for q in queries()]
    with EdgeIndex(edge_path, DIM, create=False) as idx:
        assert idx.count() == len(corpus) - 1
        assert [idx.search(q, 10) for q in queries()] == before
        got = idx.retrieve_many([f.flit_id for f in corpus])
        assert set(got) == {f.flit_id for f in corpus} - {"f5"}
        for f in corpus[6:]:
            np.testing.assert_allclose(got[f.flit_id].vector, f.vector, atol=1e-6)


def test_edge_lean_config_is_exact_after_indexing_and_persists(edge_path: Path) -> None:
    # After the HNSW graph and the int8 copies are built, oversampling + rescoring with the
    # on-disk originals still return the exact top 10, with exact cosine scores, before and after a reopen.
    flits = make_flits(2000)
    with EdgeIndex(edge_path, DIM, indexing_threshold_kb=1, hnsw_ef=128, **LEAN) as idx:
        idx.upsert_many(flits)
        assert idx.maybe_optimize(0) is True and idx.unindexed_count() == 0
        for q in queries():
            assert_same_ranking(idx, flits, q, 10)
        before = [idx.search(q, 10) for q in queries()]
    with EdgeIndex(edge_path, DIM, create=False, hnsw_ef=128, **LEAN) as idx:
        assert [idx.search(q, 10) for q in queries()] == before
    with pytest.raises(ValueError):
        EdgeIndex(edge_path.parent / "other", DIM, oversampling=2.0)  # oversampling needs quantization


def test_edge_replays_wal_after_unclean_shutdown(edge_path: Path, corpus: list[IndexedFlit]) -> None:
    idx = EdgeIndex(edge_path, DIM)
    idx.upsert_many(corpus)
    # Simulate a crash: release the engine without our close() bookkeeping.
    shard = idx._shard
    assert shard is not None
    shard.close()
    idx._shard = None
    with EdgeIndex(edge_path, DIM, create=False) as idx:
        assert idx.count() == len(corpus)
        assert_same_ranking(idx, corpus, queries(1)[0], 10)


def test_edge_create_false_on_missing_path(edge_path: Path) -> None:
    with pytest.raises(IndexError_, match="no index"):
        EdgeIndex(edge_path, DIM, create=False)
    assert not edge_path.exists()


def test_edge_second_open_of_same_path_fails(edge_path: Path) -> None:
    with EdgeIndex(edge_path, DIM), pytest.raises(IndexError_, match="another process"):
        EdgeIndex(edge_path, DIM)


def test_edge_dim_mismatch(edge_path: Path) -> None:
    closed_edge_with(edge_path, make_flits(10))
    with pytest.raises(IndexError_, match="16-d vectors, asked for 8-d"):
        EdgeIndex(edge_path, 8)


def _remove(path: Path) -> None:
    shutil.rmtree(path)


def _only(pattern: str, root: Path) -> list[Path]:
    found = sorted(root.glob(pattern))
    assert found, f"test relies on engine file layout: nothing matches {pattern}"
    return found


def corrupt_garbage(path: Path) -> None:
    _remove(path)
    path.mkdir()
    (path / "data.bin").write_bytes(b"\x00garbage")


def corrupt_drop_shard(path: Path) -> None:
    _remove(path / "segments")
    _remove(path / "wal")


def corrupt_drop_segments(path: Path) -> None:
    _remove(path / "segments")


def corrupt_marker(path: Path) -> None:
    (path / MARKER_NAME).write_text("{not json")


def corrupt_no_marker(path: Path) -> None:
    (path / MARKER_NAME).unlink()


def corrupt_edge_config(path: Path) -> None:
    (path / "edge_config.json").write_text("{")


def corrupt_truncated_id_tracker(path: Path) -> None:
    # Without the WAL to replay, the engine would report 0 points.
    _remove(path / "wal")
    (path / "wal").mkdir()
    for f in _only("segments/*/mutable_id_tracker.mappings", path):
        with open(f, "r+b") as fh:
            fh.truncate(10)


def corrupt_truncated_vectors(path: Path) -> None:
    _remove(path / "wal")
    (path / "wal").mkdir()
    for f in _only("segments/*/vector_storage/vectors/chunk_0.mmap", path):
        with open(f, "r+b") as fh:
            fh.truncate(10)


def corrupt_missing_segment_state(path: Path) -> None:
    for f in _only("segments/*/segment.json", path):
        f.unlink()


@pytest.mark.parametrize(
    "corrupt",
    [
        corrupt_drop_shard,
        corrupt_drop_segments,
        corrupt_marker,
        corrupt_no_marker,
        corrupt_edge_config,
        corrupt_truncated_id_tracker,
        corrupt_truncated_vectors,
        corrupt_missing_segment_state,
    ],
)
def test_edge_corruption_is_detected(edge_path: Path, corrupt: Callable[[Path], None]) -> None:
    closed_edge_with(edge_path, make_flits(50))
    corrupt(edge_path)
    with pytest.raises(IndexError_):
        EdgeIndex(edge_path, DIM)
    # The documented recovery: destroy, then a fresh index opens empty.
    EdgeIndex.destroy(edge_path)
    with EdgeIndex(edge_path, DIM) as idx:
        assert idx.count() == 0


def test_edge_refuses_a_directory_that_is_not_an_index(edge_path: Path) -> None:
    closed_edge_with(edge_path, make_flits(50))
    corrupt_garbage(edge_path)
    with pytest.raises(IndexError_, match="not a flitfeed index"):
        EdgeIndex(edge_path, DIM)
    # Nor will it wipe it: that is for whoever put the files there.
    with pytest.raises(IndexError_):
        EdgeIndex.destroy(edge_path)
    assert (edge_path / "data.bin").exists()


def test_edge_destroy_refuses_unrelated_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(IndexError_):
        EdgeIndex.destroy(tmp_path)
    assert (tmp_path / "notes.txt").exists()
    EdgeIndex.destroy(tmp_path / "missing")  # no-op


def test_edge_searchable_before_and_after_optimize(edge_path: Path) -> None:
    flits = make_flits(2000)
    with EdgeIndex(edge_path, DIM, indexing_threshold_kb=1, hnsw_ef=128) as idx:
        idx.upsert_many(flits)
        assert idx.unindexed_count() == len(flits)
        for q in queries():
            assert_same_ranking(idx, flits, q, 10)
        assert idx.maybe_optimize(len(flits) + 1) is False
        assert idx.maybe_optimize(0) is True
        assert idx.unindexed_count() == 0
        for q in queries():
            assert_same_ranking(idx, flits, q, 10)
        assert_same_ranking(idx, flits, queries(1)[0], 10, SearchFilter(author="alice"),
                            lambda f: f.author_id == "alice")

        # New points after the optimize are searchable at once (brute force).
        late = make_flits(20, seed=8, prefix="late")
        idx.upsert_many(late)
        assert idx.unindexed_count() == len(late)
        for f in late:
            assert idx.search(f.vector, 1)[0].flit_id == f.flit_id
        assert idx.maybe_optimize(1000) is False
    with EdgeIndex(edge_path, DIM, create=False) as idx:
        assert idx.count() == len(flits) + len(late)


def test_edge_optimize_concurrent_with_search(edge_path: Path) -> None:
    flits = make_flits(4000)
    qs = queries(16)
    expected = [[fid for fid, _ in exact_top(flits, q, 10)] for q in qs]
    with EdgeIndex(edge_path, DIM, indexing_threshold_kb=1, hnsw_ef=128) as idx:
        idx.upsert_many(flits)
        outcome: dict[str, object] = {}
        started = threading.Event()

        def optimize() -> None:
            started.set()
            try:
                outcome["result"] = idx.maybe_optimize(0)
            except BaseException as exc:  # reported to the main thread below
                outcome["error"] = exc

        worker = threading.Thread(target=optimize)
        worker.start()
        started.wait()
        done = 0
        while worker.is_alive() or done < len(qs):
            i = done % len(qs)
            hits = idx.search(qs[i], 10)
            assert [h.flit_id for h in hits] == expected[i]
            assert idx.count() == len(flits)
            done += 1
        worker.join()
        assert "error" not in outcome, outcome
        assert outcome["result"] is True
        assert idx.unindexed_count() == 0
        for q, exp in zip(qs, expected, strict=True):
            assert [h.flit_id for h in idx.search(q, 10)] == exp


def test_edge_concurrent_optimize_calls_are_collapsed(edge_path: Path) -> None:
    with EdgeIndex(edge_path, DIM, indexing_threshold_kb=1) as idx:
        idx.upsert_many(make_flits(500))
        with idx._optimize_lock:  # as if another thread were optimizing
            assert idx.maybe_optimize(0) is False
        assert idx.unindexed_count() == 500
        assert idx.maybe_optimize(0) is True


def test_edge_names_new_points_by_integer_keys_and_keeps_older_shards_on_uuids(tmp_path: Path) -> None:
    # A shard written before integer ids has no "ids" in its marker; reopened by today's code it must keep
    # its UUID-named points (writing integer ids into it would hold every flit twice).
    corpus = make_flits(60)
    new = EdgeIndex(tmp_path / "new", DIM)
    new.upsert_many(corpus)
    new.close()
    assert json.loads((tmp_path / "new" / MARKER_NAME).read_text())["ids"] == "u64"
    old = EdgeIndex(tmp_path / "old", DIM, point_ids="uuid")
    old.upsert_many(corpus)
    old.close()
    marker = json.loads((tmp_path / "old" / MARKER_NAME).read_text())
    del marker["ids"]
    (tmp_path / "old" / MARKER_NAME).write_text(json.dumps(marker))
    qs = list(queries(4))
    seen = frozenset(f.flit_id for f in corpus[:20])
    answers = []
    for name, ids in (("new", "u64"), ("old", "uuid")):
        idx = EdgeIndex(tmp_path / name, DIM)  # the default asks for u64; the marker decides
        assert idx.point_ids == ids
        idx.upsert_many(corpus[:5])  # replacing, not adding
        assert idx.count() == len(corpus)
        points = idx.search_points_many(qs, 10, [SearchFilter(exclude_flit_ids=seen)] * len(qs))
        hits = idx.search_many(qs, 10, [SearchFilter(exclude_flit_ids=seen)] * len(qs))
        assert points.point.tolist() == [point_key(h.flit_id) for found in hits for h in found]
        assert not {h.flit_id for found in hits for h in found} & seen
        # Keys carried by the filter (the ranker's catalogue knows them) stand for the flits on a u64 shard;
        # a uuid shard hashes the ids as before.
        keyed = SearchFilter(exclude_flit_ids=seen, exclude_point_keys=frozenset(map(point_key, seen)))
        assert idx.search_points_many(qs, 10, [keyed] * len(qs)).point.tolist() == points.point.tolist()
        other = frozenset(h.flit_id for h in hits[0][:2])
        trusted = SearchFilter(exclude_flit_ids=seen, exclude_point_keys=frozenset(map(point_key, other)))
        first = {h.flit_id for h in idx.search_many(qs[:1], 10, [trusted])[0]}
        assert (not first & other and first & seen) if ids == "u64" else first == {h.flit_id for h in hits[0]}
        assert set(idx.retrieve_many(["f3", "f4", "nope"])) == {"f3", "f4"}
        idx.delete_many(["f3"])
        assert "f3" not in idx.retrieve_many(["f3"]) and idx.count() == len(corpus) - 1
        answers.append([[h.flit_id for h in found] for found in hits])
        idx.close()
        reopened = EdgeIndex(tmp_path / name, DIM, create=False)
        assert reopened.point_ids == ids and reopened.count() == len(corpus) - 1
        reopened.close()
    assert answers[0] == answers[1]


def test_edge_refuses_a_marker_naming_unknown_point_ids(tmp_path: Path) -> None:
    EdgeIndex(tmp_path / "idx", DIM).close()
    marker = json.loads((tmp_path / "idx" / MARKER_NAME).read_text())
    (tmp_path / "idx" / MARKER_NAME).write_text(json.dumps(marker | {"ids": "strings"}))
    with pytest.raises(IndexError_, match="names its points"):
        EdgeIndex(tmp_path / "idx", DIM)


@settings(max_examples=2000, deadline=None)
@given(st.text(max_size=80))
def test_point_key_is_the_upper_half_of_the_flits_uuid5(flit_id: str) -> None:
    # Shards created since session 12 store points under these keys: a key computed differently would
    # lose every flit already indexed (and the catalogue would name no hit).
    assert point_key(flit_id) == uuid.uuid5(_NAMESPACE, flit_id).int >> 64 == key_of_uuid(point_uuid(flit_id))
