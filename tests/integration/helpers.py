"""Producing events and reading feeds/dead letters in integration tests."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Callable

from confluent_kafka import Consumer, Producer, TopicPartition

from flitfeed.kafka.config import consumer_config, producer_config
from flitfeed.settings import Settings
from flitfeed.streams.events import DeadLetter, Feed, FeedRequest, Flit, Interaction
from tests.waiting import wait_until


class Bus:
    """Produce to and read from one isolated set of flitfeed topics."""

    def __init__(self, settings: Settings, alive: Callable[[], bool] = lambda: True) -> None:
        self.settings = settings
        #: Checked while waiting, so a crashed service fails the test at once instead of at the deadline.
        self._alive = alive
        self.producer = Producer(producer_config(settings.kafka))
        self._readers: dict[str, Consumer] = {}
        self.received: dict[str, list] = {}

    def send(self, topic: str, key: str | bytes | None, value: bytes) -> None:
        k = key.encode() if isinstance(key, str) else key
        self.producer.produce(self.settings.kafka.topic(topic), key=k, value=value)
        remaining = self.producer.flush(10)
        assert remaining == 0, "message not delivered"

    def flit(self, flit: Flit) -> None:
        self.send("flits", flit.flit_id, flit.to_bytes())

    def interaction(self, event: Interaction) -> None:
        self.send("interactions", event.user_id, event.to_bytes())

    def request(self, user_id: str, k: int = 10) -> str:
        request = FeedRequest(request_id=f"req-{uuid.uuid4().hex[:8]}", user_id=user_id, k=k)
        self.send("feed-requests", user_id, request.to_bytes())
        return request.request_id

    def _reader(self, topic: str) -> Consumer:
        if topic not in self._readers:
            c = Consumer(consumer_config(self.settings.kafka, group_id=f"test-reader-{uuid.uuid4().hex[:8]}"))
            c.subscribe([self.settings.kafka.topic(topic)])
            self._readers[topic] = c
            self.received[topic] = []
        return self._readers[topic]

    def drain(self, topic: str) -> list:
        reader = self._reader(topic)
        for m in reader.consume(num_messages=500, timeout=0.2):
            if m.error() is None:
                self.received[topic].append(m)
        return self.received[topic]

    def feeds(self) -> list[Feed]:
        return [Feed.model_validate_json(m.value()) for m in self.drain("feeds")]

    def dead_letters(self) -> list[DeadLetter]:
        return [DeadLetter.model_validate_json(m.value()) for m in self.drain("dead-letters")]

    def wait_feed(self, match: Callable[[Feed], bool], timeout: float, what: str) -> Feed:
        def found() -> Feed | None:
            assert self._alive(), f"a service died while waiting for {what}"
            return next((f for f in reversed(self.feeds()) if match(f)), None)

        return wait_until(found, timeout, what=what)

    def close(self) -> None:
        for c in self._readers.values():
            c.close()
        self.producer.flush(10)


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def make_interaction(user: str, flit_id: str, kind: str, event_id: str | None = None) -> Interaction:
    return Interaction(event_id=event_id or f"ev-{uuid.uuid4().hex[:10]}", user_id=user, flit_id=flit_id, kind=kind,
                       ts=now_utc())


def uncommitted(settings: Settings, topic_name: str, group_id: str | None = None) -> int:
    """Messages of a topic that the group (the worker's by default) has not committed yet."""
    topic = settings.kafka.topic(topic_name)
    probe = Consumer(consumer_config(settings.kafka, group_id=group_id or settings.kafka.app_id))  # reads commits only
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.kafka.partitions)]
        committed = {tp.partition: max(tp.offset, 0) for tp in probe.committed(tps, timeout=10)}
        return sum(probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] - committed.get(p, 0)
                   for p in range(settings.kafka.partitions))
    finally:
        probe.close()


def metric(port: int, name: str, **labels: str) -> float:
    """The sum of a metric's samples matching ``labels`` on a service's /metrics (0 when it has none)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(sample.value for family in text_string_to_metric_families(body) for sample in family.samples
               if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()))
