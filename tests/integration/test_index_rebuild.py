"""Rebuilding a live replica's HNSW graph off-process: nothing written meanwhile is lost.

The replica keeps applying the flit-vector log while a child process optimizes a copy;
after the swap it rewinds to the copy's log position and re-applies what came later.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from flitfeed.index.edge import EdgeIndex
from flitfeed.index.edge_optimizer import IndexRebuilder
from flitfeed.kafka.admin import create_topics
from flitfeed.monitoring.metrics import Metrics
from flitfeed.settings import Settings
from flitfeed.streams.topics import TOPIC_FLIT_VECTORS
from flitfeed.streams.events import Flit, FlitVector
from flitfeed.streams.replicator import FlitVectorReplicator
from tests.integration.helpers import Bus
from tests.waiting import wait_until

pytestmark = pytest.mark.integration
DIM = 8


def record(i: int) -> FlitVector:
    v = np.random.default_rng(i).standard_normal(DIM).astype(np.float32)
    flit = Flit(flit_id=f"f{i}", author_id=f"a{i % 7}", text=f"flit {i}", created_at=datetime.now(timezone.utc))
    return FlitVector(flit=flit, vector=(v / np.linalg.norm(v)).tolist(), model_version="test",
                      embedded_at=datetime.now(timezone.utc))


def test_rebuild_swaps_in_an_indexed_copy_and_replays_what_came_after(isolated_settings: Settings,
                                                                      tmp_path: Path) -> None:
    settings = isolated_settings.replace(**{"partitions": 2})
    create_topics(settings.kafka)
    bus = Bus(settings)
    index = EdgeIndex(tmp_path / "ranker", DIM, indexing_threshold_kb=1)
    replicator = FlitVectorReplicator(settings, index, tmp_path / "ranker.offsets.json", Metrics("ranker"))
    rebuilder = IndexRebuilder(index, replicator.position, replicator.rewind, min_unindexed=100, interval_s=0.0,
                               indexing_threshold_kb=1)
    try:
        for i in range(300):
            bus.send(TOPIC_FLIT_VECTORS, f"f{i}", record(i).to_bytes())

        def applied(n: int):  # noqa: ANN202
            return lambda: replicator.poll_once(timeout=0.1) >= 0 and index.count() >= n

        wait_until(applied(300), 60, what="300 flits replicated")
        assert index.unindexed_count() >= 100
        assert rebuilder.poll() == "started"
        # Written while the child indexes the copy: not in the copy, must survive the swap.
        for i in range(300, 320):
            bus.send(TOPIC_FLIT_VECTORS, f"f{i}", record(i).to_bytes())
        wait_until(applied(320), 60, what="20 more flits replicated during the rebuild")
        assert rebuilder.wait(timeout=120) == "swapped"
        assert index.count() == 300  # the copy, taken before the last 20
        wait_until(applied(320), 60, what="the rewind to re-apply the last 20")
        assert index.unindexed_count() <= 20  # the graph covers what was copied
        probe = record(310)
        assert index.search(np.asarray(probe.vector, dtype=np.float32), 1)[0].flit_id == "f310"
    finally:
        rebuilder.close()
        replicator.close()
        index.close()
        bus.close()
