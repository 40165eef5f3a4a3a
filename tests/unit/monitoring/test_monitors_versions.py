"""The drift monitors across an embedding version switch: vectors of another space are left out, never raised.

A batch embedded just before a switch reaches the new space's monitors (a switch to a 256-d model crashed the
embedding agent in a loop and dead-lettered interactions before this)."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry

from flitfeed.monitoring.metrics import Metrics
from flitfeed.monitoring.monitors import WorkerMonitors
from flitfeed.settings import MonitoringConfig


def test_vectors_of_another_dimension_are_left_out_of_a_spaces_drift() -> None:
    metrics = Metrics("worker", registry=CollectorRegistry())
    monitors = WorkerMonitors(MonitoringConfig(drift_reference_size=3, drift_window_size=3), metrics, dim=4)
    monitors.learn_flits(np.ones((2, 3), dtype=np.float32))
    monitors.learn_taste(np.ones(3, dtype=np.float32) / np.sqrt(3), np.ones(4, dtype=np.float32) / 2)
    assert monitors.embedding._n_reference == 0
    assert metrics.user_moves.labels(service="worker")._value.get() == 0
    # Its own space's vectors are learned as before.
    monitors.learn_flits(np.eye(4, dtype=np.float32)[:2])
    monitors.learn_taste(np.eye(4, dtype=np.float32)[0], np.eye(4, dtype=np.float32)[1])
    assert monitors.embedding._n_reference == 2
    assert metrics.user_moves.labels(service="worker")._value.get() == 1
