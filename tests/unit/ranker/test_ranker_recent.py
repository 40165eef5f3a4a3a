"""RecentFlits: bounded by creation time, idempotent, per-author counts."""

from __future__ import annotations

import random

import numpy as np
import pytest

from flitfeed.ranker.recent import RecentFlits


def test_idempotent_by_flit_id():
    r = RecentFlits(capacity=10)
    assert r.add_one("f1", "a", 1.0, tags=("x",))
    assert not r.add_one("f1", "b", 2.0)
    assert r.get("f1").author_id == "a" and r.get("f1").tags == ("x",)
    assert len(r) == 1 and r.author_flit_count("a") == 1 and r.author_flit_count("b") == 0


def test_keeps_the_most_recently_created_regardless_of_arrival_order():
    rng = random.Random(7)
    times = list(range(100))
    rng.shuffle(times)
    r = RecentFlits(capacity=10)
    for t in times:
        r.add_one(f"f{t}", f"a{t % 3}", float(t))
        assert len(r) <= 10
    assert [f.created_at for f in r.newest(100)] == [float(t) for t in range(99, 89, -1)]
    assert sum(r.author_flit_count(f"a{i}") for i in range(3)) == 10


def test_too_old_for_a_full_store_is_not_kept():
    r = RecentFlits(capacity=2)
    r.add_one("f1", "a", 10.0)
    r.add_one("f2", "a", 20.0)
    assert not r.add_one("f0", "b", 5.0)
    assert "f0" not in r and r.author_flit_count("b") == 0


def test_newest_limits_and_min_created_at():
    r = RecentFlits(capacity=10)
    for t in range(5):
        r.add_one(f"f{t}", "a", float(t))
    assert [f.flit_id for f in r.newest(2)] == ["f4", "f3"]
    assert [f.flit_id for f in r.newest(10, min_created_at=3.0)] == ["f4", "f3"]
    assert r.newest(0) == []


def test_author_counts_follow_eviction():
    r = RecentFlits(capacity=2)
    r.add_one("f1", "a", 1.0)
    r.add_one("f2", "a", 2.0)
    r.add_one("f3", "b", 3.0)
    assert r.author_flit_count("a") == 1 and r.author_flit_count("b") == 1


def test_rejects_bad_capacity():
    with pytest.raises(ValueError):
        RecentFlits(0)


def test_vectors_are_kept_unit_length_and_dropped_on_eviction():
    r = RecentFlits(capacity=2)
    r.add_one("f1", "a", 1.0, vector=[0.0, 2.0])
    r.add_one("f2", "a", 2.0, vector=[float("nan"), 1.0])  # not kept: the index scores it
    r.add_one("f3", "a", 3.0, vector=[1.0, 1.0])            # evicts f1 and its vector
    assert r.similarities([1.0, 0.0], ["f1", "f2", "f3"]) == pytest.approx({"f3": 2 ** -0.5})
    assert r.similarities([0.0, 0.0], ["f3"]) == {}         # no direction to compare with
    assert r.similarities([3.0, 3.0], ["f3"]) == pytest.approx({"f3": 1.0})
    # Re-embedded (a new model version): the held vector follows, as the index's does.
    assert r.add_one("f3", "a", 3.0, vector=[1.0, 0.0]) is False
    assert r.similarities([1.0, 0.0], ["f3"]) == pytest.approx({"f3": 1.0})


def test_held_vectors_follow_every_add_eviction_and_re_embedding():
    """The vectors live as rows of one matrix whose rows are reused after evictions: each held flit
    must still answer its own latest vector, and an evicted one none (checked against a plain dict)."""
    rng = np.random.default_rng(5)
    r = RecentFlits(capacity=150)
    truth: dict[str, np.ndarray] = {}
    for step in range(3000):
        fid = f"f{int(rng.integers(600))}"
        vector = rng.normal(size=8)
        with_vector = rng.random() < 0.8
        r.add_one(fid, "a", float(rng.uniform(0, 1000)), vector=vector if with_vector else None)
        if fid in r and with_vector:
            truth[fid] = vector / np.linalg.norm(vector)
        truth = {f: v for f, v in truth.items() if f in r}
        if step % 100 == 99:
            ids = [f"f{i}" for i in range(600)]
            held, matrix = r.vectors_of(ids)
            assert [f for f, h in zip(ids, held) if h] == [f for f in ids if f in truth]
            np.testing.assert_allclose(matrix, np.stack([truth[f] for f in ids if f in truth]), rtol=1e-6)


def test_a_vector_of_another_dimension_is_not_kept():
    r = RecentFlits(capacity=4)
    r.add_one("f1", "a", 1.0, vector=[1.0, 0.0])
    assert r.add_one("f2", "a", 2.0, vector=[1.0, 0.0, 0.0]) is True  # held, scored by the index
    held, matrix = r.vectors_of(["f1", "f2"])
    assert held.tolist() == [True, False] and matrix.shape == (1, 2)
    assert r.similarities([1.0, 0.0, 0.0], ["f1", "f2"]) == {}
