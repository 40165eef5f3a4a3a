"""Agent: update each user's profile from their interactions, one event at a time.

Event by event (not batched) because the profile table's changelog partition
is taken from the event being processed. The decisions are
:func:`flitfeed.streams.user_updates.decide`'s; this loop decodes, runs them and acks.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from flitfeed.streams.agents.common import done, events, raw_message, send_dead_letter, update_user
from flitfeed.streams.events import DecodeError, Reason
from flitfeed.streams.user_updates import decode_user_interaction

if TYPE_CHECKING:
    from flitfeed.streams.app import WorkerContext

log = logging.getLogger(__name__)


def register(ctx: "WorkerContext") -> None:
    m = ctx.metrics

    @ctx.app.agent(ctx.interactions, name="update_users")
    async def update_users_agent(stream: Any) -> None:
        async for event in events(stream):
            msg = raw_message(event)
            m.consumed.labels(service=m.service, topic=msg.topic).inc()
            try:
                with m.time_stage("decode"):
                    interaction = decode_user_interaction(msg, ctx.settings.events, now=time.time())
                await update_user(ctx, interaction, msg)
            except DecodeError as e:
                await send_dead_letter(ctx, msg, e.reason, e.detail)
            except Exception as exc:  # never let one event kill the agent
                log.exception("interaction failed", extra={"offset": msg.offset, "partition": msg.partition})
                await send_dead_letter(ctx, msg, Reason.PROCESSING_ERROR, repr(exc))
            done(event)
