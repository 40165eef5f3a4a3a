"""What every agent shares: reading a Faust event as a raw message, and the dead-letter path."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from flitfeed.streams.dead_letter import dead_letter
from flitfeed.streams.embedding import RawMessage
from flitfeed.streams.events import Reason

if TYPE_CHECKING:
    from flitfeed.streams.app import WorkerContext


def done(event: Any) -> None:
    """Mark an event processed now, so its offset can be committed.

    Faust acks an event only when its stream fetches the next one; the last event before a
    SIGTERM was therefore never committed and came back (as a duplicate) after every graceful
    restart. Acking right after the effects are sent closes that gap; the commit still waits for
    the producer to flush them. Acking twice is a no-op.
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
