"""The worker's domain logic, without Kafka: embedding batches and applying interactions."""

from __future__ import annotations

import json
import time

import numpy as np

from flitfeed.encoders.hashing import HashingEncoder
from flitfeed.encoders.user_vector import UserProfile
from flitfeed.index.base import IndexedFlit
from flitfeed.settings import Settings
from flitfeed.streams.embedding import RawMessage, decode_flits, embed_flits, flit_text
from flitfeed.streams.events import Flit, Interaction, Reason
from flitfeed.streams.user_updates import apply_interaction, next_park, retry_delay, taste_params, user_state

S = Settings(park_max_attempts=3, park_base_delay_s=1.0, park_max_delay_s=4.0)
NOW = time.time()


def msg(value: bytes | None, offset: int = 0) -> RawMessage:
    return RawMessage(topic="flits", partition=0, offset=offset, key=None, value=value, timestamp=NOW)


def flit_json(fid: str, text: str = "worms after rain", **kw) -> bytes:
    return json.dumps({"flit_id": fid, "author_id": "a", "text": text, "created_at": NOW, **kw}).encode()


def test_decode_splits_valid_and_rejected_and_dedupes() -> None:
    msgs = [msg(flit_json("f1"), 0), msg(b"nope", 1), msg(flit_json("f1", "second version"), 2),
            msg(flit_json("f2", "x" * 2000), 3)]
    decoded, rejected = decode_flits(msgs, S, now=NOW)
    assert [(f.flit_id, f.text, m.offset) for f, m in decoded] == [("f1", "second version", 2)]
    assert [(r.message.offset, r.reason) for r in rejected] == [(1, Reason.INVALID_JSON), (3, Reason.TEXT_TOO_LONG)]


def test_embed_produces_log_records_and_points() -> None:
    enc = HashingEncoder(dim=32)
    flits = [Flit(flit_id="f1", author_id="a", text="worms", created_at=NOW, tags=["food"]),
             Flit(flit_id="f2", author_id="b", text="storm", created_at=NOW)]
    batch = embed_flits(flits, enc)
    assert [p.flit_id for p in batch.points] == ["f1", "f2"]
    assert batch.points[0].tags == ("food",) and batch.points[0].author_id == "a"
    np.testing.assert_allclose(batch.points[0].vector, enc.encode_one(flit_text(flits[0])), atol=1e-6)
    assert batch.vectors[1].model_version == enc.model_version
    np.testing.assert_allclose(batch.vectors[1].vector, batch.points[1].vector, atol=1e-6)
    assert flit_text(flits[0]) == "worms #food"


def event(eid: str, flit_id: str, kind: str = "like") -> Interaction:
    return Interaction(event_id=eid, user_id="u", flit_id=flit_id, kind=kind, ts=NOW)


def test_apply_park_duplicate() -> None:
    known = {"f1": IndexedFlit("f1", "a", NOW, np.array([1.0, 0.0], dtype=np.float32))}
    profile = UserProfile("u")
    params = taste_params(S)
    assert apply_interaction(event("e1", "missing"), profile, known.get, params) == "park"
    assert profile.taste is None, "a parked interaction must not change the profile"
    assert apply_interaction(event("e2", "f1"), profile, known.get, params) == "applied"
    assert apply_interaction(event("e2", "f1"), profile, lambda _: None, params) == "duplicate"
    state = user_state(profile, "e2", 123.0)
    assert state.taste == [1.0, 0.0] and state.seen == ["f1"] and state.trigger_ts == 123.0


def test_parking_backs_off_then_gives_up() -> None:
    e = event("e1", "missing")
    first = next_park(None, e, "cmF3", 2, 17, now=100.0, settings=S)
    assert first is not None and first.attempts == 0 and first.not_before == 101.0
    second = next_park(first, e, "cmF3", 2, 17, now=200.0, settings=S)
    assert second.attempts == 1 and second.not_before == 202.0 and second.source_offset == 17
    third = next_park(second, e, "cmF3", 2, 17, now=300.0, settings=S)
    assert third.attempts == 2
    assert next_park(third, e, "cmF3", 2, 17, now=400.0, settings=S) is None
    assert retry_delay(10, S) == 4.0


def test_dead_letter_is_counted_and_keeps_the_message() -> None:
    from prometheus_client import CollectorRegistry

    from flitfeed.monitoring.metrics import Metrics
    from flitfeed.streams.dead_letter import dead_letter
    from flitfeed.streams.events import DeadLetter

    metrics = Metrics("worker", CollectorRegistry())
    key, value = dead_letter(metrics, topic="flits", partition=1, offset=9, key=b"k", value=b"{oops",
                             reason=Reason.INVALID_JSON, detail="line 1")
    record = DeadLetter.model_validate_json(value)
    assert key == b"k" and record.original_value() == b"{oops" and record.offset == 9
    assert record.service == "worker" and record.reason == Reason.INVALID_JSON
    assert metrics.value("flitfeed_events_dead_lettered_total", service="worker", topic="flits",
                         reason="invalid_json") == 1.0
