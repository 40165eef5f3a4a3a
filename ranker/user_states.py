"""The user states a ranker holds: compact per user (:class:`HeldState`), grouped by the partition they came from.

The ranker owns the users of the ``user-states`` partitions its group assigned it. A revoked partition's
users are dropped together (:meth:`UserStates.revoke`), and an assigned one's are loaded together from the
compacted log (:meth:`UserStates.assign`), so the store is kept per partition.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Collection, Iterator

import numpy as np

from flitfeed.streams.events import UserState

__all__ = ["HeldState", "UserStates"]


@dataclass(frozen=True, slots=True)
class HeldState:
    """What the ranker keeps per user: the parts of a :class:`UserState` a feed needs, compactly.

    A decoded ``UserState`` holds its taste as 384 Python floats (~12 KB per user); this holds
    float32 (1.5 KB per version held) and interns flit ids and authors, which many users share. Measured by
    ``benchmarks/user_memory.py`` (``ranker_state`` vs ``ranker_held`` columns).

    >>> s = UserState(user_id="u", taste=[0.6, 0.8], seen=["f1"], updated_at=0, trigger_id="e1",
    ...               model_version="a@1", tastes={"b@2": [1.0, 0.0]})
    >>> h = HeldState.of(s, "a@1", held=("a@1", "b@2"))
    >>> h.taste.dtype.name, h.seen, h.trigger_id, h.taste_in("b@2").tolist()
    ('float32', ('f1',), 'e1', [1.0, 0.0])
    """

    user_id: str
    #: The user's taste in each version held (version → unit vector).
    tastes: dict[str, np.ndarray]
    seen: tuple[str, ...]
    muted_authors: tuple[str, ...]
    positives: int
    trigger_id: str
    #: The version served when the state arrived (``taste``).
    serving: str = ""

    @property
    def taste(self) -> np.ndarray | None:
        return self.tastes.get(self.serving)

    def taste_in(self, version: str) -> np.ndarray | None:
        """The user's taste in ``version``; None when the worker has none there (served as a cold start)."""
        return self.tastes.get(version)

    @classmethod
    def of(cls, state: UserState, serving: str | None = None, held: Collection[str] = ()) -> "HeldState":
        """``serving``: the embedding version feeds are ranked with, ``held``: the other versions the ranker
        holds (a switch finds their tastes here). A taste of any other version is dropped: a user with no
        taste in the serving version is served as a cold start until the worker publishes one."""
        primary = state.model_version or serving or ""  # a worker before versions: its taste is the served one's
        raw = dict(state.tastes)
        if state.taste is not None:
            raw[primary] = state.taste
        keep = set(held) | {serving or primary}
        return cls(user_id=state.user_id,
                   tastes={v: np.asarray(t, dtype=np.float32) for v, t in raw.items() if v in keep},
                   seen=tuple(sys.intern(f) for f in state.seen),
                   muted_authors=tuple(sys.intern(a) for a in state.muted_authors),
                   positives=state.positives, trigger_id=state.trigger_id, serving=serving or primary)


class UserStates:
    """partition → user → :class:`HeldState`: the users a ranker serves now.

    >>> states = UserStates()
    >>> states.put(3, HeldState("u", {}, (), (), 0, "e1"))
    >>> states.get(3, "u").trigger_id, states.get(3, "v"), states.get(4, "u"), len(states)
    ('e1', None, None, 1)
    >>> states.revoke(3); len(states)
    0
    """

    def __init__(self) -> None:
        self._by_partition: dict[int, dict[str, HeldState]] = {}

    def get(self, partition: int, user_id: str) -> HeldState | None:
        """The user's state, if this ranker holds one for them on ``partition``."""
        users = self._by_partition.get(partition)
        return None if users is None else users.get(user_id)

    def put(self, partition: int, state: HeldState) -> None:
        self._by_partition.setdefault(partition, {})[state.user_id] = state

    def assign(self, partition: int, states: dict[str, HeldState]) -> None:
        """Hold ``states`` (user → state, as re-read from the log) for a newly assigned partition."""
        self._by_partition[partition] = states

    def revoke(self, partition: int) -> None:
        """Forget a partition's users (another ranker serves them now)."""
        self._by_partition.pop(partition, None)

    def partitions(self) -> Iterator[int]:
        return iter(self._by_partition)

    def __len__(self) -> int:
        return sum(len(users) for users in self._by_partition.values())
