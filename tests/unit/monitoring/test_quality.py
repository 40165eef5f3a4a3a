"""Online quality proxies: feedback attribution window, capacity, coverage."""

from __future__ import annotations

from flitfeed.monitoring.quality import FeedQuality, diversity


def test_feedback_is_attributed_once_within_the_window_only() -> None:
    q = FeedQuality(window_s=60, capacity=100)
    q.learn_feed("wren", [("f1", "a"), ("f2", "b")], now=0.0)
    assert q.learn_interaction("robin", "f1", "like", ts=1.0) is None  # another user: not feedback on this feed
    assert q.learn_interaction("wren", "f1", "report", ts=59.0) == "negative"
    assert q.learn_interaction("wren", "f1", "like", ts=59.5) is None  # counted once
    assert q.learn_interaction("wren", "f2", "like", ts=61.0) is None  # too late


def test_served_pairs_are_bounded_by_capacity_oldest_first() -> None:
    q = FeedQuality(window_s=3600, capacity=3)
    q.learn_feed("u", [("f1", "a"), ("f2", "a")], now=0.0)
    q.learn_feed("u", [("f3", "a"), ("f4", "a")], now=1.0)
    assert q.learn_interaction("u", "f1", "like", ts=2.0) is None  # evicted
    assert q.learn_interaction("u", "f4", "like", ts=2.0) == "positive"


def test_coverage_counts_distinct_flits_of_the_latest_feeds() -> None:
    q = FeedQuality(coverage_feeds=2)
    q.learn_feed("u", [("f1", "a"), ("f2", "b")], now=0.0)
    q.learn_feed("v", [("f2", "b"), ("f3", "c")], now=0.0)
    assert q.coverage(catalog_size=10) == 0.3
    q.learn_feed("w", [("f3", "c")], now=0.0)  # pushes the first feed out: f1 no longer shown
    assert q.coverage(catalog_size=10) == 0.2
    assert q.coverage(catalog_size=0) == 0.0
    assert diversity([]) == 1.0 and diversity([("f1", "a"), ("f2", "a")]) == 0.5
