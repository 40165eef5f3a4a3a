"""The co-engagement model and the collaborative stages (source, hydrator, scorer) in the feed pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from flitfeed.index.base import IndexedFlit
from flitfeed.index.memory import MemoryIndex
from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.coengagement import CoEngagement
from flitfeed.ranker.engagement import EngagementTracker
from flitfeed.ranker.feeds import build_feed_pipeline
from flitfeed.ranker.params import RankerParams
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.recent import RecentFlits
from flitfeed.ranker.scorers import CollaborativeScorer
from flitfeed.ranker.sources import CoEngagedSource, CollaborativeHydrator


def trained() -> CoEngagement:
    ce = CoEngagement(capacity=50, history=10)
    # Fans of "a" also like "b" (three users) and "c" (one user); "d" is liked alone.
    for user in ("u1", "u2", "u3"):
        ce.learn_one(user, "a", "like", 1.0)
        ce.learn_one(user, "b", "reflit", 2.0)
    ce.learn_one("u4", "a", "reply", 3.0)
    ce.learn_one("u4", "c", "like", 4.0)
    ce.learn_one("u5", "d", "like", 5.0)
    ce.learn_one("me", "a", "like", 6.0)
    return ce


def test_scores_follow_co_engagement() -> None:
    ce = trained()
    b, c, d, unknown = ce.score_many("me", ["b", "c", "d", "nope"]).tolist()
    assert b > c > 0 and d == 0.0 and unknown == 0.0
    assert ce.score_many("stranger", ["b"]).tolist() == [0.0]
    assert [f for f, _ in ce.top("me", 10, exclude={"a"})] == ["b", "c"]


def test_negative_and_view_events_do_not_count() -> None:
    ce = CoEngagement(capacity=10)
    assert not ce.learn_one("u", "a", "view", 0.0)
    assert not ce.learn_one("u", "a", "hide", 0.0)
    assert len(ce) == 0


def test_recent_positives_weigh_more() -> None:
    ce = CoEngagement(capacity=10, history=10, recency=0.5)
    ce.learn_one("x", "old", "like", 0.0)
    ce.learn_one("x", "old-friend", "like", 0.0)
    ce.learn_one("y", "new", "like", 0.0)
    ce.learn_one("y", "new-friend", "like", 0.0)
    ce.learn_one("me", "old", "like", 1.0)
    ce.learn_one("me", "new", "like", 2.0)
    old_friend, new_friend = ce.score_many("me", ["old-friend", "new-friend"]).tolist()
    assert new_friend == pytest.approx(2 * old_friend)


def test_memory_is_bounded_and_evicts_the_least_recently_engaged() -> None:
    ce = CoEngagement(capacity=3, history=5, max_users=2)
    for t, flit in enumerate(["a", "b", "c"]):
        ce.learn_one("u1", flit, "like", float(t))
    ce.learn_one("u2", "a", "like", 10.0)   # "a" is engaged again: "b" is now the stalest
    ce.learn_one("u3", "z", "like", 11.0)   # a fourth flit takes b's slot; a third user evicts u1
    assert len(ce) == 3
    assert ce.score_many("u2", ["b"]).tolist() == [0.0]
    assert ce.user_scores("u1") is None
    # The reused slot starts clean: z co-occurs with nothing.
    assert ce.score_many("u3", ["a", "c"]).tolist() == [0.0, 0.0]


def test_order_of_learning_does_not_matter_for_pairs() -> None:
    one, two = CoEngagement(capacity=10), CoEngagement(capacity=10)
    for user, flit in [("u1", "a"), ("u1", "b"), ("u2", "b"), ("u2", "c")]:
        one.learn_one(user, flit, "like", 0.0)
    for user, flit in [("u2", "b"), ("u2", "c"), ("u1", "a"), ("u1", "b")]:
        two.learn_one(user, flit, "like", 0.0)
    probe = ["a", "b", "c"]
    for user in ("u1", "u2"):
        assert np.allclose(one.score_many(user, probe), two.score_many(user, probe))


def query(user: str = "me", **kw) -> FeedQuery:
    return FeedQuery(user_id=user, k=5, now=10.0, taste=np.array([1.0, 0.0], dtype=np.float32), positives=1, **kw)


def recent_store() -> RecentFlits:
    r = RecentFlits(capacity=100)
    for fid in "abcd":
        r.add_one(fid, f"author-{fid}", 0.0)
    return r


def test_source_excludes_seen_and_sets_collaborative() -> None:
    src = CoEngagedSource(trained(), recent_store(), limit=10)
    out = src.fetch(query(seen=frozenset({"a", "c"})))
    assert [(c.flit_id, c.source) for c in out] == [("b", "co_engaged")]
    assert out[0].collaborative > 0 and out[0].author_id == "author-b"
    assert not src.enable(FeedQuery(user_id="me", k=5, now=0.0))   # no positives yet


def test_hydrator_and_scorer() -> None:
    cands = [Candidate(f, "x", 0.0, "similar") for f in ("b", "c", "d")]
    CollaborativeHydrator(trained()).hydrate(query(), cands)
    CollaborativeScorer().score(query(), cands)
    assert [c.components["collaborative"] for c in cands][0] == 1.0     # scaled by the request's best
    assert 0 < cands[1].components["collaborative"] < 1 and cands[2].components["collaborative"] == 0.0
    cold = [Candidate("b", "x", 0.0, "fresh")]
    CollaborativeScorer().score(query(), cold)
    assert cold[0].components["collaborative"] == 0.0


def test_pipeline_blends_behaviour_with_text_and_keeps_cold_flits_reachable() -> None:
    index = MemoryIndex(dim=2)
    vec = {"a": [1.0, 0.0], "b": [0.0, 1.0], "c": [0.0, 1.0], "d": [1.0, 0.1], "new": [1.0, 0.05]}
    index.upsert_many([IndexedFlit(f, f"author-{f}", 0.0, np.array(v, dtype=np.float32)) for f, v in vec.items()])
    recent = recent_store()
    recent.add_one("new", "author-new", 0.0)
    params = RankerParams(similarity_weight=0.2, engagement_weight=0.0, freshness_weight=0.0,
                          collaborative_weight=1.0, tag_decay=1.0, author_decay=1.0, explore_share=0.0)
    pipeline = build_feed_pipeline(index, EngagementTracker(3600.0, 100), recent, params, trained())
    result = pipeline.run(query(seen=frozenset({"a"})))
    ids = [c.flit_id for c in result.items]
    # "b" is what a's fans liked: behaviour beats its zero text similarity. The never-engaged "new"
    # flit is recommendable from its text alone (cold start), ahead of "d", which is further in text.
    assert ids[0] == "b"
    assert "new" in ids and ids.index("new") < ids.index("d")
    assert result.items[0].components["collaborative"] == 1.0 and result.items[0].components["similarity"] == 0.0
    assert ("source", "co_engaged") in result.timings and ("hydrator", "collaborative") in result.timings
