"""Interactions applied a batch at a time (issue 15): the pure grouping and merging
(``user_updates.group_by_user`` / ``decide_batch``), held to applying each interaction alone with
``decide``; the agent's ``process_batch`` against a stand-in for the worker (order of the effects, a bad
event or a failing user among good ones, the wait for the states' delivery before the store, a full disk);
and a real Faust table written for an event that is not the stream's current one."""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import random
import time
from types import SimpleNamespace
from typing import Any, Callable

import faust
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from flitfeed.encoders.user_vector import UserProfile
from flitfeed.index.base import IndexedFlit
from flitfeed.monitoring.metrics import Metrics
from flitfeed.settings import Settings, WorkerConfig
from flitfeed.streams.agents import update_users
from flitfeed.streams.effects import Count, Park, Publish, RawMessage, Reject, StoreProfile
from flitfeed.streams.events import Interaction, Reason, UserState
from flitfeed.streams.faust_compat.tables import processing
from flitfeed.streams.state_store import StateDiskFull
from flitfeed.streams.user_updates import Pending, UserBatch, decide, decide_batch, group_by_user, taste_params

S = WorkerConfig(park_max_attempts=3, park_base_delay_s=1.0, park_max_delay_s=4.0)
NOW = time.time()
TOPIC = "t-interactions"
RNG = np.random.default_rng(5)
KNOWN = {f"f{i}": IndexedFlit(f"f{i}", f"a{i % 3}", NOW, RNG.standard_normal(4).astype(np.float32)) for i in range(6)}


OFFSETS = itertools.count(100)


def pending(eid: str, flit_id: str, user: str = "u", partition: int = 2, offset: int | None = None,
            kind: str = "like") -> Pending:
    """An interaction at ``offset`` of ``partition`` (default: the next unused offset: a new message)."""
    offset = next(OFFSETS) if offset is None else offset
    raw = json.dumps({"event_id": eid, "user_id": user, "flit_id": flit_id, "kind": kind, "ts": NOW}).encode()
    msg = RawMessage(topic="interactions", partition=partition, offset=offset, key=user.encode(), value=raw,
                     timestamp=NOW - 1)
    return Pending(Interaction.model_validate_json(raw), msg)


def batch_of(items: list[Pending], stored: dict[str, Any] | None = None,
             lookup: Callable[[str], IndexedFlit | None] = KNOWN.get) -> UserBatch:
    return decide_batch(items, stored, lookup, source_topic=TOPIC, now=NOW, params=taste_params(S), worker=S)


def published(effects: Any) -> list[str]:
    """The trigger ids of the states published, in order."""
    return [UserState.model_validate_json(v).trigger_id for e in effects if isinstance(e, Publish)
            for _, v in e.records]


def one_at_a_time(items: list[Pending], stored: dict[str, Any] | None,
                  lookup: Callable[[str], IndexedFlit | None] = KNOWN.get) -> tuple[dict[str, Any] | None, list]:
    """The reference: each interaction decided alone against the profile the one before it stored."""
    effects: list = []
    for item in items:
        decision = decide(item.interaction, item.msg, stored, lookup, parked=None, source_topic=TOPIC, now=NOW,
                          params=taste_params(S), worker=S)
        for effect in decision.effects:
            if isinstance(effect, StoreProfile):
                stored = effect.profile
        effects.extend(decision.effects)
    return stored, effects


# --- group_by_user ---------------------------------------------------------------------------------------------
def test_mixed_partitions_are_grouped_per_user_in_order_of_first_arrival() -> None:
    items = [pending("e1", "f1", "u", 2), pending("e2", "f1", "v", 0), pending("e3", "f2", "w", 2),
             pending("e4", "f2", "u", 2), pending("e5", "f3", "v", 0)]
    assert group_by_user(items) == {(2, "u"): [0, 3], (0, "v"): [1, 4], (2, "w"): [2]}


# --- decide_batch ----------------------------------------------------------------------------------------------
def test_several_interactions_of_a_user_store_once_and_publish_every_state() -> None:
    items = [pending("e1", "f1"), pending("e2", "f2"), pending("e3", "f3", kind="hide")]
    batch = batch_of(items)
    assert batch.outcomes == ("applied", "applied", "applied")
    assert published(batch.sends) == ["e1", "e2", "e3"]
    assert [type(e) for e in batch.effects()].count(StoreProfile) == 1
    assert batch.store is not None and batch.store.user_id == "u"
    assert batch.counts == (Count("processed", TOPIC, 3),)
    # The states of e1 and e2 are not re-published after a crash once e3 is the last applied: deliver first.
    assert batch.settle
    # The same profile and the same states as one interaction at a time.
    reference, effects = one_at_a_time(items, None)
    assert batch.store.profile == reference
    states = [e for e in batch.sends if isinstance(e, Publish)]
    assert [e.records for e in states] == [e.records for e in effects if isinstance(e, Publish)]


def test_duplicates_inside_a_batch_are_skipped_and_the_last_state_published_again() -> None:
    first = pending("e1", "f1", offset=10)
    # A producer's retry (the same event at a new offset) and Faust handing the same message over again.
    batch = batch_of([first, pending("e1", "f1", offset=11), first])
    assert batch.outcomes == ("applied", "duplicate", "duplicate")
    assert published(batch.sends) == ["e1", "e1", "e1"]
    assert sorted(batch.counts, key=lambda c: c.counter) == [Count("duplicates", TOPIC, 2), Count("processed", TOPIC, 1)]
    assert not batch.settle  # one trigger: a re-delivery re-publishes it
    profile = UserProfile.from_stored(batch.store.profile)
    assert profile.has_applied("e1") and profile.positives == 1


def test_a_redelivered_batch_publishes_only_the_last_state_again_and_stores_it_again() -> None:
    items = [pending("e1", "f1"), pending("e2", "f2")]
    stored, _ = one_at_a_time(items, None)
    batch = batch_of(items, stored)
    assert batch.outcomes == ("duplicate", "duplicate")
    assert published(batch.sends) == ["e2"]
    assert batch.store is not None and batch.store.profile == stored
    assert not batch.settle
    assert batch.counts == (Count("duplicates", TOPIC, 2),)


def test_a_park_then_an_apply_of_the_same_user() -> None:
    items = [pending("e1", "missing", offset=7), pending("e2", "f2", offset=8)]
    batch = batch_of(items)
    assert batch.outcomes == ("park", "applied")
    _observe, publish = batch.sends
    assert published([publish]) == ["e2"]
    [park] = batch.parks  # sent after the store, which holds its position as waiting
    assert park.record.interaction.event_id == "e1" and park.record.source_offset == 7
    assert [type(e) for e in batch.effects()].index(Park) > [type(e) for e in batch.effects()].index(StoreProfile)
    profile = UserProfile.from_stored(batch.store.profile)
    assert profile.has_applied("e2") and not profile.has_applied("e1") and profile.is_waiting(2, 7)
    assert not batch.settle
    assert batch.counts == (Count("processed", TOPIC, 1),)


def test_only_parked_interactions_store_their_waiting_positions_and_publish_nothing() -> None:
    batch = batch_of([pending("e1", "missing", offset=20), pending("e2", "gone", offset=21)])
    assert batch.outcomes == ("park", "park")
    assert published(batch.sends) == [] and batch.counts == () and not batch.settle
    assert len(batch.parks) == 2
    profile = UserProfile.from_stored(batch.store.profile)
    assert profile.is_waiting(2, 20) and profile.is_waiting(2, 21)


def test_an_interaction_that_fails_is_rejected_and_the_users_others_are_applied() -> None:
    def lookup(flit_id: str) -> IndexedFlit | None:
        if flit_id == "f2":
            raise RuntimeError("index broke on f2")
        return KNOWN.get(flit_id)

    items = [pending("e1", "f1"), pending("e2", "f2", offset=5), pending("e3", "f3")]
    batch = batch_of(items, lookup=lookup)
    assert batch.outcomes == ("applied", "failed", "applied")
    [reject] = [e for e in batch.sends if isinstance(e, Reject)]
    assert reject.reason == Reason.PROCESSING_ERROR and reject.message.offset == 5 and "f2" in reject.detail
    assert [n for n, _ in batch.failures] == [1]
    assert published(batch.sends) == ["e1", "e3"]
    profile = UserProfile.from_stored(batch.store.profile)
    assert profile.has_applied("e3") and not profile.has_applied("e2")


def test_a_batch_gives_what_one_interaction_at_a_time_gives_on_random_sequences() -> None:
    rng = random.Random(11)
    for _ in range(40):
        stored: dict[str, Any] | None = None
        if rng.random() < 0.5:
            stored, _ = one_at_a_time([pending(f"old{i}", f"f{i}") for i in range(rng.randint(1, 3))], None)
        events = [pending(f"e{rng.randint(0, 6)}", rng.choice(["f1", "f2", "f3", "f4", "missing"]),
                          kind=rng.choice(["like", "view", "hide", "reflit"]), offset=n) for n in range(rng.randint(1, 8))]
        batch = batch_of(events, stored)
        reference, effects = one_at_a_time(events, stored)
        assert (batch.store.profile if batch.store else stored) == reference
        assert [type(e) for e in batch.sends + batch.parks] == \
            [type(e) for e in effects if not isinstance(e, (Count, StoreProfile, Park))] + [Park] * len(batch.parks)
        assert [p.record for p in batch.parks] == [e.record for e in effects if isinstance(e, Park)]
        assert published(batch.sends) == published(effects)
        totals: dict[tuple[str, str], int] = {}
        for c in (e for e in effects if isinstance(e, Count)):
            totals[(c.counter, c.topic)] = totals.get((c.counter, c.topic), 0) + c.n
        assert {(c.counter, c.topic): c.n for c in batch.counts} == totals
        triggers = published(effects)
        assert batch.settle == (bool(triggers) and any(t != triggers[-1] for t in triggers))


# --- the agent's process_batch against a stand-in worker --------------------------------------------------------
class FakeTopic:
    def __init__(self, name: str) -> None:
        self.name = name

    def get_topic_name(self) -> str:
        return self.name


class FakeEvent:
    """A consumed message as the agent sees it (Faust's Event: ``message``, ``ack``)."""

    def __init__(self, item: Pending | None = None, *, raw: bytes | None = None, user: str = "u",
                 partition: int = 2, offset: int = 0) -> None:
        if item is not None:
            m = item.msg
            self.message = SimpleNamespace(topic=m.topic, partition=m.partition, offset=m.offset, key=m.key,
                                           value=m.value, timestamp=m.timestamp)
        else:
            self.message = SimpleNamespace(topic="interactions", partition=partition, offset=offset,
                                           key=user.encode(), value=raw, timestamp=NOW)
        self.acks = 0
        #: Where an ack is recorded beside the worker's sends and stores (set by :func:`run_batch`).
        self.log: list | None = None

    def ack(self) -> None:
        self.acks += 1
        if self.log is not None:
            self.log.append(("ack", self.message.offset))


class Profiles(dict):
    """The table: reads and writes record the partition of Faust's current event (as the real table uses it)."""

    def __init__(self, log: list, fail_for: set[str] = frozenset(), disk_full: int = 0) -> None:
        super().__init__()
        self.log, self.fail_for, self.disk_full = log, fail_for, disk_full

    def __setitem__(self, key: str, value: Any) -> None:
        from faust.streams import current_event

        if key in self.fail_for:
            raise OSError(f"cannot write {key}")
        if self.disk_full:
            self.disk_full -= 1
            raise StateDiskFull("/nowhere", "[Errno 28] No space left on device")
        self.log.append(("store", key, current_event().message.partition))
        super().__setitem__(key, value)


class BatchWorker(SimpleNamespace):
    """The parts of a ``WorkerContext`` the interactions agent touches; records sends, deliveries and stores."""

    def __init__(self, index: dict[str, IndexedFlit] | None = None, **profiles: Any) -> None:
        self.log: list[tuple] = []
        self.deliveries: list[asyncio.Future] = []
        super().__init__(
            metrics=Metrics("worker", CollectorRegistry()), profiles=Profiles(self.log, **profiles), monitors=None,
            settings=Settings(), params=taste_params(S), index=SimpleNamespace(retrieve_many=self._retrieve),
            interactions=FakeTopic(TOPIC), user_states=FakeTopic("user-states"), flit_vectors=FakeTopic("fv"),
            parked=FakeTopic("interactions-parked"), dead_letters=FakeTopic("dead-letters"),
            changelog=SimpleNamespace(wait=self._changelog_wait), profile_writes=asyncio.Lock())
        self._index = KNOWN if index is None else index

    def others(self) -> dict:
        return {}

    def _retrieve(self, ids: list[str]) -> dict[str, IndexedFlit]:
        return {f: self._index[f] for f in ids if f in self._index}

    async def send(self, topic: FakeTopic, key: bytes | None, value: bytes) -> asyncio.Future:
        trigger = json.loads(value).get("trigger_id") if topic.name == "user-states" else None
        self.log.append(("send", topic.name, key, trigger))
        delivery = asyncio.get_running_loop().create_future()
        self.deliveries.append(delivery)
        return delivery

    async def _changelog_wait(self) -> None:
        self.log.append(("changelog",))


def run_batch(worker: BatchWorker, events: list[FakeEvent], deliver: bool = True) -> None:
    for event in events:
        event.log = worker.log

    async def scenario() -> None:
        task = asyncio.ensure_future(update_users.process_batch(worker, events))
        while not task.done():
            await asyncio.sleep(0)
            if deliver:
                for d in worker.deliveries:
                    if not d.done():
                        worker.log.append(("delivered",))
                        d.set_result(None)
        await task

    asyncio.run(scenario())
    assert [e.acks for e in events] == [1] * len(events)  # every event acked once, whatever became of it


def counted(worker: BatchWorker, name: str, **labels: str) -> float:
    return worker.metrics.value(name, service="worker", **labels)


def test_a_user_with_several_triggers_has_their_states_delivered_before_the_store_then_users_go_in_order() -> None:
    worker = BatchWorker()
    items = [pending("e1", "f1", "u", 2, offset=1), pending("e2", "f1", "v", 5, offset=1),
             pending("e3", "f2", "u", 2, offset=2)]
    run_batch(worker, [FakeEvent(i) for i in items])
    # u's two states with the broker before u's store (a re-delivery would re-publish the last one only).
    assert worker.log[:4] == [("send", "user-states", b"u", "e1"), ("send", "user-states", b"u", "e3"),
                              ("delivered",), ("delivered",)]
    assert [e for e in worker.log[4:] if e[0] != "delivered"] == [
        ("store", "u", 2), ("changelog",), ("ack", 1), ("ack", 2),  # one store, on u's partition
        ("store", "v", 5), ("send", "user-states", b"v", "e2"), ("changelog",), ("ack", 1),  # v: store, then state
    ]
    assert UserProfile.from_stored(worker.profiles["u"]).positives == 2
    assert counted(worker, "flitfeed_events_processed_total", topic=TOPIC) == 3
    assert counted(worker, "flitfeed_events_consumed_total", topic="interactions") == 3


def test_users_with_one_trigger_each_are_stored_then_published_without_waiting_for_delivery() -> None:
    worker = BatchWorker()
    run_batch(worker, [FakeEvent(pending("e1", "f1", "u", offset=7)), FakeEvent(pending("e2", "f1", "v", 5, offset=8))],
              deliver=False)
    assert [e[0] for e in worker.log] == ["store", "send", "changelog", "ack"] * 2


def test_a_full_disk_holds_the_user_and_every_one_after_it_unsent_and_unacked() -> None:
    """As one event at a time did (tests/integration/test_full_disk.py): the users before the one whose
    profile does not fit are applied and acked; it and the ones after it send nothing and wait unacked."""
    worker = BatchWorker()
    gate = asyncio.Event()
    full = {"v"}
    stores = worker.profiles

    def setitem(key: str, value: Any) -> None:
        if key in full and not gate.is_set():
            raise StateDiskFull("/nowhere", "[Errno 28] No space left on device")
        dict.__setitem__(stores, key, value)
        worker.log.append(("store", key))

    stores.__class__ = type("FullDisk", (Profiles,), {"__setitem__": lambda self, k, v: setitem(k, v)})
    events = [FakeEvent(pending("e1", "f1", "u", 2, offset=1)), FakeEvent(pending("e2", "f1", "v", 2, offset=2)),
              FakeEvent(pending("e3", "f2", "w", 3, offset=1))]
    for event in events:
        event.log = worker.log

    async def scenario() -> list:
        from flitfeed.streams.agents import common

        update_users.store_profile = functools.partial(common.store_profile, retry_s=0.01)
        try:
            task = asyncio.ensure_future(update_users.process_batch(worker, events))
            while counted(worker, "flitfeed_state_write_errors_total", reason="disk_full") < 2:
                await asyncio.sleep(0.01)
            held = list(worker.log)
            gate.set()  # space freed
            await asyncio.wait_for(task, timeout=30)
            return held
        finally:
            update_users.store_profile = common.store_profile

    held = asyncio.run(scenario())
    assert held == [("store", "u"), ("send", "user-states", b"u", "e1"), ("changelog",), ("ack", 1)]
    assert worker.log[len(held):] == [("store", "v"), ("send", "user-states", b"v", "e2"), ("changelog",), ("ack", 2),
                                      ("store", "w"), ("send", "user-states", b"w", "e3"), ("changelog",), ("ack", 1)]


def test_a_bad_event_in_a_batch_is_dead_lettered_and_the_others_applied() -> None:
    worker = BatchWorker()
    events = [FakeEvent(pending("e1", "f1", "u", offset=1)), FakeEvent(raw=b"{not json", user="u", offset=2),
              FakeEvent(pending("e3", "f2", "u", offset=3))]
    run_batch(worker, events)
    assert [e[1] for e in worker.log if e[0] == "send"] == ["dead-letters", "user-states", "user-states"]
    assert UserProfile.from_stored(worker.profiles["u"]).positives == 2
    assert counted(worker, "flitfeed_events_dead_lettered_total", topic="interactions", reason="invalid_json") == 1
    assert counted(worker, "flitfeed_events_processed_total", topic=TOPIC) == 2


def test_a_user_whose_store_fails_is_dead_lettered_and_the_other_users_are_stored() -> None:
    worker = BatchWorker(fail_for={"v"})
    events = [FakeEvent(pending("e1", "f1", "u", offset=1)), FakeEvent(pending("e2", "f1", "v", 5, offset=2)),
              FakeEvent(pending("e3", "f2", "v", 5, offset=3)), FakeEvent(pending("e4", "missing", "v", 5, offset=4))]
    run_batch(worker, events)
    assert set(worker.profiles) == {"u"}
    # v's profile was not stored, so its parked record (sent after the store) was not sent either: all three
    # of v's interactions are dead-lettered, none counted as processed: consumed 4 = processed 1 + 3.
    assert counted(worker, "flitfeed_events_dead_lettered_total", topic="interactions",
                   reason="processing_error") == 3
    assert counted(worker, "flitfeed_events_parked_total") == 0
    assert counted(worker, "flitfeed_events_processed_total", topic=TOPIC) == 1


def test_a_user_whose_parked_record_fails_keeps_the_applied_interactions_and_dead_letters_the_parked() -> None:
    worker = BatchWorker()
    sent = worker.send

    async def refusing_parked(topic: FakeTopic, key: bytes | None, value: bytes) -> asyncio.Future:
        if topic.name == "interactions-parked":
            raise RuntimeError("record refused")
        return await sent(topic, key, value)

    worker.send = refusing_parked
    run_batch(worker, [FakeEvent(pending("e1", "f1", "u", offset=1)), FakeEvent(pending("e2", "missing", "u", offset=2))])
    assert UserProfile.from_stored(worker.profiles["u"]).has_applied("e1")
    assert counted(worker, "flitfeed_events_processed_total", topic=TOPIC) == 1
    assert counted(worker, "flitfeed_events_dead_lettered_total", topic="interactions", reason="processing_error") == 1


def test_a_full_disk_retries_the_store_and_then_applies_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    from flitfeed.streams.agents import common

    monkeypatch.setattr(update_users, "store_profile", functools.partial(common.store_profile, retry_s=0.0))
    worker = BatchWorker(disk_full=2)
    run_batch(worker, [FakeEvent(pending("e1", "f1", "u"))])
    assert UserProfile.from_stored(worker.profiles["u"]).has_applied("e1")
    assert counted(worker, "flitfeed_state_write_errors_total", reason="disk_full") == 2
    assert counted(worker, "flitfeed_events_processed_total", topic=TOPIC) == 1


def test_a_parked_retry_of_a_user_waits_for_the_batch_that_is_updating_them() -> None:
    """The batch awaits its states' delivery between reading and storing u's profile; a parked retry of u
    stored in between would be overwritten by the batch's copy, and its interaction lost."""
    from flitfeed.streams.agents.common import update_user

    worker = BatchWorker()
    retry = pending("e9", "f3", "u", offset=40)

    async def scenario() -> None:
        batch = asyncio.ensure_future(update_users.process_batch(
            worker, [FakeEvent(pending("e1", "f1", "u", offset=1)), FakeEvent(pending("e2", "f2", "u", offset=2))]))
        while len(worker.deliveries) < 2:
            await asyncio.sleep(0)

        async def retried() -> None:
            with processing(FakeEvent(retry)):
                await update_user(worker, retry.interaction, retry.msg)

        parked = asyncio.ensure_future(retried())
        for _ in range(20):
            await asyncio.sleep(0)
        for d in worker.deliveries:
            d.set_result(None)
        await asyncio.gather(batch, parked)

    asyncio.run(scenario())
    profile = UserProfile.from_stored(worker.profiles["u"])
    assert all(profile.has_applied(e) for e in ("e1", "e2", "e9")) and profile.positives == 3


# --- a real Faust table written for an event that is not the stream's current one ---------------------------
@pytest.mark.parametrize("store", ["memory", "rocksdb"])
def test_a_table_write_made_current_for_an_event_goes_to_that_events_partition(store: str, tmp_path: Any) -> None:
    from faust.events import Event
    from faust.types.tuples import ConsumerMessage

    from flitfeed.streams.faust_compat.tables import profiles_table
    from flitfeed.streams.state_store import store_url

    worker = WorkerConfig(state_store=store)

    async def scenario() -> tuple[list[tuple[bytes, int]], Any, Any]:
        app = faust.App("test-batch-table", broker="kafka://127.0.0.1:1", store=store_url(worker),
                        datadir=str(tmp_path), autodiscover=False, web_enabled=False)
        table = profiles_table(app, "profiles", worker, 8, Metrics("worker", CollectorRegistry()))
        table._verified_source_topics_for_partitions.add("interactions")  # no broker to ask for partition counts

        def event(partition: int, user: str) -> Event:
            message = ConsumerMessage(topic="interactions", partition=partition, offset=0, timestamp=0.0,
                                      timestamp_type=0, headers=[], key=user.encode(), value=b"{}", checksum=None)
            return Event(app, user.encode(), b"{}", {}, message)

        sent: list[tuple[bytes, int]] = []
        app.producer.send_soon = lambda fut: sent.append((fut.message.key, fut.message.partition))
        with pytest.raises((TypeError, AssertionError)):
            table["nobody"] = b"x"  # outside a stream and without processing(): Faust refuses
        e3, e5 = event(3, "u3"), event(5, "u5")
        with processing(e3):
            table["u3"] = b"1"
            with processing(e5):
                table["u5"] = b"2"
            table["u3"] = b"3"
        with processing(e5):
            read = table.get("u5"), table.get("u3")  # u3 is not on partition 5's database (RocksDB)
        with processing(e3):
            read += (table.get("u3"),)
        return sent, read, sorted(getattr(table.data, "_dbs", {}))

    sent, read, databases = asyncio.run(scenario())
    assert sent == [(b'"u3"', 3), (b'"u5"', 5), (b'"u3"', 3)]  # each changelog record on its event's partition
    if store == "rocksdb":
        assert databases == [3, 5]  # each profile in its partition's database
        assert read == (b"2", None, b"3")
    else:
        assert read == (b"2", b"3", b"3")


# --- take_ready: batches of what the stream has ready, no timer -----------------------------------------------
def test_take_ready_gathers_what_is_queued_up_to_the_size_and_acks_nothing() -> None:
    from flitfeed.streams.faust_compat.batches import take_ready
    from tests.unit.test_worker_acks import acked, make_app, make_event

    async def scenario() -> tuple[list[list[int]], list[int], list[int]]:
        app = make_app()
        channel = app.channel()
        stream = channel.stream()
        await channel.put(make_event(app, 0))
        got: list[list[int]] = []
        take = take_ready(stream, 12, gather_s=60.0)
        async for batch in take:
            got.append([e.message.offset for e in batch])
            if len(got) == 1:
                for offset in range(1, 16):  # delivered while the agent processes its first batch
                    await channel.put(make_event(app, offset))
            if len(got) == 3:
                before = acked(app)
                for e in batch:
                    e.ack()
                break
        await take.aclose()
        return got, before, acked(app)

    got, before, after = asyncio.run(scenario())
    # The backlog is taken as it is (up to the size), not an event or two at a time.
    assert got == [[0], list(range(1, 13)), [13, 14, 15]]
    assert before == []  # the take acks nothing: the agent does, after the effects
    assert after == [13, 14, 15]


def test_take_ready_yields_a_lone_event_at_once_without_waiting_to_gather() -> None:
    """``gather_s`` bounds gathering what is already queued; nothing queued, nothing to wait for (Faust's
    ``noack_take`` would wait for its ``within`` timer, here an hour)."""
    from flitfeed.streams.faust_compat.batches import take_ready
    from tests.unit.test_worker_acks import make_app, make_event

    async def scenario() -> list[list[int]]:
        app = make_app()
        channel = app.channel()
        stream = channel.stream()
        got: list[list[int]] = []
        take = take_ready(stream, 100, gather_s=3600.0)

        async def agent() -> None:
            async for batch in take:
                got.append([e.message.offset for e in batch])
                if len(got) == 2:
                    return

        task = asyncio.ensure_future(agent())
        await channel.put(make_event(app, 0))
        while not got:
            await asyncio.sleep(0.01)
        await channel.put(make_event(app, 1))
        await asyncio.wait_for(task, timeout=30)
        await take.aclose()
        return got

    assert asyncio.run(asyncio.wait_for(scenario(), timeout=60)) == [[0], [1]]


# --- the worker's Kafka clients -------------------------------------------------------------------------------
def test_the_worker_app_takes_its_producer_settings(tmp_path: Any) -> None:
    from flitfeed.encoders.hashing import HashingEncoder
    from flitfeed.streams.app import WorkerSpace, create_worker

    encoder = HashingEncoder(dim=8)
    settings = Settings(data_dir=tmp_path, state_store="memory", worker_producer_linger_ms=3,
                        worker_producer_batch_bytes=65536, worker_metrics_port=0)
    space = WorkerSpace(encoder.model_version, encoder, SimpleNamespace(), None)
    ctx = create_worker(settings, {encoder.model_version: space}, encoder.model_version,
                        Metrics("worker", CollectorRegistry()), bare=encoder.model_version)
    conf = ctx.app.conf
    assert conf.producer_linger == pytest.approx(0.003) and conf.producer_max_batch_size == 65536
    assert ctx.app.producer.linger_ms == 3  # what aiokafka gets
    assert Settings().worker.worker_producer_linger_ms == 1  # Faust's default is 0: a request per record
