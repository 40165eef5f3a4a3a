"""The server backend against a real Qdrant server (v1.19.0, ``tests/qdrant_server.py``), not local mode.

The whole index contract suite of ``tests/unit/test_index.py`` runs again here on a real server, then what
only a real server does: keep the collection across a restart, check the API key, speak TLS signed by a
private CA. Skipped, saying where it looked, where the binary is absent.
"""

from __future__ import annotations

import logging
import threading
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from qdrant_client import QdrantClient, models

from flitfeed.index import IndexError_, VectorIndex
from flitfeed.index.base import IndexUnreachable
from flitfeed.index.server import ServerIndex
from flitfeed.settings import Settings
from flitfeed.startup import DependencyUnavailable
from tests.qdrant_server import QdrantServer, Tls, qdrant_server, qdrant_tls  # noqa: F401 - fixtures
from tests.unit import test_index as contract
from tests.waiting import wait_until
from tests.unit.test_index import DIM, assert_same_ranking, corpus, filled, make_flits, queries  # noqa: F401

pytestmark = pytest.mark.integration

SECRET = "hunter2-Zq8x"

# Every contract test of the unit suite, collected here a second time with ``index`` below.
globals().update({name: getattr(contract, name) for name in dir(contract)
                  if name.startswith("test_contract_") or name == "test_only_the_embedded_engine_is_maintained_by_its_process"})


def drop(server: QdrantServer, collection: str, **client_kwargs: object) -> None:
    client = QdrantClient(url=server.url, **client_kwargs)  # type: ignore[arg-type]
    try:
        client.delete_collection(collection)
    finally:
        client.close()


@pytest.fixture(scope="module")
def contract_collection(qdrant_server: QdrantServer) -> Iterator[str]:  # noqa: F811
    """One collection for the contract tests (creating one takes ~0.5 s); emptied after each test."""
    name = f"contract-{uuid.uuid4().hex[:8]}"
    ServerIndex(qdrant_server.url, name, DIM).close()
    yield name
    drop(qdrant_server, name)


@pytest.fixture
def index(qdrant_server: QdrantServer, contract_collection: str) -> Iterator[VectorIndex]:  # noqa: F811
    """A :class:`ServerIndex` by URL, as the services open it, on an empty collection."""
    idx = ServerIndex(qdrant_server.url, contract_collection, DIM)
    yield idx
    idx.close()
    client = QdrantClient(url=qdrant_server.url)
    try:
        client.delete(contract_collection, points_selector=models.FilterSelector(filter=models.Filter()), wait=True)
        assert client.count(contract_collection, exact=True).count == 0
    finally:
        client.close()


# ------------------------------------------------------------------------------------- a real server only

def test_collection_is_created_with_payload_indexes(qdrant_server: QdrantServer) -> None:  # noqa: F811
    name = f"schema-{uuid.uuid4().hex[:8]}"
    ServerIndex(qdrant_server.url, name, DIM).close()
    client = QdrantClient(url=qdrant_server.url)
    try:
        info = client.get_collection(name)
        assert set(info.payload_schema) == {"author", "created_at"}
        assert info.config.params.vectors.size == DIM
    finally:
        client.delete_collection(name)
        client.close()


def test_second_opener_of_same_collection_shares_it_and_other_dim_is_refused(
        qdrant_server: QdrantServer) -> None:  # noqa: F811
    name = f"shared-{uuid.uuid4().hex[:8]}"
    flits = make_flits(20)
    with ServerIndex(qdrant_server.url, name, DIM) as writer, ServerIndex(qdrant_server.url, name, DIM) as reader:
        writer.upsert_many(flits)
        assert reader.count() == 20  # written with wait=True: visible to another client at once
        assert_same_ranking(reader, flits, queries(1)[0], 5)
    with pytest.raises(IndexError_, match=f"{DIM}-d"):
        ServerIndex(qdrant_server.url, name, 8)
    drop(qdrant_server, name)


def test_points_survive_a_server_restart_and_the_client_reconnects(tmp_path: Path) -> None:
    flits = make_flits(300)
    with QdrantServer(tmp_path / "q") as server, ServerIndex(server.url, "flits", DIM) as idx:
        idx.upsert_many(flits[:200])
        server.restart()  # SIGTERM: the WAL is flushed, the same ports come back
        assert idx.count() == 200  # the same client, a new connection
        idx.upsert_many(flits[200:])
        server.restart(kill=True)  # SIGKILL: acknowledged (wait=True) writes are in the WAL
        assert idx.count() == 300
        for q in queries(3):
            assert_same_ranking(idx, flits, q, 10)


def test_a_stopped_server_is_reported_unreachable_not_broken(tmp_path: Path) -> None:
    """Start-up waits out IndexUnreachable (and only that); an open index retries it, then gives up with it."""
    with QdrantServer(tmp_path / "q") as server:
        idx = ServerIndex(server.url, "flits", DIM, timeout=5, unreachable_retry_s=0)
        server.stop()
        with pytest.raises(IndexUnreachable, match=f"cannot reach Qdrant server at {server.url}"):
            idx.count()
        with pytest.raises(IndexUnreachable):
            idx.search(queries(1)[0], 5)
        with pytest.raises(IndexUnreachable):
            ServerIndex(server.url, "flits", DIM)
        idx.close()


def test_an_open_index_waits_for_a_restarting_server_and_counts_its_retries(tmp_path: Path) -> None:
    flits = make_flits(50)
    with QdrantServer(tmp_path / "q") as server:
        idx = ServerIndex(server.url, "flits", DIM, timeout=5, unreachable_retry_s=60)
        idx.upsert_many(flits[:25])
        server.stop()
        outcome: dict[str, object] = {}

        def write_while_down() -> None:
            try:
                idx.upsert_many(flits[25:])
                outcome["count"] = idx.count()
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                outcome["error"] = exc

        writer = threading.Thread(target=write_while_down)
        writer.start()
        wait_until(lambda: idx.retries > 0, 30, what="the index to retry the stopped server")
        server.start()
        writer.join(90)
        assert not writer.is_alive()
        assert outcome == {"count": 50}
        assert idx.retries > 0
        assert_same_ranking(idx, flits, queries(1)[0], 10)
        idx.close()


def test_a_service_started_before_its_server_waits_for_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Start-up (``open_service_index``, as the worker and ranker open their index) waits for a server that
    is not up yet, within ``STARTUP_TIMEOUT_S``, and opens the index once it answers."""
    from flitfeed.cli import open_service_index

    server = QdrantServer(tmp_path / "q")  # ports chosen, not started yet
    s = Settings(qdrant_url=server.url, startup_timeout_s=120, data_dir=tmp_path / "data", collection="late")
    opened: dict[str, object] = {}

    def start_service() -> None:
        try:
            opened["index"] = open_service_index(s, "ranker", DIM)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            opened["error"] = exc

    service = threading.Thread(target=start_service)
    service.start()
    try:
        caplog.set_level(logging.INFO, logger="flitfeed.startup")
        wait_until(lambda: any(r.getMessage() == "waiting for dependency" for r in caplog.records), 30,
                   what="start-up to log that it waits for the server")
        server.start()
        service.join(120)
        assert not service.is_alive() and "error" not in opened, opened
        index = opened["index"]
        assert isinstance(index, ServerIndex) and index.count() == 0
        index.close()
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------- API key

@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QdrantServer]:
    with QdrantServer(tmp_path_factory.mktemp("qdrant-key"), api_key=SECRET) as server:
        yield server


def test_api_key_enforced_by_the_server(keyed_server: QdrantServer) -> None:
    with ServerIndex(keyed_server.url, "keyed", DIM, api_key=SECRET) as idx:
        idx.upsert_many(make_flits(5))
        assert idx.count() == 5
    for wrong in ("not-the-key", None):
        with pytest.raises(IndexError_) as info:
            ServerIndex(keyed_server.url, "keyed", DIM, api_key=wrong)
        message = str(info.value)
        assert not isinstance(info.value, IndexUnreachable), "a refused key is not worth waiting for"
        assert "API key" in message and keyed_server.url in message, message
        assert SECRET not in message and "not-the-key" not in message


def test_ranker_with_a_wrong_api_key_exits_at_start_up_with_one_clear_line(keyed_server: QdrantServer,
                                                                          tmp_path: Path) -> None:
    """At once (not retried until the start-up bound), as the error a service exits with in one line (status 2).

    ``open_service_index`` is how the worker and the ranker open their index; the whole process, with a
    broker, is checked in test_qdrant_services.py.
    """
    from flitfeed.cli import open_service_index

    s = Settings(qdrant_url=keyed_server.url, qdrant_api_key="not-the-key", startup_timeout_s=30,
                 data_dir=tmp_path)
    with pytest.raises(DependencyUnavailable) as info:
        open_service_index(s, "ranker", DIM)
    message = str(info.value)
    assert f"Qdrant server at {keyed_server.url}" in message and "API key" in message, message
    assert "attempts" not in message, "a refused key must not be retried until the start-up bound"
    assert "not-the-key" not in message


# ---------------------------------------------------------------------------------------------- TLS

@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, qdrant_tls: Tls) -> Iterator[QdrantServer]:  # noqa: F811
    with QdrantServer(tmp_path_factory.mktemp("qdrant-tls-server"), api_key=SECRET, tls=qdrant_tls) as server:
        yield server


def test_tls_with_a_private_ca_and_the_api_key(tls_server: QdrantServer, qdrant_tls: Tls) -> None:  # noqa: F811
    assert tls_server.url.startswith("https://")
    from flitfeed.index.factory import open_index

    s = Settings(qdrant_url=tls_server.url, qdrant_api_key=SECRET, qdrant_ca_file=qdrant_tls.ca,
                 collection="tls")
    flits = make_flits(30)
    with open_index(s.index, DIM, data_dir=s.data_dir) as idx:
        idx.upsert_many(flits)
        assert idx.count() == 30
        assert_same_ranking(idx, flits, queries(1)[0], 5)


def test_tls_server_not_trusted_without_its_ca(tls_server: QdrantServer) -> None:
    """Without the private CA the certificate is refused: an error naming TLS, never a plaintext fallback."""
    with pytest.raises(IndexError_) as info:
        ServerIndex(tls_server.url, "tls", DIM, api_key=SECRET, timeout=5)
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value) or "certificate" in str(info.value).lower()
    assert SECRET not in str(info.value)


def test_tls_with_a_wrong_key_is_refused_and_the_key_is_not_shown(tls_server: QdrantServer,
                                                                   qdrant_tls: Tls) -> None:  # noqa: F811
    with pytest.raises(IndexError_) as info:
        ServerIndex(tls_server.url, "tls", DIM, api_key="not-the-key", ca_file=qdrant_tls.ca)
    assert "API key" in str(info.value)
    assert "not-the-key" not in str(info.value) and SECRET not in str(info.value)


def test_index_benchmark_measures_the_server_beside_edge(tmp_path: Path) -> None:
    """``benchmarks.index --qdrant-server`` (BENCHMARKS.md, issue 17) at a tiny size: both rows, real recall."""
    import json

    from benchmarks import index as bench
    from tests.qdrant_server import qdrant_binary_or_skip

    qdrant_binary_or_skip()
    out = tmp_path / "index-server-quick.json"
    assert bench.main(["--quick", "--flits", "600", "--configs", "edge-hnsw", "--qdrant-server", "--json", str(out)]) == 0
    rows = {r["config"]: r for r in json.loads(out.read_text())["rows"]}
    assert {"edge-hnsw", "qdrant-server"} <= set(rows)
    server = rows["qdrant-server"]
    assert server["upserts_per_s"] > 0 and server["search_p99_ms"] >= server["search_p50_ms"] > 0
    assert server["recall@10"] > 0.8
    assert server["disk_mib_per_1M"] > 0  # the collection folder of the server this run started
