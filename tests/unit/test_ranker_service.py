"""The ranker service's pure parts: from a user state to a query, from a pipeline result to a feed."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np

from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.pipeline import PipelineResult
from flitfeed.ranker.publisher import make_feed
from flitfeed.ranker.query_hydrator import feed_query
from flitfeed.streams.events import Feed, UserState


def state(**kw) -> UserState:
    base = dict(user_id="u1", taste=[0.6, 0.8], positives=2, seen=["f1"], muted_authors=["a9"],
                updated_at=datetime.now(timezone.utc), trigger_id="e7", trigger_ts=1.0)
    return UserState(**(base | kw))


def test_unknown_user_is_a_cold_query() -> None:
    q = feed_query(None, "u1", 5, now=100.0)
    assert q.cold_start and q.k == 5 and q.now == 100.0 and not q.seen


def test_state_becomes_a_warm_query() -> None:
    q = feed_query(state(), "u1", 10, now=1.0)
    assert not q.cold_start
    np.testing.assert_allclose(q.taste, [0.6, 0.8])
    assert q.taste.dtype == np.float32
    assert q.seen == {"f1"} and q.muted_authors == {"a9"} and q.positives == 2


def test_state_without_taste_is_cold() -> None:
    assert feed_query(state(taste=None, positives=0), "u1", 10, now=1.0).cold_start


def test_feed_keeps_order_scores_and_reasons() -> None:
    items = [Candidate("f3", "a1", 0.0, "similar", score=0.91234567), Candidate("f2", "a2", 0.0, "explore", score=0.5)]
    result = PipelineResult(items=items, timings={}, removed={}, candidates=2)
    q = feed_query(state(), "u1", 2, now=1.0)
    feed = make_feed(q, result, model_version="m@1", trigger_id="e7", trigger_kind="interaction")
    back = Feed.model_validate_json(feed.to_bytes())
    assert [(i.flit_id, i.reason) for i in back.items] == [("f3", "similar"), ("f2", "explore")]
    assert back.items[0].score == 0.912346 and back.model_version == "m@1" and not back.cold_start
    assert back.trigger_id == "e7" and back.trigger_kind == "interaction"


def test_a_taste_of_another_embedding_version_is_served_as_a_cold_start() -> None:
    from flitfeed.ranker.held import HeldState

    state = UserState(user_id="u", taste=[0.6, 0.8], positives=2, updated_at=0, trigger_id="e1",
                      model_version="old@1")
    assert HeldState.of(state, "old@1").taste is not None
    assert HeldState.of(state, "new@2").taste is None
    assert feed_query(HeldState.of(state, "new@2"), "u", 10, 0.0).taste is None
    legacy = UserState(user_id="u", taste=[0.6, 0.8], positives=2, updated_at=0, trigger_id="e1")
    assert HeldState.of(legacy, "new@2").taste is not None  # a worker before versions: its version is unknown


def test_the_ranker_keeps_each_users_taste_in_every_version_it_holds_and_ranks_with_the_one_served() -> None:
    from flitfeed.ranker.held import HeldState

    state = UserState(user_id="u", taste=[0.6, 0.8], positives=2, updated_at=0, trigger_id="e1",
                      model_version="old@1", tastes={"new@2": [1.0, 0.0, 0.0], "gone@0": [0.0, 1.0]})
    held = HeldState.of(state, "old@1", held=("new@2",))
    assert sorted(held.tastes) == ["new@2", "old@1"]  # a version no longer held is not kept
    assert held.taste.tolist() == [np.float32(0.6), np.float32(0.8)]
    # After a switch the same held state answers in the new space, and back after a rollback.
    np.testing.assert_allclose(feed_query(held, "u", 10, 0.0, version="new@2").taste, [1.0, 0.0, 0.0])
    np.testing.assert_allclose(feed_query(held, "u", 10, 0.0, version="old@1").taste, [0.6, 0.8])
    # A version in which the worker has no taste yet is a cold start, never another version's vector.
    assert feed_query(HeldState.of(state, "old@1"), "u", 10, 0.0, version="new@2").cold_start
