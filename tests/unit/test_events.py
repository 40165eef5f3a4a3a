"""Decoding every input record: valid input round-trips, each kind of bad input has its reason."""

from __future__ import annotations

import json

import pytest

from flitfeed.settings import EventLimits
from flitfeed.streams.events import (DeadLetter, DecodeError, Flit, Reason, check_user_key, decode_feed_request,
                                     decode_flit, decode_interaction)

NOW = 1_800_000_000.0
FLIT = {"flit_id": "f1", "author_id": "a1", "text": "a robin sings", "created_at": "2027-01-15T08:00:00Z",
        "tags": ["song"]}
INTERACTION = {"event_id": "e1", "user_id": "u1", "flit_id": "f1", "kind": "like", "ts": NOW, "dwell_ms": 1200}


def enc(obj: object) -> bytes:
    return json.dumps(obj).encode()


def reason_of(fn, raw: bytes, **kw) -> Reason:
    with pytest.raises(DecodeError) as info:
        fn(raw, **kw)
    return info.value.reason


def test_valid_flit_round_trips() -> None:
    flit = decode_flit(enc(FLIT), now=NOW)
    assert flit.flit_id == "f1" and flit.tags == ["song"] and flit.created_at.tzinfo is not None
    assert decode_flit(flit.to_bytes(), now=NOW) == flit


def test_valid_interaction_and_request() -> None:
    event = decode_interaction(enc(INTERACTION), now=NOW)
    assert event.kind == "like" and event.dwell_ms == 1200 and event.ts.timestamp() == NOW
    request = decode_feed_request(enc({"request_id": "r", "user_id": "u1", "k": 7}), limits=EventLimits(max_feed_k=10))
    assert request.k == 7


@pytest.mark.parametrize("raw, reason", [
    (b"\xff\xfe", Reason.INVALID_UTF8),
    (b'{"flit_id": ', Reason.INVALID_JSON),
    (b"[1, 2]", Reason.SCHEMA_VIOLATION),
    (enc({**FLIT, "v": 2}), Reason.UNKNOWN_SCHEMA_VERSION),
    (enc({**FLIT, "v": True}), Reason.UNKNOWN_SCHEMA_VERSION),
    (enc({k: v for k, v in FLIT.items() if k != "author_id"}), Reason.SCHEMA_VIOLATION),
    (enc({**FLIT, "text": ""}), Reason.SCHEMA_VIOLATION),
    (enc({**FLIT, "text": "x" * 1001}), Reason.TEXT_TOO_LONG),
    (enc({**FLIT, "flit_id": "has space"}), Reason.SCHEMA_VIOLATION),
    (enc({**FLIT, "created_at": "2099-01-01T00:00:00Z"}), Reason.TIMESTAMP_OUT_OF_RANGE),
    (enc({**FLIT, "created_at": "1990-01-01T00:00:00Z"}), Reason.TIMESTAMP_OUT_OF_RANGE),
    (enc({**FLIT, "tags": ["t"] * 17}), Reason.SCHEMA_VIOLATION),
    (None, Reason.SCHEMA_VIOLATION),
])
def test_bad_flits_have_a_reason(raw: bytes, reason: Reason) -> None:
    assert reason_of(decode_flit, raw, now=NOW, limits=EventLimits(max_event_age_s=20 * 365 * 86400.0 / 2)) == reason


@pytest.mark.parametrize("patch, reason", [
    ({"kind": "poke"}, Reason.UNKNOWN_KIND),
    ({"kind": 3}, Reason.SCHEMA_VIOLATION),
    ({"ts": "yesterday"}, Reason.SCHEMA_VIOLATION),
    ({"ts": NOW + 30 * 86400}, Reason.TIMESTAMP_OUT_OF_RANGE),
    ({"dwell_ms": -1}, Reason.SCHEMA_VIOLATION),
    ({"user_id": ""}, Reason.SCHEMA_VIOLATION),
])
def test_bad_interactions_have_a_reason(patch: dict, reason: Reason) -> None:
    assert reason_of(decode_interaction, enc({**INTERACTION, **patch}), now=NOW) == reason


def test_feed_request_k_is_bounded() -> None:
    assert reason_of(decode_feed_request, enc({"request_id": "r", "user_id": "u", "k": 101}), limits=EventLimits(max_feed_k=100)) \
        == Reason.SCHEMA_VIOLATION
    assert reason_of(decode_feed_request, enc({"request_id": "r", "user_id": "u", "k": 0})) == Reason.SCHEMA_VIOLATION


def test_user_key_must_match() -> None:
    check_user_key(b"u1", "u1")
    with pytest.raises(DecodeError) as info:
        check_user_key(b"u2", "u1")
    assert info.value.reason == Reason.KEY_MISMATCH


def test_dead_letter_keeps_original_bytes() -> None:
    dl = DeadLetter.of(topic="flits", partition=3, offset=42, key=b"k", value=b"\x00\xffraw", reason=Reason.INVALID_UTF8,
                       detail="x" * 900, service="worker")
    back = DeadLetter.model_validate_json(dl.to_bytes())
    assert back.original_value() == b"\x00\xffraw" and back.partition == 3 and back.offset == 42
    assert len(back.detail) == 500 and back.reason == Reason.INVALID_UTF8


def test_flit_is_immutable() -> None:
    flit = Flit.model_validate(FLIT)
    with pytest.raises(Exception):
        flit.text = "changed"  # type: ignore[misc]
