"""The incremental taste update: weights, decay, negative feedback, bounds, idempotence, order."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from flitfeed.encoders.user_vector import KIND_WEIGHTS, TasteParams, UserProfile, interaction_weight

P = TasteParams(half_life_s=100.0, seen_capacity=3, muted_capacity=2, dedup_capacity=4)


def unit(*xs: float) -> np.ndarray:
    v = np.asarray(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_like_pulls_hide_pushes_and_mutes() -> None:
    p = UserProfile("u")
    p.learn_one("e1", "like", 0.0, unit(1, 0), "a1", "f1", P)
    before = float(p.query_vector() @ unit(0, 1))
    p.learn_one("e2", "hide", 0.0, unit(1, 1), "a2", "f2", P)
    assert float(p.query_vector() @ unit(0, 1)) < before
    assert p.muted_authors == ["a2"] and p.negatives == 1 and p.positives == 1


def test_decay_halves_per_half_life() -> None:
    p = UserProfile("u")
    p.learn_one("e1", "like", 0.0, unit(1, 0), "a", "f1", P)
    p.learn_one("e2", "like", 100.0, unit(0, 1), "a", "f2", P)
    np.testing.assert_allclose(p.taste, [0.5, 1.0], rtol=1e-6)


def test_arrival_order_does_not_change_the_taste() -> None:
    events = [("e1", "like", 10.0, unit(1, 0)), ("e2", "reflit", 50.0, unit(0, 1)),
              ("e3", "hide", 30.0, unit(1, 1)), ("e4", "view", 70.0, unit(1, -1))]
    tastes = []
    for order in itertools.permutations(events):
        p = UserProfile("u")
        for eid, kind, ts, v in order:
            p.learn_one(eid, kind, ts, v, "a", eid, P)
        tastes.append(p.taste)
    for t in tastes[1:]:
        np.testing.assert_allclose(t, tastes[0], rtol=1e-5, atol=1e-6)


def test_duplicate_event_changes_nothing() -> None:
    p = UserProfile("u")
    assert p.learn_one("e1", "like", 0.0, unit(1, 0), "a", "f1", P)
    snapshot = p.to_dict()
    assert not p.learn_one("e1", "like", 5.0, unit(0, 1), "a", "f9", P)
    assert p.to_dict() == snapshot


def test_memories_are_bounded() -> None:
    p = UserProfile("u")
    for i in range(10):
        p.learn_one(f"e{i}", "hide", float(i), unit(1, 0), f"a{i}", f"f{i}", P)
    assert p.seen == ["f7", "f8", "f9"]
    assert p.muted_authors == ["a8", "a9"]
    assert len(p.event_hashes) == 4 and all(p.has_applied(f"e{i}") for i in range(6, 10))
    assert not p.has_applied("e5")  # forgotten: the oldest beyond dedup_capacity


def test_cold_until_positive_feedback() -> None:
    p = UserProfile("u")
    assert p.query_vector() is None
    p.learn_one("e1", "hide", 0.0, unit(1, 0), "a", "f1", P)
    assert p.query_vector() is None
    p.learn_one("e2", "like", 0.0, unit(0, 1), "b", "f2", P)
    q = p.query_vector()
    assert q is not None and abs(float(np.linalg.norm(q)) - 1.0) < 1e-5


def test_serialisation_round_trip() -> None:
    p = UserProfile("u")
    p.learn_one("e1", "reply", 3.0, unit(0.3, 0.7), "a", "f1", P)
    back = UserProfile.from_dict(p.to_dict())
    np.testing.assert_array_equal(back.taste, p.taste)
    assert back.to_dict() == p.to_dict()


@pytest.mark.parametrize("kind", sorted(KIND_WEIGHTS))
def test_weights_sign(kind: str) -> None:
    assert (interaction_weight(kind) < 0) == (kind in {"hide", "report"})


def test_view_weight_grows_with_dwell() -> None:
    assert interaction_weight("view", 0) < interaction_weight("view", 3000) < interaction_weight("view", 60000)
    assert interaction_weight("view", 60000) == KIND_WEIGHTS["view"]


def test_a_taste_of_another_embedding_version_is_started_anew_never_mixed() -> None:
    import numpy as np

    from flitfeed.encoders.user_vector import TasteParams, UserProfile

    old, new = TasteParams(half_life_s=10.0, version="old@1"), TasteParams(half_life_s=10.0, version="new@2")
    p = UserProfile("u1")
    p.learn_one("e1", "like", 100.0, np.array([1.0, 0.0, 0.0], dtype=np.float32), "a1", "f1", old)
    p.learn_one("e2", "like", 100.0, np.array([0.0, 1.0, 0.0], dtype=np.float32), "a1", "f2", old)
    assert p.taste_version == "old@1" and np.count_nonzero(p.taste) == 2
    p.learn_one("e3", "like", 100.0, np.array([0.0, 0.0, 1.0], dtype=np.float32), "a1", "f3", new)
    assert p.taste_version == "new@2" and p.taste.tolist() == [0.0, 0.0, 1.0]
    assert p.positives == 3 and p.seen == ["f1", "f2", "f3"]  # what the user did is kept; only the space changed
    again = UserProfile.from_dict(p.to_dict())
    assert again.taste_version == "new@2"


def test_a_profile_stored_with_event_id_strings_still_knows_them() -> None:
    from flitfeed.encoders.user_vector import UserProfile

    old = {"user_id": "u", "taste": None, "positives": 0, "recent_event_ids": ["e1", "e2"], "last_event_id": "e2"}
    p = UserProfile.from_dict(old)
    assert p.has_applied("e1") and p.has_applied("e2") and not p.has_applied("e3")
    assert UserProfile.from_dict(p.to_dict()).has_applied("e1")
