"""What each user engages with beyond the taste vector: authors, tags, how much, how mainstream.

:class:`Affinity` learns one interaction at a time (``learn_one``) and answers per request for
many candidates at once (``pair_many``, ``user_stats``), or for a whole batch of feeds (``pair_columns``),
as the ranking model's features. Per user it holds a bounded, least-recently-used set of authors and tags with their net
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
from itertools import chain, repeat
from typing import Callable, Sequence

import numpy as np

from flitfeed.ranker.candidates import positions
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

    def pair_columns(self, user_ids: Sequence[str], query: np.ndarray, author: np.ndarray, author_ids: np.ndarray,
                     flit: np.ndarray, n_flits: int, tags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`pair_arrays` for a whole batch of rows at once, the same numbers: row ``r`` is for user
        ``user_ids[query[r]]``, by author ``author_ids[author[r]]``, flit code ``flit[r]`` (``< n_flits``)
        with tags ``tags[r]`` (the same for every row of a flit).

        Python runs over each user's own bounded entries and over the batch's distinct flits and
        authors, never over its rows: the rows are array work (a per-row dict lookup for author and tags
        was 5-7% of the ranker's loop).

        >>> a = Affinity()
        >>> a.learn_one("wren", "robin", ("migration",), "like")
        >>> tags = np.fromiter([("migration",), ("seeds",), ("migration",)], dtype=object, count=3)
        >>> authors, tags = a.pair_columns(["wren", "crow"], np.array([0, 0, 1]), np.array([0, 1, 0]),
        ...                                np.array(["robin", "owl"], dtype=object), np.array([0, 1, 0]), 2, tags)
        >>> authors.round(2).tolist(), tags.round(2).tolist()
        ([0.33, 0.0, 0.0], [0.33, 0.0, 0.0])
        """
        n = len(query)
        a, t = np.zeros(n), np.zeros(n)
        users = [self._users.get(u) for u in user_ids]
        if n == 0 or not any(users):
            return a, t
        # Authors: each user's held authors in a (user, author code) table, read at every row at once.
        code = positions(author_ids.tolist())
        a = _entries(users, lambda user: user.authors, code)[query * len(author_ids) + author]
        # Tags: the distinct flits' tags numbered once, each row spread over its flit's tags, and each
        # row's mean taken in the order of its tags (the sums pair_arrays makes, to the bit).
        of_flit = np.empty(n_flits, dtype=object)
        of_flit[flit] = tags  # rows of one flit carry the same tags: whichever row is written is the same
        flit_tags = [ts if ts is not None else () for ts in of_flit.tolist()]
        count = np.fromiter(map(len, flit_tags), dtype=np.int64, count=n_flits)
        flat = list(chain.from_iterable(flit_tags))
        if flat:
            tag_code = dict(zip(dict.fromkeys(flat), range(len(flat))))
            n_tags = len(tag_code)
            flat_codes = np.fromiter(map(tag_code.__getitem__, flat), dtype=np.int64, count=len(flat))
            table = _entries(users, lambda user: user.tags, tag_code)
            per_row = count[flit]
            owner = np.repeat(np.arange(n), per_row)
            # Entry j of a row's tags is flat entry start[its flit] + j.
            start = np.cumsum(count) - count
            within = np.arange(len(owner)) - np.repeat(np.cumsum(per_row) - per_row, per_row)
            pair = table[query[owner] * n_tags + flat_codes[np.repeat(start[flit], per_row) + within]]
            sums = np.bincount(owner, weights=pair, minlength=n)
            t = np.divide(sums, per_row, out=np.zeros(n), where=per_row > 0)
        return a / (np.abs(a) + SATURATION), t / (np.abs(t) + SATURATION)

    def user_stats(self, user_id: str) -> tuple[float, float]:
        """``(activity, mainstream)`` of a user, both in [0, 1); (0, 0) for an unknown user."""
        user = self._users.get(user_id)
        if user is None:
            return 0.0, 0.0
        return user.positives / (user.positives + ACTIVITY_HALF), user.mainstream


def _entries(users: Sequence[_User | None], entries_of: Callable[[_User], OrderedDict[str, float]],
             code: dict[str, int]) -> np.ndarray:
    """Every user's entries that the batch has, as a dense ``(users, len(code))`` table (0 elsewhere)
    flattened: the lookups run in C (``map``), not one Python step per entry."""
    held = [entries_of(u) if u is not None else {} for u in users]
    names = list(chain.from_iterable(held))
    table = np.zeros(len(users) * len(code))
    if names:
        codes = np.fromiter(map(code.get, names, repeat(-1)), dtype=np.int64, count=len(names))
        values = np.fromiter(chain.from_iterable(h.values() for h in held), dtype=np.float64, count=len(names))
        owner = np.repeat(np.arange(len(users)), [len(h) for h in held])
        ok = codes >= 0
        table[owner[ok] * len(code) + codes[ok]] = values[ok]
    return table
