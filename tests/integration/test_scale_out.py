"""Scale-out on the real broker: 2 workers + 2 rankers as real processes share the work by partition.

The same seeded world (``flitfeed.demo.world.World``) is streamed to two isolated stacks at once:

* ``single``: one worker and one ranker (the reference run);
* ``scaled``: two workers and two rankers in the same consumer groups, on 6 partitions.

The test shows that (1) every user-state and every feed of the scaled stack was produced by the
replica that the broker says owns that user's partition (the ``flitfeed-instance`` header against
the group's member list), (2) after SIGKILL of one worker and one ranker, the survivors own every
partition and no event is lost (every interaction reaches a user state and a feed, every request
is answered), and (3) the final user states and feeds equal the single-process run's.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from flitfeed.demo.world import World
from flitfeed.kafka.admin import create_topics
from flitfeed.kafka.config import INSTANCE_HEADER, client_config
from flitfeed.kafka.groups import describe_group, owners_report
from flitfeed.settings import Settings
from flitfeed.streams.topics import (TOPIC_FEED_REQUESTS, TOPIC_FEEDS, TOPIC_FLIT_VECTORS, TOPIC_FLITS,
                                     TOPIC_INTERACTIONS, TOPIC_USER_STATES)
from flitfeed.streams.events import Feed, FeedRequest, FlitVector, UserState
from tests.integration.helpers import Bus
from tests.waiting import wait_until

if TYPE_CHECKING:
    from benchmarks.service import Service

pytestmark = pytest.mark.integration

PARTITIONS = 6
N_FLITS = 60
N_BIRDS = 24
PHASE_INTERACTIONS = 90
WAIT_S = 150.0


def partition_of(user_id: str) -> int:
    """The partition of a user-keyed record (murmur2, as Java, Faust and our producers hash keys)."""
    from aiokafka.partitioner import murmur2  # noqa: PLC0415 - the Java client's hash, as Faust uses
    return (murmur2(user_id.encode()) & 0x7FFFFFFF) % PARTITIONS


def instance_of(message) -> str:  # noqa: ANN001 - confluent Message
    return dict(message.headers() or []).get(INSTANCE_HEADER, b"").decode()


class Stack:
    """One isolated flitfeed deployment (own topics and groups) and a Bus on it."""

    def __init__(self, name: str, base: Settings, tmp: Path, services) -> None:  # noqa: ANN001
        self.settings = base.replace(**{
            "topic_prefix": f"{base.kafka.topic_prefix}{name}-", "app_id": f"{base.kafka.app_id}-{name}",
            "ranker_group": f"{base.kafka.ranker_group}-{name}", "partitions": PARTITIONS, "encoder": "hashing",
            # Short sessions so a killed replica's partitions move within seconds (6 s is the broker's minimum).
            "group_session_timeout_s": 6.0, "embed_batch_wait_s": 0.02,
            # The stacks' feeds are compared: both rank with the same model (the prior). A learning
            # model depends on when each example arrived; how it is shared is test_learned_ranking's.
            "ranker_learning": False})
        self.name = name
        self.tmp = tmp
        self.services = services
        self.processes: dict[str, Service] = {}
        create_topics(self.settings.kafka)
        self.bus = Bus(self.settings, alive=services.all_alive)
        self.admin = AdminClient(client_config(self.settings.kafka))

    def start(self, role: str, instance: str) -> None:
        settings = self.settings.replace(**{"instance_id": instance,
                                                    "data_dir": self.tmp / self.name / instance})
        self.processes[instance] = self.services(role, settings)

    def send_all(self, flits=(), interactions=(), requests=()) -> None:  # noqa: ANN001
        produce = self.bus.producer.produce
        t = self.settings.kafka.topic
        for f in flits:
            produce(t(TOPIC_FLITS), key=f.flit_id.encode(), value=f.to_bytes())
        for i in interactions:
            produce(t(TOPIC_INTERACTIONS), key=i.user_id.encode(), value=i.to_bytes())
        for r in requests:
            produce(t(TOPIC_FEED_REQUESTS), key=r.user_id.encode(), value=r.to_bytes())
        assert self.bus.producer.flush(10) == 0, "events not delivered"

    def stable_owners(self, expect: set[str]) -> tuple[dict[int, str], dict[int, str]] | None:
        """(worker owners, ranker owners) once each group is stable, complete, and spread over ``expect``."""
        assert self.services.all_alive(), "a service died while its group was forming"
        try:
            workers = describe_group(self.settings.kafka, self.settings.kafka.app_id, admin=self.admin)
            rankers = describe_group(self.settings.kafka, self.settings.kafka.ranker_group, admin=self.admin)
        except KafkaException:  # the group coordinator is still loading: ask again
            return None
        if workers.state != "stable" or rankers.state != "stable":
            return None
        w = workers.owners(self.settings.kafka.topic(TOPIC_INTERACTIONS))
        r = rankers.owners(self.settings.kafka.topic(TOPIC_FEED_REQUESTS))
        r_states = rankers.owners(self.settings.kafka.topic(TOPIC_USER_STATES))
        complete = len(w) == len(r) == PARTITIONS and r_states == r
        if complete and set(w.values()) | set(r.values()) == expect:
            return w, r
        return None

    def user_states(self) -> list:
        return self.bus.drain(TOPIC_USER_STATES)

    def feeds(self) -> list:
        return self.bus.drain(TOPIC_FEEDS)

    def triggers(self, topic: str) -> set[str]:
        messages = self.bus.drain(topic)
        if topic == TOPIC_USER_STATES:
            return {UserState.model_validate_json(m.value()).trigger_id for m in messages}
        return {t for m in messages for t in Feed.model_validate_json(m.value()).answers()}

    def wait_processed(self, event_ids: set[str], request_ids: set[str], what: str) -> None:
        """Until every interaction reached a user state and a feed, and every request got a feed."""
        def done() -> bool:
            assert self.services.all_alive(), f"a service died while waiting for {what}"
            return (event_ids <= self.triggers(TOPIC_USER_STATES)
                    and event_ids | request_ids <= self.triggers(TOPIC_FEEDS))

        try:
            wait_until(done, WAIT_S, interval=0.3, what=f"{self.name}: {what}")
        except AssertionError as exc:
            no_state = event_ids - self.triggers(TOPIC_USER_STATES)
            no_feed = (event_ids | request_ids) - self.triggers(TOPIC_FEEDS)
            raise AssertionError(f"{exc}; {len(no_state)} interactions without a user state "
                                 f"({sorted(no_state)[:5]}), {len(no_feed)} triggers without a feed "
                                 f"({sorted(no_feed)[:5]})") from None

    def latest_states(self) -> dict[str, UserState]:
        latest: dict[str, UserState] = {}
        for m in sorted(self.user_states(), key=lambda m: (m.partition(), m.offset())):
            state = UserState.model_validate_json(m.value())
            latest[state.user_id] = state
        return latest

    def feeds_for(self, request_ids: set[str]) -> dict[str, Feed]:
        feeds = (Feed.model_validate_json(m.value()) for m in self.feeds())
        return {f.trigger_id: f for f in feeds if f.trigger_id in request_ids}


@pytest.fixture
def stacks(isolated_settings: Settings, services, tmp_path: Path) -> Iterator[tuple[Stack, Stack]]:
    single = Stack("single", isolated_settings, tmp_path, services)
    scaled = Stack("scaled", isolated_settings, tmp_path, services)
    yield single, scaled
    single.bus.close()
    scaled.bus.close()


def test_two_workers_two_rankers_share_partitions_survive_a_kill_and_match_one_process(stacks) -> None:
    single, scaled = stacks
    single.start("worker", "w-single")
    single.start("ranker", "r-single")
    for instance in ("w1", "w2"):
        scaled.start("worker", instance)
    for instance in ("r1", "r2"):
        scaled.start("ranker", instance)

    owners = wait_until(lambda: scaled.stable_owners({"w1", "w2", "r1", "r2"}), WAIT_S, interval=0.5,
                        what="2 workers and 2 rankers each owning some of the 6 partitions")
    worker_owner, ranker_owner = owners

    # --- phase 1: the same seeded world to both stacks ------------------------------------------------------
    world = World(seed=11, n_birds=N_BIRDS, n_authors=8, start=time.time())
    flits = world.next_flits(N_FLITS)
    for stack in stacks:
        stack.send_all(flits=flits)

    def embedded(stack: Stack) -> bool:
        assert stack.services.all_alive(), "a service died while embedding"
        ids = {FlitVector.model_validate_json(m.value()).flit.flit_id for m in stack.bus.drain(TOPIC_FLIT_VECTORS)}
        return {f.flit_id for f in flits} <= ids

    for stack in stacks:
        wait_until(lambda: embedded(stack), WAIT_S, interval=0.3, what=f"{stack.name}: {N_FLITS} flits embedded")

    phase1 = world.spontaneous_interactions(PHASE_INTERACTIONS, now=time.time())
    requests1 = world.feed_requests(N_BIRDS)
    for stack in stacks:
        stack.send_all(interactions=phase1, requests=requests1)
    ids1, req1 = {e.event_id for e in phase1}, {r.request_id for r in requests1}
    for stack in stacks:
        stack.wait_processed(ids1, req1, "phase 1")

    # (1) every record of the scaled stack came from the owner of its partition
    assert scaled.stable_owners({"w1", "w2", "r1", "r2"}) == owners, "ownership changed without a failure"
    report = owners_report(scaled.settings.kafka)  # what `flitfeed owners` prints
    assert f"  partition   0  {worker_owner[0]}" in report and f"  partition   0  {ranker_owner[0]}" in report
    state_producers = {(m.partition(), instance_of(m)) for m in scaled.user_states()}
    feed_producers = {(m.partition(), instance_of(m)) for m in scaled.feeds()}
    assert state_producers == {(p, worker_owner[p]) for p, _ in state_producers}
    assert feed_producers == {(p, ranker_owner[p]) for p, _ in feed_producers}
    # ... and both replicas of each role did real work
    assert {i for _, i in state_producers} == {"w1", "w2"}
    assert {i for _, i in feed_producers} == {"r1", "r2"}

    # --- phase 2: kill one worker and one ranker without a goodbye, keep producing -------------------------
    scaled.processes["w1"].stop(signal.SIGKILL)
    scaled.processes["r1"].stop(signal.SIGKILL)
    phase2 = world.spontaneous_interactions(PHASE_INTERACTIONS, now=time.time())
    requests2 = world.feed_requests(N_BIRDS)
    for stack in stacks:
        stack.send_all(interactions=phase2, requests=requests2)
    ids2, req2 = {e.event_id for e in phase2}, {r.request_id for r in requests2}

    survivors = wait_until(lambda: scaled.stable_owners({"w2", "r2"}), WAIT_S, interval=0.5,
                           what="the survivors owning every partition")
    assert set(survivors[0].values()) == {"w2"} and set(survivors[1].values()) == {"r2"}
    single.wait_processed(ids1 | ids2, req1 | req2, "phase 2")
    scaled.wait_processed(ids1 | ids2, req1 | req2, "phase 2 after the kill")
    phase2_feeds = [m for m in scaled.feeds()
                    if set(Feed.model_validate_json(m.value()).answers()) & (ids2 | req2)]
    moved = {p for p, owner in ranker_owner.items() if owner == "r1"}
    assert {m.partition() for m in phase2_feeds if instance_of(m) == "r2"} >= moved

    # (3) same final state and the same feeds as the single-process run
    one, many = single.latest_states(), scaled.latest_states()
    assert set(one) == set(many) and one
    for user, expected in one.items():
        got = many[user]
        assert (got.positives, got.negatives) == (expected.positives, expected.negatives), user
        assert set(got.seen) == set(expected.seen) and set(got.muted_authors) == set(expected.muted_authors), user
        assert (got.taste is None) == (expected.taste is None), user
        if expected.taste is not None:
            np.testing.assert_allclose(got.taste, expected.taste, atol=1e-5, err_msg=user)

    final_requests = [FeedRequest(request_id=f"final-{u}", user_id=u, k=10) for u in sorted(one)]
    for stack in stacks:
        stack.send_all(requests=final_requests)
    final_ids = {r.request_id for r in final_requests}
    for stack in stacks:
        wait_until(lambda: len(stack.feeds_for(final_ids)) == len(final_ids), WAIT_S, interval=0.3,
                   what=f"{stack.name}: final feeds")
    expected_feeds, scaled_feeds = single.feeds_for(final_ids), scaled.feeds_for(final_ids)
    for rid, expected in expected_feeds.items():
        got = scaled_feeds[rid]
        assert [i.flit_id for i in got.items] == [i.flit_id for i in expected.items], rid
        np.testing.assert_allclose([i.score for i in got.items], [i.score for i in expected.items], atol=1e-3)
    assert any(f.items for f in expected_feeds.values())
