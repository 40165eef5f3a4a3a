"""The same replay through the real pipeline: worker and ranker processes on a Kafka broker.

:class:`KafkaFlitfeedMethod` is a :class:`~flitfeed.evaluation.methods.Method`
whose state lives in the running services, so :func:`~flitfeed.evaluation.replay.replay`
scores it exactly as it scores the in-process model:

* the catalog is produced to ``flits`` first (:meth:`KafkaFlitfeedMethod.publish_catalog`);
* ``recommend`` produces a ``FeedRequest`` and waits for the feed whose
  ``trigger_id`` is that request's id;
* ``learn`` produces the ``Interaction`` and waits for the feed the ranker
  publishes when the worker's new user state reaches it (``trigger_id`` = the
  event id), so the next test sees the event applied — test-then-learn over Kafka.

The services must run with :func:`kafka_settings` (historical timestamps
accepted, the ranker on the event clock). One round trip per event makes
this mode slow by design: it checks that production agrees with the fast
in-process replay on a subset, it is not how whole datasets are evaluated.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition

from flitfeed.evaluation.dataset import Dataset
from flitfeed.evaluation.methods import AUTHOR_PREFIX, Event, eval_settings
from flitfeed.kafka.config import consumer_config, producer_config
from flitfeed.kafka.writing import produce_with_room
from flitfeed.settings import Settings
from flitfeed.streams.topics import TOPIC_FEED_REQUESTS, TOPIC_FEEDS, TOPIC_FLITS, TOPIC_INTERACTIONS
from flitfeed.streams.events import Feed, decode_internal, from_epoch

log = logging.getLogger(__name__)


def kafka_settings(base: Settings) -> Settings:
    """Settings for the services of a Kafka-mode replay of a historical dataset."""
    return eval_settings(base, ranker_clock="event", max_event_age_s=1e10, max_clock_skew_s=1e10)


class KafkaFlitfeedMethod:
    def __init__(self, dataset: Dataset, settings: Settings, name: str = "flitfeed-kafka",
                 timeout_s: float = 60.0) -> None:
        self.name = name
        self.settings = settings
        self.dataset = dataset
        self.item_ids = dataset.item_ids()
        self.position = {fid: i for i, fid in enumerate(self.item_ids)}
        self.timeout_s = timeout_s
        self.producer = Producer(producer_config(settings.kafka))
        self.feeds_topic = settings.kafka.topic(TOPIC_FEEDS)
        self.consumer = Consumer(consumer_config(settings.kafka, group_id=f"flitfeed-eval-{uuid.uuid4().hex[:8]}"))
        meta = self.consumer.list_topics(self.feeds_topic, timeout=10)
        partitions = sorted(meta.topics[self.feeds_topic].partitions)
        # Only feeds published from now on matter.
        self.consumer.assign([TopicPartition(self.feeds_topic, p, OFFSET_END) for p in partitions])
        self._feeds: dict[str, Feed] = {}

    def close(self) -> None:
        self.producer.flush(10)
        self.consumer.close()

    def _send(self, topic: str, key: str, value: dict[str, Any]) -> None:
        produce_with_room(self.producer, self.settings.kafka.topic(topic), key=key.encode(),
                          value=json.dumps(value).encode())
        self.producer.poll(0)

    def publish_catalog(self, created_at: float) -> None:
        for it in self.dataset.items:
            self._send(TOPIC_FLITS, it.item_id, {
                "flit_id": it.item_id, "author_id": AUTHOR_PREFIX + it.item_id, "text": it.text,
                "created_at": created_at, "tags": list(it.genres)[: self.settings.events.max_tags]})
        self.producer.flush(30)

    def _wait_feed(self, trigger_id: str) -> Feed:
        deadline = time.monotonic() + self.timeout_s
        while trigger_id not in self._feeds:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no feed for trigger {trigger_id} within {self.timeout_s}s")
            for m in self.consumer.consume(num_messages=100, timeout=0.2):
                if m.error() is None:
                    feed = decode_internal(m.value(), Feed)  # a record it cannot read fails the run, loudly
                    for trigger in feed.answers():
                        self._feeds[trigger] = feed
        return self._feeds.pop(trigger_id)

    def recommend(self, user: str, now: float, k: int, seen: set[int]) -> list[int]:
        request_id = f"req-{uuid.uuid4().hex[:12]}"
        self._send(TOPIC_FEED_REQUESTS, user, {"request_id": request_id, "user_id": user, "k": k})
        self.producer.flush(10)
        feed = self._wait_feed(request_id)
        return [self.position[item.flit_id] for item in feed.items]

    def learn(self, event: Event) -> None:
        self._send(TOPIC_INTERACTIONS, event.user, {
            "event_id": event.event_id, "user_id": event.user, "flit_id": self.item_ids[event.item],
            "kind": event.kind, "ts": from_epoch(event.ts).isoformat()})
        self.producer.flush(10)
        self._wait_feed(event.event_id)
