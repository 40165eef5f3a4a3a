"""Query hydration: a batch of feed jobs becomes the pipeline's queries, from the user states held."""

from __future__ import annotations

import numpy as np

from flitfeed.ranker.batching import FeedJob
from flitfeed.ranker.query_hydrator import QueryHydrator
from flitfeed.ranker.held import HeldState
from flitfeed.ranker.user_store import MemoryUserStore
from flitfeed.streams.events import UserState


def held(user_id: str, trigger_id: str = "e1") -> HeldState:
    state = UserState(user_id=user_id, taste=[0.6, 0.8], positives=2, seen=["f1"], muted_authors=["a9"],
                      updated_at=0, trigger_id=trigger_id, model_version="old@1", tastes={"new@2": [1.0, 0.0]})
    return HeldState.of(state, "old@1", held=("new@2",))


def job(user_id: str, partition: int = 0, trigger_id: str = "t", k: int = 10) -> FeedJob:
    return FeedJob(user_id, k, trigger_id, "interaction", 0.0, partition)


def test_each_job_becomes_a_query_of_its_users_state_in_order() -> None:
    states = MemoryUserStore()
    states.put(0, "wren", held("wren"))
    states.put(1, "robin", held("robin"))
    queries = QueryHydrator(states).hydrate([job("robin", 1, "e9", k=4), job("wren", 0, "e8")], now=42.0)
    assert [(q.user_id, q.trigger_id, q.k, q.now) for q in queries] == [("robin", "e9", 4, 42.0),
                                                                       ("wren", "e8", 10, 42.0)]
    wren = queries[1]
    assert wren.seen == {"f1"} and wren.muted_authors == {"a9"} and wren.positives == 2 and not wren.cold_start
    np.testing.assert_allclose(wren.taste, [0.6, 0.8])


def test_the_taste_is_the_one_in_the_version_served() -> None:
    states = MemoryUserStore()
    states.put(0, "wren", held("wren"))
    hydrator = QueryHydrator(states)
    np.testing.assert_allclose(hydrator.hydrate([job("wren")], 0.0, version="new@2")[0].taste, [1.0, 0.0])
    np.testing.assert_allclose(hydrator.hydrate([job("wren")], 0.0, version="old@1")[0].taste, [0.6, 0.8])
    assert hydrator.hydrate([job("wren")], 0.0, version="gone@0")[0].cold_start  # never another version's vector


def test_a_user_not_held_is_a_cold_start() -> None:
    """Unknown, or held on another partition (a state left behind by a revoked partition is never used)."""
    states = MemoryUserStore()
    states.put(0, "wren", held("wren"))
    for query in QueryHydrator(states).hydrate([job("jay"), job("wren", partition=1)], now=1.0):
        assert query.cold_start and query.taste is None and not query.seen


def test_any_lookup_will_do() -> None:
    """The store is injected: anything with ``get_many([(partition, user_id), ...])`` will do (tests, replays)."""

    class Lookup:
        def get_many(self, keys: list[tuple[int, str]]) -> list[HeldState | None]:
            return [held(user_id) if user_id == "wren" else None for _, user_id in keys]

    assert not QueryHydrator(Lookup()).hydrate([job("wren")], 0.0)[0].cold_start
