"""Offsets are committed only after every record produced for them, and for the inputs before them, was delivered."""

from __future__ import annotations

import pytest

from flitfeed.ranker.commits import CommitTracker, DeliveryFailed, TrackedProducer


class FakeProducer:
    """Queues delivery reports until ``poll``; refuses topics in ``refuse``; full once after ``room`` records."""

    def __init__(self, refuse: set[str] = frozenset(), room: int | None = None) -> None:
        self.reports: list = []
        self.sent: list[tuple[str, bytes | None]] = []
        self.refuse, self.room = refuse, room

    def produce(self, topic, key=None, value=None, headers=None, on_delivery=None) -> None:  # noqa: ANN001
        if self.room is not None and len(self.reports) >= self.room:
            raise BufferError("queue full")
        self.sent.append((topic, value))
        self.reports.append((on_delivery, "refused" if topic in self.refuse else None))

    def poll(self, timeout: float = 0.0) -> int:
        reports, self.reports = self.reports, []
        for callback, err in reports:
            if callback is not None:
                callback(err, None)
        return len(reports)


def test_a_batch_is_committed_once_its_records_and_all_earlier_ones_are_delivered() -> None:
    tracker, fake = CommitTracker(), FakeProducer()
    producer = TrackedProducer(fake)
    first = tracker.open({("user-states", 0): 5})
    producer.batch = first
    producer.produce("feeds", value=b"a")
    producer.produce("impressions", value=b"a")
    tracker.close(first)
    second = tracker.open({("user-states", 0): 9, ("feed-requests", 2): 3})
    tracker.close(second)  # nothing produced for it (a repeat)
    producer.batch = None
    producer.produce("examples", value=b"untracked")
    assert tracker.ready() == {}  # the first batch's feed is still in flight, and the second waits behind it
    fake.poll()
    assert tracker.ready() == {("user-states", 0): 9, ("feed-requests", 2): 3}
    assert tracker.ready() == {} and tracker.in_flight == 0


def test_a_refused_record_stops_the_commits_at_its_batch() -> None:
    tracker, fake = CommitTracker(), FakeProducer(refuse={"feeds"})
    producer = TrackedProducer(fake)
    ok = tracker.open({("user-states", 0): 1})
    tracker.close(ok)
    bad = tracker.open({("user-states", 0): 2})
    producer.batch = bad
    producer.produce("feeds", value=b"x")
    tracker.close(bad)
    later = tracker.open({("user-states", 0): 3})
    tracker.close(later)
    assert tracker.ready() == {("user-states", 0): 1}
    fake.poll()
    with pytest.raises(DeliveryFailed, match="refused"):
        tracker.ready()
    with pytest.raises(DeliveryFailed):
        tracker.ready()  # never past it


def test_a_full_queue_waits_for_room_instead_of_losing_the_record() -> None:
    tracker, fake = CommitTracker(), FakeProducer(room=2)
    producer = TrackedProducer(fake)
    batch = tracker.open({("user-states", 1): 7})
    producer.batch = batch
    for i in range(5):
        producer.produce("feeds", value=b"%d" % i)
    tracker.close(batch)
    assert [v for _, v in fake.sent] == [b"0", b"1", b"2", b"3", b"4"]
    fake.poll()
    assert tracker.ready() == {("user-states", 1): 7}
