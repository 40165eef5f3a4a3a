"""When the worker acks (lets Faust commit) an input event: only after its effects reached the producer;
and the guards that keep Faust from committing past, or never fetching again, what it dropped.

Real Faust streams, consumer and producer buffer, without a broker: events are put on a channel and
the consumer's list of acked offsets (what the next commit would write), its commits and its seeks
are inspected. Where a test shows Faust's own behaviour it uses an unguarded app, or calls Faust's own
method on the guarded consumer.
"""

from __future__ import annotations

import asyncio
import gc
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.events import Event
from faust.transport.drivers.aiokafka import Consumer as FaustConsumer
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from flitfeed.streams.agents.common import batches, done, events
from flitfeed.streams.faust_compat import ChangelogHandover, guard_commits, head_hole, refetch_stalled, reseek_stalled

TOPIC = "interactions"


def make_app() -> faust.App:
    app = faust.App("test-acks", broker="kafka://127.0.0.1:1", store="memory://", autodiscover=False,
                    web_enabled=False)
    app.topics._acking_topics.add(TOPIC)  # what the conductor does for a subscribed topic
    app.flow_control.resume()
    return app


def make_event(app: faust.App, offset: int) -> Event:
    message = ConsumerMessage(topic=TOPIC, partition=0, offset=offset, timestamp=0.0, timestamp_type=0,
                              headers=[], key=b"u", value=b"{}", checksum=None,
                              generation_id=app.consumer_generation_id)
    message.incref()  # one stream reads it, as the conductor counts
    return Event(app, b"u", b"{}", {}, message)


def acked(app: faust.App) -> list[int]:
    return sorted(off for offsets in app.consumer._acked.values() for off in offsets)


async def process_then_fail_on(app: faust.App, iterate: Any, failing_offset: int) -> None:
    """An agent body: acks each finished event, and is cancelled while processing ``failing_offset``."""
    async for event in iterate:
        if event.message.offset == failing_offset:
            raise asyncio.CancelledError  # e.g. SIGTERM arrives while the effects are being sent
        done(event)


@pytest.mark.parametrize("manual, expected", [(False, [0, 1]), (True, [0])],
                         ids=["faust-events-acks-unfinished", "manual-acks"])
def test_an_event_whose_processing_was_cancelled_is_not_acked(manual: bool, expected: list[int]) -> None:
    async def scenario() -> list[int]:
        app = make_app()
        channel = app.channel()
        stream = channel.stream()
        for offset in (0, 1, 2):
            await channel.put(make_event(app, offset))
        iterate = events(stream) if manual else stream.events()
        with pytest.raises(asyncio.CancelledError):
            await process_then_fail_on(app, iterate, failing_offset=1)
        # The agent task is gone; the event loop finalizes the abandoned iterators (as it does on
        # shutdown, before Faust's final commit).
        await iterate.aclose()
        del iterate, stream
        gc.collect()
        for _ in range(20):
            await asyncio.sleep(0)
        return acked(app)

    # Faust's own iterator acks offset 1 in its finally although nothing was done with it: a commit
    # would then skip it for good. The worker's iterator leaves it for the restart to re-read.
    assert asyncio.run(scenario()) == expected


def test_a_batch_whose_processing_was_cancelled_is_not_acked() -> None:
    async def scenario() -> tuple[list[int], list[int]]:
        app = make_app()
        channel = app.channel()
        stream = channel.stream()
        for offset in range(3):
            await channel.put(make_event(app, offset))
        seen: list[int] = []
        take = batches(stream, 3, within=5.0)
        async for batch in take:
            seen = [e.message.offset for e in batch]
            break  # the agent stops before acking: the batch was never embedded
        await take.aclose()
        return seen, acked(app)

    seen, done_offsets = asyncio.run(scenario())
    assert seen == [0, 1, 2]
    assert done_offsets == []


class GatedChannel:
    """A producer channel whose publishing waits for a gate (a slow Kafka client, a busy loop)."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.published = 0

    async def publish_message(self, fut: Any, wait: bool = False) -> None:
        await self.gate.wait()
        self.published += 1


class Record:
    def __init__(self, channel: GatedChannel) -> None:
        self.message = self
        self.channel = channel


def test_changelog_handover_waits_for_the_record_that_faust_flush_gives_up_on() -> None:
    async def scenario() -> None:
        app = make_app()
        buffer = app.producer.buffer
        handover = ChangelogHandover(buffer)
        await buffer.start()
        try:
            channel = GatedChannel()
            buffer.put(Record(channel))  # a table write: queued, not yet with the Kafka client
            assert handover.pending == 1

            # Faust's flush returns after 0.1 s without progress, with the record still unsent:
            # a commit made now would pass the event whose profile update this record carries.
            await asyncio.wait_for(buffer.flush(), timeout=10)
            assert channel.published == 0

            waiter = asyncio.ensure_future(handover.wait())
            for _ in range(20):
                await asyncio.sleep(0)
            assert not waiter.done(), "returned before the record was handed over"
            channel.gate.set()
            await asyncio.wait_for(waiter, timeout=10)
            assert channel.published == 1
            assert handover.pending == 0
        finally:
            await buffer.stop()

    asyncio.run(scenario())


class SeekRecorder:
    """Stands in for the Kafka client's seek (there is no broker in a unit test)."""

    def __init__(self) -> None:
        self.seeks: list[tuple[int, int]] = []

    async def __call__(self, tp: Any, offset: int) -> None:
        self.seeks.append((tp.partition, offset))


def guarded_consumer(app: faust.App, committed: int | None) -> tuple[Any, Any, SeekRecorder, list[dict]]:
    """A guarded Faust consumer at ``committed`` on one partition; its broker commits are recorded."""
    guard_commits(app)
    consumer = app.consumer
    tp = TP(TOPIC, 0)
    consumer._committed_offset[tp] = committed
    consumer.assignment = lambda: {tp}
    recorder = SeekRecorder()
    consumer._seek = recorder
    commits: list[dict] = []

    async def broker_commit(offsets: Any, *args: Any, **kwargs: Any) -> bool:
        commits.append(dict(offsets))
        consumer._committed_offset.update(offsets)  # as Faust's _commit_offsets does after the broker call
        return True

    consumer._commit_offsets = broker_commit
    return consumer, tp, recorder, commits


def ack_offsets(app: faust.App, *offsets: int) -> None:
    for offset in offsets:
        event = make_event(app, offset)
        event.message.tracked = True
        event.ack()


def test_a_skipped_message_at_the_committed_offset_stops_the_commit_and_is_fetched_again() -> None:
    async def scenario() -> None:
        app = make_app()
        consumer, tp, recorder, committed = guarded_consumer(app, committed=35)
        # Offset 35 was fetched during a rebalance and dropped by Faust's stream; 36 and 37 were processed.
        ack_offsets(app, 36, 37)
        # Unguarded, Faust would commit 38 here (it takes a one-offset hole for a transaction marker).
        assert head_hole(consumer, tp) == 35
        await consumer.commit()
        assert committed == []
        assert recorder.seeks == [(0, 35)]
        await consumer.commit()
        assert recorder.seeks == [(0, 35)], "one re-fetch per hole, not one per commit"

        # The re-fetch brings 35 (and 36, 37 again); once 35 is processed the commit goes on.
        await fetch(consumer, tp, 35, 36, 37)
        ack_offsets(app, 35)
        await consumer.commit()
        assert committed == [{tp: 38}]

    asyncio.run(scenario())


def test_a_hole_without_a_message_is_passed_after_the_refetch_shows_it() -> None:
    async def scenario() -> None:
        app = make_app()
        consumer, tp, recorder, committed = guarded_consumer(app, committed=10)
        ack_offsets(app, 11, 12)
        await consumer.commit()
        assert committed == [] and recorder.seeks == [(0, 10)]
        # A fetch that was under way during the seek returns records of the old position: no verdict.
        await fetch(consumer, tp, 12, started_before_seek=True)
        await consumer.commit()
        assert committed == []
        # The first record of a fetch started after the seek is 11: offset 10 holds a transaction marker.
        await fetch(consumer, tp, 11, 12)
        await consumer.commit()
        assert committed == [{tp: 13}]

    asyncio.run(scenario())


def test_unguarded_faust_commits_past_messages_it_took_for_a_gap_and_past_a_never_committed_head() -> None:
    app = make_app()
    consumer, tp = app.consumer, TP(TOPIC, 0)
    consumer._committed_offset[tp] = 56
    # Its fetch loop last read 56, was sought back, and a fetch from the old position delivers 64.
    asyncio.run(consumer._add_gap(tp, 57, 63))
    ack_offsets(app, 56, 64)
    assert consumer._new_offset(tp) == 65, "57-63 committed unprocessed"

    fresh = make_app()
    fresh_tp = TP(TOPIC, 0)
    ack_offsets(fresh, 9, 10)  # nothing committed yet; 0-8 were dropped during a rebalance
    assert fresh.consumer._new_offset(fresh_tp) == 11, "0-8 committed unprocessed"


def test_a_jump_in_read_offsets_is_not_taken_for_offsets_without_messages() -> None:
    async def scenario() -> None:
        app = make_app()
        consumer, tp, recorder, committed = guarded_consumer(app, committed=56)
        await consumer._add_gap(tp, 57, 63)  # what Faust's fetch loop does when 64 follows 56
        ack_offsets(app, 56, 64)
        await consumer.commit()
        assert committed == [{tp: 57}]
        assert recorder.seeks == [(0, 57)], "57-63 are fetched again"
        await fetch(consumer, tp, 57, 58)
        ack_offsets(app, *range(57, 64))
        await consumer.commit()
        assert committed[-1] == {tp: 65}

    asyncio.run(scenario())


def test_a_never_committed_partition_is_measured_from_its_log_start() -> None:
    async def scenario() -> None:
        app = make_app()
        consumer, tp, recorder, committed = guarded_consumer(app, committed=None)
        log_start: dict[str, Any] = {"answer": ConnectionError("broker down")}

        async def earliest_offsets(*tps: Any) -> dict:
            if isinstance(log_start["answer"], Exception):
                raise log_start["answer"]
            return {t: log_start["answer"] for t in tps}

        consumer.earliest_offsets = earliest_offsets
        ack_offsets(app, 9, 10)
        await consumer.commit()  # the log start is unknown: no commit, no crash
        assert committed == [] and recorder.seeks == []

        log_start["answer"] = 0
        await consumer.commit()
        assert committed == [] and recorder.seeks == [(0, 0)]
        await fetch(consumer, tp, 0, 1)
        ack_offsets(app, *range(0, 9))
        await consumer.commit()
        assert committed == [{tp: 11}]

    asyncio.run(scenario())


def test_a_never_committed_partition_is_sought_back_to_its_log_start_when_a_rebalance_settles() -> None:
    async def scenario() -> None:
        app = make_app()
        consumer, tp, recorder, committed = guarded_consumer(app, committed=None)
        changelog = TP("user_profiles-changelog", 0)  # acks disabled: table recovery positions it
        consumer.assignment = lambda: {tp, changelog}

        async def seek_to_committed() -> dict:
            return {}  # the broker has no commit for either

        async def earliest_offsets(*tps: Any) -> dict:
            return {t: 3 for t in tps}

        consumer.seek_to_committed = seek_to_committed
        consumer.earliest_offsets = earliest_offsets
        # Its stream fetched 3-9 while the rebalance settled and dropped them; Faust's own perform_seek
        # seeks only committed partitions back, leaving the fetch position past them.
        await FaustConsumer.perform_seek(consumer)
        assert recorder.seeks == []
        await consumer.perform_seek()
        assert recorder.seeks == [(0, 3)]
        await consumer.perform_seek()  # the next rebalance keeps the partition: sought back again
        assert recorder.seeks == [(0, 3), (0, 3)]
        ack_offsets(app, 3, 4)
        await consumer.commit()
        assert committed == [{tp: 5}]

    asyncio.run(scenario())


async def fetch(consumer: Any, tp: Any, *offsets: int, started_before_seek: bool = False) -> None:
    """One fetch through the guarded ``_getmany``, the Kafka client answering with ``offsets``."""
    refetching = consumer.guard.refetching
    saved = dict(refetching)

    class Thread:
        async def getmany(self, active: Any, timeout: float) -> dict:
            if started_before_seek:  # the seek lands while this fetch is under way
                refetching.update(saved)
            return {tp: [FakeRecord(o) for o in offsets]}

    if started_before_seek:
        refetching.clear()
    consumer._thread = Thread()
    await consumer._getmany({tp}, 1.0)


class FakeRecord:
    def __init__(self, offset: int) -> None:
        self.topic = TOPIC
        self.partition = 0
        self.offset = offset
        self.timestamp = 0
        self.timestamp_type = 0
        self.key = b"u"
        self.value = b"{}"
        self.checksum = None
        self.serialized_key_size = 1
        self.serialized_value_size = 2
        self.headers: list = []


def test_a_table_recovery_that_got_no_changelog_record_is_fetched_again() -> None:
    changelog, done_tp = TP("user_profiles-changelog", 0), TP("user_profiles-changelog", 1)
    recovery = SimpleNamespace(in_recovery=True, _recovery_started_at=100.0, active_tps={changelog, done_tp},
                               active_offsets={changelog: 6, done_tp: 9}, active_highwaters={changelog: 41, done_tp: 9},
                               _active_events_received_at={changelog: 101.0})
    seeks: list[dict] = []

    async def seek_wait(positions: dict) -> None:
        seeks.append(dict(positions))

    app = SimpleNamespace(tables=SimpleNamespace(recovery=recovery), consumer=SimpleNamespace(seek_wait=seek_wait))
    now = {"t": 110.0}
    reseeked: dict = {}

    def reseek() -> dict:
        return asyncio.run(reseek_stalled(app, 10.0, reseeked, clock=lambda: now["t"]))

    assert reseek() == {} and seeks == []  # 9 s without a record: not yet
    now["t"] = 111.5
    assert reseek() == {changelog: 7}  # the next record it needs; the caught-up partition is left alone
    assert seeks == [{changelog: 7}]
    now["t"] = 115.0
    assert reseek() == {}, "not again before another stall_s"
    recovery.active_offsets[changelog] = 41  # caught up
    now["t"] = 130.0
    assert reseek() == {} and len(seeks) == 1
    recovery.in_recovery = False
    recovery.active_offsets[changelog] = 6
    assert reseek() == {}


def test_a_partition_whose_last_message_was_dropped_is_fetched_again_once_it_stalls() -> None:
    async def scenario() -> None:
        app = make_app()
        consumer, tp, recorder, committed = guarded_consumer(app, committed=2)
        consumer.highwater = lambda tp: 3  # offset 2 is the last message; Faust's stream dropped it
        consumer.resume_flow()
        now = {"t": 0.0}
        progress: dict = {}

        async def check(at: float) -> dict:
            now["t"] = at
            return await refetch_stalled(app, 30.0, progress, clock=lambda: now["t"])

        assert await check(0.0) == {}
        assert await check(29.0) == {}
        assert await check(31.0) == {tp: 2} and recorder.seeks == [(0, 2)]
        assert await check(40.0) == {}, "not again before another stall"
        ack_offsets(app, 2)  # the re-fetched message is processed: progress, no more seeks
        assert await check(80.0) == {} and recorder.seeks == [(0, 2)]
        await consumer.commit()
        assert committed == [{tp: 3}]
        assert await check(200.0) == {}, "caught up with the log end"

    asyncio.run(scenario())
