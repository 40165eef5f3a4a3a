"""The worker's decisions, without Kafka or Faust: ``user_updates.decide`` (apply, duplicate, park,
expire), the embed agent's ``plan_batch`` / ``embed_isolating`` / ``decide_batch`` (the batch fallback
and the counting rule), and ``run_effects`` carrying them out against a stand-in for the worker."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import time
from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np
from prometheus_client import CollectorRegistry

from flitfeed.encoders.hashing import HashingEncoder
from flitfeed.encoders.user_vector import UserProfile
from flitfeed.index.base import IndexedFlit
from flitfeed.monitoring.metrics import Metrics
from flitfeed.settings import EventLimits, WorkerConfig
from flitfeed.streams.agents.common import run_effects
from flitfeed.streams.effects import Count, ObserveFlits, ObserveTaste, Park, Publish, RawMessage, Reject, StoreProfile
from flitfeed.streams.embedding import EmbeddedBatch, decide_batch, embed_flits, embed_isolating, plan_batch
from flitfeed.streams.events import Flit, FlitVector, Interaction, ParkedInteraction, Reason, UserState
from flitfeed.streams.user_updates import decide, taste_params

S = WorkerConfig(park_max_attempts=3, park_base_delay_s=1.0, park_max_delay_s=4.0)
LIMITS = EventLimits()
NOW = time.time()
KNOWN = {"f1": IndexedFlit("f1", "a", NOW, np.array([1.0, 0.0], dtype=np.float32))}


# --- user_updates.decide -------------------------------------------------------------------------------------
def interaction(eid: str, flit_id: str, user: str = "u", offset: int = 17,
                partition: int = 2) -> tuple[Interaction, RawMessage]:
    raw = json.dumps({"event_id": eid, "user_id": user, "flit_id": flit_id, "kind": "like", "ts": NOW}).encode()
    msg = RawMessage(topic="interactions", partition=partition, offset=offset, key=user.encode(), value=raw,
                     timestamp=NOW - 1)
    return Interaction.model_validate_json(raw), msg


def decide_one(event: Interaction, msg: RawMessage, stored: dict[str, Any] | None = None,
               parked: ParkedInteraction | None = None, now: float = NOW):  # noqa: ANN201
    return decide(event, msg, stored, KNOWN.get, parked=parked, source_topic="t-interactions", now=now,
                  params=taste_params(S), worker=S)


def test_decide_applies_a_known_flit_stores_counts_and_publishes_the_state() -> None:
    event, msg = interaction("e1", "f1")
    decision = decide_one(event, msg)
    assert decision.outcome == "applied"
    store, observe, count, publish = decision.effects
    assert isinstance(store, StoreProfile) and store.user_id == "u"
    assert UserProfile.from_stored(store.profile).has_applied("e1")
    assert isinstance(observe, ObserveTaste) and observe.before is None
    np.testing.assert_allclose(observe.after, [1.0, 0.0])
    assert count == Count("processed", "t-interactions")
    assert isinstance(publish, Publish) and publish.topic == "user_states"
    [(key, value)] = publish.records
    state = UserState.model_validate_json(value)
    assert key == b"u" and state.trigger_id == "e1" and state.trigger_ts == NOW - 1 and state.seen == ["f1"]


def test_decide_skips_a_duplicate_and_stores_and_publishes_again_only_the_last_applied_event() -> None:
    e1, msg1 = interaction("e1", "f1", offset=17)
    e2, msg2 = interaction("e2", "f1", offset=18)
    stored = decide_one(e1, msg1).effects[0].profile
    stored = decide_one(e2, msg2, stored).effects[0].profile
    last = decide_one(e2, msg2, stored)
    assert last.outcome == "duplicate"
    assert [type(e) for e in last.effects] == [Count, StoreProfile, Publish]
    assert last.effects[0] == Count("duplicates", "t-interactions")
    # The same profile again: an on-disk table may hold it without its changelog record after a crash.
    assert last.effects[1] == StoreProfile("u", stored)
    assert UserState.model_validate_json(last.effects[2].records[0][1]).trigger_id == "e2"
    older = decide_one(e1, msg1, stored)
    assert older.outcome == "duplicate" and older.effects == (Count("duplicates", "t-interactions"),)


def test_decide_parks_an_unknown_flit_with_the_original_bytes_and_position() -> None:
    event, msg = interaction("e1", "missing")
    decision = decide_one(event, msg, now=100.0)
    assert decision.outcome == "park"
    store, park = decision.effects  # the profile first: its position waiting, before the record is sent
    assert isinstance(store, StoreProfile) and isinstance(park, Park)
    assert UserProfile.from_stored(store.profile).waiting == [(2, 17)]
    record = park.record
    assert base64.b64decode(record.raw_b64) == msg.value
    assert (record.source_partition, record.source_offset, record.attempts, record.not_before, record.tracked) == (
        2, 17, 0, 101.0, True)
    # A retry read from interactions-parked keeps the original position and bytes, and backs off further;
    # the position waits already: nothing stored.
    retry_msg = RawMessage(topic="interactions-parked", partition=2, offset=5, key=b"u", value=record.to_bytes(),
                           timestamp=NOW)
    again = decide_one(event, retry_msg, store.profile, parked=record, now=200.0)
    assert again.outcome == "park" and [type(e) for e in again.effects] == [Park]
    nxt = again.effects[0].record
    assert (nxt.raw_b64, nxt.source_partition, nxt.source_offset, nxt.attempts, nxt.not_before, nxt.tracked) == (
        record.raw_b64, 2, 17, 1, 202.0, True)


def test_decide_dead_letters_the_original_interaction_after_the_last_attempt() -> None:
    event, msg = interaction("e1", "missing")
    parked = ParkedInteraction(interaction=event, raw_b64=base64.b64encode(msg.value).decode(), source_partition=2,
                               source_offset=17, attempts=S.park_max_attempts - 1, not_before=NOW)
    retry_msg = RawMessage(topic="interactions-parked", partition=2, offset=5, key=b"u", value=parked.to_bytes(),
                           timestamp=NOW)
    decision = decide_one(event, retry_msg, parked=parked)
    assert decision.outcome == "expired"
    [reject] = decision.effects
    assert isinstance(reject, Reject) and reject.reason == Reason.FLIT_NOT_FOUND
    original = reject.message
    assert (original.topic, original.partition, original.offset, original.key, original.value) == (
        "t-interactions", 2, 17, b"u", msg.value)
    assert "missing" in reject.detail and "3 attempts" in reject.detail


def test_decide_leaves_the_stored_profile_as_it_was() -> None:
    event, msg = interaction("e1", "f1")
    stored = UserProfile("u").to_dict()
    before = json.dumps(stored, sort_keys=True)
    decide_one(event, msg, stored)
    assert json.dumps(stored, sort_keys=True) == before


def test_decide_keeps_the_taste_in_the_other_versions_and_publishes_it() -> None:
    in_v2 = {"f1": np.array([0.0, 0.0, 1.0], dtype=np.float32)}
    calls: list[list[str]] = []

    def v2(ids):  # noqa: ANN001, ANN202
        calls.append(list(ids))
        return {f: in_v2[f] for f in ids if f in in_v2}

    params = dataclasses.replace(taste_params(S), version="v1")
    event, msg = interaction("e1", "f1")
    stored = decide_one(event, msg).effects[0].profile  # learnt before versions (""): adopted as v1 below
    assert list(UserProfile.from_stored(stored).tastes) == [""]
    e2, msg2 = interaction("e2", "f1", offset=18)
    decision = decide(e2, msg2, stored, KNOWN.get, parked=None, source_topic="t-interactions", now=NOW,
                      params=params, worker=S, others={"v2": v2})
    assert decision.outcome == "applied" and calls == [["f1"]]  # rebuilt from the history: one lookup
    store, observe, _, publish = decision.effects
    profile = UserProfile.from_stored(store.profile)
    assert sorted(profile.tastes) == ["v1", "v2"] and profile.taste_version == "v1"
    np.testing.assert_allclose(profile.tastes["v2"], [0.0, 0.0, 2.0], rtol=1e-5)
    np.testing.assert_allclose(observe.after, [1.0, 0.0])  # the primary taste is what is observed
    state = UserState.model_validate_json(publish.records[0][1])
    assert state.model_version == "v1" and state.tastes == {"v2": [0.0, 0.0, 1.0]}
    # An unknown flit parks on the primary lookup alone: the other versions are not asked.
    calls.clear()
    e3, msg3 = interaction("e3", "missing", offset=19)
    parked = decide(e3, msg3, store.profile, KNOWN.get, parked=None, source_topic="t-interactions", now=NOW,
                    params=params, worker=S, others={"v2": v2})
    assert parked.outcome == "park" and calls == []


# --- embedding: plan_batch, embed_isolating, decide_batch ----------------------------------------------------
def flit_msg(offset: int, fid: str | None, text: str = "worms after rain") -> RawMessage:
    value = b"{nope" if fid is None else json.dumps(
        {"flit_id": fid, "author_id": "a", "text": text, "created_at": NOW}).encode()
    return RawMessage(topic="flits", partition=0, offset=offset, key=None, value=value, timestamp=NOW)


def test_plan_batch_counts_the_batch_rejects_the_invalid_and_counts_superseded_copies() -> None:
    msgs = [flit_msg(0, "f1"), flit_msg(1, None), flit_msg(2, "f1", "second"), flit_msg(3, "f2")]
    plan = plan_batch(msgs, LIMITS, now=NOW)
    assert [(f.flit_id, f.text, m.offset) for f, m in plan.flits] == [("f1", "second", 2),
                                                                      ("f2", "worms after rain", 3)]
    assert plan.effects[0] == Count("consumed", "flits", 4)
    assert [(r.message.offset, r.reason) for r in plan.effects[1:]] == [(1, Reason.INVALID_JSON)]
    assert plan.superseded == 1


def test_embed_isolating_retries_a_failed_batch_flit_by_flit_and_rejects_only_the_poisonous_flit() -> None:
    encoder = HashingEncoder(dim=8)
    calls: list[list[str]] = []

    async def embed(flits: Sequence[Flit]) -> EmbeddedBatch:
        calls.append([f.flit_id for f in flits])
        if any(f.flit_id == "poison" for f in flits):
            raise RuntimeError("encoder failed")
        return embed_flits(flits, encoder)

    plan = plan_batch([flit_msg(0, "f1"), flit_msg(1, "poison"), flit_msg(2, "f2")], LIMITS, now=NOW)
    batch, failed = asyncio.run(embed_isolating(plan.flits, embed))
    assert calls == [["f1", "poison", "f2"], ["f1"], ["poison"], ["f2"]]
    assert [p.flit_id for p in batch.points] == [r.flit.flit_id for r in batch.vectors] == ["f1", "f2"]
    assert [(r.message.offset, r.reason) for r in failed] == [(1, Reason.PROCESSING_ERROR)]
    assert "encoder failed" in failed[0].detail

    calls.clear()
    whole, none_failed = asyncio.run(embed_isolating(plan_batch([flit_msg(0, "f1")], LIMITS, now=NOW).flits, embed))
    assert calls == [["f1"]] and len(whole.points) == 1 and none_failed == []


def test_decide_batch_publishes_the_vectors_and_counts_superseded_copies_as_processed() -> None:
    plan = plan_batch([flit_msg(0, "f1"), flit_msg(1, "f1", "again"), flit_msg(2, "f2"), flit_msg(3, None)], LIMITS, now=NOW)
    batch = embed_flits([f for f, _ in plan.flits], HashingEncoder(dim=8))
    failed = [Reject(plan.flits[1][1], Reason.PROCESSING_ERROR, "boom")]
    batch.vectors, batch.keys, batch.points = batch.vectors[:1], batch.keys[:1], batch.points[:1]  # f2 failed to embed
    effects = decide_batch(plan, batch, failed, searchable_at=NOW + 1)
    assert effects[0] is failed[0]
    assert isinstance(effects[1], ObserveFlits) and [p.flit_id for p in effects[1].points] == ["f1"]
    publish = effects[2]
    assert isinstance(publish, Publish) and publish.topic == "flit_vectors"
    [(key, value)] = publish.records
    assert key == b"f1" and FlitVector.model_validate_json(value).flit.text == "again"
    # consumed 4 = processed (1 embedded + 1 superseded copy) + dead-lettered (1 invalid + 1 failed)
    assert effects[3] == Count("processed", "flits", 2)


# --- run_effects -------------------------------------------------------------------------------------------
class FakeTopic:
    def __init__(self, name: str) -> None:
        self.name = name

    def get_topic_name(self) -> str:
        return self.name


class FakeWorker(SimpleNamespace):
    """The parts of a ``WorkerContext`` that effects touch; records what was sent, and when."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Any, Any]] = []
        #: The users in the table when each record was sent.
        self.stored_at_send: list[list[str]] = []
        super().__init__(metrics=Metrics("worker", CollectorRegistry()), profiles={}, monitors=None,
                         flit_vectors=FakeTopic("flit-vectors"), user_states=FakeTopic("user-states"),
                         parked=FakeTopic("interactions-parked"), dead_letters=FakeTopic("dead-letters"),
                         changelog=SimpleNamespace(wait=self._changelog_wait))

    async def send(self, topic: FakeTopic, key: bytes | None, value: bytes) -> None:
        self.log.append(("send", topic.name, key))
        self.stored_at_send.append(sorted(self.profiles))

    async def _changelog_wait(self) -> None:
        self.log.append(("changelog", None, sorted(self.profiles)))


def test_run_effects_sends_stores_counts_and_waits_for_the_changelog_last() -> None:
    event, msg = interaction("e1", "f1")
    worker = FakeWorker()
    asyncio.run(run_effects(worker, decide_one(event, msg).effects))
    assert worker.log == [("send", "user-states", b"u"), ("changelog", None, ["u"])]
    assert UserProfile.from_stored(worker.profiles["u"]).has_applied("e1")
    assert worker.metrics.value("flitfeed_events_processed_total", service="worker", topic="t-interactions") == 1.0


def test_run_effects_stores_the_waiting_position_before_parking_and_dead_letters_without_the_table() -> None:
    event, msg = interaction("e1", "missing")
    worker = FakeWorker()
    asyncio.run(run_effects(worker, decide_one(event, msg).effects))
    assert worker.log == [("send", "interactions-parked", b"u"), ("changelog", None, ["u"])]
    assert worker.stored_at_send == [["u"]], "the parked record left before its position was stored"
    assert UserProfile.from_stored(worker.profiles["u"]).waiting == [(2, 17)]
    worker.profiles.clear()
    reject = Reject(msg, Reason.FLIT_NOT_FOUND, "gone")
    asyncio.run(run_effects(worker, [reject, Count("duplicates", "interactions", 2)]))
    assert worker.log[2:] == [("send", "dead-letters", b"u")]
    assert worker.profiles == {}
    m = worker.metrics
    assert m.value("flitfeed_events_parked_total", service="worker") == 1.0
    assert m.value("flitfeed_events_dead_lettered_total", service="worker", topic="interactions",
                   reason="flit_not_found") == 1.0
    assert m.value("flitfeed_events_duplicate_total", service="worker", topic="interactions") == 2.0


def test_every_version_keeps_its_own_keys_after_a_switch() -> None:
    """After a switch the live version is one keyed ``<flit_id>|<tag>`` and the version kept for a rollback the
    bare-keyed one: each version's vector of a flit keeps one key forever, so compaction never lets one
    version's record replace another's, and each version's points go to that version's index."""
    from flitfeed.index.versions import vector_key

    live, kept = HashingEncoder(dim=8), HashingEncoder(dim=4)
    flit = Flit(flit_id="f1", author_id="a", text="worms after rain", created_at=NOW)

    batch = embed_flits([flit], live, {kept.model_version: kept}, bare=kept.model_version)
    assert batch.keys == [vector_key("f1", live.model_version)]
    assert [k for k, _ in batch.rebuilt] == [b"f1"]
    assert [p.vector.shape for p in batch.other_points[kept.model_version]] == [(4,)]
    assert [p.vector.shape for p in batch.points] == [(8,)]
    # Once the bare-keyed version is dropped, every version is keyed by its tag.
    assert embed_flits([flit], live, bare=None).keys == [vector_key("f1", live.model_version)]
