"""EngagementTracker: decay math, order independence, bounded memory."""

from __future__ import annotations

import random

import pytest

from flitfeed.ranker.engagement import NEGATIVE_WEIGHTS, POSITIVE_WEIGHTS, EngagementTracker

H = 3600.0


def test_one_half_life_exactly_halves():
    t = EngagementTracker(half_life_s=H, capacity=10)
    t.learn_one("f", "like", ts=1000.0)
    assert t.score("f", 1000.0) == 1.0
    assert t.score("f", 1000.0 + H) == 0.5
    assert t.score("f", 1000.0 + 3 * H) == 0.125


def test_kind_weights_and_unknown_kinds():
    t = EngagementTracker(half_life_s=H, capacity=10)
    for kind in POSITIVE_WEIGHTS:
        assert t.learn_one(kind, kind, ts=0.0)
        assert t.score(kind, 0.0) == pytest.approx(POSITIVE_WEIGHTS[kind])
    assert not t.learn_one("f", "follow", ts=0.0)
    assert "f" not in t


def test_negative_signals_are_a_separate_counter():
    t = EngagementTracker(half_life_s=H, capacity=10)
    t.learn_one("f", "like", 0.0)
    t.learn_one("f", "like", 0.0)
    t.learn_one("f", "hide", 0.0)
    t.learn_one("f", "report", 0.0)
    assert t.positive("f", 0.0) == 2.0
    assert t.negative("f", 0.0) == NEGATIVE_WEIGHTS["hide"] + NEGATIVE_WEIGHTS["report"]
    assert t.score("f", H) == pytest.approx((2.0 - 3.0) / 2)
    assert t.top(5, 0.0) == []  # net negative flits are never "popular"


def test_unknown_flit_scores_zero():
    assert EngagementTracker(half_life_s=H, capacity=10).score("nope", 0.0) == 0.0


def test_reading_before_the_last_event_does_not_extrapolate_growth():
    t = EngagementTracker(half_life_s=H, capacity=10)
    t.learn_one("f", "like", ts=10 * H)
    assert t.score("f", 0.0) == 1.0


@pytest.mark.parametrize("seed", range(5))
def test_out_of_order_learning_equals_in_order(seed):
    rng = random.Random(seed)
    kinds = [*POSITIVE_WEIGHTS, *NEGATIVE_WEIGHTS]
    events = [(f"f{rng.randrange(5)}", rng.choice(kinds), rng.uniform(0, 20 * H)) for _ in range(200)]
    in_order = EngagementTracker(half_life_s=H, capacity=100)
    shuffled = EngagementTracker(half_life_s=H, capacity=100)
    for e in sorted(events, key=lambda e: e[2]):
        in_order.learn_one(*e)
    rng.shuffle(events)
    for e in events:
        shuffled.learn_one(*e)
    now = 21 * H
    for i in range(5):
        fid = f"f{i}"
        assert shuffled.positive(fid, now) == pytest.approx(in_order.positive(fid, now), rel=1e-9, abs=1e-12)
        assert shuffled.negative(fid, now) == pytest.approx(in_order.negative(fid, now), rel=1e-9, abs=1e-12)
        # And both equal the closed form Σ w · 2^(-(now - ts) / h).
        expected = sum(POSITIVE_WEIGHTS[k] * 2 ** (-(now - ts) / H) for f, k, ts in events
                       if f == fid and k in POSITIVE_WEIGHTS)
        assert in_order.positive(fid, now) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_capacity_bound_holds_and_weakest_are_evicted():
    t = EngagementTracker(half_life_s=H, capacity=50)
    for i in range(1000):
        t.learn_one(f"f{i}", "like", ts=float(i))
        assert len(t) <= 50
    # The newest likes carry the most decayed signal, so they survive.
    assert "f999" in t and "f0" not in t


def test_eviction_prefers_strong_old_over_weak_new():
    t = EngagementTracker(half_life_s=H, capacity=2)
    for _ in range(10):
        t.learn_one("strong", "like", ts=0.0)      # 10 likes, one half-life old at the end: 5
    t.learn_one("weak", "view", ts=H)              # 0.1
    t.learn_one("medium", "like", ts=H)            # 1.0, over capacity: weak goes
    assert "strong" in t and "medium" in t and "weak" not in t


def test_top_orders_by_score_and_honours_where():
    t = EngagementTracker(half_life_s=H, capacity=10)
    for fid, n in (("a", 3), ("b", 1), ("c", 2)):
        for _ in range(n):
            t.learn_one(fid, "like", 0.0)
    assert [f for f, _ in t.top(2, 0.0)] == ["a", "c"]
    assert [f for f, _ in t.top(5, 0.0, where=lambda f: f != "a")] == ["c", "b"]
    assert t.top(0, 0.0) == []


def test_rejects_bad_configuration():
    with pytest.raises(ValueError):
        EngagementTracker(half_life_s=0, capacity=1)
    with pytest.raises(ValueError):
        EngagementTracker(half_life_s=1, capacity=0)


def _ranked_from_scratch(t: EngagementTracker, now: float, where=None) -> list[str]:
    # What top() computed before it kept a leaderboard: every flit ranked by its decayed net score.
    net = {fid: t.score(fid, now) for fid in list(_tracked(t)) if t.positive(fid, now) > t.negative(fid, now)}
    return [fid for fid in sorted(net, key=lambda f: (net[f], f), reverse=True) if where is None or where(fid)]


def _tracked(t: EngagementTracker):
    return [fid for fid in (f"f{i}" for i in range(60)) if fid in t]


@pytest.mark.parametrize("seed", range(5))
def test_top_equals_a_full_ranking_through_updates_and_evictions(seed):
    # top() reads a leaderboard kept sorted on every interaction; it must stay
    # exactly the from-scratch order through negatives, late arrivals,
    # flits falling off (net <= 0) and evictions.
    rng = random.Random(seed)
    t = EngagementTracker(half_life_s=H, capacity=40)
    kinds = ["like", "view", "reflit", "reply", "hide", "report"]
    for step in range(1500):
        fid = f"f{rng.randrange(60)}"
        ts = float(step * 10 + rng.randrange(-300, 300))  # some arrive late
        t.learn_one(fid, rng.choice(kinds), ts)
        if step % 97 == 0:
            now = step * 10.0 + 300  # after every interaction so far: scores are not clamped
            assert [f for f, _ in t.top(60, now)] == _ranked_from_scratch(t, now)[:60]
            odd = lambda f: int(f[1:]) % 2 == 1  # noqa: E731
            assert [f for f, _ in t.top(5, now, where=odd)] == _ranked_from_scratch(t, now, odd)[:5]
    assert len(t) <= 40
