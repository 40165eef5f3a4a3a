"""P(action | user, candidate), learned online: one small logistic model per action, in numpy.

:class:`ActionModel` predicts, for each candidate row of a feature matrix (:mod:`.features`), the
probability of every action in :data:`~flitfeed.streams.vocabulary.ACTIONS` (engage, dwell,
negative) and scores it ``Σ ACTION_VALUES[a] · P(a)``. It learns from each labelled example
(an impression joined with what the user then did, :mod:`.join`) by one AdaGrad step on the log
loss, with an L2 pull towards the prior, so:

* before any example it *is* the prior (:func:`prior_weights`: the former hand-set blend, so a
  new deployment ranks as flitfeed always did), and with few examples it stays close to it;
* a feature that keeps predicting labels moves its weight as far as the evidence carries it.

Same verbs as river: ``learn_one`` / ``learn_many``, ``predict_many``, mergeable state.

>>> import numpy as np
>>> from flitfeed.ranker.features import N_FEATURES, col
>>> m = ActionModel()
>>> x = np.zeros(N_FEATURES); x[col("bias")] = 1.0; x[col("similarity")] = 0.9
>>> p0 = m.predict_many(x[None, :])[0, 0]
>>> for _ in range(200):
...     _ = m.learn_one(x, {"engage"})
>>> bool(m.predict_many(x[None, :])[0, 0] > p0), m.examples
(True, 200)
>>> ActionModel.from_dict(m.to_dict()).predict_many(x[None, :]).round(6).tolist() == m.predict_many(x[None, :]).round(6).tolist()
True
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

from flitfeed.ranker.features import FEATURE_SET, FEATURES, N_FEATURES
from flitfeed.streams.vocabulary import ACTION_VALUES, ACTIONS

#: Logits per unit of the former hand-set blend's score: P(engage) under the prior is
#: ``σ(ENGAGE_BIAS + PRIOR_SCALE · Σ weight · component)``, a monotone function of the blend, so the
#: prior ranks exactly as the blend did (README "Learning from feedback").
PRIOR_SCALE = 0.5
#: Base rates of the prior: about 5 % of impressed items engaged, 3 % dwelt on, 0.7 % hidden.
BIASES: Mapping[str, float] = {"engage": -3.0, "dwell": -3.5, "negative": -5.0}


def prior_weights(blend: Mapping[str, float] | None = None) -> np.ndarray:
    """The prior as a ``(N_FEATURES, len(ACTIONS))`` matrix: the hand-set blend (``RankerParams().weights()``
    by default: similarity, freshness, engagement, collaborative) on the engage action, base rates on all.

    >>> w = prior_weights({"similarity": 0.6, "collaborative": 6.0})
    >>> float(w[FEATURES.index("similarity"), 0]), float(w[FEATURES.index("co_engagement"), 0])
    (0.3, 3.0)
    """
    if blend is None:
        from flitfeed.ranker.params import RankerParams

        blend = RankerParams().weights()
    w = np.zeros((N_FEATURES, len(ACTIONS)), dtype=np.float64)
    for j, action in enumerate(ACTIONS):
        w[FEATURES.index("bias"), j] = BIASES[action]
    for component, weight in blend.items():
        w[FEATURES.index(_FEATURE_OF[component]), ACTIONS.index("engage")] = PRIOR_SCALE * weight
    return w


#: The blend's components as features (the blend's "engagement" is the popularity feature; its
#: "collaborative" is co-engagement relative to the request's best).
_FEATURE_OF = {"similarity": "similarity", "freshness": "freshness", "engagement": "popularity",
               "collaborative": "co_engagement"}


_VALUES = np.array([ACTION_VALUES[a] for a in ACTIONS], dtype=np.float64)


def values_of(P: np.ndarray) -> np.ndarray:
    """``Σ ACTION_VALUES[a] · P[:, a]`` for each row: the feed objective."""
    return P @ _VALUES


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0)))


class ActionModel:
    """Multi-action online logistic regression (AdaGrad, L2 towards the prior).

    :param learning_rate: AdaGrad step size.
    :param l2: strength of the pull towards the prior per example (keeps rare actions sane).
    :param tracking: weight of the newest example in the running log-loss and calibration figures.
    """

    def __init__(self, learning_rate: float = 0.2, l2: float = 1e-4, tracking: float = 0.002,
                 prior: np.ndarray | None = None) -> None:
        if not (learning_rate > 0 and l2 >= 0 and 0 < tracking <= 1):
            raise ValueError("learning_rate must be > 0, l2 >= 0 and tracking in (0, 1]")
        self.learning_rate = float(learning_rate)
        self.l2 = float(l2)
        self.tracking = float(tracking)
        self.prior = prior_weights() if prior is None else np.asarray(prior, dtype=np.float64)
        self.weights = self.prior.copy()
        # AdaGrad accumulators start at 1: the first steps are learning_rate-sized, not huge.
        self.accum = np.ones_like(self.weights)
        self.examples = 0
        #: Running log loss per action, and running mean prediction and label rate (calibration).
        self.logloss = np.zeros(len(ACTIONS))
        self.mean_prediction = np.zeros(len(ACTIONS))
        self.mean_label = np.zeros(len(ACTIONS))

    # --- predicting -------------------------------------------------------------
    def predict_many(self, X: np.ndarray, prior: bool = False) -> np.ndarray:
        """``(n, len(ACTIONS))`` probabilities for the rows of ``X`` (the prior's when ``prior``)."""
        return _sigmoid(np.asarray(X, dtype=np.float64) @ (self.prior if prior else self.weights))

    def score_many(self, X: np.ndarray, prior: bool = False) -> np.ndarray:
        """The feed objective ``Σ value · P(action)`` for each row of ``X``."""
        return values_of(self.predict_many(X, prior=prior))

    # --- learning -----------------------------------------------------------------
    @staticmethod
    def label_matrix(labels: Iterable[Iterable[str]]) -> np.ndarray:
        """Rows of observed actions → a 0/1 ``(n, len(ACTIONS))`` matrix (unknown action names ignored)."""
        rows = [[1.0 if a in observed else 0.0 for a in ACTIONS] for observed in map(set, labels)]
        return np.array(rows, dtype=np.float64).reshape(len(rows), len(ACTIONS))

    def learn_one(self, x: np.ndarray, actions: Iterable[str]) -> float:
        """Learn one example (feature row, the actions observed); returns its mean log loss."""
        return self.learn_many(np.asarray(x, dtype=np.float64)[None, :], self.label_matrix([actions]))

    def learn_many(self, X: np.ndarray, Y: np.ndarray) -> float:
        """One AdaGrad step per example, in order; returns the examples' mean log loss.

        Rows of ``X`` or ``Y`` that are not finite are skipped (and not counted in ``examples``): the
        callers drop and count them first, so this only keeps one bad row from poisoning every weight.

        The steps are sequential by nature (each starts from the weights the last one left), so the loop
        stays; it is written with preallocated buffers, and the running figures (log loss, calibration),
        which need no step of their own, are folded in once per call. A ranker learns every example of
        every replica's feeds, ~10 per feed: the plain loop of numpy expressions cost 34 µs per example.
        """
        X = np.asarray(X, dtype=np.float64)
        Y = np.asarray(Y, dtype=np.float64)
        finite = np.isfinite(X).all(axis=1) & np.isfinite(Y).all(axis=1)
        if not finite.all():
            X, Y = X[finite], Y[finite]
        n = len(X)
        if n == 0:
            return 0.0
        W, A, prior = self.weights, self.accum, self.prior
        lr, l2 = self.learning_rate, self.l2
        P = np.empty_like(Y)
        g = np.empty_like(W)
        step = np.empty_like(W)
        root = np.empty_like(W)
        for i in range(n):
            # The same operations, in the same order, as the textbook step (so the weights are bit-identical):
            #   p = σ(x·W);  g = x ⊗ (p − y) + l2 (W − prior);  A += g²;  W −= lr · g / √A
            p = _sigmoid(X[i] @ W)
            P[i] = p
            np.multiply.outer(X[i], p - Y[i], out=g)
            if l2:
                np.subtract(W, prior, out=step)
                step *= l2
                g += step
            np.multiply(g, g, out=step)
            A += step
            np.multiply(g, lr, out=step)
            np.sqrt(A, out=root)
            np.divide(step, root, out=step)
            W -= step
        loss = -(Y * np.log(np.maximum(P, 1e-12)) + (1 - Y) * np.log(np.maximum(1 - P, 1e-12)))
        first = self.examples == 0
        self.logloss = self._running(self.logloss, loss, first)
        self.mean_prediction = self._running(self.mean_prediction, P, first)
        self.mean_label = self._running(self.mean_label, Y, first)
        self.examples += n
        return float(loss.mean())

    def _running(self, s: np.ndarray, V: np.ndarray, first: bool) -> np.ndarray:
        """The exponential running mean ``s ← s + a (v − s)`` over the rows of ``V`` in one expression
        (``a = tracking``; a model's first example sets it outright)."""
        if first:
            s, V = V[0].copy(), V[1:]
        m = len(V)
        if m == 0:
            return s
        a = self.tracking
        decay = (1.0 - a) ** np.arange(m - 1, -1, -1, dtype=np.float64)
        return (1.0 - a) ** m * s + a * (decay @ V)

    def finite(self) -> bool:
        return bool(np.isfinite(self.weights).all())

    def calibration(self) -> np.ndarray:
        """Running mean prediction / running label rate per action (1 = calibrated; nan without labels)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.mean_label > 0, self.mean_prediction / np.maximum(self.mean_label, 1e-12), np.nan)

    def merge(self, other: "ActionModel") -> "ActionModel":
        """A model whose weights average both, weighted by how many examples each learned."""
        n = self.examples + other.examples
        out = ActionModel(self.learning_rate, self.l2, self.tracking, self.prior)
        if n:
            a = self.examples / n
            out.weights = a * self.weights + (1 - a) * other.weights
            out.accum = self.accum + other.accum - 1.0
            out.logloss = a * self.logloss + (1 - a) * other.logloss
            out.mean_prediction = a * self.mean_prediction + (1 - a) * other.mean_prediction
            out.mean_label = a * self.mean_label + (1 - a) * other.mean_label
        out.examples = n
        return out

    # --- state ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"feature_set": FEATURE_SET, "actions": list(ACTIONS), "examples": self.examples,
                "weights": self.weights.tolist(), "accum": self.accum.tolist(), "logloss": self.logloss.tolist(),
                "mean_prediction": self.mean_prediction.tolist(), "mean_label": self.mean_label.tolist()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], **kwargs: Any) -> "ActionModel":
        """Rebuild a model; raises ValueError for another feature layout, other actions or bad numbers."""
        if d.get("feature_set") != FEATURE_SET or list(d.get("actions", ())) != list(ACTIONS):
            raise ValueError(f"snapshot of another model layout: {str(d.get('feature_set'))[:80]}")
        m = cls(**kwargs)
        shape = (N_FEATURES, len(ACTIONS))
        weights = np.asarray(d["weights"], dtype=np.float64)
        accum = np.asarray(d["accum"], dtype=np.float64)
        if weights.shape != shape or accum.shape != shape:
            raise ValueError(f"snapshot weights have shape {weights.shape}, expected {shape}")
        if not (np.isfinite(weights).all() and np.isfinite(accum).all() and (accum > 0).all()):
            raise ValueError("snapshot weights are not finite")
        m.weights, m.accum = weights, accum
        m.examples = int(d.get("examples", 0))
        for name in ("logloss", "mean_prediction", "mean_label"):
            value = np.asarray(d.get(name, [0.0] * len(ACTIONS)), dtype=np.float64)
            if value.shape == (len(ACTIONS),) and np.isfinite(value).all():
                setattr(m, name, value)
        return m
