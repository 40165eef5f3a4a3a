"""The learned ranking in the demo's world, in-process (the services' code on simulated time, real MiniLM).

Issue 14's case, on several seeds: after the demo's script has run, a new user who likes four posts of
one topic, while fans make other topics far more popular, gets at least 4 of their next top 5 from that
topic, and still does once the fans' own feedback has been learned. And what lifts the demo's feeds is
what the model learned, not its prior. The live version of the first runs against the real services
in tests/integration/test_learned_ranking.py.
"""

from __future__ import annotations

from typing import Callable

import pytest

from flitfeed.demo.simulation import Simulation
from flitfeed.encoders.base import Encoder
from flitfeed.encoders.factory import make_encoder
from flitfeed.settings import EncoderConfig

WARM_UP_S = 75.0


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return make_encoder(EncoderConfig())


@pytest.fixture(scope="module")
def warmed(encoder: Encoder) -> Callable[[int, bool], tuple[Simulation, list[float]]]:
    """A simulation after the demo's script (built once per seed and mode), with its match per window
    as it stood then (the taste probe goes on from the same simulation)."""
    cache: dict[tuple[int, bool], tuple[Simulation, list[float]]] = {}

    def get(seed: int, learning: bool = True) -> tuple[Simulation, list[float]]:
        if (seed, learning) not in cache:
            sim = Simulation(seed, encoder=encoder, learning=learning)
            sim.run(WARM_UP_S)
            cache[seed, learning] = sim, [w for w in sim.result().windows if w is not None]
        return cache[seed, learning]

    return get


@pytest.mark.parametrize("seed", [5, 7, 3])
def test_a_new_users_plain_taste_wins_over_popularity(warmed: Callable, seed: int) -> None:
    sim, _ = warmed(seed)
    probe = sim.taste_probe()
    assert probe.top_share >= 0.8, probe
    assert probe.settled_share >= 0.8, probe          # after the fans' examples were learned too
    assert not probe.liked_back and not probe.hidden_author_back, probe


def test_what_lifts_the_demo_is_learned_not_the_prior(warmed: Callable) -> None:
    """On two seeds: with learning, the last windows' match is high and well above the prior's alone.

    One seed's trajectory is chaotic (a last-digit difference in a score, from another CPU's float
    kernels, changes which flits simulated birds see), so the margin is asserted per seed in absolute
    terms and as a ratio over both seeds. Seed 7 alone, asserted at 2x before, failed on an AVX2-only
    AMD EPYC (0.75 learned against 0.43 for the prior) with every dependency at its pin; seed 5 there:
    0.90 against 0.35.
    """
    last = {(seed, learning): sum(warmed(seed, learning)[1][-2:]) / 2 for seed in (5, 7) for learning in (True, False)}
    for seed in (5, 7):
        assert last[seed, True] >= 0.7, last
        assert last[seed, True] >= last[seed, False] + 0.25, last
    learned = sum(last[seed, True] for seed in (5, 7))
    prior = sum(last[seed, False] for seed in (5, 7))
    assert learned >= 1.8 * prior, last
