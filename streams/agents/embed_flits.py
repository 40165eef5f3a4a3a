"""Agent: embed new flits in batches, write them to the index and to the ``flit-vectors`` log."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from flitfeed.streams.agents.common import batches, done, raw_message, send_dead_letter
from flitfeed.streams.embedding import EmbeddedBatch, RawMessage, decode_flits, embed_flits
from flitfeed.streams.events import Flit, Reason

if TYPE_CHECKING:
    from flitfeed.streams.app import WorkerContext

log = logging.getLogger(__name__)


def register(ctx: "WorkerContext") -> None:
    s = ctx.settings

    @ctx.app.agent(ctx.flits, name="embed_flits")
    async def embed_flits_agent(stream: Any) -> None:
        async for batch in batches(stream, s.encoder_batch_size, within=s.embed_batch_wait_s):
            await process_batch(ctx, [raw_message(e) for e in batch])
            for e in batch:
                done(e)


async def _embed(ctx: "WorkerContext", flits: Sequence[Flit]) -> EmbeddedBatch:
    # Encoding is CPU-bound for tens to hundreds of ms: keep it off the event loop.
    loop = asyncio.get_running_loop()
    with ctx.metrics.time_stage("embed"):
        batch = await loop.run_in_executor(None, embed_flits, flits, ctx.encoder)
    with ctx.metrics.time_stage("index_write"):
        ctx.index.upsert_many(batch.points)
    return batch


async def process_batch(ctx: "WorkerContext", messages: list[RawMessage]) -> None:
    m = ctx.metrics
    for msg in messages:
        m.consumed.labels(service=m.service, topic=msg.topic).inc()
    with m.time_stage("decode"):
        decoded, rejected = decode_flits(messages, ctx.settings, now=time.time())
    for r in rejected:
        await send_dead_letter(ctx, r.message, r.reason, r.detail)
    if not decoded:
        return
    flits = [f for f, _ in decoded]
    m.batch_size.observe(len(flits))
    try:
        batch = await _embed(ctx, flits)
    except Exception:
        # One poisonous flit must not sink its batch: retry one by one and dead-letter only what still fails.
        log.exception("batch embedding failed; retrying flit by flit", extra={"size": len(flits)})
        batch = EmbeddedBatch()
        for flit, msg in decoded:
            try:
                one = await _embed(ctx, [flit])
            except Exception as exc:
                await send_dead_letter(ctx, msg, Reason.PROCESSING_ERROR, repr(exc))
                continue
            batch.vectors += one.vectors
            batch.points += one.points
    searchable = time.time()
    if ctx.monitors is not None and batch.points:
        ctx.monitors.learn_flits(np.stack([p.vector for p in batch.points]))
    for point in batch.points:
        m.freshness.labels(service=m.service).observe(max(0.0, searchable - point.created_at))
    with m.time_stage("publish"):
        for record in batch.vectors:
            await ctx.send(ctx.flit_vectors, record.flit.flit_id.encode(), record.to_bytes())
    # A flit sent twice within one batch is embedded once (the last version wins, as in the index);
    # the earlier copy is applied too, not lost, so it counts as processed and the counts reconcile.
    superseded = len(messages) - len(rejected) - len(decoded)
    m.processed.labels(service=m.service, topic=messages[0].topic).inc(len(batch.vectors) + superseded)
