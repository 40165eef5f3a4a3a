"""The ranking model's features: one row per candidate, built with array code for a whole request.

Every feature is bounded (roughly [-1, 1]) so that one learning rate suits them all and a prior
weight reads as "logits per unit". The user-level crosses are what let popularity matter for one
user and taste for another: a new or mainstream user's clicks follow popularity, an active niche
user's follow their taste.

>>> X = feature_matrix(similarity=np.array([0.8, 0.1]), author_affinity=np.zeros(2), tag_affinity=np.zeros(2),
...                    freshness=np.ones(2), popularity=np.array([0.0, 0.9]), co_engagement=np.zeros(2),
...                    co_engagement_abs=np.zeros(2), cold_start=False, activity=0.5, mainstream=0.2)
>>> X.shape == (2, len(FEATURES)), float(X[0, FEATURES.index("similarity_x_activity")])
(True, 0.4)
"""

from __future__ import annotations

import numpy as np

#: Column order of :func:`feature_matrix`. Changing it changes :data:`FEATURE_SET`.
FEATURES: tuple[str, ...] = (
    "bias",
    "similarity",            # cosine to the user's taste, 0 for a cold-start user
    "author_affinity",       # the user's net engagement with the author, in (-1, 1)
    "tag_affinity",          # ... with the flit's tags (topics), in (-1, 1)
    "freshness",             # 2^(-age / half-life), in (0, 1]
    "popularity",            # decayed net engagement, saturating, in (-1, 1)
    "co_engagement",         # co-engagement with the user's positives, relative to this request's best, [0, 1]
    "co_engagement_abs",     # the same, absolute and saturating: weak evidence stays weak, [0, 1)
    "cold_start",            # 1 while the user has no positive signal
    "activity",              # how much the user has engaged, saturating, [0, 1)
    "mainstream",            # how popular what the user engages with is, [0, 1)
    "similarity_x_activity",
    "popularity_x_mainstream",
    "popularity_x_new_user",
    "co_engagement_x_activity",
)
#: Names the feature layout in impressions, examples and model snapshots: rows of another layout are never learned.
FEATURE_SET = "f1:" + ",".join(FEATURES)
N_FEATURES = len(FEATURES)
_COL = {name: i for i, name in enumerate(FEATURES)}


def col(name: str) -> int:
    """Column index of a feature."""
    return _COL[name]


def feature_matrix(*, similarity: np.ndarray, author_affinity: np.ndarray, tag_affinity: np.ndarray,
                   freshness: np.ndarray, popularity: np.ndarray, co_engagement: np.ndarray,
                   co_engagement_abs: np.ndarray, cold_start: bool | np.ndarray, activity: float | np.ndarray,
                   mainstream: float | np.ndarray) -> np.ndarray:
    """The ``(n, N_FEATURES)`` float64 matrix of one request's candidates (per-candidate arrays of length n),
    or of a whole batch's: the user-level ``cold_start``, ``activity`` and ``mainstream`` may be arrays of
    length n too (each row its own feed's values)."""
    n = len(similarity)
    X = np.empty((n, N_FEATURES), dtype=np.float64)
    X[:, _COL["bias"]] = 1.0
    X[:, _COL["similarity"]] = similarity
    X[:, _COL["author_affinity"]] = author_affinity
    X[:, _COL["tag_affinity"]] = tag_affinity
    X[:, _COL["freshness"]] = freshness
    X[:, _COL["popularity"]] = popularity
    X[:, _COL["co_engagement"]] = co_engagement
    X[:, _COL["co_engagement_abs"]] = co_engagement_abs
    X[:, _COL["cold_start"]] = np.where(cold_start, 1.0, 0.0)
    X[:, _COL["activity"]] = activity
    X[:, _COL["mainstream"]] = mainstream
    X[:, _COL["similarity_x_activity"]] = similarity * activity
    X[:, _COL["popularity_x_mainstream"]] = popularity * mainstream
    X[:, _COL["popularity_x_new_user"]] = popularity * (1.0 - activity)
    X[:, _COL["co_engagement_x_activity"]] = co_engagement * activity
    return X
