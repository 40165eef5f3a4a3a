"""`flitfeed produce`: every line reaches the broker, even when the client's local queue fills up."""

from __future__ import annotations

from typing import Any

import confluent_kafka
import pytest

from flitfeed.cli import produce_lines
from flitfeed.settings import Settings


class SmallQueueProducer:
    """A producer whose local queue holds two records and empties only when a poll may wait (or on flush),
    as librdkafka's does when lines arrive faster than the broker takes them."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.queued: list[tuple[str, bytes | None, bytes]] = []
        self.delivered: list[tuple[str, bytes | None, bytes]] = []

    def produce(self, topic: str, key: bytes | None = None, value: bytes = b"", **_: Any) -> None:
        if len(self.queued) >= 2:
            raise BufferError("Local: Queue full")
        self.queued.append((topic, key, value))

    def poll(self, timeout: float) -> int:
        if timeout > 0:
            self.delivered += self.queued
            self.queued = []
        return 0

    def flush(self, timeout: float) -> int:
        self.poll(timeout)
        return 0


def test_more_lines_than_the_queue_holds_are_all_delivered_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[SmallQueueProducer] = []
    monkeypatch.setattr(confluent_kafka, "Producer", lambda config: made.append(SmallQueueProducer(config)) or made[-1])
    lines = [b'{"user_id": "u%d", "flit_id": "f1", "kind": "like"}' % i for i in range(7)]

    assert produce_lines(Settings(topic_prefix="t-"), "interactions", lines) == 7

    (producer,) = made
    assert [(t, k, v) for t, k, v in producer.delivered] == [
        ("t-interactions", b"u%d" % i, line) for i, line in enumerate(lines)]
