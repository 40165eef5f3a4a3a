"""Embedding drift on real MiniLM embeddings of the demo world's flits, read back from the exported gauges.

A stable topic mix (four of the seven topics) keeps every embedding drift gauge under its threshold; when
the stream switches to the other three topics every gauge crosses its threshold within one window
(``drift_window_size`` = 500 flits). Embeds 1,500 short texts (about 10 s on 2 cores).
"""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from flitfeed.demo.world import DEFAULT_TOPICS, World
from flitfeed.encoders.factory import make_encoder
from flitfeed.monitoring.metrics import Metrics
from flitfeed.monitoring.monitors import WorkerMonitors
from flitfeed.settings import Settings
from flitfeed.streams.embedding import flit_text

SIGNALS = ("embedding_centroid", "embedding_mmd", "embedding_psi")
SETTINGS = Settings(encoder="minilm")  # default windows (500 / 500) and thresholds


def _embedded(topics: tuple[str, ...], n: int, seed: int) -> np.ndarray:
    world = World(seed=seed, topics=topics, start=0.0)
    return make_encoder(SETTINGS.encoder).encode_many([flit_text(f) for f in world.next_flits(n, now=0.0)])


@pytest.fixture(scope="module")
def streams() -> tuple[np.ndarray, np.ndarray]:
    return _embedded(DEFAULT_TOPICS[:4], 1000, seed=1), _embedded(DEFAULT_TOPICS[4:], 500, seed=2)


def _gauges(monitors: WorkerMonitors, metrics: Metrics) -> dict[str, float]:
    monitors.export()
    return {s: metrics.registry.get_sample_value("flitfeed_drift_score", {"service": "worker", "signal": s})
            for s in SIGNALS}


def test_stable_mix_stays_under_and_switched_mix_crosses_within_one_window(streams) -> None:
    stable, switched = streams
    metrics = Metrics("worker", CollectorRegistry())
    monitors = WorkerMonitors(SETTINGS.monitoring, metrics, dim=stable.shape[1])
    monitors.learn_flits(stable[:SETTINGS.monitoring.drift_reference_size + SETTINGS.monitoring.drift_window_size - 1])
    assert all(v is None for v in _gauges(monitors, metrics).values()), "no score before both windows are full"
    threshold = {s: metrics.registry.get_sample_value("flitfeed_drift_threshold",
                                                      {"service": "worker", "signal": s}) for s in SIGNALS}
    assert threshold == {s: getattr(SETTINGS.monitoring, f"drift_threshold_{s}") for s in SIGNALS}
    worst = dict.fromkeys(SIGNALS, 0.0)
    for i, v in enumerate(stable[SETTINGS.monitoring.drift_reference_size + SETTINGS.monitoring.drift_window_size - 1:]):
        monitors.learn_flits(v[None, :])
        if i % 10 == 0:
            for s, value in _gauges(monitors, metrics).items():
                worst[s] = max(worst[s], value)
    assert all(worst[s] < threshold[s] for s in SIGNALS), (worst, threshold)

    crossed: dict[str, int] = {}
    for i, v in enumerate(switched, 1):
        monitors.learn_flits(v[None, :])
        if i % 5 == 0:
            for s, value in _gauges(monitors, metrics).items():
                if value > threshold[s]:
                    crossed.setdefault(s, i)
    assert set(crossed) == set(SIGNALS), f"not every signal crossed: {crossed}"
    assert max(crossed.values()) <= SETTINGS.monitoring.drift_window_size, crossed
    print(f"stable worst {worst}; switched mix crossed after {crossed} flits")
