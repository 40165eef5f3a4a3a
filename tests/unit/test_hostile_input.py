"""Hostile input against the decoders: thousands of generated messages, each with a defined outcome.

The contract every decoder keeps (and the services rely on to never crash on input):
it returns a valid record that survives re-encoding, or raises :class:`DecodeError` with a
reason from the fixed :class:`Reason` set. Nothing else escapes. The dead-letter record keeps
any key and value byte for byte.
"""

from __future__ import annotations

import base64
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flitfeed.settings import EventLimits
from flitfeed.streams.events import (INTERACTION_KINDS, DeadLetter, DecodeError, FeedRequest, Flit, Interaction,
                                     Reason, check_user_key, decode_feed_request, decode_flit, decode_interaction)

NOW = 1_800_000_000.0
DAY = 86400.0
FLIT = {"flit_id": "f1", "author_id": "a1", "text": "a robin sings", "created_at": NOW - 60, "tags": ["song"]}
INTERACTION = {"event_id": "e1", "user_id": "u1", "flit_id": "f1", "kind": "like", "ts": NOW - 5, "dwell_ms": 1200}
REQUEST = {"request_id": "r1", "user_id": "u1", "k": 7}

DECODERS = {
    "flit": lambda raw: decode_flit(raw, now=NOW),
    "interaction": lambda raw: decode_interaction(raw, now=NOW),
    "feed_request": lambda raw: decode_feed_request(raw, limits=EventLimits(max_feed_k=100)),
}
VALID = {"flit": FLIT, "interaction": INTERACTION, "feed_request": REQUEST}
MANY = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOME = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(kind: str, raw: bytes | None) -> Flit | Interaction | FeedRequest | Reason:
    """The decoder's verdict; any exception other than DecodeError fails the test."""
    try:
        record = DECODERS[kind](raw)
    except DecodeError as e:
        assert isinstance(e.reason, Reason)
        assert len(e.detail) <= 500
        return e.reason
    # A record that was accepted must be writable again (keys, logs, the flit-vectors log).
    again = DECODERS[kind](record.to_bytes())
    assert again == record
    return record


json_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
timestamps = (st.floats(min_value=-1e12, max_value=1e12, allow_nan=False)
              | st.datetimes().map(lambda d: d.isoformat()) | st.text(max_size=30))


# --- arbitrary bytes --------------------------------------------------------------------------------------
@MANY
@given(kind=st.sampled_from(sorted(DECODERS)), raw=st.binary(max_size=300))
def test_arbitrary_bytes_never_escape_the_decoder(kind: str, raw: bytes) -> None:
    outcome(kind, raw)


@MANY
@given(kind=st.sampled_from(sorted(DECODERS)), value=json_values)
def test_arbitrary_json_values_never_escape_the_decoder(kind: str, value: object) -> None:
    result = outcome(kind, json.dumps(value).encode())
    if not isinstance(value, dict):
        assert result == Reason.SCHEMA_VIOLATION


# --- valid events with one field made hostile ----------------------------------------------------------
@MANY
@given(kind=st.sampled_from(sorted(DECODERS)), data=st.data())
def test_one_hostile_field_has_a_defined_outcome(kind: str, data: st.DataObject) -> None:
    base = dict(VALID[kind])
    field = data.draw(st.sampled_from(sorted(base) + ["v", "extra"]), label="field")
    hostile = data.draw(json_values | timestamps | st.sampled_from(["", " ", "\x00", "a b", "x" * 200]),
                        label="value")
    result = outcome(kind, json.dumps({**base, field: hostile}).encode())
    if field == "extra":
        assert not isinstance(result, Reason), "unknown fields are ignored"
    if field == "v" and hostile != 1:
        assert result == Reason.UNKNOWN_SCHEMA_VERSION
    if kind == "interaction" and field == "kind" and isinstance(hostile, str) and hostile not in INTERACTION_KINDS:
        assert result == Reason.UNKNOWN_KIND


@SOME
@given(kind=st.sampled_from(sorted(DECODERS)), data=st.data())
def test_missing_fields_are_schema_violations(kind: str, data: st.DataObject) -> None:
    required = {"flit": ["flit_id", "author_id", "text", "created_at"],
                "interaction": ["event_id", "user_id", "flit_id", "kind", "ts"],
                "feed_request": ["request_id", "user_id"]}[kind]
    drop = data.draw(st.sets(st.sampled_from(required), min_size=1))
    body = {k: v for k, v in VALID[kind].items() if k not in drop}
    assert outcome(kind, json.dumps(body).encode()) == Reason.SCHEMA_VIOLATION


@SOME
@given(offset=st.floats(min_value=-100 * 365 * DAY, max_value=100 * 365 * DAY))
def test_timestamps_outside_the_window_are_rejected(offset: float) -> None:
    # The window is [now - max_age, now + max_skew]; the defaults are 10 years and 7 days.
    result = outcome("interaction", json.dumps({**INTERACTION, "ts": NOW + offset}).encode())
    inside = -10 * 365 * DAY <= offset <= 7 * DAY
    if inside:
        assert isinstance(result, Interaction)
    else:
        assert result == Reason.TIMESTAMP_OUT_OF_RANGE


@SOME
@given(text=st.text(min_size=1, max_size=1500))
def test_text_length_limit(text: str) -> None:
    result = outcome("flit", json.dumps({**FLIT, "text": text}).encode())
    if len(text) > 1000:
        assert result in (Reason.TEXT_TOO_LONG, Reason.INVALID_UTF8)
    elif isinstance(result, Reason):
        # Only a lone surrogate (valid JSON escape, not encodable) can sink a short text.
        assert result == Reason.INVALID_UTF8 and any(0xD800 <= ord(c) <= 0xDFFF for c in text)


@SOME
@given(key=st.none() | st.binary(max_size=64), value=st.none() | st.binary(max_size=512),
       reason=st.sampled_from(list(Reason)), detail=st.text(max_size=800))
def test_dead_letters_keep_the_original_bytes(key: bytes | None, value: bytes | None, reason: Reason,
                                              detail: str) -> None:
    dl = DeadLetter.of(topic="t-flits", partition=5, offset=123456789, key=key, value=value, reason=reason,
                       detail=detail.encode("utf-8", "replace").decode("utf-8"), service="worker")
    back = DeadLetter.model_validate_json(dl.to_bytes())
    assert back.original_value() == (value or b"")
    assert (None if back.key_b64 is None else base64.b64decode(back.key_b64)) == key
    assert (back.source_topic, back.partition, back.offset, back.reason) == ("t-flits", 5, 123456789, reason)


# --- the named hostile cases, one by one -------------------------------------------------------------------
def enc(obj: object) -> bytes:
    return json.dumps(obj).encode()


@pytest.mark.parametrize("kind, raw, reason", [
    ("flit", b"\xc3\x28", Reason.INVALID_UTF8),
    ("flit", enc({**FLIT, "text": "x"}).replace(b'"x"', b'"\\ud800"'), Reason.INVALID_UTF8),
    ("interaction", enc(INTERACTION).replace(b'"u1"', b'"\\udfff"'), Reason.INVALID_UTF8),
    ("flit", b'{"flit_id": "f1", "created_at": NaN}', Reason.INVALID_JSON),
    ("interaction", enc(INTERACTION).replace(b"1200", b"Infinity"), Reason.INVALID_JSON),
    ("flit", b"[" * 100_000 + b"]" * 100_000, Reason.MESSAGE_TOO_LARGE),
    ("flit", b"[" * 20_000 + b"]" * 20_000, Reason.INVALID_JSON),  # nesting deeper than the parser allows
    ("flit", enc({**FLIT, "text": "x" * 70_000}), Reason.MESSAGE_TOO_LARGE),
    ("flit", enc({**FLIT, "text": "x" * 5000}), Reason.TEXT_TOO_LONG),
    ("flit", enc({**FLIT, "v": 2}), Reason.UNKNOWN_SCHEMA_VERSION),
    ("flit", enc({**FLIT, "v": "1"}), Reason.UNKNOWN_SCHEMA_VERSION),
    ("interaction", enc({**INTERACTION, "v": 0}), Reason.UNKNOWN_SCHEMA_VERSION),
    ("interaction", enc({**INTERACTION, "kind": "poke"}), Reason.UNKNOWN_KIND),
    ("interaction", enc({**INTERACTION, "kind": "LIKE"}), Reason.UNKNOWN_KIND),
    ("interaction", enc({**INTERACTION, "kind": None}), Reason.SCHEMA_VIOLATION),
    ("interaction", enc({**INTERACTION, "ts": NOW + 30 * DAY}), Reason.TIMESTAMP_OUT_OF_RANGE),
    ("interaction", enc({**INTERACTION, "ts": 0}), Reason.TIMESTAMP_OUT_OF_RANGE),
    ("interaction", enc({**INTERACTION, "ts": 1e300}), Reason.SCHEMA_VIOLATION),
    ("interaction", enc({**INTERACTION, "ts": "9999-12-31T23:59:59Z"}), Reason.TIMESTAMP_OUT_OF_RANGE),
    ("interaction", enc({**INTERACTION, "dwell_ms": 2**80}), Reason.SCHEMA_VIOLATION),
    ("interaction", enc({**INTERACTION, "user_id": "u\n1"}), Reason.SCHEMA_VIOLATION),
    ("feed_request", enc({**REQUEST, "k": 10_000}), Reason.SCHEMA_VIOLATION),
    ("feed_request", enc({**REQUEST, "k": True}), Reason.SCHEMA_VIOLATION),
    ("feed_request", b"", Reason.INVALID_JSON),
    ("feed_request", None, Reason.SCHEMA_VIOLATION),
])
def test_named_hostile_cases(kind: str, raw: bytes | None, reason: Reason) -> None:
    assert outcome(kind, raw) == reason


def test_message_size_is_checked_before_parsing() -> None:
    # Not even valid UTF-8: the size check alone decides, so a huge message costs no parsing.
    assert outcome("flit", b"\xff" * (64 * 1024 + 1)) == Reason.MESSAGE_TOO_LARGE
    with pytest.raises(DecodeError) as info:
        decode_flit(enc({**FLIT, "text": "x" * 300}), now=NOW, limits=EventLimits(max_message_bytes=256))
    assert info.value.reason == Reason.MESSAGE_TOO_LARGE


@SOME
@given(key=st.none() | st.binary(max_size=20), user=st.text(min_size=1, max_size=20))
def test_user_key_check(key: bytes | None, user: str) -> None:
    try:
        check_user_key(key, user)
    except DecodeError as e:
        assert e.reason == Reason.KEY_MISMATCH
    except UnicodeEncodeError:
        pytest.fail("a user id that cannot be encoded reached the key check")
    else:
        assert key == user.encode("utf-8")


def test_reasons_are_bounded_metric_labels() -> None:
    assert all(r.value.replace("_", "").isalnum() and r.value.islower() for r in Reason)
    assert len(Reason) <= 16
    assert not math.isnan(NOW)
