"""Drift statistics on synthetic distributions with known answers, and on topic-mix streams."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flitfeed.monitoring.drift import (EmbeddingDrift, ScalarDrift, UserVectorDrift,
                                       centroid_cosine_distance, mmd2_unbiased, psi)
from flitfeed.monitoring.monitors import drift_thresholds
from flitfeed.settings import MonitoringConfig

THRESHOLDS = drift_thresholds(MonitoringConfig())


def test_psi_matches_its_formula_and_is_zero_for_equal_histograms() -> None:
    e, a = [0.2, 0.5, 0.3], [0.3, 0.4, 0.3]
    by_hand = 0.1 * math.log(0.3 / 0.2) + (-0.1) * math.log(0.4 / 0.5) + 0.0
    assert psi(np.array(e), np.array(a)) == pytest.approx(by_hand)
    assert psi(np.array([20, 50, 30]), np.array([3, 4, 3])) == pytest.approx(by_hand)  # counts are normalised
    assert psi(np.array([1, 2, 3]), np.array([10, 20, 30])) == pytest.approx(0.0)


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def test_scalar_psi_of_a_shifted_normal_matches_the_analytic_value() -> None:
    """Reference N(0,1) binned at its deciles, current N(0.5,1): PSI = Σ (a−e)·ln(a/e) with a from Φ."""
    rng = np.random.default_rng(3)
    drift = ScalarDrift(reference_size=20_000, window_size=20_000, bins=10)
    for x in rng.normal(size=20_000):
        drift.learn_one(x)
    for x in rng.normal(loc=0.5, size=20_000):
        drift.learn_one(x)
    edges = [-math.inf] + [_inv_phi(q) for q in np.linspace(0.1, 0.9, 9)] + [math.inf]
    actual = [_phi(b - 0.5) - _phi(a - 0.5) for a, b in zip(edges, edges[1:])]
    analytic = sum((a - 0.1) * math.log(a / 0.1) for a in actual)
    assert drift.score() == pytest.approx(analytic, rel=0.1)


def _inv_phi(q: float) -> float:
    lo, hi = -10.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _phi(mid) < q else (lo, mid)
    return (lo + hi) / 2


def test_mmd_matches_the_closed_form_for_two_gaussians() -> None:
    """For N(0,I) vs N(μ,I) in d dims and a Gaussian kernel of bandwidth σ:
    MMD² = 2 (σ²/(σ²+2))^(d/2) · (1 − exp(−|μ|² / (2(σ²+2))))."""
    rng = np.random.default_rng(5)
    d, sigma = 4, 1.5
    mu = np.array([1.0, 0.5, 0.0, 0.0])
    x = rng.normal(size=(1500, d))
    y = rng.normal(size=(1500, d)) + mu
    c = (sigma**2 / (sigma**2 + 2)) ** (d / 2)
    closed = 2 * c * (1 - math.exp(-(mu @ mu) / (2 * (sigma**2 + 2))))
    assert mmd2_unbiased(x, y, sigma) == pytest.approx(closed, abs=0.01)
    assert abs(mmd2_unbiased(x, rng.normal(size=(1500, d)), sigma)) < 0.005


def test_centroid_distance_of_orthogonal_and_identical_clouds() -> None:
    rng = np.random.default_rng(1)
    a = np.array([1.0, 0.0, 0.0]) + 0.01 * rng.normal(size=(200, 3))
    b = np.array([0.0, 1.0, 0.0]) + 0.01 * rng.normal(size=(200, 3))
    assert centroid_cosine_distance(a, b) == pytest.approx(1.0, abs=0.01)
    assert centroid_cosine_distance(a, a[::-1]) == pytest.approx(0.0, abs=1e-9)


def test_embedding_drift_memory_is_bounded_by_its_windows() -> None:
    rng = np.random.default_rng(2)
    drift = EmbeddingDrift(dim=16, reference_size=50, window_size=40, projections=4, bins=5)

    def held() -> int:
        arrays = [v for v in vars(drift).values() if isinstance(v, np.ndarray)]
        return sum(a.size for a in arrays + [drift._window.data, drift._window_bins.data])

    drift.learn_many(rng.normal(size=(100, 16)))
    after_100 = held()
    drift.learn_many(rng.normal(size=(5000, 16)))
    assert held() == after_100
    assert drift.n_reference == 50 and drift.n_window == 40
    assert int(drift._counts.sum()) == 40 * 4  # the incremental histogram matches the window


def test_embedding_drift_is_silent_until_both_windows_are_full() -> None:
    drift = EmbeddingDrift(dim=4, reference_size=10, window_size=10)
    drift.learn_many(np.ones((19, 4)))
    assert drift.scores() == {}
    drift.learn_one(np.ones(4))
    assert set(drift.scores()) == {"embedding_centroid", "embedding_mmd", "embedding_psi"}


def _clusters(rng: np.random.Generator, n_topics: int, dim: int) -> np.ndarray:
    c = rng.normal(size=(n_topics, dim))
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def test_user_vector_drift_stays_low_for_stable_interests_and_crosses_when_they_switch() -> None:
    """40 users each with two interest topics (of seven), one interaction every 15 min overall (each user
    about every 10 h, taste half-life 3 days); after 3000 updates every user turns to two other topics."""
    from flitfeed.encoders.user_vector import TasteParams, UserProfile

    rng = np.random.default_rng(0)
    dim = 384
    centres = _clusters(rng, 7, dim)
    shared = _clusters(rng, 1, dim)[0]  # topics share a common direction, as real sentence embeddings do

    def item(topic: int) -> np.ndarray:
        v = 0.6 * centres[topic] + 0.6 * shared + rng.normal(scale=0.7 / math.sqrt(dim), size=dim)
        return (v / np.linalg.norm(v)).astype(np.float32)

    users = [UserProfile(f"u{i}") for i in range(40)]
    interests = [rng.choice(4, 2, replace=False) for _ in users]
    drift, params, n = UserVectorDrift(500, 500), TasteParams(), 0

    def step(ints: list[np.ndarray]) -> None:
        nonlocal n
        i = int(rng.integers(len(users)))
        topic = int(rng.choice(ints[i])) if rng.random() < 0.8 else int(rng.integers(7))
        before = users[i].query_vector()
        n += 1
        users[i].learn_one(f"e{n}", "like", 1000.0 + 900.0 * n, item(topic), "a", f"f{n}", params)
        drift.learn_one(before, users[i].query_vector())

    stable_max = 0.0
    for k in range(3000):
        step(interests)
        if k >= 1000 and k % 50 == 0:
            stable_max = max(stable_max, drift.score() or 0.0)
    assert stable_max < THRESHOLDS.user_vector
    switched = [rng.choice(np.arange(4, 7), 2, replace=False) for _ in users]
    crossed_after = None
    for k in range(1, 1001):
        step(switched)
        if (drift.score() or 0.0) > THRESHOLDS.user_vector:
            crossed_after = k
            break
    assert crossed_after is not None and crossed_after <= 1000, "user-vector drift never crossed its threshold"


def test_score_drift_crosses_when_top_similarities_drop() -> None:
    rng = np.random.default_rng(4)
    drift = ScalarDrift(500, 500)
    for x in rng.beta(8, 3, size=1000):  # personalised feeds: high top similarity
        drift.learn_one(x)
    assert drift.score() < THRESHOLDS.feed_score_psi
    crossed = next(k for k, x in enumerate(rng.beta(3, 5, size=500), 1)
                   if (drift.learn_one(x), drift.score())[1] > THRESHOLDS.feed_score_psi)
    assert crossed <= 500
