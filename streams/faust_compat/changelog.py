"""Knowing when a table write has reached the Kafka producer, so its event may be acked.

A Faust table write (``table[key] = value``) is synchronous: it only queues the changelog record in
the producer's buffer, which a background task hands to the Kafka client. A commit flushes that buffer
first, but faust-streaming 0.15.3's ``ProducerBuffer.flush`` gives up after 0.1 s without progress,
and its ``size`` no longer counts the record the task is sending. On a busy machine the commit can
therefore pass an interaction whose profile update is still queued; a kill -9 then loses the update
although the offset says it was applied.

:class:`ChangelogHandover` counts records into the buffer and out of it; the agent awaits
:meth:`ChangelogHandover.wait` after a table write and before acking the event. Once handed over, the
record is in the Kafka client's batches, which the commit's producer flush does wait for. It wraps the
methods of the one buffer it is given (this app's producer), not Faust's ``ProducerBuffer`` class.

>>> import asyncio, faust
>>> app = faust.App("doc-handover", broker="kafka://127.0.0.1:1", autodiscover=False)
>>> handover = ChangelogHandover(app.producer.buffer)
>>> asyncio.run(handover.wait())  # nothing queued: returns at once
>>> handover.pending
0
"""

from __future__ import annotations

import asyncio
from typing import Any


class ChangelogHandover:
    """Counts the records put into a Faust ``ProducerBuffer`` and those its sender has handed over.

    Install before the app starts: the buffer's sender task binds its send method when it starts.
    """

    def __init__(self, buffer: Any) -> None:
        self._queued = 0
        self._handed_over = 0
        self._progress: asyncio.Event | None = None
        put, send = buffer.put, buffer._send_pending

        def counting_put(fut: Any) -> None:
            put(fut)
            self._queued += 1

        async def counting_send(fut: Any) -> None:
            try:
                await send(fut)
            finally:
                # A failed send is not retried by Faust either; it fails the record's future instead.
                self._handed_over += 1
                if self._progress is not None:
                    self._progress.set()

        buffer.put = counting_put
        buffer._send_pending = counting_send

    @property
    def pending(self) -> int:
        """Records queued but not yet handed to the Kafka client."""
        return self._queued - self._handed_over

    async def wait(self) -> None:
        """Return once every record queued before the call has been handed to the Kafka client."""
        target = self._queued
        while self._handed_over < target:
            if self._progress is None:
                self._progress = asyncio.Event()
            self._progress.clear()
            await self._progress.wait()
