"""Agent: retry interactions that arrived before their flit was embedded.

Parked records are keyed by user id on a topic co-partitioned with
``interactions``, so the retry updates the profile on the same partition
owner. Each record waits until its ``not_before`` (exponential back-off); after
``park_max_attempts`` the original message is dead-lettered as
``flit_not_found`` (the decisions are :func:`flitfeed.streams.user_updates.decide`'s).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from flitfeed.streams.agents.common import done, events, raw_message, send_dead_letter, update_user
from flitfeed.streams.events import DecodeError, ParkedInteraction, Reason, decode_internal
from flitfeed.streams.topics import INTERNAL_MAX_BYTES

if TYPE_CHECKING:
    from flitfeed.streams.app import WorkerContext

log = logging.getLogger(__name__)

#: The ``flitfeed_events_retried_total`` outcome of each decision.
RETRIED = {"applied": "applied", "duplicate": "duplicate", "park": "reparked", "expired": "expired"}


def register(ctx: "WorkerContext") -> None:
    @ctx.app.agent(ctx.parked, name="retry_parked")
    async def retry_parked_agent(stream: Any) -> None:
        async for event in events(stream):
            msg = raw_message(event)
            try:
                parked = decode_internal(msg.value, ParkedInteraction, INTERNAL_MAX_BYTES)  # type: ignore[type-var]
            except DecodeError as e:
                await send_dead_letter(ctx, msg, e.reason, e.detail)
                done(event)
                continue
            if (delay := parked.not_before - time.time()) > 0:
                # Back-offs grow with attempts, so a record due sooner can wait behind a later one, at most
                # park_max_delay_s: simpler than a timer wheel and bounded.
                await asyncio.sleep(delay)
            try:
                outcome = await update_user(ctx, parked.interaction, msg, parked=parked)
                ctx.metrics.retried.labels(service=ctx.metrics.service, outcome=RETRIED[outcome]).inc()
            except Exception as exc:
                log.exception("parked interaction failed")
                await send_dead_letter(ctx, msg, Reason.PROCESSING_ERROR, repr(exc))
            done(event)
