"""With an index shared by every process (a Qdrant server), replicas follow flit-vectors without re-writing it."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from flitfeed.index.factory import is_shared
from flitfeed.kafka.admin import create_topics
from flitfeed.monitoring.metrics import Metrics
from flitfeed.settings import Settings
from flitfeed.streams.topics import TOPIC_FLIT_VECTORS
from flitfeed.streams.events import Flit, FlitVector
from flitfeed.streams.replicator import FlitVectorReplicator
from tests.integration.helpers import Bus
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


class RecordingIndex:
    """Counts the points written to it (the replicator only writes and counts)."""

    def __init__(self) -> None:
        self.written: list[str] = []

    def upsert_many(self, points) -> None:  # noqa: ANN001
        self.written += [p.flit_id for p in points]

    def count(self, approximate: bool = False) -> int:
        return len(self.written)


@pytest.mark.parametrize("qdrant_url, writes", [("http://qdrant:6333", False), ("", True)])
def test_replica_writes_the_index_only_when_it_is_its_own(isolated_settings: Settings, qdrant_url: str,
                                                          writes: bool) -> None:
    settings = isolated_settings.replace(**{"qdrant_url": qdrant_url})
    create_topics(settings.kafka)
    bus = Bus(settings)
    ids = [f"f{i}" for i in range(3)]
    now = datetime.now(timezone.utc)
    for fid in ids:
        record = FlitVector(flit=Flit(flit_id=fid, author_id="a", text="worms", created_at=now),
                            vector=[0.5, 0.5, 0.5, 0.5], model_version="test", embedded_at=now)
        bus.send(TOPIC_FLIT_VECTORS, fid, record.to_bytes())
    index, followed = RecordingIndex(), []
    replicator = FlitVectorReplicator(settings, index, None, Metrics("test"),
                                      on_flit=lambda r: followed.append(r.flit.flit_id),
                                      write_index=not is_shared(settings.index))
    try:
        wait_until(lambda: replicator.poll_once(timeout=0.2) or len(followed) == 3, 30, what="3 flit vectors")
        assert replicator.catch_up(timeout=10)
        assert sorted(followed) == ids  # the ranker's recent-flits view is fed either way (partition order)
        assert sorted(index.written) == (ids if writes else [])
    finally:
        replicator.close()
        bus.close()
