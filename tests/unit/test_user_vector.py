"""The incremental taste update: weights, decay, negative feedback, bounds, idempotence, order."""

from __future__ import annotations

import itertools
import json

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


# --- several versions: the taste kept in each, rebuilt from the history ---------------------------------------
V1 = TasteParams(half_life_s=100.0, seen_capacity=500, version="v1")
V2 = TasteParams(half_life_s=100.0, seen_capacity=500, version="v2")


def spaces(n_flits: int, seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Each flit's vector in v1 (4-d) and in v2 (6-d): two unrelated embedding spaces."""
    rng = np.random.default_rng(seed)
    return ({f"f{i}": rng.standard_normal(4).astype(np.float32) for i in range(n_flits)},
            {f"f{i}": rng.standard_normal(6).astype(np.float32) for i in range(n_flits)})


def known(vectors: dict[str, np.ndarray]):  # noqa: ANN201 - a VectorsOf
    calls: list[list[str]] = []

    def vectors_of(ids):  # noqa: ANN001, ANN202
        calls.append(list(ids))
        return {f: vectors[f] for f in ids if f in vectors}
    vectors_of.calls = calls
    return vectors_of


def random_events(n: int, n_flits: int, seed: int = 1) -> list[tuple[str, str, float, str, int | None]]:
    """Repeats of the same flits, out-of-order times, every kind (hides and reports included)."""
    rng = np.random.default_rng(seed)
    kinds = ["view", "like", "reflit", "reply", "hide", "report"]
    return [(f"e{i}", kinds[rng.integers(len(kinds))], float(rng.uniform(0, 1000)), f"f{rng.integers(n_flits)}",
             None if rng.random() < 0.5 else int(rng.integers(0, 20_000))) for i in range(n)]


def test_a_taste_rebuilt_from_the_history_equals_the_one_learnt_incrementally() -> None:
    in_v1, in_v2 = spaces(12)
    events = random_events(80, 12)
    assert len({e[3] for e in events}) < len(events) and sorted(e[2] for e in events) != [e[2] for e in events]
    p = UserProfile("u")
    for eid, kind, ts, fid, dwell in events:
        assert p.learn_one(eid, kind, ts, in_v1[fid], "a", fid, V1, dwell, others={"v2": in_v2[fid]})
    assert sorted(p.tastes) == ["v1", "v2"]  # the first event started both
    for version, vectors in (("v1", in_v1), ("v2", in_v2)):
        again = UserProfile.from_dict(p.to_dict())
        del again.tastes[version]
        assert again.rebuild(version, known(vectors), V1.half_life_s)
        np.testing.assert_allclose(again.tastes[version], p.tastes[version], rtol=1e-4, atol=1e-5)
        assert again.tastes[version].dtype == np.float32


def test_a_repeat_combines_into_one_history_entry_whatever_the_arrival_order() -> None:
    for order in ([0.0, 100.0], [100.0, 0.0]):
        p = UserProfile("u")
        for i, ts in enumerate(order):
            p.learn_one(f"e{i}", "like", ts, unit(1, 0), "a", "f1", V1)
        p.learn_one("e9", "hide", 50.0, unit(0, 1), "b", "f2", V1)
        assert p.seen == ["f1", "f2"]
        # 1 like decayed by one half-life, plus 1 like: 1.5, at the later time.
        np.testing.assert_allclose(p.history_w, [1.5, -1.0])
        np.testing.assert_array_equal(p.history_ts, [100.0, 50.0])


def test_a_rebuild_covers_the_horizon_only() -> None:
    params = TasteParams(half_life_s=100.0, seen_capacity=3, version="v1")
    in_v1, in_v2 = spaces(5)
    p = UserProfile("u")
    for i in range(5):
        p.learn_one(f"e{i}", "like", 10.0 * i, in_v1[f"f{i}"], "a", f"f{i}", params)
    p.learn_one("e9", "like", 60.0, in_v1["f0"], "a", "f0", params)  # f0 again: the newest, f1 and f2 gone
    assert p.seen == ["f3", "f4", "f0"] and len(p.history_w) == len(p.history_ts) == 3
    vectors_of = known(in_v2)
    assert p.rebuild("v2", vectors_of, params.half_life_s)
    assert vectors_of.calls == [["f3", "f4", "f0"]]
    # f0's first like (t=0) was forgotten with it: only what the horizon remembers counts.
    expected = sum(2.0 ** (-(60.0 - t) / 100.0) * in_v2[f] for f, t in (("f3", 30.0), ("f4", 40.0), ("f0", 60.0)))
    np.testing.assert_allclose(p.tastes["v2"], expected, rtol=1e-5)


def test_a_rebuild_leaves_out_flits_the_version_does_not_know_and_needs_one() -> None:
    in_v1, in_v2 = spaces(3)
    p = UserProfile("u")
    for i in range(3):
        p.learn_one(f"e{i}", "like", 0.0, in_v1[f"f{i}"], "a", f"f{i}", V1)
    assert not p.rebuild("v2", known({}), V1.half_life_s) and "v2" not in p.tastes
    assert p.rebuild("v2", known({"f1": in_v2["f1"]}), V1.half_life_s)
    np.testing.assert_allclose(p.tastes["v2"], in_v2["f1"])


def test_the_switch_continues_the_new_versions_taste_and_keeps_the_old_one_for_a_rollback() -> None:
    in_v1, in_v2 = spaces(4)
    p = UserProfile("u")
    p.learn_one("e0", "like", 0.0, in_v1["f0"], "a", "f0", V1, others={"v2": in_v2["f0"]})
    p.learn_one("e1", "like", 10.0, in_v1["f1"], "a", "f1", V1, others={"v2": in_v2["f1"]})
    v2_before = p.tastes["v2"].copy()
    # The switch: the worker now learns with v2, and keeps v1 (the rollback target) among the others.
    p.learn_one("e2", "reply", 20.0, in_v2["f2"], "a", "f2", V2, others={"v1": in_v1["f2"]})
    assert p.taste_version == "v2" and sorted(p.tastes) == ["v1", "v2"]
    decay = 2.0 ** (-10.0 / 100.0)
    np.testing.assert_allclose(p.taste, v2_before * decay + interaction_weight("reply") * in_v2["f2"], rtol=1e-6)
    np.testing.assert_allclose(p.query_vector("v2"), p.query_vector(), rtol=1e-6)
    # The rollback: back to v1, which was kept up to date meanwhile.
    p.learn_one("e3", "like", 30.0, in_v1["f3"], "a", "f3", V1, others={"v2": in_v2["f3"]})
    assert p.taste_version == "v1"
    rebuilt = UserProfile.from_dict(p.to_dict())
    assert rebuilt.rebuild("v1", known(in_v1), 100.0) and rebuilt.rebuild("v2", known(in_v2), 100.0)
    for version in ("v1", "v2"):
        np.testing.assert_allclose(rebuilt.tastes[version], p.tastes[version], rtol=1e-5, atol=1e-6)


def test_an_unknown_vector_or_a_version_no_longer_held_drops_that_taste() -> None:
    in_v1, in_v2 = spaces(3)
    p = UserProfile("u")
    p.learn_one("e0", "like", 0.0, in_v1["f0"], "a", "f0", V1, others={"v2": in_v2["f0"], "v3": in_v2["f0"]})
    assert sorted(p.tastes) == ["v1", "v2", "v3"]
    p.learn_one("e1", "like", 0.0, in_v1["f1"], "a", "f1", V1, others={"v2": None, "v3": in_v2["f1"]})
    assert sorted(p.tastes) == ["v1", "v3"]  # v2 does not know f1 yet: its taste would be wrong
    p.learn_one("e2", "like", 0.0, in_v1["f2"], "a", "f2", V1, others={"v2": in_v2["f2"]})
    assert sorted(p.tastes) == ["v1"]  # v3 is no longer held; v2 has no taste to update (it is rebuilt)
    assert p.query_vector("v2") is None and p.query_vector("v1") is not None
    q = UserProfile("u")
    q.learn_one("e0", "like", 0.0, in_v1["f0"], "a", "f0", V1, others={"v2": in_v2["f0"]})
    q.learn_one("e1", "like", 0.0, in_v1["f1"], "a", "f1", V1)  # a caller that does not track versions
    assert sorted(q.tastes) == ["v1"]


def test_a_new_primary_version_without_a_taste_starts_anew_and_last_ts_stays_the_latest() -> None:
    in_v1, in_v2 = spaces(2)
    p = UserProfile("u")
    p.learn_one("e0", "like", 50.0, in_v1["f0"], "a", "f0", V1)
    p.learn_one("e1", "like", 10.0, in_v2["f1"], "a", "f1", V2, others={"v1": in_v1["f1"]})
    assert p.last_ts == 50.0 and sorted(p.tastes) == ["v1", "v2"]
    np.testing.assert_allclose(p.taste, 2.0 ** (-40.0 / 100.0) * in_v2["f1"], rtol=1e-6)


def test_versions_and_history_survive_serialisation() -> None:
    in_v1, in_v2 = spaces(3)
    p = UserProfile("u")
    for i in range(3):
        p.learn_one(f"e{i}", "view", float(i), in_v1[f"f{i}"], "a", f"f{i}", V1, 4000, others={"v2": in_v2[f"f{i}"]})
    back = UserProfile.from_dict(json.loads(json.dumps(p.to_dict())))
    assert back.to_dict() == p.to_dict() and back.taste_version == "v1"
    for version in ("v1", "v2"):
        np.testing.assert_array_equal(back.tastes[version], p.tastes[version])
    np.testing.assert_array_equal(back.history_w, p.history_w)
    assert back.history_ts.dtype == np.float64 and back.history_w.dtype == np.float32


def test_a_profile_stored_before_versions_and_history_is_migrated() -> None:
    import base64

    taste = np.array([0.6, 0.8], dtype="<f4")
    old = {"user_id": "u", "taste": base64.b64encode(taste.tobytes()).decode(), "taste_version": "v1",
           "last_ts": 10.0, "positives": 2, "seen": ["f1", "f2"], "event_hashes": "", "last_event_id": "e2"}
    p = UserProfile.from_dict(old)
    assert list(p.tastes) == ["v1"] and p.taste.tolist() == taste.tolist() and p.taste_version == "v1"
    assert np.isnan(p.history_w).all() and len(p.history_ts) == 2 and p.history_flits() == []
    assert not p.rebuild("v2", known({"f1": unit(1, 0, 0)}), 100.0)  # no weights: nothing to rebuild from
    p.learn_one("e3", "like", 10.0, unit(0, 1), "a", "f1", V1)   # f1 again: its older part stays unknown
    p.learn_one("e4", "like", 10.0, unit(1, 0), "a", "f3", V1)
    assert p.seen == ["f2", "f1", "f3"] and p.history_flits() == ["f3"]
    assert p.rebuild("v2", known({"f1": unit(1, 0, 0), "f3": unit(0, 0, 1)}), 100.0)
    np.testing.assert_allclose(p.tastes["v2"], [0.0, 0.0, 1.0])
    # A taste stored before versions were tracked (version "") is adopted by the first version learnt.
    legacy = UserProfile.from_dict({"user_id": "u", "taste": old["taste"], "seen": ["f1"]})
    assert list(legacy.tastes) == [""] and legacy.taste_version == ""
    legacy.learn_one("e1", "like", 0.0, unit(0, 1), "a", "f2", V1)
    assert list(legacy.tastes) == ["v1"]
    np.testing.assert_allclose(legacy.taste, [0.6, 1.8], rtol=1e-6)


def test_id_lists_are_stored_as_one_string_and_read_back_from_either_form() -> None:
    p = UserProfile("u")
    p.learn_one("e1", "like", 0.0, unit(1, 0), "a1", "f1", V1)
    p.learn_one("e2", "hide", 1.0, unit(0, 1), "a2", "f2", V1)
    stored = json.loads(json.dumps(p.to_dict()))
    assert stored["seen"] == "f1 f2" and stored["muted_authors"] == "a2"
    back = UserProfile.from_dict(stored)
    assert back.seen == ["f1", "f2"] and back.muted_authors == ["a2"] and back.to_dict() == p.to_dict()
    # A profile stored before the lists were joined (lists of ids) reads the same.
    assert UserProfile.from_dict(stored | {"seen": ["f1", "f2"], "muted_authors": ["a2"]}).to_dict() == p.to_dict()
    assert UserProfile.from_dict(UserProfile("empty").to_dict()).seen == []
    # An id the events' schema would refuse (whitespace) is never stored ambiguously.
    p.seen.append("f 3")
    with pytest.raises(ValueError):
        p.to_dict()


# --- the stored form (UserProfile.to_bytes / from_stored) -----------------------------------------------------
#: A profile as the worker stored it before the binary form (Faust's JSON codec over ``to_dict()``, commit
#: 13d299b): what older changelog records and RocksDB values hold.
STORED_AS_JSON = (b'{"user_id": "u", "tastes": {"v1": "8wQ1PwAAgL8="}, "last_ts": 1700000050.0, "positives": 1, '
                  b'"negatives": 1, "seen": "f1 f2", "history_w": "AACAPwAAgL8=", "history_ts": '
                  b'"AAAAQPxU2UEAAIBM/FTZQQ==", "muted_authors": "a2", "event_hashes": "G11eUfVPDwT+0TUILw7/eA==", '
                  b'"last_event_id": "e2", "taste_version": "v1"}')


def full_profile(seen: int = 500, muted: int = 200, hashes: int = 128) -> UserProfile:
    rng = np.random.default_rng(3)
    p = UserProfile("bird-000001")
    params = TasteParams(half_life_s=3 * 86400.0, seen_capacity=seen, muted_capacity=muted, dedup_capacity=hashes,
                         version="v1")
    for i in range(max(seen, hashes)):
        p.learn_one(f"ev-{i:09d}", ["like", "hide", "view"][i % 3], 1.7e9 + 37.3 * i + rng.random(),
                    rng.standard_normal(384).astype(np.float32), f"author-{i % muted:03d}",
                    f"flit-{rng.integers(10**6):07d}", params, dwell_ms=2500,
                    others={"v2": rng.standard_normal(16).astype(np.float32)})
    for o in range(123_456_789_000, 123_456_789_000 + 2 * hashes, 2):  # every other offset: another user's
        p.mark_decided(4, o, 128)
    p.mark_decided(0, 7, 128)
    p.mark_decided(0, 5_000_000_000, 128)  # 7 is over 4 billion below: stored as the floor
    p.wait_for(4, 123_456_789_000, 32)
    return p


def test_the_stored_form_round_trips_exactly_and_keeps_history_times_to_the_millisecond() -> None:
    p = full_profile()
    raw = p.to_bytes()
    back = UserProfile.from_stored(raw)
    assert back.to_bytes() == raw, "decoding and encoding again changes nothing"
    assert (back.user_id, back.last_ts, back.positives, back.negatives, back.last_event_id, back.taste_version) == (
        p.user_id, p.last_ts, p.positives, p.negatives, p.last_event_id, p.taste_version)
    assert back.seen == p.seen and back.muted_authors == p.muted_authors
    assert back.decided[4].offsets.tolist() == p.decided[4].offsets.tolist() and back.decided[4].floor == -1
    assert back.is_decided(4, 123_456_789_002) and not back.is_decided(4, 123_456_789_001)
    assert back.decided[0].offsets.tolist() == [5_000_000_000] and back.decided[0].floor == 7
    assert back.is_decided(0, 6) and not back.is_decided(0, 8)
    assert back.waiting == [(4, 123_456_789_000)]

    np.testing.assert_array_equal(back.event_hashes, p.event_hashes)
    np.testing.assert_array_equal(back.history_w, p.history_w)
    for version in ("v1", "v2"):
        np.testing.assert_array_equal(back.tastes[version], p.tastes[version])
    # Times as float32 seconds before last_ts (~5 h back here, 500 x 37 s): to the nearest 1/1024 s within
    # the last 4.5 h (2^14 s), within 2^-24 of the age more before (float32).
    assert back.history_ts.dtype == np.float64
    ages = p.last_ts - p.history_ts
    assert (np.abs(back.history_ts - p.history_ts) <= 1 / 2048 + ages * 2.0**-24 + 1e-6).all()
    assert (ages > 2**14).any()
    # ... which a taste rebuilt from the history does not see (float32 rounding aside).
    vectors = {f: np.random.default_rng(abs(hash(f)) % 2**32).standard_normal(8).astype(np.float32) for f in p.seen}
    assert p.rebuild("v3", lambda ids: vectors, 3 * 86400.0) and back.rebuild("v3", lambda ids: vectors, 3 * 86400.0)
    np.testing.assert_allclose(back.tastes["v3"], p.tastes["v3"], rtol=1e-5, atol=1e-6)


def test_a_worst_case_profile_is_stored_in_under_16_kb() -> None:
    """Issue 17's bound with every list full (500 seen, 200 muted, the 128-id window, 128 decided offsets,
    32 parked positions) and a 384-d taste."""
    p = full_profile()
    del p.tastes["v2"], p.decided[0]
    for o in range(1, 32):
        p.wait_for(4, 123_456_789_000 + 2 * o, 32)
    assert len(p.waiting) == 32 and len(p.decided[4].offsets) == 128
    assert len(p.to_bytes()) < 16_000, len(p.to_bytes())


def test_every_older_stored_form_is_read() -> None:
    current = UserProfile.from_stored(STORED_AS_JSON)
    assert (current.seen, current.muted_authors, current.last_event_id, current.taste_version) == (
        ["f1", "f2"], ["a2"], "e2", "v1")
    assert current.has_applied("e1") and current.has_applied("e2") and not current.has_applied("e3")
    assert current.decided == {} and current.waiting == []
    np.testing.assert_allclose(current.tastes["v1"], [0.70710677, -1.0])
    np.testing.assert_array_equal(current.history_ts, [1.7e9, 1.7e9 + 50])
    assert UserProfile.from_stored(current.to_bytes()).to_dict() == current.to_dict()
    # The same as a str, and as the dict a memory table held.
    assert UserProfile.from_stored(STORED_AS_JSON.decode()).to_dict() == current.to_dict()
    assert UserProfile.from_stored(json.loads(STORED_AS_JSON)).to_dict() == current.to_dict()
    # Before hashed ids: the ids themselves.
    ids = UserProfile.from_stored(json.dumps({"user_id": "u", "recent_event_ids": ["e1"], "seen": []}).encode())
    assert ids.has_applied("e1") and not ids.has_applied("e2")


@pytest.mark.parametrize("damage", [lambda b: b[:10], lambda b: b[:-1], lambda b: b + b"\0",
                                    lambda b: b"\x00up\x02" + b[4:], lambda b: b[:-20] + bytes(20)])
def test_a_damaged_stored_profile_is_refused_with_a_value_error(damage) -> None:
    import zlib

    with pytest.raises((ValueError, zlib.error)):
        UserProfile.from_stored(damage(full_profile(seen=5, muted=2, hashes=4).to_bytes()))
