"""Applying one interaction to a user's profile: the domain logic of the user agents.

Plain Python. The agent hands in the decoded interaction, the user's current
profile and a way to look up flits; it gets back what to do: store and publish
the new state, skip a duplicate, park the interaction until its flit exists,
or give up on it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable, Literal

from flitfeed.encoders.user_vector import TasteParams, UserProfile
from flitfeed.index.base import IndexedFlit
from flitfeed.settings import Settings
from flitfeed.streams.events import Interaction, ParkedInteraction, UserState, to_epoch

#: What :func:`apply_interaction` did with an interaction.
Outcome = Literal["applied", "duplicate", "park"]


def taste_params(settings: Settings) -> TasteParams:
    return TasteParams(half_life_s=settings.taste_half_life_s, seen_capacity=settings.seen_capacity,
                       muted_capacity=settings.muted_capacity, dedup_capacity=settings.dedup_capacity)


def apply_interaction(event: Interaction, profile: UserProfile, lookup: Callable[[str], IndexedFlit | None],
                      params: TasteParams) -> Outcome:
    """Apply ``event`` to ``profile`` (in place) if its flit is known.

    A duplicate is recognised before the lookup, so a replay never parks.
    """
    if profile.has_applied(event.event_id):
        return "duplicate"
    flit = lookup(event.flit_id)
    if flit is None:
        return "park"
    profile.learn_one(event.event_id, event.kind, to_epoch(event.ts), flit.vector, flit.author_id,
                      event.flit_id, params, event.dwell_ms)
    return "applied"


def user_state(profile: UserProfile, trigger_id: str, trigger_ts: float) -> UserState:
    """The public state record the ranker consumes (``user-states``, compacted, key = user id)."""
    q = profile.query_vector()
    return UserState(user_id=profile.user_id, taste=None if q is None else q.tolist(),
                     positives=profile.positives, negatives=profile.negatives, last_ts=profile.last_ts,
                     seen=list(profile.seen), muted_authors=list(profile.muted_authors),
                     updated_at=datetime.now(timezone.utc), trigger_id=trigger_id, trigger_ts=trigger_ts)


def retry_delay(attempts: int, settings: Settings) -> float:
    """Exponential back-off for parked interactions.

    >>> s = Settings(park_base_delay_s=0.25, park_max_delay_s=2.0)
    >>> [retry_delay(a, s) for a in range(5)]
    [0.25, 0.5, 1.0, 2.0, 2.0]
    """
    return min(settings.park_base_delay_s * 2.0 ** attempts, settings.park_max_delay_s)


def next_park(parked: ParkedInteraction | None, event: Interaction, raw_b64: str, partition: int, offset: int,
              now: float, settings: Settings) -> ParkedInteraction | None:
    """The parked record for another try, or None when the attempts are used up."""
    attempts = 0 if parked is None else parked.attempts + 1
    if attempts >= settings.park_max_attempts:
        return None
    return ParkedInteraction(interaction=event, raw_b64=raw_b64, source_partition=partition,
                             source_offset=offset, attempts=attempts, not_before=now + retry_delay(attempts, settings))
