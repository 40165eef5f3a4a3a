"""What each user engages with beyond the taste vector: authors, tags, how much, how mainstream.

:class:`Affinity` learns one interaction at a time (``learn_one``) and answers per request for
many candidates at once (``pair_many``, ``user_stats``), as the ranking model's
features. Per user it holds a bounded, least-recently-used set of authors and tags with their net
engagement (positives add the kind's engagement weight, negatives subtract twice theirs: one hide
says more than one like), the count of positives, and a running mean of how popular the flits the
user engaged with were when they did. Views are neutral here (the taste vector already has them).

>>> a = Affinity(max_users=10, max_entries=4)
>>> a.learn_one("wren", "robin", ("migration",), "like", popularity=0.8)
>>> a.learn_one("wren", "robin", ("migration", "flyway"), "like", popularity=0.6)
>>> a.learn_one("wren", "crow", ("seeds",), "hide")
>>> authors, tags = a.pair_many("wren", ["robin", "crow", "owl"], [("migration",), ("seeds", "migration"), ()])
>>> [round(v, 2) for v in authors], [round(v, 2) for v in tags]
([0.5, -0.5, 0.0], [0.5, 0.0, 0.0])
>>> [round(v, 3) for v in a.user_stats("wren")], a.user_stats("nobody")
([0.091, 0.78], (0.0, 0.0))
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import numpy as np

from flitfeed.streams.vocabulary import KINDS

#: Net engagement at which an affinity reaches 0.5 (``v / (|v| + SATURATION)``).
SATURATION = 2.0
#: Positives at which a user's activity reaches 0.5.
ACTIVITY_HALF = 20.0
#: Weight of the newest positive in the running "mainstream" mean.
MAINSTREAM_RATE = 0.1


class _User:
    __slots__ = ("authors", "tags", "positives", "mainstream")

    def __init__(self) -> None:
        self.authors: OrderedDict[str, float] = OrderedDict()
        self.tags: OrderedDict[str, float] = OrderedDict()
        self.positives = 0
        self.mainstream = 0.0


def _bump(entries: OrderedDict[str, float], key: str, delta: float, capacity: int) -> None:
    entries[key] = entries.get(key, 0.0) + delta
    entries.move_to_end(key)
    while len(entries) > capacity:
        entries.popitem(last=False)


class Affinity:
    def __init__(self, max_users: int = 100_000, max_entries: int = 64) -> None:
        if max_users < 1 or max_entries < 1:
            raise ValueError("max_users and max_entries must be >= 1")
        self.max_users = int(max_users)
        self.max_entries = int(max_entries)
        self._users: OrderedDict[str, _User] = OrderedDict()

    def __len__(self) -> int:
        return len(self._users)

    def learn_one(self, user_id: str, author_id: str | None, tags: Sequence[str], kind: str,
                  popularity: float = 0.0) -> None:
        """Count one interaction; ``author_id`` None when the flit is unknown (only activity counts then).

        ``popularity`` is the flit's popularity feature at that moment, in [0, 1).
        """
        spec = KINDS[kind]
        if spec.polarity == "neutral":
            return
        user = self._users.get(user_id)
        if user is None:
            user = self._users[user_id] = _User()
            if len(self._users) > self.max_users:
                self._users.popitem(last=False)
        self._users.move_to_end(user_id)
        delta = spec.engagement_weight if spec.polarity == "positive" else -2.0 * spec.engagement_weight
        if spec.polarity == "positive":
            user.positives += 1
            rate = 1.0 if user.positives == 1 else MAINSTREAM_RATE
            user.mainstream += rate * (min(1.0, max(0.0, popularity)) - user.mainstream)
        if author_id is not None:
            _bump(user.authors, author_id, delta, self.max_entries)
            for tag in dict.fromkeys(tags):
                _bump(user.tags, tag, delta, self.max_entries)

    def pair_many(self, user_id: str, authors: Sequence[str],
                  tags: Sequence[Sequence[str]]) -> tuple[list[float], list[float]]:
        """Affinity in (-1, 1) to each candidate's author, and to its tags (the mean net engagement over
        them), in one pass per request; 0 for unknown users, authors and tags."""
        a, t = self.pair_arrays(user_id, authors, tags)
        return a.tolist(), t.tolist()

    def pair_arrays(self, user_id: str, authors: Sequence[str],
                    tags: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`pair_many` as two float64 arrays (what a batch hydrator writes into its columns)."""
        user = self._users.get(user_id)
        n = len(authors)
        if user is None:
            return np.zeros(n), np.zeros(n)
        a_of, t_of = user.authors.get, user.tags.get
        a = np.fromiter((a_of(author, 0.0) for author in authors), dtype=np.float64, count=n)
        # Most flits carry one or two tags: spelled out, without a generator per candidate (the profile).
        t = np.fromiter((t_of(ts[0], 0.0) if len(ts) == 1 else
                         (t_of(ts[0], 0.0) + t_of(ts[1], 0.0)) / 2 if len(ts) == 2 else
                         (sum(t_of(x, 0.0) for x in ts) / len(ts) if ts else 0.0) for ts in tags),
                        dtype=np.float64, count=n)
        return a / (np.abs(a) + SATURATION), t / (np.abs(t) + SATURATION)

    def user_stats(self, user_id: str) -> tuple[float, float]:
        """``(activity, mainstream)`` of a user, both in [0, 1); (0, 0) for an unknown user."""
        user = self._users.get(user_id)
        if user is None:
            return 0.0, 0.0
        return user.positives / (user.positives + ACTIVITY_HALF), user.mainstream
