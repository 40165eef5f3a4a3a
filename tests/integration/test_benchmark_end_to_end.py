"""The end-to-end benchmark's quick mode runs against the real broker and measures what it claims."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import end_to_end

pytestmark = pytest.mark.integration


def test_end_to_end_quick_measures_feeds_and_freshness(broker: str, tmp_path: Path, leaves_no_topics: None) -> None:
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
    # The load generator's own cores are part of the rest of the machine's (with the broker's).
    assert 0 < row["bench_cores"] <= row["other_cores"] + 0.05


def test_hops_quick_splits_every_feeds_latency_into_the_worker_and_the_ranker(broker: str, tmp_path: Path,
                                                                             leaves_no_topics: None) -> None:
    from benchmarks import hops

    out = tmp_path / "hops.json"
    assert hops.main(["--quick", "--bootstrap", broker, "--json", str(out)]) == 0
    rows = {row["hop"]: row for row in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"worker", "ranker", "total"}
    assert all(row["n"] == 20 for row in rows.values())  # every like got its state and its feed
    assert 0 < rows["worker"]["p50_ms"] < rows["total"]["max_ms"] and rows["ranker"]["p50_ms"] >= 0


def test_state_scale_quick_restarts_a_rocksdb_worker_from_its_files(broker: str, tmp_path: Path,
                                                                     leaves_no_topics: None) -> None:
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


def test_ranker_state_service_quick_restarts_a_whole_ranker_from_its_rocksdb_users(
        broker: str, tmp_path: Path, leaves_no_topics: None) -> None:
    from benchmarks import ranker_state

    out = tmp_path / "ranker.json"
    assert ranker_state.main(["--service", "--quick", "--users", "2000", "--flits", "500", "--requests", "300",
                              "--bootstrap", broker, "--json", str(out)]) == 0
    rows = {row["start"]: row for row in json.loads(out.read_text())["rows"]}
    first, restart = rows["first start (empty data dir)"], rows["restart after kill -9"]
    # A first start rebuilds every user from the topic; the restart reads none of them again, and holds all.
    assert first["records_applied"] == 2000 and first["users_in_state"] == 2000 and first["state_disk_mib"] > 0
    assert restart["records_applied"] == 0 and restart["users_in_state"] == 2000
    served = rows["serving feed requests (random users)"]
    assert served["requests"] == 300 and served["cold_starts"] == 0  # every requested user's state was found
    assert first["rss_mib"] > 0 and served["peak_rss_mib"] > 0
