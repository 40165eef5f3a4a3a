"""Item-to-item co-engagement learned online from the interaction stream.

The collaborative half of flitfeed's hybrid model. Two flits are related when
the same users engage positively with both; a user's collaborative score for
a flit is how related it is to what they engaged with recently::

    sim(i, j)   = C[i, j] / (n_i^β · n_j^(1-β))          (β = 0.5: cosine of co-engagement)
    score(u, c) = Σ_{j ∈ H_u} ρ^age(j) · sim(j, c)

where ``C[i, j]`` counts users who engaged with both ``i`` and ``j`` (within
``history`` positives of each other), ``n_i`` counts positive engagements of
``i``, ``H_u`` is the user's last ``history`` positive flits and ``age(j)``
how many positives ago ``j`` was (``ρ = recency``). Each positive updates one
row and one column (O(history)); a score vector for one user is one small
matrix product (O(history · flits)). This is streaming item-kNN: it needs no
retraining, reacts to the very last interaction, and is exactly zero for a
flit nobody engaged with yet, which is where the content similarity (cold
start from text alone) and exploration take over.

Memory is bounded: the matrix is dense over at most ``capacity`` flits
(``4·capacity²`` bytes: 5,000 flits → 100 MB); when full, the flit engaged
least recently is evicted and its slot reused. At most ``max_users``
histories are kept (least recently active evicted).

Plain, synchronous, not thread-safe; fed from the ranker's interactions
reader (every partition: co-engagement is global).

>>> ce = CoEngagement(capacity=10, history=5)
>>> for user, flit in [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b"), ("u2", "c"), ("u3", "a")]:
...     _ = ce.learn_one(user, flit, "like", ts=0.0)
>>> scores = ce.score_many("u3", ["b", "c", "zz"])     # u3 liked "a": "b" co-occurs with it more than "c"
>>> bool(scores[0] > scores[1] > 0), float(scores[2])
(True, 0.0)
>>> ce.learn_one("u3", "a", "view", ts=0.0)          # only positive kinds count
False
>>> [f for f, _ in ce.top("u3", 5, exclude={"a"})]
['b', 'c']
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Collection, Sequence

import numpy as np

from flitfeed.streams.vocabulary import positive_kinds

#: Interaction kinds that count as co-engagement.
POSITIVE_KINDS = positive_kinds()


class CoEngagement:
    def __init__(self, capacity: int = 5000, history: int = 50, recency: float = 0.95, beta: float = 0.5,
                 max_users: int = 100_000) -> None:
        if capacity < 1 or history < 1 or max_users < 1:
            raise ValueError("capacity, history and max_users must be >= 1")
        if not 0 < recency <= 1 or not 0 <= beta <= 1:
            raise ValueError(f"recency must be in (0, 1] and beta in [0, 1], got {recency}, {beta}")
        self.capacity = int(capacity)
        self.history = int(history)
        self.recency = float(recency)
        self.beta = float(beta)
        self.max_users = int(max_users)
        size = min(self.capacity, 1024)
        self._c = np.zeros((size, size), dtype=np.float32)
        self._n = np.zeros(size, dtype=np.float32)
        self._last = np.full(size, -np.inf, dtype=np.float64)  # last engagement time, for eviction
        self._gen = np.zeros(size, dtype=np.int64)  # bumped when a slot is reused
        self._row: dict[str, int] = {}
        self._ids: list[str | None] = [None] * size
        self._users: OrderedDict[str, deque[tuple[int, int]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._row)

    def learn_one(self, user_id: str, flit_id: str, kind: str, ts: float) -> bool:
        """Count a positive engagement; returns False (no change) for other kinds."""
        if kind not in POSITIVE_KINDS:
            return False
        i = self._slot(flit_id, ts)
        hist = self._history(user_id)
        rows = [r for r, g in hist if self._gen[r] == g and r != i]
        if rows:
            idx = np.fromiter(dict.fromkeys(rows), dtype=np.int64)
            self._c[i, idx] += 1.0
            self._c[idx, i] += 1.0
        self._n[i] += 1.0
        self._last[i] = max(self._last[i], ts)
        # The flit moves to the most recent position of the history.
        for pos, (r, g) in enumerate(hist):
            if r == i and self._gen[r] == g:
                del hist[pos]
                break
        hist.append((i, int(self._gen[i])))
        return True

    def _history(self, user_id: str) -> deque[tuple[int, int]]:
        hist = self._users.get(user_id)
        if hist is None:
            hist = self._users[user_id] = deque(maxlen=self.history)
            if len(self._users) > self.max_users:
                self._users.popitem(last=False)
        else:
            self._users.move_to_end(user_id)
        return hist

    def _slot(self, flit_id: str, ts: float) -> int:
        i = self._row.get(flit_id)
        if i is not None:
            return i
        if len(self._row) < len(self._ids):
            i = len(self._row)
        elif len(self._ids) < self.capacity:
            self._grow(min(self.capacity, 2 * len(self._ids)))
            i = len(self._row)
        else:
            i = int(np.argmin(self._last))  # the flit engaged least recently makes room
            old = self._ids[i]
            if old is not None:
                del self._row[old]
            self._c[i, :] = 0.0
            self._c[:, i] = 0.0
            self._n[i] = 0.0
            self._gen[i] += 1
        self._row[flit_id] = i
        self._ids[i] = flit_id
        self._last[i] = ts
        return i

    def _grow(self, size: int) -> None:
        old = len(self._ids)
        c = np.zeros((size, size), dtype=np.float32)
        c[:old, :old] = self._c
        self._c = c
        self._n = np.concatenate([self._n, np.zeros(size - old, dtype=np.float32)])
        self._last = np.concatenate([self._last, np.full(size - old, -np.inf)])
        self._gen = np.concatenate([self._gen, np.zeros(size - old, dtype=np.int64)])
        self._ids.extend([None] * (size - old))

    def user_scores(self, user_id: str) -> np.ndarray | None:
        """The score of every slot for ``user_id`` (None without history). Does not touch LRU order."""
        hist = self._users.get(user_id)
        if not hist:
            return None
        live = [(r, g) for r, g in hist if self._gen[r] == g]
        if not live:
            return None
        rows = np.array([r for r, _ in live], dtype=np.int64)
        # Most recent last: weight ρ^0 for it, ρ^1 for the one before, ...
        weights = self.recency ** np.arange(len(rows) - 1, -1, -1, dtype=np.float32)
        n = np.maximum(self._n, 1.0)
        weights = weights / n[rows] ** self.beta
        raw = weights @ self._c[rows]
        return raw / n ** (1.0 - self.beta)

    def score_many(self, user_id: str, flit_ids: Sequence[str]) -> np.ndarray:
        """Scores of ``flit_ids`` for ``user_id`` (0 for unknown flits or a user without history)."""
        out = np.zeros(len(flit_ids), dtype=np.float32)
        scores = self.user_scores(user_id)
        if scores is None:
            return out
        for k, fid in enumerate(flit_ids):
            i = self._row.get(fid)
            if i is not None:
                out[k] = scores[i]
        return out

    def slots_of(self, flit_ids: Sequence[str]) -> np.ndarray:
        """The slot of each flit in :meth:`user_scores`' vector (-1 for a flit it does not know), so a
        batch of users' scores of the same flits is array indexing.

        >>> ce = CoEngagement(capacity=4)
        >>> _ = ce.learn_one("u", "a", "like", ts=0.0)
        >>> ce.slots_of(["zz", "a"]).tolist()
        [-1, 0]
        """
        get = self._row.get
        return np.fromiter((get(f, -1) for f in flit_ids), dtype=np.int64, count=len(flit_ids))

    def top(self, user_id: str, n: int, exclude: Collection[str] = ()) -> list[tuple[str, float]]:
        """The ``n`` best-scoring flits (score > 0) for ``user_id``, best first, none in ``exclude``."""
        scores = self.user_scores(user_id)
        if scores is None or n <= 0:
            return []
        scores = scores.copy()
        for fid in exclude:
            i = self._row.get(fid)
            if i is not None:
                scores[i] = 0.0
        m = min(n, len(scores))
        idx = np.argpartition(-scores, m - 1)[:m]
        idx = idx[np.lexsort((idx, -scores[idx]))]
        return [(self._ids[i], float(scores[i])) for i in idx if scores[i] > 0 and self._ids[i] is not None]
