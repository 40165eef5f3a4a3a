"""The end-to-end benchmark's quick mode runs against the real broker and measures what it claims."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import end_to_end

pytestmark = pytest.mark.integration


def test_end_to_end_quick_measures_feeds_and_freshness(broker: str, tmp_path: Path) -> None:
    out = tmp_path / "e2e.json"
    assert end_to_end.main(["--quick", "--bootstrap", broker, "--json", str(out)]) == 0
    body = json.loads(out.read_text())
    (row,) = body["rows"]
    # Feeds came back for (nearly) every interaction sent, so the latencies describe real feeds.
    assert row["sent_per_s"] > 0 and row["feeds_delivered"] > 0.9
    assert row["feed_p50_ms"] > 0 and row["feed_p99_ms"] >= row["feed_p50_ms"]
    assert row["flits_per_s"] > 0 and row["flit_logged_p50_ms"] > 0
    assert row["flit_searchable_p99_le_s"] is not None  # the ranker's replica indexed the live flits
    assert body["settings"]["setup"]["replicated_s"] >= 0


def test_hops_quick_splits_every_feeds_latency_into_the_worker_and_the_ranker(broker: str, tmp_path: Path) -> None:
    from benchmarks import hops

    out = tmp_path / "hops.json"
    assert hops.main(["--quick", "--bootstrap", broker, "--json", str(out)]) == 0
    rows = {row["hop"]: row for row in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"worker", "ranker", "total"}
    assert all(row["n"] == 20 for row in rows.values())  # every like got its state and its feed
    assert 0 < rows["worker"]["p50_ms"] < rows["total"]["max_ms"] and rows["ranker"]["p50_ms"] >= 0


def test_state_scale_quick_restarts_a_rocksdb_worker_from_its_files(broker: str, tmp_path: Path) -> None:
    from benchmarks import state_scale

    out = tmp_path / "state.json"
    assert state_scale.main(["--quick", "--users", "2000", "--stores", "rocksdb,memory", "--bootstrap", broker,
                             "--json", str(out)]) == 0
    rows = {(row["store"], row["users"], row["start"]): row for row in json.loads(out.read_text())["rows"]}
    first = rows[("rocksdb", 2000, "first start (empty data dir)")]
    # A first start reads every profile; a restart on RocksDB reads none of them again (no new records).
    assert first["records_applied"] == 2000 and first["disk_mib"] > 0
    for start in ("restart after kill -9", "restart after SIGTERM"):
        assert rows[("rocksdb", 2000, start)]["records_applied"] == 0
        assert rows[("memory", 2000, start)]["records_applied"] == 2000
