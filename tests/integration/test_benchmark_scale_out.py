"""The scale-out benchmark's quick mode runs end to end against the real broker (CI keeps it working)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from benchmarks import scale_out

pytestmark = pytest.mark.integration


def test_scale_out_benchmark_quick_mode_measures_one_and_two_processes(broker: str, tmp_path: Path,
                                                                       monkeypatch, capsys,
                                                                       leaves_no_topics: None) -> None:
    monkeypatch.setenv("FLITFEED_BOOTSTRAP_SERVERS", broker)
    out = tmp_path / "scale_out.json"
    # --pin: each replica on a core of its own (the mode the scale-out figures come from).
    assert scale_out.main(["--quick", "--pin", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["benchmark"] == "scale_out" and record["machine"]["cores"] >= 1
    rows = record["rows"]
    assert [r["processes_per_role"] for r in rows] == [1, 2]
    for row in rows:
        for rate in ("flits_embedded_per_s", "interactions_to_state_per_s", "interactions_to_feed_per_s",
                     "requests_to_feed_per_s"):
            assert row[rate] > 0, (rate, row)
        assert row["cores"] == min(row["processes_per_role"], os.cpu_count())
        assert 0 < row["busy_cores_interactions"] <= os.cpu_count() + 0.5, row
    assert "| processes_per_role |" in capsys.readouterr().out
