"""One poll of the ranker's inputs becomes one batch of feeds to build: pure, no Kafka.

The ranker reads user-state changes and feed requests in polls of up to a few hundred messages. Under
load one poll holds several state changes of the same user (a burst of likes), and building a feed for
each would serve feeds that are stale the moment they are published. :func:`coalesce` turns a poll's
triggers into the feeds worth building:

* the state changes of one user become **one** feed, built from their newest state, placed where the
  user's last change was, and answering every one of them: ``trigger_id`` is the newest change's
  event id and ``covers`` lists every event id it answers, oldest first (README "Feed");
* a feed request always gets a feed of its own (a client waits for that ``request_id``); it is
  built after the poll's state changes are applied, so it sees the newest state.

>>> jobs = [FeedJob("wren", 10, "e1", "interaction", 1.0, 0), FeedJob("robin", 10, "e2", "interaction", 2.0, 1),
...         FeedJob("wren", 5, "r1", "request", 2.5, 0), FeedJob("wren", 10, "e3", "interaction", 3.0, 0)]
>>> [(j.user_id, j.trigger_id, j.covers) for j in coalesce(jobs)]
[('robin', 'e2', ('e2',)), ('wren', 'r1', ('r1',)), ('wren', 'e3', ('e1', 'e3'))]
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable, Literal


@dataclass(frozen=True, slots=True)
class FeedJob:
    """One feed to build: who for, how many items, and the trigger(s) it answers."""

    user_id: str
    k: int
    #: The newest trigger (interaction ``event_id`` or ``request_id``): the feed's ``trigger_id``.
    trigger_id: str
    trigger_kind: Literal["interaction", "request"]
    #: When the trigger happened (epoch s), per covered trigger: feed latency is measured from each.
    trigger_ts: float
    partition: int
    #: Every trigger id this feed answers, oldest first (just ``trigger_id`` unless coalesced).
    covers: tuple[str, ...] = ()
    covered_ts: tuple[float, ...] = ()
    #: Opaque handles of the input messages (to dead-letter them if building the feed fails).
    sources: tuple[object, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if not self.covers:
            object.__setattr__(self, "covers", (self.trigger_id,))
            object.__setattr__(self, "covered_ts", (self.trigger_ts,))


def coalesce(jobs: Iterable[FeedJob]) -> list[FeedJob]:
    """The feeds to build for one poll (see the module docstring), in the order of their last trigger."""
    merged: dict[tuple[str, str], FeedJob] = {}
    order: list[tuple[str, str]] = []
    for job in jobs:
        key = (job.user_id, "interaction") if job.trigger_kind == "interaction" else (job.user_id, job.trigger_id)
        earlier = merged.pop(key, None)
        if earlier is not None:
            order.remove(key)
            job = replace(job, covers=earlier.covers + job.covers, covered_ts=earlier.covered_ts + job.covered_ts,
                          sources=earlier.sources + job.sources)
        merged[key] = job
        order.append(key)
    return [merged[key] for key in order]
