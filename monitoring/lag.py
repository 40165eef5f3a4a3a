"""Consumer-group lag per partition, reported by a background thread.

Each service reports the lag of its own consumer group (committed offset vs the
partition's high watermark) on its input topics, every ``interval_s``. A
separate confluent-kafka consumer that never subscribes reads the committed
offsets, so it neither joins the group nor slows the service's loop. With
several processes of one service every process reports the whole group's lag
(the same numbers): dashboards take ``max by (topic, partition)``.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Sequence

from confluent_kafka import Consumer, TopicPartition

log = logging.getLogger(__name__)

__all__ = ["LagReporter", "partition_lag"]


def partition_lag(committed: int, low: int, high: int) -> int:
    """Messages not yet committed; with no commit yet, everything still retained.

    >>> partition_lag(committed=40, low=0, high=100), partition_lag(committed=-1001, low=10, high=100)
    (60, 90)
    """
    start = committed if committed >= 0 else low
    return max(0, high - max(start, low))


class LagReporter:
    """``report(topic, partition, lag)`` for every partition of ``topics``, every ``interval_s`` seconds."""

    def __init__(self, consumer_config: dict, topics: Sequence[str], report: Callable[[str, int, int], None],
                 interval_s: float = 5.0) -> None:
        self._config = consumer_config
        self.topics = list(topics)
        self._report = report
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lag-reporter", daemon=True)

    def start(self) -> "LagReporter":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def measure(self, consumer: Consumer) -> dict[tuple[str, int], int]:
        meta = consumer.list_topics(timeout=5)
        tps = [TopicPartition(t, p) for t in self.topics if t in meta.topics for p in meta.topics[t].partitions]
        if not tps:
            return {}
        out: dict[tuple[str, int], int] = {}
        for tp in consumer.committed(tps, timeout=5):
            low, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=5)
            out[(tp.topic, tp.partition)] = partition_lag(tp.offset, low, high)
        return out

    def _run(self) -> None:
        consumer = Consumer(self._config)
        try:
            while not self._stop.is_set():
                try:
                    for (topic, partition), lag in self.measure(consumer).items():
                        self._report(topic, partition, lag)
                except Exception:  # the broker may be briefly away; lag is reported again next round
                    log.warning("consumer lag not measured", exc_info=True)
                self._stop.wait(self.interval_s)
        finally:
            consumer.close()
