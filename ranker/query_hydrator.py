"""Query hydration: the first stage of a feed, from "build a feed for this user" to the pipeline's query.

A :class:`~flitfeed.ranker.batching.FeedJob` says whose feed to build and why; the pipeline needs the
user as it is now (:class:`~flitfeed.ranker.query.FeedQuery`: their taste in the embedding version
served, what they have seen, whom they muted). Looking the user up is a stage of its own, like the
candidate pipeline's sources and scorers: it reads one injected store (:class:`StateLookup`: the
ranker's :mod:`~flitfeed.ranker.user_store`, in memory or RocksDB, or a dict in a test), the batch's users
in one call, and nothing else, never the clock (``now`` is given) and never Kafka.

>>> from flitfeed.ranker.batching import FeedJob
>>> from flitfeed.ranker.user_store import MemoryUserStore
>>> states = MemoryUserStore()
>>> states.put(0, "wren", HeldState("wren", {"m@1": np.array([0.6, 0.8], dtype=np.float32)}, ("f1",), (), 2, "e1", "m@1"))
>>> hydrator = QueryHydrator(states)
>>> wren, robin = hydrator.hydrate([FeedJob("wren", 10, "e1", "interaction", 0.0, 0),
...                                 FeedJob("robin", 5, "r1", "request", 0.0, 1)], now=9.0, version="m@1")
>>> wren.taste.tolist(), sorted(wren.seen), wren.cold_start, wren.trigger_id
([0.6000000238418579, 0.800000011920929], ['f1'], False, 'e1')
>>> robin.cold_start, robin.k, robin.now
(True, 5, 9.0)
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from flitfeed.ranker.batching import FeedJob
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.held import HeldState
from flitfeed.streams.events import UserState

__all__ = ["QueryHydrator", "StateLookup", "feed_query"]


class StateLookup(Protocol):
    """Where users' latest states are found: by the partition each trigger came from, and the user's id
    (one call for a batch: a store on disk reads them together)."""

    def get_many(self, keys: Sequence[tuple[int, str]]) -> Sequence[HeldState | UserState | None]: ...


def feed_query(state: UserState | HeldState | None, user_id: str, k: int, now: float,
               trigger_id: str = "", version: str | None = None) -> FeedQuery:
    """The pipeline's view of a user, with their taste in ``version`` (default: the one served when the state
    arrived); an unknown user is a cold-start query."""
    if state is None:
        return FeedQuery(user_id=user_id, k=k, now=now, trigger_id=trigger_id)
    raw = state.taste_in(version) if version is not None and isinstance(state, HeldState) else state.taste
    taste = None if raw is None else np.asarray(raw, dtype=np.float32)
    return FeedQuery(user_id=user_id, k=k, now=now, taste=taste, seen=frozenset(state.seen),
                     muted_authors=frozenset(state.muted_authors), positives=state.positives, trigger_id=trigger_id)


class QueryHydrator:
    """Turns a batch of feed jobs into the pipeline's queries, each from its user's latest state held."""

    name = "user_state"

    def __init__(self, states: StateLookup) -> None:
        self._states = states

    def hydrate(self, jobs: Sequence[FeedJob], now: float, version: str | None = None) -> list[FeedQuery]:
        """One query per job, in order: the user's taste in ``version`` (None: the version their state was
        served in), ranked as of ``now``; a user without a state held is a cold start."""
        states = self._states.get_many([(job.partition, job.user_id) for job in jobs])
        return [feed_query(state, job.user_id, job.k, now, trigger_id=job.trigger_id, version=version)
                for job, state in zip(jobs, states, strict=True)]
