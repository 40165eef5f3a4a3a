"""Agent: embed new flits in batches, write them to the index and to the ``flit-vectors`` log.

The decisions are :mod:`flitfeed.streams.embedding`'s (:func:`plan_batch`, :func:`embed_isolating`,
:func:`decide_batch`); this loop runs them, encodes off the event loop, writes the index and acks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Sequence

from flitfeed.streams.agents.common import batches, done, raw_message, run_effects
from flitfeed.streams.embedding import EmbeddedBatch, RawMessage, decide_batch, embed_flits, embed_isolating, plan_batch
from flitfeed.streams.events import Flit

if TYPE_CHECKING:
    from flitfeed.streams.app import WorkerContext

log = logging.getLogger(__name__)


def register(ctx: "WorkerContext") -> None:
    s = ctx.settings

    @ctx.app.agent(ctx.flits, name="embed_flits")
    async def embed_flits_agent(stream: Any) -> None:
        async for batch in batches(stream, s.encoder.encoder_batch_size, within=s.encoder.embed_batch_wait_s):
            await process_batch(ctx, [raw_message(e) for e in batch])
            for e in batch:
                done(e)


async def _embed(ctx: "WorkerContext", flits: Sequence[Flit]) -> EmbeddedBatch:
    # Encoding is CPU-bound for tens to hundreds of ms: keep it off the event loop.
    loop = asyncio.get_running_loop()
    # A snapshot of the versions held: the catalogue follower may switch or change them meanwhile.
    encoder, index, spaces = ctx.encoder, ctx.index, dict(ctx.spaces)
    with ctx.metrics.time_stage("embed"):
        batch = await loop.run_in_executor(None, embed_flits, flits, encoder, ctx.builds, ctx.bare)
    with ctx.metrics.time_stage("index_write"):
        index.upsert_many(batch.points)
        for version, points in batch.other_points.items():
            try:
                spaces[version].index.upsert_many(points)
            except Exception:  # a version being dropped meanwhile; never the live version's loss
                log.exception("writing another version's index failed", extra={"version": version})
    return batch


async def process_batch(ctx: "WorkerContext", messages: list[RawMessage]) -> None:
    with ctx.metrics.time_stage("decode"):
        plan = plan_batch(messages, ctx.settings.events, now=time.time())
    await run_effects(ctx, plan.effects)
    if plan.flits:
        ctx.metrics.batch_size.observe(len(plan.flits))
        embedded, failed = await embed_isolating(plan.flits, lambda flits: _embed(ctx, flits))
        await run_effects(ctx, decide_batch(plan, embedded, failed, searchable_at=time.time()))
