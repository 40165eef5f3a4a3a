"""The worker's side of the flit-vector replicator keeps its blocking Kafka calls off the event loop.

The ranker's synchronous :class:`FlitVectorReplicator` is tested against the real broker
(``tests/integration/test_index_rebuild.py``, ``test_shared_index_replica.py``).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from flitfeed.streams.replicator import AsyncFlitVectorReplicator

#: How long a blocked call waits to be released before giving up (then the test fails).
RELEASE_WITHIN_S = 10.0


class BlockingReplicator:
    """Stands in for :class:`FlitVectorReplicator`: each Kafka call blocks its thread until released."""

    def __init__(self) -> None:
        self.blocked = threading.Event()
        self.release = threading.Event()
        self.calls: list[tuple[str, int]] = []  # (call, thread id), in the order they started
        self.in_flight: str | None = None
        self.overlapped: list[tuple[str, str]] = []
        self.timed_out: list[str] = []
        self.caught_up = False

    def block(self, call: str) -> None:
        if self.in_flight is not None:
            self.overlapped.append((self.in_flight, call))
        self.in_flight = call
        self.calls.append((call, threading.get_ident()))
        self.blocked.set()
        if not self.release.wait(RELEASE_WITHIN_S):
            self.timed_out.append(call)
        self.release.clear()
        self.in_flight = None

    def fetch_many(self, max_messages: int, timeout: float) -> list[Any]:
        self.block("fetch")
        return ["record"] * 3

    def apply_many(self, messages: list[Any]) -> int:
        self.calls.append(("apply", threading.get_ident()))
        self.caught_up = True
        return len(messages)

    def close(self) -> None:
        self.block("close")

    def opened(self) -> "BlockingReplicator":
        self.block("open")  # the constructor's metadata request, retried while the broker starts
        return self


async def release_from_the_loop(fake: BlockingReplicator) -> None:
    """Releases every blocked call -- which it can only do while the event loop runs."""
    while True:
        if fake.blocked.is_set():
            fake.blocked.clear()
            fake.release.set()
        await asyncio.sleep(0.01)


def test_blocking_kafka_calls_run_off_the_loop_and_the_index_is_written_on_it() -> None:
    fake = BlockingReplicator()

    async def scenario() -> tuple[int, bool, int]:
        releaser = asyncio.ensure_future(release_from_the_loop(fake))
        try:
            replica = await AsyncFlitVectorReplicator.open(fake.opened)  # type: ignore[arg-type]
            before = replica.caught_up
            applied = await replica.poll_once(timeout=0.05)
            await replica.close()
        finally:
            releaser.cancel()
        return applied, before, threading.get_ident()

    applied, caught_up_before, loop_thread = asyncio.run(scenario())
    assert fake.timed_out == [], "a blocking call held the event loop"
    assert (applied, caught_up_before, fake.caught_up) == (3, False, True)
    assert [call for call, _ in fake.calls] == ["open", "fetch", "apply", "close"]
    threads = dict(fake.calls)
    assert threads["apply"] == loop_thread, "the index is written from the loop's thread, as the agents write it"
    assert threads["open"] == threads["fetch"] == threads["close"] != loop_thread


def test_close_waits_for_a_fetch_still_under_way() -> None:
    fake = BlockingReplicator()

    async def scenario() -> None:
        releaser = asyncio.ensure_future(release_from_the_loop(fake))
        replica = await AsyncFlitVectorReplicator.open(fake.opened)  # type: ignore[arg-type]
        releaser.cancel()
        fetching = asyncio.ensure_future(replica.poll_once(timeout=0.05))
        await asyncio.wait_for(asyncio.to_thread(fake.blocked.wait, RELEASE_WITHIN_S), RELEASE_WITHIN_S + 1)
        fake.blocked.clear()
        fetching.cancel()  # the worker stops while a fetch blocks the replicator's thread
        closing = asyncio.ensure_future(replica.close())
        await asyncio.sleep(0)  # close hands its call to the replicator's thread
        fake.release.set()  # the fetch returns; then close may use the consumer
        await asyncio.wait_for(asyncio.to_thread(fake.blocked.wait, RELEASE_WITHIN_S), RELEASE_WITHIN_S + 1)
        fake.release.set()
        await asyncio.wait_for(closing, RELEASE_WITHIN_S)

    asyncio.run(scenario())
    assert fake.overlapped == [], "close used the consumer while a fetch was under way"
    assert [call for call, _ in fake.calls] == ["open", "fetch", "close"]
    assert fake.timed_out == []


# --- decoding the log: bounded, a bad record is skipped ------------------------------------------------------
class Message:
    """A consumed ``flit-vectors`` record as confluent-kafka hands it over."""

    def __init__(self, offset: int, value: bytes, key: bytes | None = None, instance: bytes | None = None) -> None:
        self._offset, self._value, self._key, self._instance = offset, value, key, instance

    def headers(self) -> list[tuple[str, bytes]] | None:
        return None if self._instance is None else [("flitfeed-instance", self._instance)]

    def error(self) -> None:
        return None

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes:
        return self._value

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset


class RecordingIndex:
    def __init__(self) -> None:
        self.points: list[Any] = []

    def upsert_many(self, points: list[Any]) -> None:
        self.points += points

    def count(self, approximate: bool = False) -> int:
        return len(self.points)


def replica_without_kafka(index: RecordingIndex, serving: str | None = None, offsets_path: Any = None,
                          born: dict[int, int] | None = None) -> Any:
    """A :class:`FlitVectorReplicator` whose consumer was never opened: only :meth:`apply_many` is used."""
    from prometheus_client import CollectorRegistry

    from flitfeed.index.versions import VersionGate
    from flitfeed.monitoring.metrics import Metrics
    from flitfeed.streams.replicator import FlitVectorReplicator

    replica = FlitVectorReplicator.__new__(FlitVectorReplicator)
    replica.__dict__.update(_topic="flit-vectors", _index=index, _write_index=True, _on_flit=None,
                            _offsets_path=offsets_path, _saved_at=0.0, _at_end=set(), _n_partitions=1,
                            _metrics=Metrics("worker", registry=CollectorRegistry()), gate=VersionGate(serving),
                            _instance=b"worker-1", _born=born or {})
    replica._applied = replica._load_offsets()
    return replica


def vector_record(flit_id: str, version: str, vector: list[float]) -> bytes:
    from datetime import datetime, timezone

    from flitfeed.streams.events import Flit, FlitVector

    return FlitVector(flit=Flit(flit_id=flit_id, author_id="a", text="worms", created_at=0), vector=vector,
                      model_version=version, embedded_at=datetime.now(timezone.utc)).to_bytes()


def test_vectors_of_another_version_never_enter_the_index(tmp_path: Any) -> None:
    """A re-embedded version's records (keyed ``flit|tag``) and a worker on another model are kept out and
    counted; the version served is stored with the offsets, so a restart serves the same one."""
    from flitfeed.index.versions import vector_key
    from flitfeed.streams.replicator import stored_version

    offsets = tmp_path / "ranker.offsets.json"
    index = RecordingIndex()
    replica = replica_without_kafka(index, offsets_path=offsets)
    messages = [Message(0, vector_record("f1", "new@2", [0.0, 1.0]), key=vector_key("f1", "new@2")),
                Message(1, vector_record("f1", "live@1", [1.0, 0.0]), key=b"f1"),
                Message(2, vector_record("f2", "new@2", [0.0, 1.0]), key=vector_key("f2", "new@2")),
                Message(3, vector_record("f3", "other@3", [0.5, 0.5]), key=b"f3"),
                Message(4, vector_record("f2", "live@1", [1.0, 0.0]), key=b"f2")]
    assert replica.apply_many(messages) == 2
    assert [(p.flit_id, p.vector.tolist()) for p in index.points] == [("f1", [1.0, 0.0]), ("f2", [1.0, 0.0])]
    assert replica._metrics.value("flitfeed_index_vectors_skipped_total", service="worker",
                                  reason="other_version") == 3
    assert replica.position() == {0: 5}
    replica._save_offsets(force=True)
    assert stored_version(offsets) == "live@1"
    restarted = replica_without_kafka(RecordingIndex(), offsets_path=offsets)
    assert restarted.gate.serving == "live@1" and restarted.position() == {0: 5}


def test_a_replica_of_a_fixed_version_replays_offsets_stored_by_another(tmp_path: Any) -> None:
    import json

    offsets = tmp_path / "worker.offsets.json"
    offsets.write_text(json.dumps({"version": "old@1", "offsets": {"0": 7}}))
    assert replica_without_kafka(RecordingIndex(), serving="new@2", offsets_path=offsets).position() == {}
    offsets.write_text(json.dumps({"0": 7}))  # written before versions
    legacy = replica_without_kafka(RecordingIndex(), serving="new@2", offsets_path=offsets)
    assert legacy.position() == {0: 7} and legacy.gate.serving == "new@2"


def test_undecodable_flit_vector_records_are_skipped_and_the_rest_applied() -> None:
    import json
    from datetime import datetime, timezone

    from flitfeed.streams.events import Flit, FlitVector
    from flitfeed.streams.topics import INTERNAL_MAX_BYTES

    good = FlitVector(flit=Flit(flit_id="f1", author_id="a", text="worms", created_at=0), vector=[1.0, 0.0],
                      model_version="m", embedded_at=datetime.now(timezone.utc)).to_bytes()
    newer_version = json.dumps({**json.loads(good), "v": 2}).encode()
    oversized = good[:-1] + b', "pad": "' + b"x" * INTERNAL_MAX_BYTES + b'"}'
    index = RecordingIndex()
    replica = replica_without_kafka(index)
    written = replica.apply_many([Message(0, b"{not json"), Message(1, newer_version), Message(2, oversized),
                                  Message(3, b'{"flit": {}}'), Message(4, good)])
    assert written == 1 and [p.flit_id for p in index.points] == ["f1"]
    assert replica.position() == {0: 5}


def test_a_flit_this_process_embedded_is_written_to_its_index_once() -> None:
    """The embedding agent wrote it; the replica skips it. An earlier life's records (before the log end at
    start-up) are applied: the index may have been rebuilt since."""
    index = RecordingIndex()
    replica = replica_without_kafka(index, born={0: 2})
    messages = [Message(0, vector_record("old-own", "m", [1.0, 0.0]), key=b"old-own", instance=b"worker-1"),
                Message(1, vector_record("other", "m", [1.0, 0.0]), key=b"other", instance=b"worker-2"),
                Message(2, vector_record("own", "m", [1.0, 0.0]), key=b"own", instance=b"worker-1"),
                Message(3, vector_record("other-2", "m", [1.0, 0.0]), key=b"other-2", instance=b"worker-2")]
    assert replica.apply_many(messages) == 3
    assert [p.flit_id for p in index.points] == ["old-own", "other", "other-2"]
    assert replica.position() == {0: 4}


def test_a_dropped_versions_tombstones_advance_the_replica_quietly(caplog: Any) -> None:
    """``flitfeed versions drop`` deletes a version's records with tombstones: a replica reads past them (a
    worker's sweep waits for its replica to reach the log's end), and they are not undecodable records."""
    index = RecordingIndex()
    replica = replica_without_kafka(index)
    with caplog.at_level("ERROR"):
        written = replica.apply_many([Message(0, None, key=b"f1|0a1b2c3d"),  # type: ignore[arg-type]
                                      Message(1, vector_record("f2", "m", [1.0, 0.0]), key=b"f2")])
    assert written == 1 and replica.position() == {0: 2}
    assert not [r for r in caplog.records if "undecodable" in r.getMessage()]


def test_only_the_replica_of_the_version_served_reports_the_index_figures() -> None:
    served, other = replica_without_kafka(RecordingIndex()), replica_without_kafka(RecordingIndex())
    other._metrics = served._metrics
    other.reports = False
    other.apply_many([Message(0, vector_record("f1", "m", [1.0, 0.0]), key=b"f1")])
    assert served._metrics.value("flitfeed_index_points", service="worker") == 0
    served.apply_many([Message(0, vector_record("f1", "m", [1.0, 0.0]), key=b"f1"),
                       Message(1, vector_record("f2", "m", [1.0, 0.0]), key=b"f2")])
    assert served._metrics.value("flitfeed_index_points", service="worker") == 2
