"""Agent: update each user's profile from their interactions, one event at a time.

Event by event (not batched) because the profile table's changelog partition
is taken from the event being processed.
"""

from __future__ import annotations

import base64
import logging
import time
from typing import TYPE_CHECKING, Any

from flitfeed.encoders.user_vector import UserProfile
from flitfeed.index.base import IndexedFlit
from flitfeed.streams.agents.common import done, events, raw_message, send_dead_letter
from flitfeed.streams.embedding import RawMessage
from flitfeed.streams.events import DecodeError, Interaction, ParkedInteraction, Reason, check_user_key, decode_interaction
from flitfeed.streams.user_updates import apply_interaction, next_park, user_state

if TYPE_CHECKING:
    from flitfeed.streams.app import WorkerContext

log = logging.getLogger(__name__)


def register(ctx: "WorkerContext") -> None:
    @ctx.app.agent(ctx.interactions, name="update_users")
    async def update_users_agent(stream: Any) -> None:
        async for event in events(stream):
            msg = raw_message(event)
            ctx.metrics.consumed.labels(service=ctx.metrics.service, topic=msg.topic).inc()
            try:
                with ctx.metrics.time_stage("decode"):
                    interaction = decode_interaction(msg.value, now=time.time(),
                                                     max_skew_s=ctx.settings.max_clock_skew_s,
                                                     max_age_s=ctx.settings.max_event_age_s,
                                                     max_bytes=ctx.settings.max_message_bytes)
                    check_user_key(msg.key, interaction.user_id)
            except DecodeError as e:
                await send_dead_letter(ctx, msg, e.reason, e.detail)
                done(event)
                continue
            try:
                await apply_or_park(ctx, interaction, msg, parked=None)
            except Exception as exc:  # never let one event kill the agent
                log.exception("interaction failed", extra={"offset": msg.offset, "partition": msg.partition})
                await send_dead_letter(ctx, msg, Reason.PROCESSING_ERROR, repr(exc))
            done(event)


def lookup(ctx: "WorkerContext", flit_id: str) -> IndexedFlit | None:
    return ctx.index.retrieve_many([flit_id]).get(flit_id)


async def apply_or_park(ctx: "WorkerContext", interaction: Interaction, msg: RawMessage,
                        parked: ParkedInteraction | None) -> str:
    """Apply an interaction (from the topic or a retry); park it while its flit is unknown."""
    m = ctx.metrics
    stored = ctx.profiles.get(interaction.user_id)
    profile = UserProfile.from_dict(stored) if stored else UserProfile(interaction.user_id)
    before = profile.query_vector()
    with m.time_stage("user_update"):
        outcome = apply_interaction(interaction, profile, lambda fid: lookup(ctx, fid), ctx.params)
    source_topic = ctx.interactions.get_topic_name()
    if outcome == "duplicate":
        m.duplicates.labels(service=m.service, topic=source_topic).inc()
        if interaction.event_id == profile.last_event_id:
            # Re-delivered after a crash between the table write and the publish: publish again
            # (the ranker skips a state it has already seen).
            await publish_state(ctx, profile, interaction.event_id, msg.timestamp)
        return "duplicate"
    if outcome == "park":
        raw_b64 = parked.raw_b64 if parked else base64.b64encode(msg.value or b"").decode("ascii")
        partition = parked.source_partition if parked else msg.partition
        offset = parked.source_offset if parked else msg.offset
        nxt = next_park(parked, interaction, raw_b64, partition, offset, time.time(), ctx.settings)
        if nxt is None:
            original = RawMessage(topic=source_topic, partition=partition, offset=offset,
                                  key=interaction.user_id.encode(), value=base64.b64decode(raw_b64),
                                  timestamp=msg.timestamp)
            await send_dead_letter(ctx, original, Reason.FLIT_NOT_FOUND,
                                   f"flit {interaction.flit_id} not in the index after "
                                   f"{ctx.settings.park_max_attempts} attempts")
            return "expired"
        m.parked.labels(service=m.service).inc()
        await ctx.send(ctx.parked, interaction.user_id.encode(), nxt.to_bytes())
        return "park"
    ctx.profiles[interaction.user_id] = profile.to_dict()
    if ctx.monitors is not None:
        ctx.monitors.learn_taste(before, profile.query_vector())
    m.processed.labels(service=m.service, topic=source_topic).inc()
    await publish_state(ctx, profile, interaction.event_id, msg.timestamp)
    # The caller acks next: the profile's changelog record must be with the Kafka client by then.
    await ctx.changelog.wait()
    return "applied"


async def publish_state(ctx: "WorkerContext", profile: UserProfile, trigger_id: str, trigger_ts: float) -> None:
    with ctx.metrics.time_stage("publish"):
        state = user_state(profile, trigger_id, trigger_ts)
        await ctx.send(ctx.user_states, profile.user_id.encode(), state.to_bytes())
