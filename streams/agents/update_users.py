"""Agent: update each user's profile from their interactions, a batch at a time.

The agent takes what the consumer has delivered when an interaction arrives: up to
``FLITFEED_INTERACTION_BATCH_SIZE`` interactions, gathered for at most ``FLITFEED_INTERACTION_BATCH_GATHER_S``
and never waiting on a timer (:func:`~flitfeed.streams.faust_compat.batches.take_ready`: at a low rate an
interaction is a batch of one at once, under load batches grow with the backlog). Per user in the batch
it reads the profile once, applies that user's interactions in order
(:func:`flitfeed.streams.user_updates.decide_batch`, which calls
:func:`~flitfeed.streams.user_updates.decide` for each) and stores the profile once: one table write and
one changelog record per user per batch. Every applied interaction's state is published. Each user's
interactions are acked after that user's effects, as each event was before:

1. decode every message (an invalid one is dead-lettered and acked), group by partition and user;
2. per user: read the profile, decide (an interaction whose decision fails is dead-lettered, the user's
   others go on);
3. the users with several triggers (``UserBatch.settle``): send their states, back to back, and wait once
   until the broker has all of them (a re-delivery after a crash would re-publish only the last);
4. then user by user, in the order of the batch: store the profile (its own partition:
   :func:`~flitfeed.streams.faust_compat.tables.processing`; on a full disk the write is retried and this
   user and every one after it wait, nothing of theirs sent or acked, as one event at a time did); send
   the user's state (one trigger: after the store, as ``decide`` orders it) and parked records (a position
   parked for the first time is stored as waiting before its record leaves); wait until the changelog
   record is with the Kafka client; count; ack the user's interactions.

The states of a batch still leave together: the producer's linger (``FLITFEED_WORKER_PRODUCER_LINGER_MS``)
gathers what is sent in the same few milliseconds into one request per partition.

A user whose sends or store fail has their interactions dead-lettered as ``processing_error``; the other
users of the batch are not affected. Steps 2 to 4 hold ``ctx.profile_writes``, so a parked retry of one of
the batch's users cannot store in between and be overwritten.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from flitfeed.index.base import IndexedFlit
from flitfeed.streams.agents.common import done, raw_message, ready_batches, run_effects, send_dead_letter, store_profile
from flitfeed.streams.events import DecodeError, Reason
from flitfeed.streams.faust_compat.tables import processing
from flitfeed.streams.user_updates import Pending, UserBatch, decide_batch, decode_user_interaction, group_by_user

if TYPE_CHECKING:
    from flitfeed.streams.app import WorkerContext

log = logging.getLogger(__name__)


def register(ctx: "WorkerContext") -> None:
    w = ctx.settings.worker

    @ctx.app.agent(ctx.interactions, name="update_users")
    async def update_users_agent(stream: Any) -> None:
        async for batch in ready_batches(stream, w.interaction_batch_size, w.interaction_batch_gather_s):
            await process_batch(ctx, batch)  # acks each event once its effects are sent


@dataclass
class _User:
    """One user's part of a batch while the agent carries it out."""

    #: The Faust events of the user's interactions, in order (the last is made current for the table).
    events: list[Any]
    items: list[Pending]
    decided: UserBatch | None = None
    published: list["asyncio.Future[Any]"] = field(default_factory=list)
    #: Why the user's effects failed; their interactions are then dead-lettered instead.
    failed: BaseException | None = None
    #: Where: "read", "send", "settle" or "store" (the profile was not stored, no parked record sent: every
    #: interaction not rejected is dead-lettered), or "park" (stored: only the parked ones are).
    failed_at: str = ""

    def fail(self, exc: BaseException, step: str) -> None:
        self.failed, self.failed_at = exc, step

    @property
    def ok(self) -> bool:
        return self.failed is None and self.decided is not None


async def process_batch(ctx: "WorkerContext", events: Sequence[Any]) -> None:
    """Apply a batch of ``interactions`` events, acking each once its effects are with the Kafka client (and
    the states of users with several triggers with the broker)."""
    m = ctx.metrics
    source_topic = ctx.interactions.get_topic_name()
    now = time.time()
    items: list[Pending] = []
    item_events: list[Any] = []
    for event in events:
        msg = raw_message(event)
        m.consumed.labels(service=m.service, topic=msg.topic).inc()
        try:
            with m.time_stage("decode"):
                interaction = decode_user_interaction(msg, ctx.settings.events, now=now)
        except DecodeError as e:
            await send_dead_letter(ctx, msg, e.reason, e.detail)
            done(event)
            continue
        items.append(Pending(interaction, msg))
        item_events.append(event)
    if not items:
        return
    m.interaction_batch.observe(len(items))
    users = [_User([item_events[n] for n in idx], [items[n] for n in idx]) for idx in group_by_user(items).values()]
    async with ctx.profile_writes:
        lookup = _flits_of(ctx, [item.interaction.flit_id for item in items])
        params, others, worker = ctx.params, ctx.others(), ctx.settings.worker
        for user in users:
            try:
                with processing(user.events[-1]):
                    stored = ctx.profiles.get(user.items[0].interaction.user_id)
                with m.time_stage("user_update"):
                    user.decided = decide_batch(user.items, stored, lookup, source_topic=source_topic, now=now,
                                                params=params, worker=worker, others=others)
            except Exception as exc:  # a profile that cannot be read: this user's interactions only
                user.fail(exc, "read")
                continue
            for n, exc in user.decided.failures:
                log.error("interaction failed", exc_info=exc,
                          extra={"offset": user.items[n].msg.offset, "partition": user.items[n].msg.partition})
        await _settle(ctx, [u for u in users if u.ok and u.decided.settle])  # type: ignore[union-attr]
        for user in users:
            await _finish(ctx, user)


async def _settle(ctx: "WorkerContext", settling: list[_User]) -> None:
    """Send the states of the users with several triggers and wait until the broker has every one."""
    for user in settling:
        try:
            await run_effects(ctx, user.decided.sends, published=user.published)  # type: ignore[union-attr]
        except Exception as exc:
            user.fail(exc, "send")
    settling = [u for u in settling if u.failed is None]
    if not settling:
        return
    with ctx.metrics.time_stage("settle"):
        results = await asyncio.gather(*(asyncio.gather(*u.published) for u in settling), return_exceptions=True)
    for user, result in zip(settling, results):
        if isinstance(result, asyncio.CancelledError):
            raise result  # stopping: the batch stays unacked, never dead-lettered
        if isinstance(result, BaseException):
            user.fail(result, "settle")


async def _finish(ctx: "WorkerContext", user: _User) -> None:
    """Store one user's profile, send the rest of their records, count, and ack their interactions; or
    dead-letter them when their effects failed."""
    decided = user.decided
    if user.ok and decided is not None:
        try:
            if decided.store is not None:
                with processing(user.events[-1]):
                    await store_profile(ctx, decided.store.user_id, decided.store.profile)
        except Exception as exc:
            user.fail(exc, "store")
    if user.ok and decided is not None and not decided.settle:
        try:
            await run_effects(ctx, decided.sends)
        except Exception as exc:
            user.fail(exc, "send")
    if user.ok and decided is not None and decided.parks:
        try:
            await run_effects(ctx, decided.parks)
        except Exception as exc:
            user.fail(exc, "park")
    if decided is not None and decided.store is not None and user.failed_at in ("", "park", "send"):
        await ctx.changelog.wait()  # the profile was stored: its changelog record goes before the ack
    if decided is not None and user.failed_at in ("", "park"):
        await run_effects(ctx, decided.counts)
    if user.failed is not None:
        await _dead_letter_user(ctx, user)
    for event in user.events:
        done(event)


def _flits_of(ctx: "WorkerContext", flit_ids: list[str]) -> Any:
    """The primary version's flits of a batch, read from the index in one call (a lookup for ``decide``)."""
    try:
        known: dict[str, IndexedFlit] = ctx.index.retrieve_many(list(dict.fromkeys(flit_ids)))
    except Exception:  # each interaction looks its flit up alone: only those it fails for are dead-lettered
        log.exception("reading a batch's flits from the index failed; looking them up one by one")
        return lambda flit_id: ctx.index.retrieve_many([flit_id]).get(flit_id)
    return known.get


async def _dead_letter_user(ctx: "WorkerContext", user: _User) -> None:
    """A user whose profile could not be read, or whose effects failed: the interactions whose effect did
    not happen are dead-lettered. Those their decision rejected were dead-lettered with it; when only the
    parked records failed, the applied ones stand (stored)."""
    exc = user.failed
    log.error("updating a user failed; dead-lettering their interactions", exc_info=exc,
              extra={"partition": user.items[0].msg.partition, "interactions": len(user.items), "step": user.failed_at})
    outcomes = user.decided.outcomes if user.decided is not None else ("applied",) * len(user.items)
    lost = ("park",) if user.failed_at == "park" else ("applied", "duplicate", "park")
    for item, outcome in zip(user.items, outcomes):
        if outcome in lost:
            await send_dead_letter(ctx, item.msg, Reason.PROCESSING_ERROR, repr(exc))
