"""consume_available: wake up for the first message, then take only what is already there."""

from __future__ import annotations

from flitfeed.kafka.reading import consume_available


class FakeConsumer:
    def __init__(self, queued: list[str]) -> None:
        self.queued = list(queued)
        self.calls: list[tuple[str, float]] = []

    def poll(self, timeout: float):  # noqa: ANN201
        self.calls.append(("poll", timeout))
        return self.queued.pop(0) if self.queued else None

    def consume(self, num_messages: int, timeout: float) -> list[str]:
        self.calls.append(("consume", timeout))
        taken, self.queued = self.queued[:num_messages], self.queued[num_messages:]
        return taken


def test_it_returns_at_the_first_message_and_never_waits_to_fill_a_batch() -> None:
    consumer = FakeConsumer(["a", "b", "c"])
    assert consume_available(consumer, 2, timeout=0.5) == ["a", "b"]
    assert consumer.calls == [("poll", 0.5), ("consume", 0)]  # the batch is topped up without waiting
    assert consume_available(consumer, 10, timeout=0.5) == ["c"]
    assert consume_available(consumer, 10, timeout=0.5) == []
    assert consume_available(FakeConsumer(["x", "y"]), 1, timeout=0.1) == ["x"]
