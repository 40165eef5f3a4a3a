"""The per-user timestamp rules, as properties over generated event sequences.

The rules (README "Guarantees"): a user's taste is the sum of every applied interaction decayed to
the user's *latest* event time, so the arrival order of a user's events does not matter (a late event
is decayed by how much older it is); ``last_ts`` is the latest event time seen; counts and the sets
of seen flits and muted authors do not depend on order either (only which entries a full bounded
memory evicts first does: the oldest *arrival* goes). A repeated ``event_id`` changes nothing, at
any position.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from flitfeed.encoders.user_vector import TasteParams, UserProfile

BIG = TasteParams(half_life_s=3 * 86400.0, seen_capacity=10_000, muted_capacity=10_000, dedup_capacity=10_000)
DIM = 8

vectors = st.lists(st.floats(min_value=-1, max_value=1, allow_nan=False), min_size=DIM, max_size=DIM) \
    .filter(lambda v: np.linalg.norm(v) > 0.1).map(lambda v: np.asarray(v, dtype=np.float32) / np.linalg.norm(v))
event = st.tuples(st.sampled_from(["view", "like", "reflit", "reply", "hide", "report"]),
                  st.floats(min_value=1.7e9, max_value=1.7e9 + 30 * 86400.0),  # a month of events
                  vectors, st.sampled_from(["a1", "a2", "a3", "a4"]), st.sampled_from([f"f{i}" for i in range(12)]),
                  st.none() | st.integers(0, 60_000))
events = st.lists(event, min_size=1, max_size=25).map(lambda es: [(f"e{i}", *e) for i, e in enumerate(es)])


def run(sequence) -> UserProfile:
    p = UserProfile("u")
    for eid, kind, ts, v, author, flit, dwell in sequence:
        p.learn_one(eid, kind, ts, v, author, flit, BIG, dwell)
    return p


def assert_same(a: UserProfile, b: UserProfile) -> None:
    assert (a.positives, a.negatives) == (b.positives, b.negatives)
    assert a.last_ts == b.last_ts
    assert set(a.seen) == set(b.seen) and set(a.muted_authors) == set(b.muted_authors)
    assert set(a.event_hashes.tolist()) == set(b.event_hashes.tolist())
    scale = max(1.0, float(np.abs(a.taste).max()))
    np.testing.assert_allclose(a.taste, b.taste, atol=1e-4 * scale)


@settings(max_examples=400, deadline=None)
@given(sequence=events, data=st.data())
def test_arrival_order_within_a_user_does_not_matter(sequence, data) -> None:
    shuffled = data.draw(st.permutations(sequence))
    assert_same(run(sequence), run(shuffled))


@settings(max_examples=300, deadline=None)
@given(sequence=events, data=st.data())
def test_duplicates_anywhere_change_nothing(sequence, data) -> None:
    repeats = data.draw(st.lists(st.sampled_from(sequence), max_size=10))
    with_repeats = list(sequence)
    for r in repeats:
        with_repeats.insert(data.draw(st.integers(0, len(with_repeats))), r)
    # A repeat placed before its first copy is the first copy: compare with the de-duplicated order.
    first = list({e[0]: e for e in with_repeats}.values())
    assert_same(run(first), run(with_repeats))
    assert_same(run(sequence), run(with_repeats))


@settings(max_examples=200, deadline=None)
@given(sequence=events)
def test_latest_time_wins_and_a_late_event_is_decayed_by_its_age(sequence) -> None:
    p = run(sequence)
    assert p.last_ts == max(e[2] for e in sequence)
    late = run(sequence + [("late", "like", p.last_ts - 3 * 86400.0, sequence[0][3], "a9", "f99", None)])
    # One half-life older than the latest event: it counts half as much as it would have on time.
    on_time = run(sequence + [("late", "like", p.last_ts, sequence[0][3], "a9", "f99", None)])
    np.testing.assert_allclose(late.taste - p.taste, 0.5 * (on_time.taste - p.taste), atol=1e-4)
