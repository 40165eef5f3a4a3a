"""The feedback loop's Kafka side with fake clients: what it produces, learns, drops and loads."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from flitfeed.monitoring.metrics import Metrics
from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.feedback_loop import MODEL_KEY, FeedbackLoop
from flitfeed.ranker.features import FEATURE_SET, N_FEATURES
from flitfeed.ranker.model import ActionModel
from flitfeed.ranker.query import FeedQuery
from flitfeed.settings import Settings
from flitfeed.streams.events import Example, Impression, Interaction, ModelSnapshot, from_epoch

NOW = 1_800_000_000.0


class FakeMessage:
    def __init__(self, value: bytes, partition: int = 0, offset: int = 0, key: bytes | None = None) -> None:
        self._value, self._partition, self._offset, self._key = value, partition, offset, key

    def error(self) -> None:
        return None

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    def produce(self, topic: str, key: bytes, value: bytes, headers: object = None) -> None:
        self.sent.append((topic, key, value))

    def poll(self, timeout: float) -> int:
        return 0


class FakeReader:
    def __init__(self, messages: list[FakeMessage]) -> None:
        self.messages = messages

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        out, self.messages = self.messages[:num_messages], self.messages[num_messages:]
        return out

    def close(self) -> None:
        pass


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def loop() -> FeedbackLoop:
    # Learning off: the constructor touches no Kafka; the tests give it a fake examples reader.
    settings = Settings(topic_prefix="t-", ranker_learning=False, feedback_window_s=60.0)
    return FeedbackLoop(settings, Metrics("ranker"), FakeProducer(), ActionModel())  # type: ignore[arg-type]


def example(eid: str, **over: object) -> bytes:
    base = dict(example_id=eid, user_id="u", flit_id="f", impression_id="i", served_at=0.0, labelled_at=1.0,
                feature_set=FEATURE_SET, features=[0.5] * N_FEATURES, actions=["engage"])
    return Example(**{**base, **over}).to_bytes()  # type: ignore[arg-type]


def test_a_served_feed_becomes_an_impression_then_examples(loop: FeedbackLoop) -> None:
    items = [Candidate(f"f{i}", "robin", NOW, "similar", score=1.0 - i / 10, features=np.full(N_FEATURES, 0.1))
             for i in range(3)]
    imp_id = "imp-1"
    loop.record(FeedQuery("wren", 3, NOW, trigger_id="r1"), items, partition=2, impression_id=imp_id)
    producer: FakeProducer = loop.producer  # type: ignore[assignment]
    topic, key, raw = producer.sent[-1]
    assert (topic, key) == ("t-impressions", b"wren")
    assert Impression.model_validate_json(raw).impression_id == imp_id
    loop.on_interaction(Interaction(event_id="e1", user_id="wren", flit_id="f1", kind="like", ts=from_epoch(NOW + 5)))
    loop.expire(NOW + 61.0)
    examples = [Example.model_validate_json(v) for t, _, v in producer.sent if t == "t-examples"]
    assert {(e.flit_id, tuple(e.actions)) for e in examples} == {("f1", ("engage",)), ("f0", ()), ("f2", ())}
    assert all(k == b"wren" for t, k, _ in producer.sent if t == "t-examples")
    assert value(loop.metrics, "flitfeed_ranker_examples_total", stage="emitted", label="ignored") == 2
    assert value(loop.metrics, "flitfeed_ranker_examples_total", stage="emitted", label="engage") == 1
    assert value(loop.metrics, "flitfeed_events_produced_total", service="ranker", topic="t-examples") == 3
    assert value(loop.metrics, "flitfeed_events_produced_total", service="ranker", topic="t-impressions") == 1


def test_malformed_bad_and_repeated_examples_are_counted_and_never_learned(loop: FeedbackLoop) -> None:
    loop.examples_reader = FakeReader([  # type: ignore[assignment]
        FakeMessage(b"{not json", offset=0),
        FakeMessage(example("a"), offset=1),
        FakeMessage(example("a"), offset=2),
        FakeMessage(example("b", features=[0.1] * (N_FEATURES - 1)), offset=3),
        FakeMessage(example("c", feature_set="f0:old"), offset=4),
        FakeMessage(b'{"v": 1, "example_id": "d", "features": [NaN]}', offset=5),
    ])
    assert loop.learn() == 6
    m = loop.metrics
    assert loop.model.examples == 1
    assert value(m, "flitfeed_ranker_examples_total", stage="learned", label="all") == 1
    assert value(m, "flitfeed_ranker_examples_dropped_total", reason="malformed") == 2
    assert value(m, "flitfeed_ranker_examples_dropped_total", reason="duplicate") == 1
    assert value(m, "flitfeed_ranker_examples_dropped_total", reason="bad_features") == 1
    assert value(m, "flitfeed_ranker_examples_dropped_total", reason="feature_set") == 1
    assert value(m, "flitfeed_ranker_model_examples") == 1


def snapshot_message(model: ActionModel, written_at: float, positions: dict[int, int], offset: int) -> FakeMessage:
    snap = ModelSnapshot(model=model.to_dict(), positions=positions,
                         written_at=datetime.fromtimestamp(written_at, tz=timezone.utc), written_by="r1")
    return FakeMessage(snap.to_bytes(), offset=offset, key=MODEL_KEY)


def test_the_newest_readable_snapshot_is_loaded(loop: FeedbackLoop, monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = ActionModel(), ActionModel()
    old.examples, new.examples = 10, 20
    new.weights = new.weights + 0.5
    messages = [snapshot_message(old, NOW, {0: 5}, 0), snapshot_message(new, NOW + 10, {0: 9, 3: 2}, 1),
                FakeMessage(b'{"v": 1, "model": {"feature_set": "f1:x"}, "positions": {}, '
                            b'"written_at": "2030-01-01T00:00:00Z"}', offset=2)]
    monkeypatch.setattr(loop, "_partitions", lambda name: {0})
    monkeypatch.setattr(loop, "_read", lambda name, p, since: iter(messages))
    loop._load_snapshot()
    assert loop.model.examples == 20 and np.array_equal(loop.model.weights, new.weights)
    assert loop._positions == {0: 9, 3: 2}
    assert value(loop.metrics, "flitfeed_ranker_model_snapshots_total", outcome="loaded") == 1


@pytest.mark.parametrize("messages,outcome", [([], "missing"), ([FakeMessage(b"\xff\xfe", offset=0)], "corrupt")])
def test_a_missing_or_corrupt_snapshot_starts_from_the_prior(loop: FeedbackLoop, monkeypatch: pytest.MonkeyPatch,
                                                            messages: list, outcome: str) -> None:
    monkeypatch.setattr(loop, "_partitions", lambda name: {0})
    monkeypatch.setattr(loop, "_read", lambda name, p, since: iter(messages))
    loop._load_snapshot()
    assert loop.model.examples == 0 and np.array_equal(loop.model.weights, loop.model.prior)
    assert value(loop.metrics, "flitfeed_ranker_model_snapshots_total", outcome=outcome) == 1


def test_a_snapshot_carries_the_model_and_what_it_learned(loop: FeedbackLoop) -> None:
    loop.examples_reader = FakeReader([FakeMessage(example("a"), partition=4, offset=7)])  # type: ignore[assignment]
    loop.learn()
    assert loop.maybe_snapshot("r1", force=True)
    assert not loop.maybe_snapshot("r1", force=True)  # nothing learned since
    topic, key, raw = loop.producer.sent[-1]  # type: ignore[attr-defined]
    snap = ModelSnapshot.model_validate_json(raw)
    assert (topic, key) == ("t-ranker-model", MODEL_KEY) and snap.positions == {4: 8}
    assert np.array_equal(ActionModel.from_dict(snap.model).weights, loop.model.weights)


def test_a_revoked_partition_takes_its_users_pending_impressions_along(loop: FeedbackLoop) -> None:
    item = [Candidate("f1", "robin", NOW, "similar", score=1.0, features=np.zeros(N_FEATURES))]
    loop.record(FeedQuery("wren", 1, NOW), item, partition=1, impression_id="imp-1")
    loop.record(FeedQuery("crow", 1, NOW), item, partition=2, impression_id="imp-2")
    loop.drop([1])
    assert loop.join.users() == ["crow"]


def test_a_log_that_cannot_be_read_never_crashes_the_rebuild(loop: FeedbackLoop,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A broker restarting answers 'unknown partition' inside the assignment callback (test_broker_faults)."""
    from confluent_kafka import KafkaError, KafkaException

    def unreadable(*args: object) -> None:
        raise KafkaException(KafkaError(KafkaError._UNKNOWN_PARTITION))
        yield  # pragma: no cover - a generator, as the real one

    monkeypatch.setattr(loop, "_read_or_raise", unreadable)
    loop.rebuild([0, 1], now=NOW)
    assert value(loop.metrics, "flitfeed_ranker_examples_dropped_total", reason="unreadable_log") == 6
