"""What every agent shares: reading a Faust event as a raw message, running effects, the dead-letter path."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterable

import numpy as np

from flitfeed.streams.dead_letter import dead_letter
from flitfeed.streams.effects import (Count, Effect, ObserveFlits, ObserveTaste, Park, Publish, RawMessage, Reject,
                                      StoreProfile)
from flitfeed.streams.events import Interaction, ParkedInteraction, Reason
from flitfeed.streams.faust_compat.batches import take_ready
from flitfeed.streams.state_store import DISK_FULL_RETRY_S, StateDiskFull
from flitfeed.streams.user_updates import Decided, decide

if TYPE_CHECKING:
    from flitfeed.streams.app import WorkerContext

log = logging.getLogger(__name__)


def events(stream: Any) -> AsyncIterator[Any]:
    """The stream's events, acked only by :func:`done`.

    Faust's own acks are not safe for us: ``stream.events()`` acks the current event in its
    ``finally`` and ``stream.take_events()`` acks the whole batch in its ``finally`` -- also when the
    agent is cancelled halfway through an event (a SIGTERM, a crash of the agent), so the offset of
    an event whose effects were never sent gets committed and the event is lost. With manual acks an
    unfinished event stays uncommitted and comes back after the restart (its effects are idempotent).
    """
    return stream.noack().events()


def batches(stream: Any, size: int, within: float) -> AsyncIterator[list[Any]]:
    """Batches of up to ``size`` events (waiting at most ``within`` seconds), acked only by :func:`done`."""
    return stream.noack_take(size, within=within)


def ready_batches(stream: Any, size: int, gather_s: float) -> AsyncIterator[list[Any]]:
    """Batches of up to ``size`` events, each what the stream has ready when its first event arrives
    (gathered for at most ``gather_s``; no timer: :func:`flitfeed.streams.faust_compat.batches.take_ready`),
    acked only by :func:`done`."""
    return take_ready(stream, size, gather_s)


def done(event: Any) -> None:
    """Mark an event processed, so its offset can be committed: call it after its effects are sent.

    The commit flushes the producer first, so the effects reach Kafka before the offset does.
    Acking twice is a no-op.
    """
    event.ack()


def raw_message(event: Any) -> RawMessage:
    m = event.message
    ts = m.timestamp if m.timestamp else time.time()
    return RawMessage(topic=m.topic, partition=m.partition, offset=m.offset, key=m.key, value=m.value,
                      timestamp=float(ts))


async def send_dead_letter(ctx: "WorkerContext", msg: RawMessage, reason: Reason, detail: str) -> None:
    key, value = dead_letter(ctx.metrics, topic=msg.topic, partition=msg.partition, offset=msg.offset,
                             key=msg.key, value=msg.value, reason=reason, detail=detail)
    await ctx.send(ctx.dead_letters, key, value)


async def run_effects(ctx: "WorkerContext", effects: Iterable[Effect],
                      published: list["asyncio.Future[Any]"] | None = None) -> None:
    """Carry out what a decision asked for, in order.

    When a profile was stored, this returns once its changelog record is with the Kafka client: the
    caller acks the event next. ``published``: gets the delivery future of every record a ``Publish`` sent.
    """
    m = ctx.metrics
    stored = False
    for effect in effects:
        match effect:
            case Publish(topic, records):
                target = {"flit_vectors": ctx.flit_vectors, "user_states": ctx.user_states}[topic]
                with m.time_stage("publish"):
                    for key, value in records:
                        delivery = await ctx.send(target, key, value)
                        if published is not None:
                            published.append(delivery)
            case Park(record):
                m.parked.labels(service=m.service).inc()
                await ctx.send(ctx.parked, record.interaction.user_id.encode(), record.to_bytes())
            case Reject(message, reason, detail):
                await send_dead_letter(ctx, message, reason, detail)
            case StoreProfile(user_id, profile):
                await store_profile(ctx, user_id, profile)
                stored = True
            case Count(counter, topic, n):
                getattr(m, counter).labels(service=m.service, topic=topic).inc(n)
            case ObserveTaste(before, after):
                if ctx.monitors is not None:
                    ctx.monitors.learn_taste(before, after)
            case ObserveFlits(points, searchable_at):
                if ctx.monitors is not None and points:
                    ctx.monitors.learn_flits(np.stack([p.vector for p in points]))
                for point in points:
                    m.freshness.labels(service=m.service).observe(max(0.0, searchable_at - point.created_at))
            case _:
                raise TypeError(f"not an effect: {effect!r}")
    if stored:
        await ctx.changelog.wait()


async def store_profile(ctx: "WorkerContext", user_id: str, profile: bytes, retry_s: float = DISK_FULL_RETRY_S) -> None:
    """Write a profile (``UserProfile.to_bytes()``) to the table; on a full disk say so in one line, count
    it, and try again every ``retry_s`` until it fits (the event stays unacked meanwhile: nothing is lost
    or applied twice). Faust sends the changelog record before it writes the local store, so each failed
    try has sent one already: harmless, since each carries the same profile and a re-delivered event whose
    profile is there is a duplicate (its state published again once)."""
    failed = False
    while True:
        try:
            ctx.profiles[user_id] = profile
        except StateDiskFull as exc:
            m = ctx.metrics
            m.state_write_errors.labels(service=m.service, reason="disk_full").inc()
            if not failed:
                log.error(str(exc))
            failed = True
            # A shutdown meanwhile cancels this sleep: the event stays unacked (never dead-lettered).
            await asyncio.sleep(retry_s)
            continue
        if failed:
            log.warning("user state store writable again")
        return


async def update_user(ctx: "WorkerContext", interaction: Interaction, msg: RawMessage,
                      parked: ParkedInteraction | None = None) -> Decided:
    """Apply an interaction from ``interactions`` or a parked retry of it: decide, then run the effects
    (holding ``ctx.profile_writes``: the interactions' batches update the same profiles)."""
    async with ctx.profile_writes:
        with ctx.metrics.time_stage("user_update"):
            decision = decide(interaction, msg, ctx.profiles.get(interaction.user_id),
                              lambda flit_id: ctx.index.retrieve_many([flit_id]).get(flit_id), parked=parked,
                              source_topic=ctx.interactions.get_topic_name(), now=time.time(), params=ctx.params,
                              worker=ctx.settings.worker, others=ctx.others())
        await run_effects(ctx, decision.effects)
    return decision.outcome
