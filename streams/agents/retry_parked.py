"""Agent: retry interactions that arrived before their flit was embedded.

Parked records are keyed by user id on a topic co-partitioned with
``interactions``, so the retry updates the profile on the same partition
owner. Each record waits until its ``not_before`` (exponential back-off); after
``park_max_attempts`` the original message is dead-lettered as
``flit_not_found``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from flitfeed.streams.agents.common import done, events, raw_message, send_dead_letter
from flitfeed.streams.agents.update_users import apply_or_park
from flitfeed.streams.events import ParkedInteraction, Reason

if TYPE_CHECKING:
    from flitfeed.streams.app import WorkerContext

log = logging.getLogger(__name__)


def register(ctx: "WorkerContext") -> None:
    @ctx.app.agent(ctx.parked, name="retry_parked")
    async def retry_parked_agent(stream: Any) -> None:
        async for event in events(stream):
            msg = raw_message(event)
            try:
                parked = ParkedInteraction.model_validate_json(msg.value or b"")
            except ValueError as exc:
                await send_dead_letter(ctx, msg, Reason.SCHEMA_VIOLATION, str(exc))
                done(event)
                continue
            delay = parked.not_before - time.time()
            if delay > 0:
                # Back-offs grow with attempts, so a record due sooner can wait behind a later one, at most
                # park_max_delay_s: simpler than a timer wheel and bounded.
                await asyncio.sleep(delay)
            try:
                outcome = await apply_or_park(ctx, parked.interaction, msg, parked=parked)
            except Exception as exc:
                log.exception("parked interaction failed")
                await send_dead_letter(ctx, msg, Reason.PROCESSING_ERROR, repr(exc))
                done(event)
                continue
            ctx.metrics.retried.labels(service=ctx.metrics.service,
                                       outcome={"park": "reparked"}.get(outcome, outcome)).inc()
            done(event)
