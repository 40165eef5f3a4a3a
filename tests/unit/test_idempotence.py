"""A re-delivered or duplicate interaction changes nothing: the positions (the offsets decided on each
partition, the parked positions waiting) and the small window of event ids, through ``user_updates.decide``.

The invariant is ``streams/user_updates.py``'s docstring. The first test runs a model of the worker against
it: a user's interactions on a partition, parked records, commits, crashes that lose what the producer had
not delivered (and maybe part of a decision's effects) and re-deliver what was not committed, with the
table on disk (a profile written before a crash survives it) or in memory (it survives only if its
changelog record did), and messages Faust's stream drops and the commit guard fetches again after later
ones; every interaction must end applied exactly once. The window of event ids is 2 there, far smaller than
the runs: the positions alone must do it. The others name each path.
"""

from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass, field, replace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from flitfeed.encoders.user_vector import TasteParams, UserProfile
from flitfeed.index.base import IndexedFlit
from flitfeed.settings import WorkerConfig
from flitfeed.streams.effects import Count, Park, Publish, RawMessage, Reject, StoreProfile
from flitfeed.streams.events import Interaction, ParkedInteraction, Reason, UserState
from flitfeed.streams.user_updates import Decision, decide, taste_params

NOW = 1.7e9
#: A tiny window of event ids: what is exact below is exact by position.
W = WorkerConfig(dedup_capacity=2, decided_capacity=64, parked_capacity=64, park_max_attempts=10_000,
                 park_base_delay_s=1.0, park_max_delay_s=1.0)
PARAMS = taste_params(W)
#: Few decided offsets too: re-deliveries below the floor (exact while messages are decided in order).
W_FEW = W.model_copy(update={"decided_capacity": 3})
SOURCE = "t-interactions"


def vector(i: int) -> np.ndarray:
    v = np.zeros(8, dtype=np.float32)
    v[i % 8] = 1.0 + i / 10
    return v


def flit(i: int) -> IndexedFlit:
    return IndexedFlit(f"f{i}", "a", NOW, vector(i))


def interaction(i: int, offset: int | None = None, partition: int = 0,
                event_id: str | None = None) -> tuple[Interaction, RawMessage]:
    raw = json.dumps({"event_id": event_id or f"e{i}", "user_id": "u", "flit_id": f"f{i}", "kind": "like",
                      "ts": NOW + i}).encode()
    msg = RawMessage(topic="interactions", partition=partition, offset=i if offset is None else offset, key=b"u",
                     value=raw, timestamp=NOW)
    return Interaction.model_validate_json(raw), msg


def reference(n: int) -> UserProfile:
    """Each of the ``n`` interactions applied once, in order."""
    p = UserProfile("u")
    for i in range(n):
        p.learn_one(f"e{i}", "like", NOW + i, vector(i), "a", f"f{i}", replace(PARAMS, dedup_capacity=10_000))
    return p


# --- the model ------------------------------------------------------------------------------------------------
@dataclass
class Worker:
    """One user's partition of ``interactions``, ``interactions-parked``, the table and the producer."""

    n: int
    known: set[int]
    worker: WorkerConfig
    #: The table survives a crash as the worker last wrote it (RocksDB), else as its changelog had it.
    on_disk: bool
    rng: random.Random
    direct: list[tuple[Interaction, RawMessage]] = field(default_factory=list)
    parked: list[ParkedInteraction] = field(default_factory=list)  # delivered to the broker
    at_direct: int = 0
    #: A message Faust's stream dropped unprocessed (``streams/faust_compat/offset_guard.py``): the commit
    #: stops there, and the guard later seeks the partition back to it, re-delivering what followed too.
    hole: int | None = None
    at_parked: int = 0
    committed_direct: int = 0
    committed_parked: int = 0
    table: bytes | None = None
    changelog: bytes | None = None  # the last profile delivered to the broker
    unsent_profiles: list[bytes] = field(default_factory=list)
    unsent_parks: list[ParkedInteraction] = field(default_factory=list)
    rejected: list[Reject] = field(default_factory=list)
    #: Set: the next decision's effects are cut short by a kill -9.
    cut: bool | None = None

    def __post_init__(self) -> None:
        self.direct = [interaction(i) for i in range(self.n)]

    def lookup(self, flit_id: str) -> IndexedFlit | None:
        i = int(flit_id[1:])
        return flit(i) if i in self.known else None

    def run(self, decision: Decision) -> None:
        effects = decision.effects
        if self.cut is not None:  # killed halfway through this decision's effects
            effects, self.cut = effects[:self.rng.randint(0, len(effects))], None
        for effect in effects:
            match effect:
                case StoreProfile(_, profile):
                    self.table = profile
                    self.unsent_profiles.append(profile)
                case Park(record):
                    self.unsent_parks.append(record)
                case Reject():
                    self.rejected.append(effect)

    def step_direct(self) -> None:
        if self.at_direct < len(self.direct):
            event, msg = self.direct[self.at_direct]
            self.run(decide(event, msg, self.table, self.lookup, parked=None, source_topic=SOURCE, now=NOW,
                            params=taste_params(self.worker), worker=self.worker))
            self.at_direct += 1

    def step_parked(self) -> None:
        if self.at_parked < len(self.parked):
            record = self.parked[self.at_parked]
            msg = RawMessage(topic="interactions-parked", partition=0, offset=self.at_parked, key=b"u",
                             value=record.to_bytes(), timestamp=NOW)
            self.run(decide(record.interaction, msg, self.table, self.lookup, parked=record, source_topic=SOURCE,
                            now=NOW, params=taste_params(self.worker), worker=self.worker))
            self.at_parked += 1

    def deliver(self, parks: int, profiles: int) -> None:
        """The producer delivers the oldest records of each topic (in order within a partition)."""
        self.parked += self.unsent_parks[:parks]
        del self.unsent_parks[:parks]
        if profiles and self.unsent_profiles[:profiles]:
            self.changelog = self.unsent_profiles[:profiles][-1]
        del self.unsent_profiles[:profiles]

    def skip(self) -> None:
        """Faust's stream drops the next message without processing it and goes on with the ones after."""
        if self.at_direct < len(self.direct):
            self.hole = self.at_direct if self.hole is None else self.hole
            self.at_direct += 1

    def refetch(self) -> None:
        """The guard seeks the partition back to the hole: it and everything after it come again."""
        if self.hole is not None:
            self.at_direct, self.hole = self.hole, None

    def commit(self) -> None:
        """The commit flushes the producer, then commits both positions (never past a hole)."""
        self.deliver(len(self.unsent_parks), len(self.unsent_profiles))
        self.committed_direct = self.at_direct if self.hole is None else self.hole
        self.committed_parked = self.at_parked

    def crash(self) -> None:
        """kill -9: the producer delivered some of what it held, the rest is lost; both topics are read
        again from the committed positions."""
        self.deliver(self.rng.randint(0, len(self.unsent_parks)), self.rng.randint(0, len(self.unsent_profiles)))
        self.unsent_parks.clear()
        self.unsent_profiles.clear()
        if not self.on_disk:
            self.table = self.changelog
        self.at_direct, self.at_parked, self.hole = self.committed_direct, self.committed_parked, None

    def drain(self) -> None:
        self.known = set(range(self.n))
        self.refetch()
        while self.at_direct < len(self.direct) or self.at_parked < len(self.parked) or self.unsent_parks:
            self.step_direct()
            self.commit()
            self.step_parked()


STEPS = ["direct", "direct", "direct", "parked", "parked", "deliver", "commit", "crash", "crash_within", "embed"]


@settings(max_examples=400, deadline=None)
@given(n=st.integers(1, 10), unknown=st.sets(st.integers(0, 9)), on_disk=st.booleans(), seed=st.integers(0, 2**16),
       few=st.booleans(), steps=st.lists(st.sampled_from(STEPS + ["skip", "refetch"]), max_size=60))
def test_every_interaction_is_applied_exactly_once_through_crashes_and_parking(n, unknown, on_disk, seed, few,
                                                                                 steps) -> None:
    """Also with 3 decided offsets remembered (re-deliveries then fall below the floor), but without
    messages dropped and fetched again: one fetched again after 3 later ones is the documented limit."""
    rng = random.Random(seed)
    if few:
        steps = [step for step in steps if step not in ("skip", "refetch")]
    w = Worker(n=n, known=set(range(n)) - unknown, worker=W_FEW if few else W, on_disk=on_disk, rng=rng)
    for step in steps:
        match step:
            case "direct":
                w.step_direct()
            case "parked":
                w.step_parked()
            case "deliver":
                w.deliver(rng.randint(0, 1), rng.randint(0, 1))
            case "commit":
                w.commit()
            case "crash":
                w.crash()
            case "skip":
                w.skip()
            case "refetch":
                w.refetch()
            case "crash_within":
                w.cut = True
                w.step_direct() if rng.random() < 0.5 else w.step_parked()
                w.cut = None
                w.crash()
            case "embed":
                w.known.add(rng.randrange(n))
    w.drain()
    assert w.rejected == []
    got, want = UserProfile.from_stored(w.table), reference(n)
    assert (got.positives, sorted(got.seen), got.waiting) == (n, sorted(want.seen), [])
    np.testing.assert_allclose(got.taste, want.taste, rtol=1e-5)
    assert sorted(got.decided) == [0] and all(got.is_decided(0, o) for o in range(n))
    assert not got.is_decided(0, n)


# --- each path ------------------------------------------------------------------------------------------------
def decide_one(event: Interaction, msg: RawMessage, stored: bytes | dict | None, *, known=range(100),
               parked: ParkedInteraction | None = None, params: TasteParams = PARAMS, worker: WorkerConfig = W):
    return decide(event, msg, stored, lambda f: flit(int(f[1:])) if int(f[1:]) in known else None, parked=parked,
                  source_topic=SOURCE, now=NOW, params=params, worker=worker)


def unchanged(decision: Decision, stored: bytes) -> bool:
    """A duplicate that stores nothing new (the last event applied is stored again as it was)."""
    return decision.outcome == "duplicate" and all(e.profile == stored for e in decision.effects
                                                   if isinstance(e, StoreProfile))


def applied(*indices: int, stored: bytes | None = None) -> bytes:
    for i in indices:
        decision = decide_one(*interaction(i), stored)
        assert decision.outcome == "applied", (i, decision)
        stored = decision.effects[0].profile
    assert stored is not None
    return stored


def retry_of(record: ParkedInteraction, at: int = 0) -> RawMessage:
    return RawMessage(topic="interactions-parked", partition=0, offset=at, key=b"u", value=record.to_bytes(),
                      timestamp=NOW)


def test_a_re_delivered_message_is_a_duplicate_by_its_offset_long_after_its_id_left_the_window() -> None:
    stored = applied(*range(6))
    assert not UserProfile.from_stored(stored).has_applied("e0"), "e0 left the 2-id window"
    for i in range(5):
        assert decide_one(*interaction(i), stored).effects == (Count("duplicates", SOURCE),)
    # The last one applied is stored and published again (a crash may have lost its changelog record).
    last = decide_one(*interaction(5), stored)
    assert last.outcome == "duplicate" and [type(e) for e in last.effects] == [Count, StoreProfile, Publish]
    assert last.effects[1].profile == stored


def test_a_copy_at_a_new_offset_is_a_duplicate_within_the_window() -> None:
    stored = applied(0, 1)
    copy = decide_one(*interaction(0, offset=7), stored)  # a producer's retry: e0 again, at offset 7
    assert copy.outcome == "duplicate" and copy.effects == (Count("duplicates", SOURCE),)
    assert decide_one(*interaction(2, offset=8), stored).outcome == "applied"


def test_a_parked_interaction_is_applied_once_although_later_ones_were_decided() -> None:
    parking = decide_one(*interaction(0), None, known={1, 2})
    stored, record = parking.effects[0].profile, parking.effects[1].record
    stored = applied(1, 2, stored=stored)
    assert UserProfile.from_stored(stored).decided[0].offsets.tolist() == [0, 1, 2]
    retry = decide_one(record.interaction, retry_of(record), stored, parked=record)
    assert retry.outcome == "applied"
    stored = retry.effects[0].profile
    profile = UserProfile.from_stored(stored)
    assert profile.waiting == [] and profile.positives == 3 and profile.decided[0].offsets.tolist() == [0, 1, 2]
    # The record delivered again (the retry's offset not committed), and the message itself again: duplicates.
    assert unchanged(decide_one(record.interaction, retry_of(record), stored, parked=record), stored)
    assert unchanged(decide_one(*interaction(0), stored), stored)


def test_a_re_delivery_of_a_parked_message_parks_again_and_only_one_of_the_two_records_applies() -> None:
    parking = decide_one(*interaction(0), None, known=set())
    stored, first = parking.effects[0].profile, parking.effects[1].record
    # A crash before the offset was committed: the message again. Its record may be lost: parked again,
    # nothing stored (the position waits already).
    again = decide_one(*interaction(0), stored, known=set())
    assert again.outcome == "park" and [type(e) for e in again.effects] == [Park]
    second = again.effects[0].record
    assert (second.source_partition, second.source_offset, second.tracked) == (0, 0, True)
    stored = applied(1, 2, 3, stored=stored)  # the window (2 ids) cannot tell the records apart any more
    one = decide_one(first.interaction, retry_of(first), stored, parked=first)
    assert one.outcome == "applied"
    stored = one.effects[0].profile
    assert unchanged(decide_one(second.interaction, retry_of(second, 1), stored, parked=second), stored)
    assert UserProfile.from_stored(stored).positives == 4


def test_a_re_delivered_parked_message_whose_flit_arrived_is_applied_and_its_old_record_is_a_duplicate() -> None:
    parking = decide_one(*interaction(0), None, known=set())
    stored, record = parking.effects[0].profile, parking.effects[1].record
    direct = decide_one(*interaction(0), stored)
    assert direct.outcome == "applied"
    stored = direct.effects[0].profile
    assert UserProfile.from_stored(stored).waiting == []
    assert decide_one(record.interaction, retry_of(record), stored, parked=record).outcome == "duplicate"


def test_a_parked_record_whose_profile_was_lost_is_a_duplicate_and_the_re_delivery_parks_it_again() -> None:
    parking = decide_one(*interaction(0), None, known=set())
    record = parking.effects[1].record
    # In-memory table, kill -9: the record went out, the profile's changelog record did not (nor the
    # commit of offset 0, which comes after both).
    assert decide_one(record.interaction, retry_of(record), None, parked=record).outcome == "duplicate"
    assert decide_one(*interaction(0), None, known=set()).outcome == "park"


def test_an_expired_record_leaves_its_position_waiting_and_a_copy_of_it_is_dead_lettered_again() -> None:
    worker = W.model_copy(update={"park_max_attempts": 2})
    parking = decide_one(*interaction(0), None, known=set(), worker=worker)
    stored, record = parking.effects[0].profile, parking.effects[1].record
    retry = decide_one(record.interaction, retry_of(record), stored, known=set(), parked=record, worker=worker)
    last = retry.effects[0].record
    expired = decide_one(last.interaction, retry_of(last, 1), stored, known=set(), parked=last, worker=worker)
    assert expired.outcome == "expired" and [type(e) for e in expired.effects] == [Reject]
    assert expired.effects[0].reason == Reason.FLIT_NOT_FOUND
    # Not stored: had it been, a profile on disk could outlive a dead letter lost in a crash.
    again = decide_one(last.interaction, retry_of(last, 1), stored, known=set(), parked=last, worker=worker)
    assert again.outcome == "expired"


def test_beyond_parked_capacity_an_interaction_is_parked_untracked_and_deduplicated_by_its_id() -> None:
    worker = W.model_copy(update={"parked_capacity": 2})
    params = taste_params(worker)
    stored, records = None, []
    for i in range(2):
        d = decide_one(*interaction(i), stored, known=set(), params=params, worker=worker)
        stored, records = d.effects[0].profile, records + [d.effects[1].record]
    # Two wait: the third is parked without its position, nothing stored and nothing decided, so that its
    # re-delivery parks it again (its first record may be lost).
    full = decide_one(*interaction(2), stored, known=set(), params=params, worker=worker)
    assert [type(e) for e in full.effects] == [Park] and full.effects[0].record.tracked is False
    again = decide_one(*interaction(2), stored, known=set(), params=params, worker=worker)
    assert [type(e) for e in again.effects] == [Park] and again.effects[0].record.tracked is False
    for r in records + [full.effects[0].record]:
        d = decide_one(r.interaction, retry_of(r), stored, parked=r, params=params, worker=worker)
        assert d.outcome == "applied"
        stored = d.effects[0].profile
    second = again.effects[0].record  # the window knows e2 (applied 0 events ago)
    assert unchanged(decide_one(second.interaction, retry_of(second), stored, parked=second, params=params,
                                worker=worker), stored)
    profile = UserProfile.from_stored(stored)
    assert profile.positives == 3 and profile.waiting == []


def test_positions_below_their_floor_make_room_for_new_ones() -> None:
    worker = W.model_copy(update={"parked_capacity": 2, "decided_capacity": 3})
    params = taste_params(worker)
    stored = None
    for i in range(2):  # parked, and (say) expired since: their positions stay
        stored = decide_one(*interaction(i), stored, known=set(), params=params, worker=worker).effects[0].profile
    for i in range(2, 6):
        stored = decide_one(*interaction(i), stored, params=params, worker=worker).effects[0].profile
    assert UserProfile.from_stored(stored).decided[0].floor == 2, "0 and 1 are older than the 3 latest"
    parking = decide_one(*interaction(6), stored, known=set(), params=params, worker=worker)
    assert parking.effects[1].record.tracked is True
    assert UserProfile.from_stored(parking.effects[0].profile).waiting == [(0, 6)]


def test_a_user_moved_to_another_partition_starts_deciding_offsets_there() -> None:
    stored = applied(*range(5))
    # Partitions were added: the user's key maps to partition 3, whose offsets are lower.
    moved = decide_one(*interaction(5, offset=1, partition=3), stored)
    assert moved.outcome == "applied"
    stored = moved.effects[0].profile
    assert {p: d.offsets.tolist() for p, d in UserProfile.from_stored(stored).decided.items()} == {
        0: [0, 1, 2, 3, 4], 3: [1]}
    assert decide_one(*interaction(5, offset=1, partition=3), stored).outcome == "duplicate"
    assert decide_one(*interaction(6, offset=2, partition=3), stored).outcome == "applied"


def test_a_record_parked_before_positions_were_remembered_is_deduplicated_by_its_id() -> None:
    event, msg = interaction(0)
    old = ParkedInteraction(interaction=event, raw_b64=base64.b64encode(msg.value).decode(), source_partition=0,
                            source_offset=0, attempts=1, not_before=NOW)
    older_record = ParkedInteraction.model_validate_json(old.model_dump_json(exclude={"tracked"}))
    assert older_record.tracked is False
    legacy = json.dumps({"user_id": "u", "tastes": {}, "seen": "", "last_event_id": ""}).encode()
    first = decide_one(event, retry_of(older_record), legacy, parked=older_record)
    assert first.outcome == "applied"
    copy = decide_one(event, retry_of(older_record, 1), first.effects[0].profile, parked=older_record)
    assert copy.outcome == "duplicate"
    # Not found yet: parked again as it was, untracked.
    reparked = decide_one(event, retry_of(older_record), legacy, known=set(), parked=older_record)
    assert [type(e) for e in reparked.effects] == [Park] and reparked.effects[0].record.tracked is False


def test_a_profile_stored_before_decided_offsets_still_skips_what_its_event_ids_remember() -> None:
    """The JSON a worker stored before (2,000 hashes, no positions), as Faust's JSON codec wrote it."""
    before = UserProfile("u")
    for i in range(3):
        before.learn_one(f"e{i}", "like", NOW + i, vector(i), "a", f"f{i}", replace(PARAMS, dedup_capacity=2000))
    stored = before.to_dict()
    del stored["decided"], stored["waiting"]
    raw = json.dumps(stored).encode()
    for form in (raw, stored):
        dup = decide_one(*interaction(0), form)
        assert dup.outcome == "duplicate"
    new = decide_one(*interaction(3), raw)
    assert new.outcome == "applied"
    profile = UserProfile.from_stored(new.effects[0].profile)
    assert profile.decided[0].offsets.tolist() == [3] and profile.positives == 4
    assert len(profile.event_hashes) == W.dedup_capacity, "the window is cut to its new size"
    state = UserState.model_validate_json(new.effects[-1].records[0][1])
    assert state.seen == ["f0", "f1", "f2", "f3"]
