"""Handing records to a confluent-kafka producer when its local queue may be full.

``Producer.produce`` raises ``BufferError`` when librdkafka's local queue
(``queue.buffering.max.messages``) is full, which happens whenever records are produced faster than the
broker takes them: a catalogue loaded at start-up, a load generator, a ranker far behind. The record is
then not lost, only refused: :func:`produce_with_room` serves delivery reports until there is room and
hands it over again, so a caller never drops a record for being quick.
"""

from __future__ import annotations

from typing import Any


def produce_with_room(producer: Any, topic: str, *, wait_s: float = 0.05, **kwargs: Any) -> None:
    """``producer.produce(topic, **kwargs)``, waiting (``producer.poll(wait_s)``, which serves delivery
    reports) while the local queue is full.

    >>> class Tiny:  # a queue of one record that the next poll delivers
    ...     def __init__(self): self.queued, self.sent = [], []
    ...     def produce(self, topic, **kw):
    ...         if self.queued: raise BufferError("Local: Queue full")
    ...         self.queued.append(kw["value"])
    ...     def poll(self, timeout): self.sent += self.queued; self.queued = []; return 1
    >>> p = Tiny()
    >>> for v in (b"a", b"b", b"c"):
    ...     produce_with_room(p, "t", value=v)
    >>> p.sent, p.queued
    ([b'a', b'b'], [b'c'])
    """
    while True:
        try:
            producer.produce(topic, **kwargs)
            return
        except BufferError:  # the local queue is full: let librdkafka deliver, then hand it over again
            producer.poll(wait_s)
