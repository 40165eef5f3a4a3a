"""The learned ranking in the demo's world, in-process (the services' code on simulated time, real MiniLM).

Issue 14's case, on several seeds: after the demo's script has run, a new user who likes four posts of
one topic, while fans make other topics far more popular, gets at least 4 of their next top 5 from that
topic, and still does once the fans' own feedback has been learned. And what lifts the demo's feeds is
what the model learned, not its prior. The live version of the first runs against the real services
in tests/integration/test_learned_ranking.py.
"""

from __future__ import annotations

import pytest

from flitfeed.demo.simulation import Simulation
from flitfeed.encoders.base import Encoder
from flitfeed.encoders.factory import make_encoder
from flitfeed.settings import EncoderConfig

WARM_UP_S = 75.0


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return make_encoder(EncoderConfig())


@pytest.mark.parametrize("seed", [5, 7, 3])
def test_a_new_users_plain_taste_wins_over_popularity(encoder: Encoder, seed: int) -> None:
    sim = Simulation(seed, encoder=encoder)
    sim.run(WARM_UP_S)
    probe = sim.taste_probe()
    assert probe.top_share >= 0.8, probe
    assert probe.settled_share >= 0.8, probe          # after the fans' examples were learned too
    assert not probe.liked_back and not probe.hidden_author_back, probe


def test_what_lifts_the_demo_is_learned_not_the_prior(encoder: Encoder) -> None:
    last = {}
    for learning in (True, False):
        sim = Simulation(7, encoder=encoder, learning=learning)
        sim.run(WARM_UP_S)
        windows = [w for w in sim.result().windows if w is not None]
        last[learning] = sum(windows[-2:]) / 2
    assert last[True] >= 0.7, last
    assert last[True] >= 2 * last[False], last
