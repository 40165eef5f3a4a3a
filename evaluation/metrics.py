"""Ranking metrics as pure functions, and their running aggregation.

One test event asks for a ranked list (the feed, best first) and knows the
relevant items (in the streaming protocol: the one item the user chose next).

>>> ranked = ["a", "b", "c", "d"]
>>> hit_rate(ranked, {"c"}, k=3), hit_rate(ranked, {"d"}, k=3)
(1.0, 0.0)
>>> recall(ranked, {"b", "z"}, k=4)
0.5
>>> round(ndcg(ranked, {"b"}, k=4), 4)       # 1 / log2(3)
0.6309
>>> reciprocal_rank(ranked, {"c", "d"}, k=4)
0.3333333333333333
>>> coverage([["a", "b"], ["b", "c"]], catalog_size=6)
0.5
>>> intra_list_diversity(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]))   # pairs: 1, 0, 1
0.6666666666666666
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence

import numpy as np


def hit_rate(ranked: Sequence[object], relevant: Collection[object], k: int) -> float:
    """1.0 if any relevant item is among the first ``k``, else 0.0."""
    return 1.0 if any(item in relevant for item in ranked[:k]) else 0.0


def recall(ranked: Sequence[object], relevant: Collection[object], k: int) -> float:
    """Share of the relevant items found among the first ``k`` (0.0 when nothing is relevant).

    With one relevant item per test event, as in the streaming protocol, this equals
    :func:`hit_rate` event by event.
    """
    if not relevant:
        return 0.0
    return len(set(ranked[:k]) & set(relevant)) / len(relevant)


def ndcg(ranked: Sequence[object], relevant: Collection[object], k: int) -> float:
    """Binary-relevance NDCG@k: ``Σ_hits 1/log2(rank+1)`` over the best achievable."""
    if not relevant:
        return 0.0
    dcg = sum(1.0 / math.log2(i + 2) for i, item in enumerate(ranked[:k]) if item in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    return dcg / ideal


def reciprocal_rank(ranked: Sequence[object], relevant: Collection[object], k: int) -> float:
    """1/rank of the first relevant item within the first ``k`` (0.0 if none): MRR@k when averaged."""
    for i, item in enumerate(ranked[:k]):
        if item in relevant:
            return 1.0 / (i + 1)
    return 0.0


def coverage(lists: Iterable[Iterable[object]], catalog_size: int) -> float:
    """Share of the catalog that appeared in at least one list."""
    if catalog_size <= 0:
        return 0.0
    distinct: set[object] = set()
    for items in lists:
        distinct.update(items)
    return len(distinct) / catalog_size


def novelty(counts: Sequence[float] | np.ndarray, total: float, n_items: int) -> float:
    """Mean self-information ``-log2 p(i)`` of the recommended items.

    ``counts`` are the interactions each recommended item had received before
    the recommendation, ``total`` the interactions so far over all items;
    ``p(i) = (count_i + 1) / (total + n_items)`` (Laplace-smoothed, so an
    unseen item is finite). Higher = less obvious recommendations.

    >>> round(novelty([0, 0], total=0, n_items=4), 3)     # nothing known yet: uniform, log2(4)
    2.0
    >>> novelty([7], total=7, n_items=1) == 0.0           # the only item, with every interaction
    True
    """
    c = np.asarray(counts, dtype=np.float64)
    if c.size == 0:
        return 0.0
    return float(np.mean(-np.log2((c + 1.0) / (total + n_items))))


def intra_list_diversity(vectors: np.ndarray) -> float:
    """Mean pairwise cosine distance ``1 - cos`` between the items of one list (0.0 below two items).

    Rows are expected L2-normalised (catalog vectors are).
    """
    v = np.asarray(vectors, dtype=np.float64)
    n = len(v)
    if n < 2:
        return 0.0
    sims = v @ v.T
    upper = sims[np.triu_indices(n, k=1)]
    return float(np.mean(1.0 - upper))


#: The metrics computed per test event, in report order.
EVENT_METRICS = ("hr", "recall", "ndcg", "mrr", "novelty", "diversity")


class MetricLog:
    """Per-event metric values of one method, with each event's time window.

    >>> log = MetricLog()
    >>> log.add("1996", {"hr": 1.0, "recall": 1.0, "ndcg": 1.0, "mrr": 1.0, "novelty": 2.0, "diversity": 0.5},
    ...         ["a", "b"])
    >>> log.add("1997", {"hr": 0.0, "recall": 0.0, "ndcg": 0.0, "mrr": 0.0, "novelty": 4.0, "diversity": 0.7},
    ...         ["b", "c"])
    >>> s = log.summary(catalog_size=4)
    >>> s["hr"], s["novelty"], s["coverage"], s["events"]
    (0.5, 3.0, 0.75, 2)
    >>> sorted(log.by_window(catalog_size=4))
    ['1996', '1997']
    """

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {name: [] for name in EVENT_METRICS}
        self.windows: list[str] = []
        self.recommended: dict[str, set[object]] = {}

    def add(self, window: str, values: dict[str, float], items: Iterable[object]) -> None:
        for name in EVENT_METRICS:
            self.values[name].append(float(values[name]))
        self.windows.append(window)
        self.recommended.setdefault(window, set()).update(items)

    def __len__(self) -> int:
        return len(self.windows)

    def summary(self, catalog_size: int) -> dict[str, float]:
        out: dict[str, float] = {name: float(np.mean(v)) if v else 0.0 for name, v in self.values.items()}
        out["coverage"] = coverage(self.recommended.values(), catalog_size)
        out["events"] = len(self.windows)
        return out

    def by_window(self, catalog_size: int) -> dict[str, dict[str, float]]:
        windows = np.asarray(self.windows, dtype=object)
        out: dict[str, dict[str, float]] = {}
        for w in dict.fromkeys(self.windows):
            mask = windows == w
            row = {name: float(np.mean(np.asarray(v)[mask])) for name, v in self.values.items()}
            row["coverage"] = coverage([self.recommended.get(w, set())], catalog_size)
            row["events"] = int(mask.sum())
            out[str(w)] = row
        return out
