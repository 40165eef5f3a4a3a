"""The worker's domain logic, without Kafka: embedding batches and applying interactions."""

from __future__ import annotations

import dataclasses
import json
import time

import numpy as np

from flitfeed.encoders.hashing import HashingEncoder
from flitfeed.encoders.user_vector import UserProfile
from flitfeed.index.base import IndexedFlit
from flitfeed.settings import EventLimits, WorkerConfig
from flitfeed.streams.embedding import RawMessage, decode_flits, embed_flits, flit_text
from flitfeed.streams.events import Flit, Interaction, Reason
from flitfeed.streams.user_updates import (apply_interaction, next_park, refresh_tastes, retry_delay, taste_params,
                                          user_state)

S = WorkerConfig(park_max_attempts=3, park_base_delay_s=1.0, park_max_delay_s=4.0)
LIMITS = EventLimits()
NOW = time.time()


def msg(value: bytes | None, offset: int = 0) -> RawMessage:
    return RawMessage(topic="flits", partition=0, offset=offset, key=None, value=value, timestamp=NOW)


def flit_json(fid: str, text: str = "worms after rain", **kw) -> bytes:
    return json.dumps({"flit_id": fid, "author_id": "a", "text": text, "created_at": NOW, **kw}).encode()


def test_decode_splits_valid_and_rejected_and_dedupes() -> None:
    msgs = [msg(flit_json("f1"), 0), msg(b"nope", 1), msg(flit_json("f1", "second version"), 2),
            msg(flit_json("f2", "x" * 2000), 3)]
    decoded, rejected = decode_flits(msgs, LIMITS, now=NOW)
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
    first = next_park(None, e, "cmF3", 2, 17, now=100.0, worker=S)
    assert first is not None and first.attempts == 0 and first.not_before == 101.0
    second = next_park(first, e, "cmF3", 2, 17, now=200.0, worker=S)
    assert second.attempts == 1 and second.not_before == 202.0 and second.source_offset == 17
    third = next_park(second, e, "cmF3", 2, 17, now=300.0, worker=S)
    assert third.attempts == 2
    assert next_park(third, e, "cmF3", 2, 17, now=400.0, worker=S) is None
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


# --- tastes in the other held versions ------------------------------------------------------------------------
V2_VECTORS = {"f1": np.array([0.0, 0.0, 1.0], dtype=np.float32), "f2": np.array([0.0, 1.0, 0.0], dtype=np.float32),
              "f3": np.array([1.0, 0.0, 0.0], dtype=np.float32)}
PRIMARY = {f: IndexedFlit(f, "a", NOW, np.array([1.0, float(i)], dtype=np.float32)) for i, f in enumerate(V2_VECTORS)}


def lookup_in(vectors: dict[str, np.ndarray], calls: list[list[str]] | None = None):  # noqa: ANN201
    """A version's lookup (flit ids -> {flit_id: vector}), recording its calls."""
    def vectors_of(ids):  # noqa: ANN001, ANN202
        if calls is not None:
            calls.append(list(ids))
        return {f: vectors[f] for f in ids if f in vectors}
    return vectors_of


def test_apply_keeps_the_taste_in_other_versions_and_rebuilds_one_the_profile_lacks() -> None:
    params = dataclasses.replace(taste_params(S), version="v1")
    profile = UserProfile("u")
    apply_interaction(event("e1", "f1"), profile, PRIMARY.get, params)  # before v2 was held
    assert sorted(profile.tastes) == ["v1"]
    calls: list[list[str]] = []
    assert apply_interaction(event("e2", "f2"), profile, PRIMARY.get, params,
                             others={"v2": lookup_in(V2_VECTORS, calls)}) == "applied"
    assert calls == [["f1", "f2"]]  # no taste to update in v2: one lookup of the whole history
    np.testing.assert_allclose(profile.tastes["v2"], [0.0, 1.0, 1.0])
    calls.clear()
    apply_interaction(event("e3", "f3"), profile, PRIMARY.get, params, others={"v2": lookup_in(V2_VECTORS, calls)})
    assert calls == [["f3"]]  # held: updated incrementally
    np.testing.assert_allclose(profile.tastes["v2"], [1.0, 1.0, 1.0], rtol=1e-5)


def test_apply_drops_a_taste_whose_version_lacks_the_flit_and_rebuilds_it_once_it_knows() -> None:
    params = dataclasses.replace(taste_params(S), version="v1")
    profile = UserProfile("u")
    partial = {"f1": V2_VECTORS["f1"], "f3": V2_VECTORS["f3"]}  # v2 has not embedded f2 yet
    apply_interaction(event("e1", "f1"), profile, PRIMARY.get, params, others={"v2": lookup_in(partial)})
    assert sorted(profile.tastes) == ["v1", "v2"]  # a new user starts in every version
    apply_interaction(event("e2", "f2"), profile, PRIMARY.get, params, others={"v2": lookup_in(partial)})
    assert sorted(profile.tastes) == ["v1"], "a rebuild now would lack f2 for good"
    apply_interaction(event("e3", "f3"), profile, PRIMARY.get, params, others={"v2": lookup_in(V2_VECTORS)})
    np.testing.assert_allclose(profile.tastes["v2"], [1.0, 1.0, 1.0], rtol=1e-5)  # f2 included


def test_apply_rebuilds_a_new_primary_taste_with_the_primary_versions_lookup() -> None:
    v1, v2 = (dataclasses.replace(taste_params(S), version=v) for v in ("v1", "v2"))
    profile = UserProfile("u")
    apply_interaction(event("e1", "f1"), profile, PRIMARY.get, v1)
    v2_flits = {f: IndexedFlit(f, "a", NOW, v) for f, v in V2_VECTORS.items()}
    apply_interaction(event("e2", "f2"), profile, v2_flits.get, v2, others={"v2": lookup_in(V2_VECTORS)})
    assert profile.taste_version == "v2"
    np.testing.assert_allclose(profile.taste, [0.0, 1.0, 1.0])  # from the history, not anew


def test_user_state_carries_the_tastes_in_the_other_versions_once_warm() -> None:
    params = dataclasses.replace(taste_params(S), version="v1")
    profile = UserProfile("u")
    apply_interaction(event("e0", "f1", kind="hide"), profile, PRIMARY.get, params,
                      others={"v2": lookup_in(V2_VECTORS)})
    state = user_state(profile, "e0", 0.0)
    assert state.taste is None and state.tastes == {}  # cold: like the primary taste
    apply_interaction(event("e1", "f2"), profile, PRIMARY.get, params, others={"v2": lookup_in(V2_VECTORS)})
    state = user_state(profile, "e1", 0.0)
    assert state.model_version == "v1" and list(state.tastes) == ["v2"]
    np.testing.assert_allclose(state.tastes["v2"], profile.query_vector("v2"))
    assert abs(float(np.linalg.norm(state.tastes["v2"])) - 1.0) < 1e-5


def test_refresh_tastes_rebuilds_what_is_missing_and_says_so_with_the_last_trigger() -> None:
    params = dataclasses.replace(taste_params(S), version="v1")
    profile = UserProfile("u")
    for i, f in enumerate(["f1", "f2"]):
        apply_interaction(event(f"e{i}", f), profile, PRIMARY.get, params)
    stored = profile.to_bytes()
    assert refresh_tastes(stored, {}, params, now=NOW) is None
    assert refresh_tastes(stored, {"v2": lookup_in({})}, params, now=NOW) is None  # v2 knows none of them
    assert refresh_tastes(stored, {"v1": lookup_in(V2_VECTORS)}, params, now=NOW) is None  # v1 is there
    assert refresh_tastes(UserProfile("new").to_bytes(), {"v2": lookup_in(V2_VECTORS)}, params, NOW) is None
    new_stored, state = refresh_tastes(stored, {"v2": lookup_in(V2_VECTORS)}, params, now=NOW)
    assert state.trigger_id == "e1" == profile.last_event_id and state.trigger_ts == 0.0
    assert state.model_version == "v1" and list(state.tastes) == ["v2"]
    np.testing.assert_allclose(UserProfile.from_stored(new_stored).tastes["v2"], [0.0, 1.0, 1.0])
    assert refresh_tastes(new_stored, {"v2": lookup_in(V2_VECTORS)}, params, now=NOW) is None
    assert UserProfile.from_stored(stored).tastes.keys() == {"v1"}, "the stored value is left as it was"
    # A profile stored before (Faust's JSON of to_dict(), read back as bytes) is refreshed the same.
    older, _ = refresh_tastes(json.dumps(profile.to_dict()).encode(), {"v2": lookup_in(V2_VECTORS)}, params, now=NOW)
    assert older == new_stored
