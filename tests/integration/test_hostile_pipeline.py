"""Hostile input through the running pipeline: every message is applied or dead-lettered, counts reconcile.

Junk on the internal topics the services read (``user-states``, ``interactions-parked``) is
dead-lettered too. Hypothesis generates batches of messages for every input topic (``flits``, ``interactions``,
``feed-requests``): valid events, events with one field made hostile, random bytes, oversized
messages, wrong keys, interactions for flits that never arrive. Each message's expected outcome is
computed with the same decoders the services use; the real worker and ranker (separate processes,
real broker) must then

* dead-letter exactly the messages expected, each once, with the original key and bytes, its
  topic/partition/offset and the expected reason, and nothing else;
* apply every other message (a flit vector, a user-state update or a feed carries its id);
* count it: consumed = processed + duplicates + dead-lettered, per topic, exactly;
* keep running.

Then the whole ``interactions`` and ``flits`` topics are replayed (every message produced again):
user states, feeds and index sizes do not change; the replayed interactions are counted as duplicates.

CI runs ``FLITFEED_HOSTILE_EXAMPLES`` (default 3) hypothesis examples of 30–60 messages; set it higher
for a long run.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from flitfeed.kafka.admin import create_topics
from flitfeed.kafka.config import consumer_config
from flitfeed.settings import Settings
from flitfeed.streams.topics import (TOPIC_FEED_REQUESTS, TOPIC_FLIT_VECTORS, TOPIC_FLITS, TOPIC_INTERACTIONS,
                                     TOPIC_PARKED, TOPIC_USER_STATES)
from flitfeed.streams.events import (DecodeError, Flit, FlitVector, UserState, check_user_key,
                                     decode_feed_request, decode_flit, decode_interaction)
from flitfeed.encoders.hashing import HashingEncoder
from flitfeed.streams.embedding import flit_text
from tests.integration.helpers import Bus, now_utc
from tests.integration.test_recovery import free_port, scrape
from tests.unit.test_hostile_input import json_values, timestamps
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("FLITFEED_HOSTILE_EXAMPLES", "3"))
USERS = [f"u{i}" for i in range(4)]
KNOWN_FLITS = [f"seed-{i}" for i in range(6)]
SETTLE_S = 90
ENCODER = HashingEncoder(Settings().encoder.vector_dim)


@dataclass(frozen=True)
class Sent:
    topic: str
    key: bytes | None
    value: bytes
    partition: int
    offset: int
    #: "applied", "duplicate" or a dead-letter reason.
    expected: str
    ident: str = ""


# --- generation -------------------------------------------------------------------------------------------
hostile_value = (json_values | timestamps
                 | st.sampled_from(["", " ", "\x00", "a b", "x" * 200, "poke", "LIKE", 2**80, -1, True]))


@st.composite
def message(draw: st.DrawFn) -> tuple[str, str, dict | bytes, str | None, object, str]:
    """(topic, mode, template or raw bytes, hostile field, hostile value, key mode)."""
    topic = draw(st.sampled_from([TOPIC_FLITS, TOPIC_INTERACTIONS, TOPIC_FEED_REQUESTS]))
    mode = draw(st.sampled_from(["valid", "valid", "field", "field", "bytes", "huge", "missing_flit"]))
    key_mode = draw(st.sampled_from(["match", "match", "match", "other", "none"]))
    if mode == "bytes":
        return topic, mode, draw(st.binary(max_size=200)), None, None, key_mode
    template: dict = {
        TOPIC_FLITS: {"author_id": draw(st.sampled_from(["a1", "a2", "a3"])),
                      "text": draw(st.text(min_size=1, max_size=60)), "created_at": "NOW"},
        TOPIC_INTERACTIONS: {"user_id": draw(st.sampled_from(USERS)), "flit_id": draw(st.sampled_from(KNOWN_FLITS)),
                             "kind": draw(st.sampled_from(["view", "like", "reflit", "reply", "hide", "report"])),
                             "ts": "NOW"},
        TOPIC_FEED_REQUESTS: {"user_id": draw(st.sampled_from(USERS)), "k": draw(st.integers(1, 20))},
    }[topic]
    field = value = None
    if mode == "field":
        field = draw(st.sampled_from(sorted(template) + ["v", "extra"]))
        value = draw(hostile_value)
    return topic, mode, template, field, value, key_mode


ID_FIELD = {TOPIC_FLITS: "flit_id", TOPIC_INTERACTIONS: "event_id", TOPIC_FEED_REQUESTS: "request_id"}


def concretise(topic: str, mode: str, template, field, value, key_mode: str) -> tuple[bytes | None, bytes]:
    """Fresh ids and timestamps where the template has none; the hostile field last."""
    if isinstance(template, bytes):
        body = template
        key = None if key_mode == "none" else b"u0"
        return key, body
    obj = {ID_FIELD[topic]: f"{topic[:2]}-{uuid.uuid4().hex[:10]}", **template}
    for ts_field in ("created_at", "ts"):
        if obj.get(ts_field) == "NOW":
            obj[ts_field] = time.time() - 30
    if mode == "missing_flit" and topic == TOPIC_INTERACTIONS:
        obj["flit_id"] = f"never-{uuid.uuid4().hex[:8]}"
    if mode == "huge":
        obj["text"] = "x" * 70_000
    if field is not None:
        obj[field] = value
    body = json.dumps(obj).encode()
    user = obj.get("user_id") if topic != TOPIC_FLITS else obj.get(ID_FIELD[topic])
    if key_mode == "none":
        key = None
    elif key_mode == "other" or not isinstance(user, str):
        key = b"somebody-else"
    else:
        key = user.encode("utf-8", "replace")
    return key, body


def expected_outcome(topic: str, key: bytes | None, value: bytes, s: Settings,
                     applied_ids: dict[str, set[str]]) -> tuple[str, str]:
    """What the services must do with this message, by the same decoders and rules they use."""
    now = time.time()
    try:
        if topic == TOPIC_FLITS:
            flit = decode_flit(value, now=now, limits=s.events)
            # The hashing test encoder maps a text without word characters to the zero vector, which the
            # index refuses: that flit is dead-lettered as a processing error (MiniLM never gives zeros).
            if not ENCODER.encode_many([flit_text(flit)]).any():
                return "processing_error", flit.flit_id
            return "applied", flit.flit_id
        if topic == TOPIC_INTERACTIONS:
            event = decode_interaction(value, now=now, limits=s.events)
            check_user_key(key, event.user_id)
            if event.event_id in applied_ids.setdefault(event.user_id, set()):
                return "duplicate", event.event_id
            if event.flit_id not in KNOWN_FLITS:
                return "flit_not_found", event.event_id
            applied_ids[event.user_id].add(event.event_id)
            return "applied", event.event_id
        request = decode_feed_request(value, limits=s.events)
        check_user_key(key, request.user_id)
        return "applied", request.request_id
    except DecodeError as e:
        return str(e.reason), ""


# --- reading back -----------------------------------------------------------------------------------------
def counter_sum(samples: dict, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def read_all(settings: Settings, topic: str) -> list:
    """Every message of a topic from the beginning (for the replay)."""
    c = Consumer(consumer_config(settings.kafka, group_id=f"replay-{uuid.uuid4().hex[:8]}",
                                 **{"enable.partition.eof": True}))
    name = settings.kafka.topic(topic)
    parts = sorted(c.list_topics(name, timeout=10).topics[name].partitions)
    c.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in parts])
    out, done = [], set()
    deadline = time.monotonic() + 60
    while len(done) < len(parts) and time.monotonic() < deadline:
        for m in c.consume(500, timeout=0.5):
            if m.error() is not None:
                done.add(m.partition())
            else:
                out.append(m)
    c.close()
    assert len(done) == len(parts), f"could not read {topic} to its end"
    return out


def user_states(bus: Bus) -> list[UserState]:
    """The worker's user states (the junk this test put on the topic skipped)."""
    out = []
    for m in bus.drain(TOPIC_USER_STATES):
        try:
            out.append(UserState.model_validate_json(m.value()))
        except ValueError:
            continue
    return out


def latest_states(bus: Bus) -> dict[str, dict]:
    return {st.user_id: st.model_dump(exclude={"updated_at", "trigger_ts", "trigger_id"}) for st in user_states(bus)}


# --- the test ---------------------------------------------------------------------------------------------
def test_hostile_input_is_applied_or_dead_lettered_and_counts_reconcile(isolated_settings: Settings,
                                                                        services) -> None:
    worker_port, ranker_port = free_port(), free_port()
    s = isolated_settings.replace(**{
        "worker_metrics_port": worker_port, "ranker_metrics_port": ranker_port,
        "park_base_delay_s": 0.05, "park_max_delay_s": 0.2, "park_max_attempts": 3})
    create_topics(s.kafka)
    bus = Bus(s, alive=services.all_alive)
    services("worker", s, FLITFEED_ENCODER="hashing")
    services("ranker", s)
    topic_names = {t: s.kafka.topic(t) for t in (TOPIC_FLITS, TOPIC_INTERACTIONS, TOPIC_FEED_REQUESTS)}

    sent: list[Sent] = []
    applied_ids: dict[str, set[str]] = {}

    def produce(topic: str, key: bytes | None, value: bytes) -> None:
        expected, ident = expected_outcome(topic, key, value, s, applied_ids)
        delivered = []
        bus.producer.produce(s.kafka.topic(topic), key=key, value=value,
                             on_delivery=lambda err, m: delivered.append((err, m)))
        assert bus.producer.flush(10) == 0
        (err, m), = delivered
        assert err is None, err
        sent.append(Sent(s.kafka.topic(topic), key, value, m.partition(), m.offset(), expected, ident))

    for fid in KNOWN_FLITS:
        produce(TOPIC_FLITS, fid.encode(), Flit(flit_id=fid, author_id="seed", text=f"seed flit {fid}",
                                                created_at=now_utc()).to_bytes())
    wait_until(lambda: set(KNOWN_FLITS) <= {FlitVector.model_validate_json(m.value()).flit.flit_id
                                            for m in bus.drain(TOPIC_FLIT_VECTORS)}, SETTLE_S, what="seed flits")

    # The internal topics the services consume are decoded as defensively as the input topics (the bounded
    # decoder: its reasons).
    internal = {s.kafka.topic(TOPIC_USER_STATES): "ranker", s.kafka.topic(TOPIC_PARKED): "worker"}
    junk_reasons = {b"\xff\xfe": "invalid_utf8", b"{}": "schema_violation", b"null": "schema_violation",
                    b'{"user_id": 5}': "schema_violation", b"": "invalid_json", b'{"v": 2}': "unknown_schema_version"}
    for topic in internal:
        for junk, reason in junk_reasons.items():
            delivered = []
            bus.producer.produce(topic, key=b"u0", value=junk, on_delivery=lambda err, m: delivered.append(m))
            assert bus.producer.flush(10) == 0
            sent.append(Sent(topic, b"u0", junk, delivered[0].partition(), delivered[0].offset(), reason))

    def settled() -> dict | None:
        """The metric samples once every sent message has its outcome, else None."""
        assert services.all_alive(), "a service died on hostile input"
        w, r = scrape(worker_port), scrape(ranker_port)
        if w is None or r is None:
            return None
        want = Counter(x.topic for x in sent)
        done = {t: counter_sum(w, "flitfeed_events_processed_total", topic=t)
                + counter_sum(w, "flitfeed_events_duplicate_total", topic=t)
                + counter_sum(w, "flitfeed_events_dead_lettered_total", topic=t)
                for t in (topic_names[TOPIC_FLITS], topic_names[TOPIC_INTERACTIONS])}
        done[topic_names[TOPIC_FEED_REQUESTS]] = (
            counter_sum(r, "flitfeed_feeds_published_total", trigger="request")
            + counter_sum(r, "flitfeed_events_dead_lettered_total", topic=topic_names[TOPIC_FEED_REQUESTS]))
        for t, svc in internal.items():
            done[t] = counter_sum(w if svc == "worker" else r, "flitfeed_events_dead_lettered_total", topic=t)
        return {"worker": w, "ranker": r} if all(done[t] >= want[t] for t in done) else None

    def check_reconciled(samples: dict) -> None:
        w, r = samples["worker"], samples["ranker"]
        by_outcome = Counter((x.topic, x.expected == "applied", x.expected == "duplicate") for x in sent)
        for t in (topic_names[TOPIC_FLITS], topic_names[TOPIC_INTERACTIONS]):
            consumed = counter_sum(w, "flitfeed_events_consumed_total", topic=t)
            processed = counter_sum(w, "flitfeed_events_processed_total", topic=t)
            duplicates = counter_sum(w, "flitfeed_events_duplicate_total", topic=t)
            dead = counter_sum(w, "flitfeed_events_dead_lettered_total", topic=t)
            assert consumed == processed + duplicates + dead == sum(1 for x in sent if x.topic == t), \
                (t, consumed, processed, duplicates, dead)
            assert processed == by_outcome[(t, True, False)], (t, processed)
            assert duplicates == by_outcome[(t, False, True)], (t, duplicates)
        t = topic_names[TOPIC_FEED_REQUESTS]
        assert counter_sum(r, "flitfeed_feeds_published_total", trigger="request") == by_outcome[(t, True, False)]
        assert counter_sum(r, "flitfeed_events_consumed_total", topic=t) == sum(1 for x in sent if x.topic == t)

        # Exactly the expected dead letters, once each, with the original message and where it was.
        expected = {(x.topic, x.partition, x.offset): x for x in sent if x.expected not in ("applied", "duplicate")}
        # The counters say they were sent; reading them back may take more than one poll.
        wait_until(lambda: set(expected) <= {(d.source_topic, d.partition, d.offset) for d in bus.dead_letters()},
                   30, what="the dead letters to be readable")
        letters = {(d.source_topic, d.partition, d.offset): d for d in bus.dead_letters()}
        assert len(letters) == len(bus.dead_letters()), "a message was dead-lettered twice"
        assert set(letters) == set(expected), (
            f"missing: {[expected[k].expected for k in set(expected) - set(letters)]}, "
            f"unexpected: {[letters[k].reason for k in set(letters) - set(expected)]}")
        for where, x in expected.items():
            d = letters[where]
            assert d.reason == x.expected, (d.reason, x.expected, x.value[:200])
            assert d.original_value() == x.value
            assert (None if d.key_b64 is None else base64.b64decode(d.key_b64)) == x.key
        for reason, n in Counter(x.expected for x in expected.values()).items():
            source = Counter(x.topic for x in expected.values() if x.expected == reason)
            for topic, k in source.items():
                svc = r if topic in (topic_names[TOPIC_FEED_REQUESTS], s.kafka.topic(TOPIC_USER_STATES)) else w
                assert counter_sum(svc, "flitfeed_events_dead_lettered_total", topic=topic, reason=reason) == k

        # Everything else was applied: its id shows up downstream.
        vectors = {FlitVector.model_validate_json(m.value()).flit.flit_id for m in bus.drain(TOPIC_FLIT_VECTORS)}
        state_triggers = {st.trigger_id for st in user_states(bus)}
        feed_triggers = {t for f in bus.feeds() for t in f.answers()}
        for x in sent:
            if x.expected != "applied":
                continue
            downstream = {topic_names[TOPIC_FLITS]: vectors, topic_names[TOPIC_INTERACTIONS]: state_triggers,
                          topic_names[TOPIC_FEED_REQUESTS]: feed_triggers}[x.topic]
            assert x.ident in downstream, (x.topic, x.ident)

    # Generate only: shrinking would re-run a failing batch dozens of times against live services.
    @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(batch=st.lists(message(), min_size=30, max_size=60))
    def one_batch(batch: list) -> None:
        for topic, mode, template, field, value, key_mode in batch:
            key, body = concretise(topic, mode, template, field, value, key_mode)
            produce(topic, key, body)
        check_reconciled(wait_until(settled, SETTLE_S, interval=0.3, what="every message to have its outcome"))

    try:
        one_batch()
        reasons = Counter(x.expected for x in sent)
        print(f"\n{len(sent)} messages, outcomes: {dict(reasons)}")
        assert reasons["applied"] > 0 and len(reasons) >= 4, reasons

        # --- whole-topic replay: nothing changes -------------------------------------------------------
        states_before = latest_states(bus)
        interaction_feeds_before = sorted(t for f in bus.feeds() if f.trigger_kind == "interaction"
                                          for t in f.answers())
        points_before = {svc: counter_sum(scrape(p), "flitfeed_index_points")
                         for svc, p in (("worker", worker_port), ("ranker", ranker_port))}
        replay = read_all(s, TOPIC_INTERACTIONS) + read_all(s, TOPIC_FLITS)
        for m in replay:
            topic = TOPIC_INTERACTIONS if m.topic() == topic_names[TOPIC_INTERACTIONS] else TOPIC_FLITS
            produce(topic, m.key(), m.value())
        samples = wait_until(settled, SETTLE_S, interval=0.3, what="the replay to be processed")
        check_reconciled(samples)
        replayed_valid = [x for x in sent[-len(replay):] if x.expected == "duplicate"]
        assert replayed_valid, "the replay produced no duplicates"
        # The worker re-publishes a user's latest state when its last event comes again; give those
        # a moment to reach the ranker, then compare.
        wait_until(lambda: latest_states(bus) == states_before, 30, what="user states unchanged by the replay")
        assert sorted(t for f in bus.feeds() if f.trigger_kind == "interaction" for t in f.answers()) \
            == interaction_feeds_before, "the replay published feeds again"
        after = {svc: counter_sum(scrape(p), "flitfeed_index_points")
                 for svc, p in (("worker", worker_port), ("ranker", ranker_port))}
        assert after == points_before
        assert services.all_alive()
    finally:
        bus.close()
