"""The worker's side of the flit-vector replicator keeps its blocking Kafka calls off the event loop.

The ranker's synchronous :class:`FlitVectorReplicator` is tested against the real broker
(``tests/integration/test_index_rebuild.py``, ``test_shared_index_replica.py``).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from flitfeed.streams.replicator import AsyncFlitVectorReplicator

#: How long a blocked call waits to be released before giving up (then the test fails).
RELEASE_WITHIN_S = 10.0


class BlockingReplicator:
    """Stands in for :class:`FlitVectorReplicator`: each Kafka call blocks its thread until released."""

    def __init__(self) -> None:
        self.blocked = threading.Event()
        self.release = threading.Event()
        self.calls: list[tuple[str, int]] = []  # (call, thread id), in the order they started
        self.in_flight: str | None = None
        self.overlapped: list[tuple[str, str]] = []
        self.timed_out: list[str] = []
        self.caught_up = False

    def block(self, call: str) -> None:
        if self.in_flight is not None:
            self.overlapped.append((self.in_flight, call))
        self.in_flight = call
        self.calls.append((call, threading.get_ident()))
        self.blocked.set()
        if not self.release.wait(RELEASE_WITHIN_S):
            self.timed_out.append(call)
        self.release.clear()
        self.in_flight = None

    def fetch_many(self, max_messages: int, timeout: float) -> list[Any]:
        self.block("fetch")
        return ["record"] * 3

    def apply_many(self, messages: list[Any]) -> int:
        self.calls.append(("apply", threading.get_ident()))
        self.caught_up = True
        return len(messages)

    def close(self) -> None:
        self.block("close")

    def opened(self) -> "BlockingReplicator":
        self.block("open")  # the constructor's metadata request, retried while the broker starts
        return self


async def release_from_the_loop(fake: BlockingReplicator) -> None:
    """Releases every blocked call -- which it can only do while the event loop runs."""
    while True:
        if fake.blocked.is_set():
            fake.blocked.clear()
            fake.release.set()
        await asyncio.sleep(0.01)


def test_blocking_kafka_calls_run_off_the_loop_and_the_index_is_written_on_it() -> None:
    fake = BlockingReplicator()

    async def scenario() -> tuple[int, bool, int]:
        releaser = asyncio.ensure_future(release_from_the_loop(fake))
        try:
            replica = await AsyncFlitVectorReplicator.open(fake.opened)  # type: ignore[arg-type]
            before = replica.caught_up
            applied = await replica.poll_once(timeout=0.05)
            await replica.close()
        finally:
            releaser.cancel()
        return applied, before, threading.get_ident()

    applied, caught_up_before, loop_thread = asyncio.run(scenario())
    assert fake.timed_out == [], "a blocking call held the event loop"
    assert (applied, caught_up_before, fake.caught_up) == (3, False, True)
    assert [call for call, _ in fake.calls] == ["open", "fetch", "apply", "close"]
    threads = dict(fake.calls)
    assert threads["apply"] == loop_thread, "the index is written from the loop's thread, as the agents write it"
    assert threads["open"] == threads["fetch"] == threads["close"] != loop_thread


def test_close_waits_for_a_fetch_still_under_way() -> None:
    fake = BlockingReplicator()

    async def scenario() -> None:
        releaser = asyncio.ensure_future(release_from_the_loop(fake))
        replica = await AsyncFlitVectorReplicator.open(fake.opened)  # type: ignore[arg-type]
        releaser.cancel()
        fetching = asyncio.ensure_future(replica.poll_once(timeout=0.05))
        await asyncio.wait_for(asyncio.to_thread(fake.blocked.wait, RELEASE_WITHIN_S), RELEASE_WITHIN_S + 1)
        fake.blocked.clear()
        fetching.cancel()  # the worker stops while a fetch blocks the replicator's thread
        closing = asyncio.ensure_future(replica.close())
        await asyncio.sleep(0)  # close hands its call to the replicator's thread
        fake.release.set()  # the fetch returns; then close may use the consumer
        await asyncio.wait_for(asyncio.to_thread(fake.blocked.wait, RELEASE_WITHIN_S), RELEASE_WITHIN_S + 1)
        fake.release.set()
        await asyncio.wait_for(closing, RELEASE_WITHIN_S)

    asyncio.run(scenario())
    assert fake.overlapped == [], "close used the consumer while a fetch was under way"
    assert [call for call, _ in fake.calls] == ["open", "fetch", "close"]
    assert fake.timed_out == []
