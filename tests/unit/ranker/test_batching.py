"""A poll's triggers become the feeds to build (ranker/batching.py) and their side effects (ranker/publisher.py)."""

from __future__ import annotations

import random

from flitfeed.monitoring.metrics import Metrics
from flitfeed.ranker.batching import FeedJob, coalesce
from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.pipeline import PipelineResult
from flitfeed.ranker.publisher import FeedPublisher
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
    def __init__(self) -> None:
        self.recorded: list[tuple[str, int]] = []

    def record(self, query: FeedQuery, items, partition: int) -> str:
        self.recorded.append((query.user_id, partition))
        return f"imp-{len(self.recorded)}"


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
    publisher.publish(job, FeedQuery("wren", 10, 3.0, trigger_id="e2"), result)

    [(topic, key, value)] = sent
    feed = Feed.model_validate_json(value)
    assert (topic, key) == ("t-feeds", b"wren")
    assert feed.trigger_id == "e2" and feed.covers == ["e1", "e2"] and feed.answers() == ["e1", "e2"]
    assert feed.impression_id == "imp-1" and feed.model_version == "m@1"
    assert recorder.recorded == [("wren", job.partition)] and monitors.feeds == ["wren"]
    value_of = metrics.registry.get_sample_value
    assert value_of("flitfeed_ranker_coalesced_triggers_total") == 1
    assert value_of("flitfeed_feed_latency_seconds_count", {"trigger": "interaction"}) == 2  # one per trigger
    assert value_of("flitfeed_ranker_filter_removed_total", {"filter": "seen"}) == 2
    # A second feed, with other labels, lands on its own series and adds to the first's.
    [req] = coalesce([request("wren", "r1")])
    publisher.publish(req, FeedQuery("wren", 10, 5.0, trigger_id="r1"),
                      PipelineResult(items=[], timings={("source", "similar"): 0.002, ("filter", "seen"): 0.001},
                                     removed={"seen": 1, "own_flits": 4}, candidates=0))
    assert value_of("flitfeed_ranker_filter_removed_total", {"filter": "seen"}) == 3
    assert value_of("flitfeed_ranker_filter_removed_total", {"filter": "own_flits"}) == 4
    assert value_of("flitfeed_feed_latency_seconds_count", {"trigger": "request"}) == 1
    assert value_of("flitfeed_feed_latency_seconds_count", {"trigger": "interaction"}) == 2
    assert value_of("flitfeed_feeds_published_total", {"trigger": "request", "cold_start": "true"}) == 1
    assert value_of("flitfeed_feeds_published_total", {"trigger": "interaction", "cold_start": "true"}) == 1
    assert value_of("flitfeed_ranker_component_duration_seconds_count", {"kind": "source", "component": "similar"}) == 2
    assert value_of("flitfeed_ranker_component_duration_seconds_count", {"kind": "filter", "component": "seen"}) == 1


def test_an_older_rankers_feed_answers_its_trigger() -> None:
    old = Feed.model_validate_json(b'{"v": 1, "user_id": "u", "items": [], "generated_at": "2026-01-01T00:00:00Z", '
                                   b'"model_version": "m", "trigger_id": "e9", "trigger_kind": "interaction"}')
    assert old.answers() == ["e9"]
