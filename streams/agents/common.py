"""What every agent shares: reading a Faust event as a raw message, and the dead-letter path."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, AsyncIterator

from flitfeed.streams.dead_letter import dead_letter
from flitfeed.streams.embedding import RawMessage
from flitfeed.streams.events import Reason

if TYPE_CHECKING:
    from flitfeed.streams.app import WorkerContext


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
