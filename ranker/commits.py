"""Committing a ranker's input offsets once what it produced for them is delivered, without waiting.

The ranker used to flush its producer after every poll and commit then: every batch waited a broker
round trip (acks=all) before the next poll, and at a low rate that wait was most of the feed latency.
Now each poll's inputs are a :class:`Pending` batch that counts the records produced for it; delivery
reports count them down, and :meth:`CommitTracker.ready` hands out the offsets of the batches that are
complete, oldest first, stopping at the first one still in flight, so an offset is never committed
before everything produced for the inputs before it was delivered (the "commit after effects" rule).
A delivery that failed for good stops the commits there: the caller stops, and a restart re-reads
those inputs.

>>> tracker = CommitTracker()
>>> first = tracker.open({("user-states", 0): 11})
>>> first.produced(2)
>>> second = tracker.open({("user-states", 0): 12, ("feed-requests", 1): 4})
>>> tracker.close(first); tracker.close(second)
>>> second.delivered(ok=True)           # nothing produced for it: complete, but behind the first
>>> tracker.ready()
{}
>>> first.delivered(ok=True); first.delivered(ok=True)
>>> tracker.ready()
{('user-states', 0): 12, ('feed-requests', 1): 4}
"""

from __future__ import annotations

from collections import deque
from typing import Mapping

from flitfeed.kafka.writing import produce_with_room

__all__ = ["CommitTracker", "DeliveryFailed", "Pending"]


class DeliveryFailed(RuntimeError):
    """A record produced for a batch was refused for good: its inputs must not be committed."""


class Pending:
    """One poll's inputs: the next offsets to commit, and how many of its records are still in flight."""

    __slots__ = ("offsets", "in_flight", "closed", "error")

    def __init__(self, offsets: Mapping[tuple[str, int], int]) -> None:
        self.offsets = dict(offsets)
        self.in_flight = 0
        #: No more records will be produced for it (the poll's work is done).
        self.closed = False
        self.error: str | None = None

    def produced(self, n: int = 1) -> None:
        self.in_flight += n

    def delivered(self, ok: bool, error: str | None = None) -> None:
        """A delivery report for one of its records."""
        self.in_flight -= 1
        if not ok and self.error is None:
            self.error = error or "delivery failed"

    @property
    def complete(self) -> bool:
        return self.closed and self.in_flight <= 0


class CommitTracker:
    def __init__(self) -> None:
        self._queue: deque[Pending] = deque()

    def open(self, offsets: Mapping[tuple[str, int], int]) -> Pending:
        batch = Pending(offsets)
        self._queue.append(batch)
        return batch

    @staticmethod
    def close(batch: Pending) -> None:
        batch.closed = True

    def ready(self) -> dict[tuple[str, int], int]:
        """The offsets to commit now: those of the complete batches at the head, the newest per partition.

        Raises :class:`DeliveryFailed` at a batch a record of which was refused.
        """
        offsets: dict[tuple[str, int], int] = {}
        while self._queue and self._queue[0].complete:
            batch = self._queue[0]
            if batch.error is not None:
                raise DeliveryFailed(batch.error)
            self._queue.popleft()
            for tp, offset in batch.offsets.items():
                offsets[tp] = max(offset, offsets.get(tp, 0))
        return offsets

    @property
    def in_flight(self) -> int:
        """Batches not committed yet."""
        return len(self._queue)


class TrackedProducer:
    """A producer whose records count towards the :class:`Pending` batch set in :attr:`batch` (None: untracked).

    Everything else is the wrapped producer's. ``produce`` waits for room when the local queue is full
    instead of raising, since nothing flushes after every batch any more.
    """

    def __init__(self, producer) -> None:  # noqa: ANN001 - confluent_kafka.Producer or a fake
        self._producer = producer
        self.batch: Pending | None = None

    def produce(self, topic: str, key: bytes | None = None, value: bytes | None = None, headers=None,  # noqa: ANN001
                on_delivery=None, **kwargs) -> None:  # noqa: ANN001, ANN003
        batch = self.batch
        if batch is not None:
            user = on_delivery

            def on_delivery(err, msg, batch=batch, user=user) -> None:  # noqa: ANN001
                batch.delivered(err is None, None if err is None else str(err))
                if user is not None:
                    user(err, msg)
        produce_with_room(self._producer, topic, key=key, value=value, headers=headers, on_delivery=on_delivery,
                          wait_s=0.1, **kwargs)
        if batch is not None:
            batch.produced()  # after produce returned: its report can only come from a later poll

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self._producer, name)
