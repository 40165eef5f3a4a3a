"""Drift statistics computed on the stream, in pure numpy with bounded memory.

Three signals, each compared with a documented threshold (``DriftThresholds``):

* **Embedding drift** (:class:`EmbeddingDrift`) of newly embedded flits against a
  *reference window* (the first ``reference_size`` flits this process embedded
  with the current model) versus a *current window* (the latest ``window_size``
  flits, a ring buffer). Three two-sample statistics:

  - ``embedding_centroid``: cosine distance between the two windows' centroids
    (0 = same mean direction; cheap, sensitive to a shift of the average topic);
  - ``embedding_mmd``: unbiased squared Maximum Mean Discrepancy with a Gaussian
    kernel whose bandwidth is the median pairwise distance in the reference
    (a proper two-sample statistic: 0 in expectation when both windows come from
    the same distribution, sensitive to any change of the distribution's shape);
  - ``embedding_psi``: Population Stability Index per direction on
    ``projections`` fixed random projections, binned at the reference's
    quantiles, averaged over directions (the classic credit-risk reading applies:
    < 0.1 stable, 0.1–0.25 moderate, > 0.25 a real shift).

* **User-vector drift** (:class:`UserVectorDrift`): how far each update moves a
  user's taste (cosine distance before → after; exported as a counter so its rate
  is the movement per second), and the cosine distance between the centroid of
  updated tastes in a reference window and in the latest window (the drift score).

* **Score drift** (:class:`ScalarDrift`): PSI of the top similarity score of
  published feeds, current window against a reference window.

Memory is bounded by the window sizes: ``(reference_size + window_size) × dim``
floats for embeddings, ``window_size`` floats for the scalar signals. Every
update is O(dim · projections); the MMD (O(reference_size · window_size · dim))
is computed only when :meth:`EmbeddingDrift.scores` is called (on the metrics
export timer, not per flit).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> d = EmbeddingDrift(dim=8, reference_size=200, window_size=200, seed=1)
>>> d.learn_many(rng.normal(loc=1.0, size=(400, 8)))     # reference, then the same distribution
>>> s = d.scores()
>>> s["embedding_centroid"] < 0.01 and s["embedding_psi"] < 0.15 and abs(s["embedding_mmd"]) < 0.01
True
>>> d.learn_many(rng.normal(loc=3.0, size=(200, 8)))     # same direction, shifted: MMD and PSI see it
>>> s = d.scores()
>>> s["embedding_mmd"] > 0.5 and s["embedding_psi"] > 1.0
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "DriftThresholds",
    "EmbeddingDrift",
    "ScalarDrift",
    "UserVectorDrift",
    "centroid_cosine_distance",
    "mmd2_unbiased",
    "psi",
    "quantile_edges",
]

#: Smoothing for empty bins: PSI is undefined for a zero proportion.
_PSI_EPS = 1e-4


@dataclass(frozen=True, slots=True)
class DriftThresholds:
    """Above these a drift signal alerts (README, "Drift"); the values, and why, are the
    ``drift_threshold_*`` settings (``MonitoringConfig``), built by ``monitors.drift_thresholds``."""

    embedding_centroid: float
    embedding_mmd: float
    embedding_psi: float
    user_vector: float
    feed_score_psi: float


def psi(expected: np.ndarray, actual: np.ndarray, eps: float = _PSI_EPS) -> float:
    """Population Stability Index between two histograms (counts or proportions).

    ``Σ (a - e) · ln(a / e)`` over bins, after normalising and flooring at ``eps``.

    >>> round(psi(np.array([0.5, 0.5]), np.array([0.25, 0.75])), 4)
    0.2747
    >>> psi(np.array([3, 1]), np.array([30, 10]))
    0.0
    """
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    e = np.maximum(e / e.sum(axis=-1, keepdims=True), eps)
    a = np.maximum(a / a.sum(axis=-1, keepdims=True), eps)
    return float(np.sum((a - e) * np.log(a / e)))


def quantile_edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """Inner bin edges at the reference's quantiles, per column: shape ``(bins - 1, columns)``.

    >>> quantile_edges(np.arange(100.0)[:, None], 4).ravel().tolist()
    [24.75, 49.5, 74.25]
    """
    qs = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    return np.quantile(np.asarray(reference, dtype=np.float64), qs, axis=0)


def _bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value, column by column: ``values`` (n, k), ``edges`` (bins-1, k) → ints (n, k)."""
    return np.stack([np.searchsorted(edges[:, j], values[:, j], side="right") for j in range(values.shape[1])],
                    axis=1)


def centroid_cosine_distance(a: np.ndarray, b: np.ndarray) -> float:
    """1 − cosine similarity of the two means (row vectors); 0 for identical directions.

    >>> centroid_cosine_distance(np.array([[1.0, 0.0]]), np.array([[0.0, 2.0]]))
    1.0
    """
    ma, mb = np.asarray(a, dtype=np.float64).mean(axis=0), np.asarray(b, dtype=np.float64).mean(axis=0)
    na, nb = np.linalg.norm(ma), np.linalg.norm(mb)
    if na == 0.0 or nb == 0.0:
        return 0.0 if na == nb else 1.0
    return float(1.0 - ma @ mb / (na * nb))


def _sq_dists(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    d = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * x @ y.T
    return np.maximum(d, 0.0)


def median_bandwidth(x: np.ndarray) -> float:
    """The median heuristic: median pairwise Euclidean distance (off-diagonal) within ``x``."""
    d = _sq_dists(x, x)
    off = d[~np.eye(len(x), dtype=bool)]
    med = float(np.sqrt(np.median(off))) if off.size else 1.0
    return med if med > 0 else 1.0


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, bandwidth: float) -> float:
    """Unbiased estimate of MMD² with kernel ``k(a, b) = exp(-|a - b|² / (2 · bandwidth²))``.

    Zero in expectation when ``x`` and ``y`` come from one distribution (it can dip below 0);
    at most 2.

    >>> rng = np.random.default_rng(0)
    >>> abs(mmd2_unbiased(rng.normal(size=(300, 2)), rng.normal(size=(300, 2)), 1.0)) < 0.01
    True
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    g = -0.5 / (bandwidth * bandwidth)
    kxx = np.exp(g * _sq_dists(x, x))
    kyy = np.exp(g * _sq_dists(y, y))
    kxy = np.exp(g * _sq_dists(x, y))
    m, n = len(x), len(y)
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


class _Ring:
    """A fixed-size ring buffer of rows (the current window)."""

    def __init__(self, size: int, width: int, dtype: type = np.float32) -> None:
        self.data = np.zeros((size, width), dtype=dtype)
        self.size = size
        self.count = 0  # rows written in total
        self.pos = 0

    def push(self, row: np.ndarray) -> np.ndarray | None:
        """Store ``row``; returns the row it evicted (None while the window fills)."""
        old = self.data[self.pos].copy() if self.count >= self.size else None
        self.data[self.pos] = row
        self.pos = (self.pos + 1) % self.size
        self.count += 1
        return old

    @property
    def full(self) -> bool:
        return self.count >= self.size

    def rows(self) -> np.ndarray:
        return self.data if self.full else self.data[: self.count]


class EmbeddingDrift:
    """Drift of a stream of embedding vectors: reference window (first ``reference_size``) vs latest ``window_size``.

    :param dim: vector dimension.
    :param reference_size: vectors in the reference window (frozen once full).
    :param window_size: vectors in the sliding current window.
    :param projections: random directions for the PSI.
    :param bins: PSI bins per direction (quantiles of the reference).
    :param seed: seeds the random projections (fixed: runs repeat).
    :param bandwidth: MMD kernel bandwidth; ``None`` = median heuristic on the reference.
    :param with_mmd: compute the MMD (the costly statistic) in :meth:`scores`.

    ``learn_one``/``learn_many`` feed vectors; :meth:`scores` returns the three statistics once both
    windows are full, else ``{}`` (a half-filled window's statistics are mostly sampling noise).
    :meth:`reset` starts a new reference (a new embedding model makes old vectors incomparable).
    """

    def __init__(self, dim: int, reference_size: int = 500, window_size: int = 500, projections: int = 16,
                 bins: int = 10, seed: int = 0, bandwidth: float | None = None, with_mmd: bool = True) -> None:
        if reference_size < 2 or window_size < 2 or bins < 2 or projections < 1:
            raise ValueError("windows need >= 2 vectors, >= 2 bins and >= 1 projection")
        self.dim, self.reference_size, self.window_size = dim, reference_size, window_size
        self.bins, self._fixed_bandwidth, self.with_mmd = bins, bandwidth, with_mmd
        rng = np.random.default_rng(seed)
        self.projection = rng.normal(size=(dim, projections)) / np.sqrt(dim)
        self.reset()

    def reset(self) -> None:
        self._reference = np.zeros((self.reference_size, self.dim), dtype=np.float32)
        self._n_reference = 0
        self._window = _Ring(self.window_size, self.dim)
        self._window_bins = _Ring(self.window_size, self.projection.shape[1], dtype=np.int64)
        self._window_sum = np.zeros(self.dim, dtype=np.float64)
        self._counts = np.zeros((self.projection.shape[1], self.bins), dtype=np.int64)
        self._edges: np.ndarray | None = None
        self._reference_hist: np.ndarray | None = None
        self.bandwidth: float | None = None

    @property
    def n_reference(self) -> int:
        return self._n_reference

    @property
    def n_window(self) -> int:
        return min(self._window.count, self.window_size)

    def learn_many(self, vectors: np.ndarray) -> None:
        for v in np.atleast_2d(np.asarray(vectors, dtype=np.float32)):
            self.learn_one(v)

    def learn_one(self, vector: np.ndarray) -> None:
        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        if v.shape[0] != self.dim:
            raise ValueError(f"expected a {self.dim}-d vector, got {v.shape[0]}")
        if self._n_reference < self.reference_size:
            self._reference[self._n_reference] = v
            self._n_reference += 1
            if self._n_reference == self.reference_size:
                self._freeze_reference()
            return
        assert self._edges is not None
        idx = _bin_index((v.astype(np.float64) @ self.projection)[None, :], self._edges)[0]
        old = self._window.push(v)
        old_idx = self._window_bins.push(idx)
        self._window_sum += v
        cols = np.arange(len(idx))
        self._counts[cols, idx] += 1
        if old is not None and old_idx is not None:
            self._window_sum -= old
            self._counts[cols, old_idx] -= 1

    def _freeze_reference(self) -> None:
        ref = self._reference.astype(np.float64)
        projected = ref @ self.projection
        self._edges = quantile_edges(projected, self.bins)
        self._reference_hist = np.stack([np.bincount(col, minlength=self.bins)
                                         for col in _bin_index(projected, self._edges).T])
        if self.with_mmd:
            self.bandwidth = self._fixed_bandwidth or median_bandwidth(ref)

    def scores(self) -> dict[str, float]:
        """``{"embedding_centroid", "embedding_mmd", "embedding_psi"}`` once both windows are full, else ``{}``."""
        if self._reference_hist is None or not self._window.full:
            return {}
        window = self._window.rows().astype(np.float64)
        ref_mean = self._reference.astype(np.float64).mean(axis=0)
        cur_mean = self._window_sum / self.window_size
        out = {
            "embedding_centroid": centroid_cosine_distance(ref_mean[None, :], cur_mean[None, :]),
            "embedding_psi": float(np.mean([psi(r, c) for r, c in zip(self._reference_hist, self._counts)])),
        }
        if self.with_mmd:
            out["embedding_mmd"] = mmd2_unbiased(self._reference, window, float(self.bandwidth or 1.0))
        return out


class ScalarDrift:
    """PSI of a scalar stream (e.g. feeds' top similarity): first ``reference_size`` values vs latest ``window_size``.

    >>> rng = np.random.default_rng(0)
    >>> s = ScalarDrift(reference_size=300, window_size=300)
    >>> for x in rng.normal(size=600): s.learn_one(x)
    >>> s.score() < 0.1
    True
    >>> for x in rng.normal(loc=2.0, size=300): s.learn_one(x)
    >>> s.score() > 1.0
    True
    """

    def __init__(self, reference_size: int = 500, window_size: int = 500, bins: int = 10) -> None:
        self.reference_size, self.window_size, self.bins = reference_size, window_size, bins
        self._reference: list[float] = []
        self._edges: np.ndarray | None = None
        self._reference_hist: np.ndarray | None = None
        self._window = _Ring(window_size, 1, dtype=np.int64)
        self._counts = np.zeros(bins, dtype=np.int64)

    @property
    def n_reference(self) -> int:
        return self.reference_size if self._edges is not None else len(self._reference)

    @property
    def n_window(self) -> int:
        return min(self._window.count, self.window_size)

    def learn_one(self, value: float) -> None:
        if self._edges is None:
            self._reference.append(float(value))
            if len(self._reference) == self.reference_size:
                ref = np.asarray(self._reference)[:, None]
                self._edges = quantile_edges(ref, self.bins)
                self._reference_hist = np.bincount(_bin_index(ref, self._edges)[:, 0], minlength=self.bins)
                self._reference = []  # only the histogram is needed from now on
            return
        b = int(_bin_index(np.array([[float(value)]]), self._edges)[0, 0])
        old = self._window.push(np.array([b]))
        self._counts[b] += 1
        if old is not None:
            self._counts[int(old[0])] -= 1

    def score(self) -> float | None:
        """PSI once both windows are full, else None."""
        if self._reference_hist is None or not self._window.full:
            return None
        return psi(self._reference_hist, self._counts)


class UserVectorDrift:
    """How far users' tastes move: per update, and as a population against a reference window.

    Each update records the cosine distance the user's taste moved (:meth:`learn_one` returns it; the
    service adds it to a counter, whose ``rate()`` is the movement per second). Per-update moves shrink
    as a taste accumulates evidence and are second-order in the size of a change, so the *drift score* is
    population-level instead: the cosine distance between the centroid of updated tastes in the reference
    window (first ``reference_size`` updates) and in the latest ``window_size`` updates. Stable interests
    keep it near 0; when users' interests turn elsewhere, their tastes (and their centroid) follow.

    >>> u = UserVectorDrift(reference_size=2, window_size=2)
    >>> u.learn_one(np.array([1.0, 0.0]), np.array([0.0, 1.0]))
    1.0
    >>> u.learn_one(None, np.array([0.0, 1.0]))   # a first taste has no "before": no move, still counted
    >>> u.score() is None                          # reference full, current window empty
    True
    >>> for _ in range(2): _ = u.learn_one(np.array([0.0, 1.0]), np.array([1.0, 0.0]))
    >>> u.score()
    1.0
    """

    def __init__(self, reference_size: int = 500, window_size: int = 500) -> None:
        self.reference_size, self.window_size = reference_size, window_size
        self._dim: int | None = None
        self._drift: EmbeddingDrift | None = None

    def learn_one(self, before: np.ndarray | None, after: np.ndarray | None) -> float | None:
        """Record one taste update; returns the move (None when either side has no direction)."""
        a = _direction(after)
        if a is None:
            return None
        if self._drift is None or self._dim != a.shape[0]:
            self._dim = a.shape[0]
            self._drift = EmbeddingDrift(self._dim, self.reference_size, self.window_size, projections=1,
                                         bins=2, with_mmd=False)
        self._drift.learn_one(a)
        b = _direction(before)
        if b is None:
            return None
        return float(np.clip(1.0 - b @ a, 0.0, 2.0))

    def score(self) -> float | None:
        """Centroid cosine distance, reference vs current window, once both are full; else None."""
        scores = self._drift.scores() if self._drift is not None else {}
        return scores.get("embedding_centroid")


def _direction(vector: np.ndarray | None) -> np.ndarray | None:
    """``vector`` as a unit float64 vector; None when it is missing or zero (it has no direction)."""
    if vector is None:
        return None
    v = np.asarray(vector, dtype=np.float64).reshape(-1)
    norm = np.linalg.norm(v)
    return None if norm == 0.0 else v / norm
