"""A poll's triggers become the feeds to build (ranker/batching.py) and their side effects (ranker/publisher.py)."""

from __future__ import annotations

import random

from flitfeed.monitoring.metrics import Metrics
from flitfeed.ranker.batching import FeedJob, coalesce
from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.pipeline import PipelineResult
from flitfeed.ranker.publisher import Built, FeedPublisher
from flitfeed.ranker.query import FeedQuery
from flitfeed.streams.events import Feed


def interaction(user: str, event: str, ts: float = 0.0) -> FeedJob:
    return FeedJob(user, 10, event, "interaction", ts, partition=hash(user) % 4)


def request(user: str, request_id: str) -> FeedJob:
    return FeedJob(user, 5, request_id, "request", 0.0, partition=hash(user) % 4)


def test_every_trigger_of_a_poll_is_answered_exactly_once() -> None:
    rng = random.Random(3)
    jobs = [interaction(f"u{rng.randrange(8)}", f"e{i}", ts=float(i)) if rng.random() < 0.8
            else request(f"u{rng.randrange(8)}", f"r{i}") for i in range(300)]
    feeds = coalesce(jobs)
    answered = [t for job in feeds for t in job.covers]
    assert sorted(answered) == sorted(j.trigger_id for j in jobs)
    # One interaction feed per user at most; one feed per request.
    interaction_users = [j.user_id for j in feeds if j.trigger_kind == "interaction"]
    assert len(interaction_users) == len(set(interaction_users))
    assert sum(1 for j in feeds if j.trigger_kind == "request") == sum(1 for j in jobs if j.trigger_kind == "request")
    for job in feeds:  # the newest trigger names the feed; covers are oldest first, with their times
        assert job.trigger_id == job.covers[-1] and len(job.covered_ts) == len(job.covers)
        if job.trigger_kind == "interaction":
            assert list(job.covered_ts) == sorted(job.covered_ts)


def test_a_user_with_one_change_gets_a_feed_answering_just_it() -> None:
    [job] = coalesce([interaction("wren", "e1", ts=5.0)])
    assert job.covers == ("e1",) and job.covered_ts == (5.0,)


class FakeRecorder:
    def __init__(self, sent: list | None = None, fail_for: str | None = None) -> None:
        self.recorded: list[tuple[str, int, str]] = []
        #: How many records had been produced when each impression was recorded.
        self.sent_before: list[int] = []
        self._sent = sent if sent is not None else []
        self._fail_for = fail_for

    def record(self, query: FeedQuery, items, partition: int, impression_id: str) -> None:
        if query.user_id == self._fail_for:
            raise RuntimeError("the impression could not be recorded")
        self.sent_before.append(len(self._sent))
        self.recorded.append((query.user_id, partition, impression_id))


class FakeMonitors:
    def __init__(self) -> None:
        self.feeds: list[str] = []

    def learn_feed(self, user_id, items, similarities, personalised, now) -> None:
        self.feeds.append(user_id)


def test_the_publisher_publishes_records_and_measures_a_coalesced_feed() -> None:
    metrics = Metrics("ranker")
    sent: list[tuple[str, bytes | None, bytes]] = []
    recorder, monitors = FakeRecorder(), FakeMonitors()
    publisher = FeedPublisher(metrics, monitors, recorder, lambda t, k, v: sent.append((t, k, v)),  # type: ignore[arg-type]
                              "t-feeds", lambda: "m@1")
    [job] = coalesce([interaction("wren", "e1", ts=1.0), interaction("wren", "e2", ts=2.0)])
    result = PipelineResult(items=[Candidate("f1", "robin", 0.0, "similar", score=0.5)],
                            timings={("source", "similar"): 0.001}, removed={"seen": 2}, candidates=3)
    assert publisher.publish_all([Built(job, FeedQuery("wren", 10, 3.0, trigger_id="e2"), result)]) == []

    [(topic, key, value)] = sent
    feed = Feed.model_validate_json(value)
    assert (topic, key) == ("t-feeds", b"wren")
    assert feed.trigger_id == "e2" and feed.covers == ["e1", "e2"] and feed.answers() == ["e1", "e2"]
    assert feed.impression_id and feed.model_version == "m@1"
    assert recorder.recorded == [("wren", job.partition, feed.impression_id)] and monitors.feeds == ["wren"]
    value_of = metrics.registry.get_sample_value
    assert value_of("flitfeed_ranker_coalesced_triggers_total") == 1
    assert value_of("flitfeed_feed_latency_seconds_count", {"trigger": "interaction"}) == 2  # one per trigger
    assert value_of("flitfeed_ranker_filter_removed_total", {"filter": "seen"}) == 2
    # A second feed, with other labels, lands on its own series and adds to the first's.
    [req] = coalesce([request("wren", "r1")])
    timings = {("source", "similar"): 0.002, ("filter", "seen"): 0.001}
    publisher.publish_all([Built(req, FeedQuery("wren", 10, 5.0, trigger_id="r1"),
                                 PipelineResult(items=[], timings=timings, removed={"seen": 1, "own_flits": 4},
                                                candidates=0))])
    assert value_of("flitfeed_ranker_filter_removed_total", {"filter": "seen"}) == 3
    assert value_of("flitfeed_ranker_filter_removed_total", {"filter": "own_flits"}) == 4
    assert value_of("flitfeed_feed_latency_seconds_count", {"trigger": "request"}) == 1
    assert value_of("flitfeed_feed_latency_seconds_count", {"trigger": "interaction"}) == 2
    assert value_of("flitfeed_feeds_published_total", {"trigger": "request", "cold_start": "true"}) == 1
    assert value_of("flitfeed_feeds_published_total", {"trigger": "interaction", "cold_start": "true"}) == 1
    assert value_of("flitfeed_ranker_component_duration_seconds_count", {"kind": "source", "component": "similar"}) == 2
    assert value_of("flitfeed_ranker_component_duration_seconds_count", {"kind": "filter", "component": "seen"}) == 1


def _batch(users: list[str]) -> list[Built]:
    return [Built(job, FeedQuery(job.user_id, 10, 3.0, trigger_id=job.trigger_id),
                  PipelineResult(items=[Candidate(f"f-{job.user_id}", "robin", 0.0, "similar", score=0.5)],
                                 timings={}, removed={}, candidates=1))
            for job in coalesce([interaction(u, f"e-{u}", ts=1.0) for u in users])]


def test_every_feed_of_a_batch_leaves_before_the_bookkeeping_of_any() -> None:
    # A feed's timestamp is when it left: it must not wait for the impressions of the feeds before it.
    sent: list[tuple[str, bytes | None, bytes]] = []
    recorder = FakeRecorder(sent)
    publisher = FeedPublisher(Metrics("ranker"), FakeMonitors(), recorder,  # type: ignore[arg-type]
                              lambda t, k, v: sent.append((t, k, v)), "t-feeds", lambda: "m@1")
    assert publisher.publish_all(_batch(["wren", "crow", "jay"])) == []
    assert recorder.sent_before == [3, 3, 3]
    feeds = [Feed.model_validate_json(v) for _, _, v in sent]
    # Each feed names the impression it was recorded as.
    assert [f.impression_id for f in feeds] == [imp for _, _, imp in recorder.recorded]
    assert len({f.impression_id for f in feeds}) == 3


def test_a_feed_that_left_is_answered_even_if_its_bookkeeping_fails() -> None:
    sent: list[tuple[str, bytes | None, bytes]] = []
    recorder, monitors = FakeRecorder(sent, fail_for="crow"), FakeMonitors()
    metrics = Metrics("ranker")
    publisher = FeedPublisher(metrics, monitors, recorder,  # type: ignore[arg-type]
                              lambda t, k, v: sent.append((t, k, v)), "t-feeds", lambda: "m@1")
    # Nothing to dead-letter: crow's feed left; the feeds after it are followed up as usual.
    assert publisher.publish_all(_batch(["wren", "crow", "jay"])) == []
    assert [k for _, k, _ in sent] == [b"wren", b"crow", b"jay"]
    assert [u for u, _, _ in recorder.recorded] == ["wren", "jay"] and monitors.feeds == ["wren", "jay"]


def test_a_feed_that_could_not_be_produced_is_returned_for_its_inputs_to_be_dead_lettered() -> None:
    sent: list[bytes | None] = []

    def produce(topic: str, key: bytes | None, value: bytes) -> None:
        if key == b"crow":
            raise BufferError("queue full")
        sent.append(key)

    recorder = FakeRecorder()
    publisher = FeedPublisher(Metrics("ranker"), FakeMonitors(), recorder, produce,  # type: ignore[arg-type]
                              "t-feeds", lambda: "m@1")
    [(job, exc)] = publisher.publish_all(_batch(["wren", "crow", "jay"]))
    assert job.user_id == "crow" and isinstance(exc, BufferError)
    assert sent == [b"wren", b"jay"] and [u for u, _, _ in recorder.recorded] == ["wren", "jay"]


def test_an_older_rankers_feed_answers_its_trigger() -> None:
    old = Feed.model_validate_json(b'{"v": 1, "user_id": "u", "items": [], "generated_at": "2026-01-01T00:00:00Z", '
                                   b'"model_version": "m", "trigger_id": "e9", "trigger_kind": "interaction"}')
    assert old.answers() == ["e9"]
