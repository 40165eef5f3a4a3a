"""Applying one interaction to a user's profile: the domain logic of the user agents.

Plain Python. The agent hands :func:`decide` the decoded interaction, the user's
stored profile and a way to look up flits; it gets back the outcome and the
effects to run: store and publish the new state, skip a duplicate (publishing
its state again when it was the last one applied), park the interaction until
its flit exists, or give up on it and dead-letter its original bytes.

Every embedding version the worker holds besides its own (being built, or kept for a rollback) gets
the user's taste too, so that a switch finds it ready: the agent passes ``others``, a lookup per such
version (``version -> (flit ids -> {flit_id: vector})``). A taste a version lacks is rebuilt from the
user's history (:meth:`~flitfeed.encoders.user_vector.UserProfile.rebuild`), on the user's next
interaction or by the worker's sweep when a version becomes ready (:func:`refresh_tastes`).

**Idempotence: a re-delivered or duplicate interaction changes nothing.** A user's interactions all come
from one partition of ``interactions`` (keyed by user), so the profile remembers positions instead of
thousands of event ids (:class:`~flitfeed.encoders.user_vector.UserProfile`). The invariant, per user and
partition ``p`` of ``interactions``:

- **(D)** every message of the user whose offset is in ``decided[p]`` (the latest ``decided_capacity``
  offsets decided there, and every offset at or below its floor) has been decided: applied (its effect is in the
  profile), or parked, and then its position ``(p, offset)`` was added to ``waiting`` in the same stored
  profile, before its parked record was sent;
- **(P)** a position leaves ``waiting`` only when its interaction is applied (or when it has fallen below its
  partition's floor and room is needed); a parked record whose position is not waiting is a duplicate;
- **(H)** ``event_hashes`` holds the last ``dedup_capacity`` applied event ids: a copy of an event at a *new*
  position (a producer's retry, a topic produced again) is skipped while the original is among them.

So, for a message of ``interactions`` (``msg``) at ``(p, o)``: waiting → the re-delivery of one that parked
before a crash (its parked record may never have left the producer): tried again, applied or parked again;
``o`` decided → re-delivered, a duplicate; an id in the window → a duplicate; otherwise applied (``o``
decided) or parked (``o`` decided and waiting). For a parked record of ``(p, o)``: waiting → tried
(applied: no longer waiting; an id in the window: a duplicate, no longer waiting); not waiting → a copy of
one applied already (a re-delivery after a crash, or the second record of a re-parked re-delivery), a
duplicate. Whenever both a parked record and its re-delivery exist, whichever is applied first takes the
position out of ``waiting`` and the other is a duplicate.

Decided offsets are a set, not a high-water mark: Faust's stream can drop a message, which the commit guard
then fetches again after later ones were processed (``streams/faust_compat/offset_guard.py``); it is not
decided, so it is applied. The limits, each documented where it is decided:

- such a message comes after ``decided_capacity`` later ones of the same user: it is below the floor,
  taken for a re-delivery (lost);
- ``parked_capacity`` positions wait already (none below its floor): the interaction is parked untracked
  (``tracked=False``), nothing stored, and its records are deduplicated by the window alone, as are records
  parked before positions were remembered;
- an expired record (``park_max_attempts`` used) is dead-lettered and its position left waiting (until it
  falls below the floor), so the profile never records it before the dead letter is sent: with the on-disk
  table a profile written just before a kill -9 can outlive the records sent with it;
- partitions added to ``interactions`` move some users to another partition, where nothing is decided yet
  (the window covers the switch); re-creating ``interactions`` under the same name restarts its offsets: the
  worker's state (its changelog and ``data_dir/faust``) must be deleted with it, or it would skip new
  messages as re-deliveries.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np

from flitfeed.encoders.user_vector import TasteParams, UserProfile
from flitfeed.index.base import IndexedFlit
from flitfeed.settings import EventLimits, WorkerConfig
from flitfeed.streams.effects import Count, Effect, ObserveTaste, Park, Publish, RawMessage, Reject, StoreProfile
from flitfeed.streams.events import (Interaction, ParkedInteraction, Reason, UserState, check_user_key,
                                     decode_interaction, from_epoch, to_epoch)

#: What :func:`apply_interaction` did with an interaction.
Outcome = Literal["applied", "duplicate", "park"]

#: Flit vectors in one embedding version: flit ids -> ``{flit_id: vector}`` for the ids it knows.
VectorsOf = Callable[[Sequence[str]], Mapping[str, np.ndarray]]

#: A profile as the table holds it: ``UserProfile.to_bytes()``, or an older form (JSON bytes, a dict).
Stored = bytes | dict[str, Any]


def taste_params(cfg: WorkerConfig) -> TasteParams:
    return TasteParams(half_life_s=cfg.taste_half_life_s, seen_capacity=cfg.seen_capacity,
                       muted_capacity=cfg.muted_capacity, dedup_capacity=cfg.dedup_capacity,
                       decided_capacity=cfg.decided_capacity, parked_capacity=cfg.parked_capacity)


def apply_interaction(event: Interaction, profile: UserProfile, lookup: Callable[[str], IndexedFlit | None],
                      params: TasteParams, others: Mapping[str, VectorsOf] | None = None) -> Outcome:
    """Apply ``event`` to ``profile`` (in place) if its flit is known in the primary version (``lookup``).

    A duplicate (an id in the profile's window, :meth:`UserProfile.has_applied`) is recognised before the
    lookup, so a replay never parks; :func:`decide` checks the positions first. ``others``: a lookup per other
    held version. A taste the profile holds there is updated with the flit's vector (dropped when the
    version does not know the flit yet); then each version the profile lacks a taste in is rebuilt from
    the history, one lookup of every history flit, unless that version does not know this event's flit
    either (the rebuilt taste would lack it for good: better rebuilt by a later interaction or the sweep,
    :func:`refresh_tastes`). A lookup for the primary version itself, if given, rebuilds a primary taste
    that had to start anew (the worker's version changed to one the profile had no taste in).
    """
    if profile.has_applied(event.event_id):
        return "duplicate"
    flit = lookup(event.flit_id)
    if flit is None:
        return "park"
    primary = params.version or profile.taste_version
    vectors: dict[str, np.ndarray | None] | None = None
    if others is not None:
        # A version the profile has no taste in is rebuilt below, from a lookup that includes this flit (a
        # new profile's first event starts one in each version).
        new = not profile.seen and not profile.tastes
        vectors = {version: vectors_of([event.flit_id]).get(event.flit_id) if version in profile.tastes or new
                   else None for version, vectors_of in others.items() if version != primary}
    primary_fresh = primary not in profile.tastes and not (not profile.taste_version and "" in profile.tastes)
    profile.learn_one(event.event_id, event.kind, to_epoch(event.ts), flit.vector, flit.author_id,
                      event.flit_id, params, event.dwell_ms, others=vectors)
    for version, vectors_of in (others or {}).items():
        lacking = primary_fresh and len(profile.seen) > 1 if version == primary else version not in profile.tastes
        ids = profile.history_flits() if lacking else []
        if not ids:
            continue
        got = vectors_of(ids)
        # A version that does not know this very flit yet would get a taste without it for good: wait.
        if event.flit_id in got or event.flit_id not in ids:
            profile.rebuild(version, lambda _ids: got, params.half_life_s)
    return "applied"


def user_state(profile: UserProfile, trigger_id: str, trigger_ts: float, now: float | None = None) -> UserState:
    """The public state record the ranker consumes (``user-states``, compacted, key = user id), updated
    at ``now`` (epoch s; default: the clock): the normalised taste in the primary version
    (``model_version``) and, in ``tastes``, in each other version the profile has one (none while cold)."""
    q = profile.query_vector()
    tastes = {}
    for version in profile.tastes:
        if version and version != profile.taste_version:  # "" = a version unknown, of no use to a ranker
            other = profile.query_vector(version)
            if other is not None:
                tastes[version] = other.tolist()
    return UserState(user_id=profile.user_id, taste=None if q is None else q.tolist(),
                     positives=profile.positives, negatives=profile.negatives, last_ts=profile.last_ts,
                     seen=list(profile.seen), muted_authors=list(profile.muted_authors),
                     updated_at=datetime.now(timezone.utc) if now is None else from_epoch(now),
                     trigger_id=trigger_id, trigger_ts=trigger_ts, model_version=profile.taste_version,
                     tastes=tastes)


def refresh_tastes(stored: Stored, others: Mapping[str, VectorsOf], params: TasteParams,
                   now: float) -> tuple[bytes, UserState] | None:
    """The worker's sweep over its users when a version becomes ready (or is added): rebuild from the
    history each taste the stored profile (``UserProfile.to_bytes()``, or an older form) lacks among
    ``others`` (a lookup per version). Returns the profile to store and the state to publish, or None when nothing was rebuilt
    (every taste there already, or no usable history: nothing to store or publish).

    The state's ``trigger_id`` is the profile's last applied event, the one the ranker's held state already
    carries: the ranker takes the new state but builds no feed for a repeat trigger id, so the user's
    tastes reach it without a feed nobody asked for. ``trigger_ts`` 0: no interaction just happened.

    >>> import numpy as np
    >>> from flitfeed.encoders.user_vector import UserProfile
    >>> p = UserProfile("u")
    >>> p.learn_one("e1", "like", 0.0, np.array([1.0, 0.0], dtype=np.float32), "a", "f1", TasteParams(10.0, version="v1"))
    True
    >>> v2 = {"v2": lambda ids: {f: np.array([0.0, 0.0, 1.0], dtype=np.float32) for f in ids}}
    >>> stored, state = refresh_tastes(p.to_bytes(), v2, TasteParams(10.0, version="v1"), now=0.0)
    >>> state.trigger_id, state.model_version, state.tastes
    ('e1', 'v1', {'v2': [0.0, 0.0, 1.0]})
    >>> refresh_tastes(stored, v2, TasteParams(10.0, version="v1"), now=0.0) is None
    True
    """
    profile = UserProfile.from_stored(stored)
    rebuilt = False
    for version, vectors_of in others.items():
        if version not in profile.tastes:
            rebuilt = profile.rebuild(version, vectors_of, params.half_life_s) or rebuilt
    if not rebuilt:
        return None
    return profile.to_bytes(), user_state(profile, profile.last_event_id, 0.0, now)


def retry_delay(attempts: int, cfg: WorkerConfig) -> float:
    """Exponential back-off for parked interactions.

    >>> cfg = WorkerConfig(park_base_delay_s=0.25, park_max_delay_s=2.0)
    >>> [retry_delay(a, cfg) for a in range(5)]
    [0.25, 0.5, 1.0, 2.0, 2.0]
    """
    return min(cfg.park_base_delay_s * 2.0 ** attempts, cfg.park_max_delay_s)


def next_park(parked: ParkedInteraction | None, event: Interaction, raw_b64: str, partition: int, offset: int,
              now: float, worker: WorkerConfig, tracked: bool = True) -> ParkedInteraction | None:
    """The parked record for another try, or None when the attempts are used up. ``tracked``: the profile
    stored holds the position as waiting."""
    attempts = 0 if parked is None else parked.attempts + 1
    if attempts >= worker.park_max_attempts:
        return None
    return ParkedInteraction(interaction=event, raw_b64=raw_b64, source_partition=partition, source_offset=offset,
                             attempts=attempts, not_before=now + retry_delay(attempts, worker), tracked=tracked)


def decode_user_interaction(msg: RawMessage, limits: EventLimits, now: float) -> Interaction:
    """An ``interactions`` message, decoded and checked (its key is its user id); raises ``DecodeError``."""
    interaction = decode_interaction(msg.value, now=now, limits=limits)
    check_user_key(msg.key, interaction.user_id)
    return interaction


#: What :func:`decide` did with an interaction: "expired" = parked too often, dead-lettered.
Decided = Literal["applied", "duplicate", "park", "expired"]


@dataclass(frozen=True)
class Decision:
    outcome: Decided
    #: What to do, in order (``streams/effects.py``).
    effects: tuple[Effect, ...]


def decide(interaction: Interaction, msg: RawMessage, stored: Stored | None,
           lookup: Callable[[str], IndexedFlit | None], *, parked: ParkedInteraction | None, source_topic: str,
           now: float, params: TasteParams, worker: WorkerConfig,
           others: Mapping[str, VectorsOf] | None = None) -> Decision:
    """What to do with one interaction, from ``source_topic`` (``msg``) or a parked retry of it (``parked``,
    read from ``msg``), for a user whose stored profile is ``stored`` (``UserProfile.to_bytes()`` or an older
    form, :meth:`UserProfile.from_stored`; None = new). The positions and the window decide what is a
    duplicate (the invariant is this module's docstring).

    Applied: store the profile, publish the user's state. A duplicate is skipped, but its profile is stored
    and its state published again when it was the last event applied (re-delivered after a crash between
    the table write and the changelog record or the publish; the ranker skips a state it has already seen). An interaction whose flit is unknown is parked
    with its original bytes, partition and offset, until ``park_max_attempts``; then those original bytes
    are dead-lettered as ``flit_not_found``. Parking a new position stores the profile first (its position
    waiting), then sends the record. ``lookup`` (the primary version) alone decides apply or park;
    ``others`` (a lookup per other held version) keep the user's taste in those (:func:`apply_interaction`).
    """
    profile = UserProfile.from_stored(stored) if stored else UserProfile(interaction.user_id)
    position = (msg.partition, msg.offset) if parked is None else (parked.source_partition, parked.source_offset)
    waiting = profile.is_waiting(*position)
    if not waiting and (profile.is_decided(*position) if parked is None else parked.tracked):
        # A re-delivered message, or a parked record whose interaction was applied already (D, P).
        return _duplicate(profile, interaction, msg, source_topic, now, store=False)
    # The taste's move is measured in the version learnt with (the stored primary may be another, e.g. the
    # version live before a switch: its vectors are of another space, maybe another dimension).
    before = profile.query_vector(params.version or None)
    outcome = apply_interaction(interaction, profile, lookup, params, others)
    if outcome == "duplicate":  # a copy at a new position (H); one that waited waits no longer
        forgot = waiting and profile.stop_waiting(*position)
        return _duplicate(profile, interaction, msg, source_topic, now, store=forgot)
    if outcome == "park":
        raw_b64 = parked.raw_b64 if parked else base64.b64encode(msg.value or b"").decode("ascii")
        fresh = parked is None and not waiting  # parked for the first time (else its position waits already)
        tracked = profile.wait_for(*position, params.parked_capacity) if fresh else parked is None or parked.tracked
        nxt = next_park(parked, interaction, raw_b64, *position, now, worker, tracked=tracked)
        if nxt is not None:
            if fresh and tracked:
                # Stored as decided and waiting before the record is sent (D), so that a re-delivery after a
                # crash parks it again instead of taking it for a duplicate.
                profile.mark_decided(*position, params.decided_capacity)
                return Decision("park", (StoreProfile(profile.user_id, profile.to_bytes()), Park(nxt)))
            # A retry, a re-delivery of a waiting one, or one beyond parked_capacity: nothing to store (the
            # last is not decided either, so that its re-delivery parks it again).
            return Decision("park", (Park(nxt),))
        # Expired. Its position stays waiting (see the module docstring): nothing is stored.
        original = RawMessage(topic=source_topic, partition=position[0], offset=position[1],
                              key=interaction.user_id.encode(), value=base64.b64decode(raw_b64),
                              timestamp=msg.timestamp)
        return Decision("expired", (Reject(original, Reason.FLIT_NOT_FOUND, f"flit {interaction.flit_id} not in "
                                           f"the index after {worker.park_max_attempts} attempts"),))
    if waiting:
        profile.stop_waiting(*position)
    if parked is None:
        profile.mark_decided(*position, params.decided_capacity)
    return Decision("applied", (StoreProfile(profile.user_id, profile.to_bytes()),
                                ObserveTaste(before, profile.query_vector()), Count("processed", source_topic),
                                _publish_state(profile, interaction.event_id, msg.timestamp, now)))


def _duplicate(profile: UserProfile, interaction: Interaction, msg: RawMessage, source_topic: str, now: float,
               store: bool) -> Decision:
    """Skip a duplicate. Its profile is stored when ``store`` (a waiting position was taken out), and stored
    and published again when it was the last event applied: with an on-disk table the stored profile may
    have been written before a crash that lost its changelog record or its state (the write and the
    records are not atomic)."""
    effects: list[Effect] = [Count("duplicates", source_topic)]
    last = interaction.event_id == profile.last_event_id
    if store or last:
        effects.append(StoreProfile(profile.user_id, profile.to_bytes()))
    if last:
        effects.append(_publish_state(profile, interaction.event_id, msg.timestamp, now))
    return Decision("duplicate", tuple(effects))


def _publish_state(profile: UserProfile, trigger_id: str, trigger_ts: float, now: float) -> Publish:
    state = user_state(profile, trigger_id, trigger_ts, now)
    return Publish("user_states", ((profile.user_id.encode(), state.to_bytes()),))


# --- a batch of interactions ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Pending:
    """One decoded interaction of a batch and the message it came in."""

    interaction: Interaction
    msg: RawMessage


def group_by_user(items: Sequence[Pending]) -> dict[tuple[int, str], list[int]]:
    """The positions of ``items`` per (partition, user), each list in the batch's order, the groups in the
    order of each one's first interaction. A user's interactions are applied in their order; users are
    independent of each other (every user is on one partition: the key is the user id).

    >>> from datetime import datetime, timezone
    >>> def p(user, partition):
    ...     i = Interaction(event_id=f"e-{user}", user_id=user, flit_id="f", kind="like", ts=datetime.now(timezone.utc))
    ...     return Pending(i, RawMessage("interactions", partition, 0, user.encode(), b"", 0.0))
    >>> group_by_user([p("a", 1), p("b", 0), p("a", 1)])
    {(1, 'a'): [0, 2], (0, 'b'): [1]}
    """
    groups: dict[tuple[int, str], list[int]] = {}
    for n, item in enumerate(items):
        groups.setdefault((item.msg.partition, item.interaction.user_id), []).append(n)
    return groups


#: What :func:`decide_batch` did with one interaction: :data:`Decided`, or "failed" (:func:`decide` raised;
#: dead-lettered as ``processing_error``, the user's later interactions applied without it).
BatchOutcome = Literal["applied", "duplicate", "park", "expired", "failed"]


@dataclass(frozen=True)
class UserBatch:
    """What to do with one user's interactions of a batch (:func:`decide_batch`).

    Run in the order of :meth:`effects`, and ack the interactions only after the last: one trigger,
    :attr:`store` then :attr:`sends` (as :func:`decide` orders them); several (:attr:`settle`), :attr:`sends`,
    then wait until the broker has the states, then :attr:`store`. Then :attr:`parks`, the table's changelog
    record handed to the Kafka client, and :attr:`counts`.
    """

    user_id: str
    #: Per interaction, in the batch's order.
    outcomes: tuple[BatchOutcome, ...]
    #: Every interaction's published states, dead letters and observations, in order.
    sends: tuple[Effect, ...]
    #: The states sent must be delivered before the profile is stored (see :func:`decide_batch`).
    settle: bool
    #: The profile after the last interaction, stored once; None when no interaction asked for a store.
    store: StoreProfile | None
    #: The parked retries, in order: sent after the store, as :func:`decide` orders them (a position parked
    #: for the first time is stored as waiting before its record leaves).
    parks: tuple[Park, ...]
    #: The per-topic counters of every interaction, summed.
    counts: tuple[Count, ...]
    #: (position in the user's interactions, what :func:`decide` raised) for each "failed" one.
    failures: tuple[tuple[int, Exception], ...] = ()

    def effects(self) -> tuple[Effect, ...]:
        """Everything, in order (without the wait for the broker :attr:`settle` asks for)."""
        store: tuple[Effect, ...] = (self.store,) if self.store is not None else ()
        first = self.sends + store if self.settle else store + self.sends
        return first + self.parks + self.counts


def decide_batch(items: Sequence[Pending], stored: Stored | None,
                 lookup: Callable[[str], IndexedFlit | None], *, source_topic: str, now: float, params: TasteParams,
                 worker: WorkerConfig, others: Mapping[str, VectorsOf] | None = None) -> UserBatch:
    """What to do with one user's interactions of a batch (``items``, in order), whose stored profile is
    ``stored``: :func:`decide` for each against the profile the ones before it left (in memory), and one
    store of the last, so the table and its changelog get one record per user per batch.

    Every applied interaction's state is published, each with its own trigger: the ranker coalesces a user's
    states and answers every trigger (README "Feed schema", ``covers``). An interaction :func:`decide`
    raises on is rejected as ``processing_error`` and the others go on without it.

    Why :attr:`UserBatch.settle`: a stored profile is durable at once (RocksDB on local disk), a published
    state only once the broker has it. After a crash the re-delivered interactions are duplicates, and
    :func:`decide` publishes again only the state of the profile's *last* event. So when the batch published
    a state of any other trigger (two interactions of the user applied, or the re-published last one
    followed by a new one), those states must be delivered before the store, or a kill -9 in between loses
    them and their interactions never get a feed. One trigger: the re-publish covers it; the state goes
    after the store, as :func:`decide` orders it (a store waiting for disk space then holds it back).
    The parked retries are sent after the store, as :func:`decide` orders them: a position parked for the
    first time is stored as waiting before its record leaves, so a re-delivery after a crash parks it again.
    """
    current = stored
    outcomes: list[BatchOutcome] = []
    sends: list[Effect] = []
    parks: list[Park] = []
    counts: dict[tuple[str, str], int] = {}
    failures: list[tuple[int, Exception]] = []
    triggers: list[str] = []
    store: StoreProfile | None = None
    for n, item in enumerate(items):
        try:
            decision = decide(item.interaction, item.msg, current, lookup, parked=None, source_topic=source_topic,
                              now=now, params=params, worker=worker, others=others)
        except Exception as exc:  # one bad interaction (or flit) must not stop the user's others
            outcomes.append("failed")
            failures.append((n, exc))
            sends.append(Reject(item.msg, Reason.PROCESSING_ERROR, repr(exc)))
            continue
        outcomes.append(decision.outcome)
        for effect in decision.effects:
            if isinstance(effect, StoreProfile):
                store, current = effect, effect.profile
            elif isinstance(effect, Count):
                counts[(effect.counter, effect.topic)] = counts.get((effect.counter, effect.topic), 0) + effect.n
            elif isinstance(effect, Park):
                parks.append(effect)
            else:
                if isinstance(effect, Publish):
                    triggers.append(item.interaction.event_id)
                sends.append(effect)
    # The last state published is the last applied event's (a later duplicate re-publishes only that one).
    settle = store is not None and any(t != triggers[-1] for t in triggers)
    user_id = items[0].interaction.user_id if items else ""
    return UserBatch(user_id=user_id, outcomes=tuple(outcomes), sends=tuple(sends), settle=settle, store=store,
                     parks=tuple(parks), counts=tuple(Count(c, t, k) for (c, t), k in counts.items()),  # type: ignore[arg-type]
                     failures=tuple(failures))
