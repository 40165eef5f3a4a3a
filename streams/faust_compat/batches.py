"""Batches of the events a stream has ready, without a timer: the interactions agent's batching.

Faust's ``Stream.noack_take(max_, within)`` cuts a batch when ``max_`` events are buffered or when a
timer of ``within`` seconds fires, and that timer runs whether events arrive or not. So at a low rate an
event waits ``within / 2`` on average for nothing, and an idle worker wakes ``1 / within`` times a second:
measured on this 2-core machine (BENCHMARKS.md "Worker batches"), an idle worker used 2.0% of a core
with one event at a time, 4.3% with a 5 ms ``within`` and 7.9% with 1 ms.

:func:`take_ready` keeps ``noack_take``'s machinery (a processor on the stream fills a buffer, the
stream is drained in the background, nothing is acked) and changes when a batch is cut: it waits, without
waking, for the first event; then, while more events are already in the stream's queue (delivered by the
consumer while the last batch was processed), it lets the background reader move them into the buffer,
for at most ``gather_s`` and up to ``max_``; then it yields. An event arriving at a quiet moment is a batch
of one at once; under load the batches grow with the backlog.

It uses the same private parts of Faust's ``Stream`` as ``noack_take`` (``add_processor``,
``_enable_passive``, ``_processors``, ``wait_for_stopped``, ``current_event``), so it is tied to the
faust-streaming release verified in :mod:`.version`.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

from mode.utils.futures import notify


async def take_ready(stream: Any, max_: int, gather_s: float) -> AsyncIterator[list[Any]]:
    """The events of ``stream`` in batches of at most ``max_``, none acked (the caller acks each with
    ``event.ack()`` once its effects are sent): a batch is what is ready when the first event arrives,
    gathered for at most ``gather_s`` seconds (see the module's docstring)."""
    loop = asyncio.get_running_loop()
    buffer: list[Any] = []
    ready = asyncio.Event()  # the buffer has an event
    consumed = asyncio.Event()  # a full buffer was taken
    consuming: asyncio.Future | None = None
    queue = stream.channel.queue  # what the stream reads from (Stream._py_aiter)

    async def add_to_buffer(value: Any) -> Any:
        # Runs in the stream's background reader, once per event, as noack_take's processor does.
        nonlocal consuming
        try:
            if consuming is not None:  # the agent is processing a batch: this event goes in the next one
                try:
                    await consuming
                finally:
                    consuming = None
            event = stream.current_event
            if event is None:
                raise RuntimeError("take_ready found no current event")
            buffer.append(event)
            ready.set()
            if len(buffer) >= max_:
                consumed.clear()
                await stream.wait(consumed)  # never more than max_ events in a batch
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            stream.log.exception("Error adding to take buffer: %r", exc)
            await stream.crash(exc)
        return value

    enable_acks = stream.enable_acks
    stream.enable_acks = False
    stream.add_processor(add_to_buffer)
    stream._enable_passive(aiter(stream.channel))
    try:
        while not stream.should_stop:
            await stream.wait_for_stopped(ready)  # no timeout: an idle stream does not wake the agent
            deadline = loop.time() + gather_s
            # The reader moves one event per turn of the loop (Stream._py_aiter sleeps 0 between events).
            while len(buffer) < max_ and not queue.empty() and loop.time() < deadline:
                await asyncio.sleep(0)
            if not buffer:  # stopping
                ready.clear()
                continue
            consuming = loop.create_future()
            try:
                yield list(buffer)
            finally:
                buffer.clear()
                notify(consuming)
                ready.clear()
                consumed.set()
    finally:
        stream.enable_acks = enable_acks
        stream._processors.remove(add_to_buffer)
