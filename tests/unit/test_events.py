"""Decoding every input record: valid input round-trips, each kind of bad input has its reason."""

from __future__ import annotations

import json
from datetime import datetime, timezone

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


# --- the fast path (pydantic's JSON parser) must answer exactly what the slow path answers ----------------

def _slow(raw: bytes | None, model):
    from flitfeed.streams import events

    return events._validate(events._load(raw, events.INTERNAL_MAX_MESSAGE_BYTES), model)


def _outcome(fn, raw):
    try:
        return ("ok", fn(raw).model_dump())
    except DecodeError as exc:
        return ("error", exc.reason)


def _canonical_records():
    import numpy as np
    from datetime import datetime, timezone

    from flitfeed.streams.events import (Example, FeedRequest, FlitVector, Impression, ImpressionItem, Interaction,
                                         UserState)

    rng = np.random.default_rng(1)
    now = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
    return [
        Interaction(event_id="e1", user_id="u1", flit_id="f1", kind="like", ts=now),
        Flit(flit_id="f1", author_id="a1", text="a warbler at dawn", created_at=now, lang="en", tags=["birds"]),
        FeedRequest(request_id="r1", user_id="u1", k=10),
        UserState(user_id="u1", taste=rng.standard_normal(384).tolist(), positives=3, seen=["f1", "f2"],
                  updated_at=now, trigger_id="e1", model_version="m", tastes={"m2": [0.5, -0.25]}),
        Example(example_id="i1/f1", user_id="u1", flit_id="f1", impression_id="i1", served_at=1.5, labelled_at=2.5,
                feature_set="fs", features=[0.25, 1.0], actions=["engage"]),
        Impression(impression_id="i1", user_id="u1", served_at=1.5, trigger_id="e1", feature_set="fs",
                   items=[ImpressionItem(flit_id="f1", author_id="a1", position=0, score=0.5, features=[1.0])]),
        FlitVector(flit=Flit(flit_id="f2", author_id="a1", text="a wren", created_at=now, tags=["birds"]),
                   vector=rng.standard_normal(384).tolist(), model_version="m", embedded_at=now),
    ]


def test_canonical_records_take_the_fast_path_and_decode_to_themselves() -> None:
    from flitfeed.streams import events

    for record in _canonical_records():
        raw = record.to_bytes()
        assert events._fast(raw, type(record), events.INTERNAL_MAX_MESSAGE_BYTES) == record, type(record).__name__
        assert events._parse(raw, type(record), events.INTERNAL_MAX_MESSAGE_BYTES) == record


@pytest.mark.parametrize("edit", [
    (b'{"v":1,', b'{"v":true,'), (b'{"v":1,', b'{"v":"1",'), (b'{"v":1,', b'{"v":2,'), (b'{"v":1,', b'{"v":1.0,'),
    (b'{"v":1,', b'{"v":1,"v":true,'), (b'{"v":1,', b'{"v":1,"x":NaN,'), (b'{"v":1,', b'{"v":1,"x":-Infinity,'),
    (b'{"v":1,', b'{"v":1,"x":"\\ud800",'), (b'{"v":1,', b'{"v":1,"x":"\\u00e9",'), (b'{"v":1,', b'{"v":1,"x":"\xff",'),
    (b'{"v":1,', b'{"v":1,"x":99999999999999999999999999999,'), (b'{"v":1,', b'{"v":1,"user_id":7,'),
    (b'{"v":1,', b'{"v":1,"x":' + b'[' * 5000 + b']' * 5000 + b','), (b'{"v":1,', b'[{"v":1,'), (b'{"v":1,', b''),
    # A second version key: the last one wins in both parsers.
    (b'{"v":1,', b'{"v":1,"v":2,'), (b'{"v":1,', b'{"v":2,"v":1,'), (b'{"v":1,', b'{"v":1,"v":1,'),
    # A nested record's version (a flit vector's flit): missing, another, not an int, twice.
    (b'"flit":{"v":1,', b'"flit":{'), (b'"flit":{"v":1,', b'"flit":{"v":2,'), (b'"flit":{"v":1,', b'"flit":{"v":true,'),
    (b'"flit":{"v":1,', b'"flit":{"v":1,"v":"1",'), (b'"flit":{"v":1,', b'"flit":{"v":1,"v":1,'),
    (b'"flit":{"v":1,', b'"x":{"v":1},"flit":{"v":1,'),
])
def test_fast_and_slow_paths_agree_on_edited_records(edit) -> None:
    from flitfeed.streams import events

    old, new = edit
    for record in _canonical_records():
        raw = record.to_bytes().replace(old, new, 1)
        fast = _outcome(lambda r: events._parse(r, type(record), events.INTERNAL_MAX_MESSAGE_BYTES), raw)
        assert fast == _outcome(lambda r: _slow(r, type(record)), raw), (type(record).__name__, raw[:80])


@pytest.mark.parametrize("head", [b'{"v":1,', b'{"v":1,"v":2,', b'{"v":2,"v":1,'])
def test_a_record_without_a_version_of_its_own_answers_as_the_slow_path_does(head: bytes) -> None:
    """A parked interaction has no ``v``: one in front of it is an extra key that only the slow path checks."""
    from flitfeed.streams import events
    from flitfeed.streams.events import Interaction, ParkedInteraction

    event = Interaction(event_id="e1", user_id="u1", flit_id="f1", kind="like", ts=datetime(2026, 11, 26,
                                                                                          tzinfo=timezone.utc))
    raw = head + ParkedInteraction(interaction=event, raw_b64="eA==", source_partition=0, source_offset=5,
                                   attempts=1, not_before=1.0).to_bytes()[1:]
    got = _outcome(lambda r: events._parse(r, ParkedInteraction, events.INTERNAL_MAX_MESSAGE_BYTES), raw)
    assert got == _outcome(lambda r: _slow(r, ParkedInteraction), raw)
    assert got[0] == ("ok" if head == b'{"v":1,' or head == b'{"v":2,"v":1,' else "error")


def test_fast_and_slow_paths_agree_on_random_byte_damage() -> None:
    import random

    from flitfeed.streams import events

    rng = random.Random(7)
    alphabet = b'{}[]",:0123456789.-eEtrufalsnNIy\\ \xff\xc3\n\t\x00'
    disagreements, decoded_fast = [], 0
    for record in _canonical_records():
        canonical = record.to_bytes()
        for _ in range(400):
            raw = bytearray(canonical)
            for _ in range(rng.randint(1, 3)):
                i = rng.randrange(len(raw))
                raw[i:i + rng.randint(0, 2)] = bytes([rng.choice(alphabet)])
            raw = bytes(raw)
            got = _outcome(lambda r: events._parse(r, type(record), events.INTERNAL_MAX_MESSAGE_BYTES), raw)
            if got != _outcome(lambda r: _slow(r, type(record)), raw):
                disagreements.append((type(record).__name__, raw[:120]))
            decoded_fast += events._fast(raw, type(record), events.INTERNAL_MAX_MESSAGE_BYTES) is not None
    assert not disagreements, disagreements[:5]
    assert decoded_fast > 100  # the damage left many records valid, and those took the fast path
