"""Every benchmark's quick mode runs and writes a well-formed result (CI keeps the suite working).

No timing is asserted (figures depend on the machine); what is asserted is what would
break silently: the rows each benchmark must produce and the quality figures it reports
(agreement between encoders, recall of the index), which do not depend on speed.
The end-to-end benchmark needs the broker: tests/integration/test_benchmark_end_to_end.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import embedding, index, ranker, ranker_state, report, user_memory


def run(module, tmp_path: Path, *extra: str) -> dict:  # noqa: ANN001
    out = tmp_path / f"{module.__name__.rsplit('.', 1)[1]}.json"
    assert module.main(["--quick", "--json", str(out), *extra]) == 0
    body = json.loads(out.read_text())
    assert body["settings"]["quick"] is True
    assert {"cpu", "cores", "loadavg", "python"} <= set(body["machine"])
    return body


def test_embedding_quick_reports_every_backend_and_agreement(tmp_path: Path) -> None:
    rows = run(embedding, tmp_path)["rows"]
    assert {(r["backend"], r["batch"]) for r in rows} == {(b, n) for b in embedding.BACKENDS for n in (1, 32)}
    agree = {r["backend"]: r["agree_mean_cos"] for r in rows}
    assert agree["torch"] == pytest.approx(1.0, abs=1e-4)
    assert agree["onnx-fp32"] > 0.9999 and agree["onnx-int8"] >= 0.99
    assert all(r["texts_per_s"] > 0 for r in rows)


def test_index_quick_measures_every_config_with_recall(tmp_path: Path) -> None:
    rows = run(index, tmp_path)["rows"]
    by = {r["config"]: r for r in rows}
    assert set(by) == {"exact-numpy", "edge-unindexed", "edge-hnsw", "edge-hnsw-sq", "edge-hnsw-sq-disk"}
    assert by["edge-hnsw"]["optimize_schedule"] == "inline" and by["edge-hnsw-sq"]["optimize_schedule"] == "process"
    assert by["edge-hnsw-sq"]["swap_pause_ms"] > 0
    # The hashing encoder's duplicate texts make ties, so even exact engines miss a few of numpy's top 10.
    assert all(by[c]["recall@10"] > 0.8 for c in ("edge-unindexed", "edge-hnsw", "edge-hnsw-sq", "edge-hnsw-sq-disk"))
    assert by["edge-hnsw"]["new_flit_searchable_p99_ms"] > 0
    # Searches reference pages of the index's own files (the working-set measurement finds them).
    assert all(by[c]["search_wss_mib_per_1M"] > 0 for c in ("edge-hnsw", "edge-hnsw-sq", "edge-hnsw-sq-disk"))
    # A fresh process opened each closed index and searched it (its memory is measured apart).
    assert all(by[c]["serving_wss_mib_per_1M"] > 0 and by[c]["serving_mib_per_1M"] >= by[c]["serving_wss_mib_per_1M"]
               for c in ("edge-hnsw", "edge-hnsw-sq", "edge-hnsw-sq-disk"))


def test_ranker_quick_reports_throughput_and_every_stage(tmp_path: Path) -> None:
    rows = run(ranker, tmp_path)["rows"]
    heads = {r["pipeline"]: r for r in rows if "pipeline" in r}
    stage_rows = [r for r in rows if "stage" in r]
    # The shipped pipeline (the learned model) in batches, searching the engine instead of the catalogue, one
    # feed at a time, and the former blend, measured in the same run.
    assert set(heads) == {"model", "model, engine search", "model, batch 1", "blend"}
    assert "source:similar" in {r["engine_stage"] for r in rows if "engine_stage" in r}
    assert heads["model"]["batch"] == 32 and heads["model, batch 1"]["batch"] == 1
    assert all(h["feeds"] == 100 and h["feeds_per_s"] > 0 for h in heads.values())
    assert {"source:similar", "source:fresh_popular", "hydrator:similarity", "hydrator:affinity", "filter:seen",
            "scorer:model", "selector:diversity", "publish:serialise"} <= {r["stage"] for r in stage_rows}
    # What no stage timer covers (the pipeline's bookkeeping between stages: concatenating the sources,
    # splitting the batch into feeds) is 3-6% of a quick run's feed since the vector search got cheap.
    assert sum(r["share"] for r in stage_rows) == pytest.approx(1.0, abs=0.1)


def test_user_memory_quick_grows_with_state(tmp_path: Path) -> None:
    rows = run(user_memory, tmp_path)["rows"]
    typical, full = rows
    assert full["worker_table_bytes_per_user"] > typical["worker_table_bytes_per_user"] > 1000
    # The worst case is every bounded list at its capacity (the defaults), in issue 17's 16 KB.
    assert (full["seen"], full["muted"], full["hashes"], full["offsets"], full["waiting"]) == (500, 200, 128, 128, 32)
    assert full["worker_stored_bytes_per_user"] < 16_000 and full["worker_table_bytes_per_user"] < 16_000
    assert typical["ranker_state_bytes_per_user"] > 384 * 4  # at least the taste vector


def test_ranker_state_quick_stores_every_user_and_reports_each_phase(tmp_path: Path) -> None:
    rows = run(ranker_state, tmp_path, "--users", "3000", "--samples", "300", "--cache", "500")["rows"]
    by = {r["phase"]: r for r in rows}
    assert by["write (rebuild from records)"]["users"] == 3000  # the phase asserts the store counts them all
    assert by["write (rebuild from records)"]["disk_bytes_per_user"] > 384 * 4  # at least the taste
    assert by["get, LRU cold"]["samples"] == by["get, LRU warm"]["samples"] == 300
    assert by["memory store (today's ranker)"]["rss_bytes_per_user"] > 0


def test_report_renders_results_into_the_marked_section(tmp_path: Path) -> None:
    run(user_memory, tmp_path, "--users", "200")
    (tmp_path / "user_memory.json").rename(tmp_path / "user_memory-quick.json")
    doc = tmp_path / "B.md"
    doc.write_text("intro\n<!-- results:start -->\nold\n<!-- results:end -->\ntail\n")
    assert report.main([str(tmp_path), "--quick", "--update", str(doc)]) == 0
    text = doc.read_text()
    assert "old" not in text and "#### user_memory" in text and text.endswith("tail\n")
    assert "worker_table_bytes_per_user" in text


def test_report_reads_a_record_written_with_the_older_machine_keys(tmp_path: Path) -> None:
    # benchmarks/results/scale_out.json was written before machine_info() carried the time and load.
    old = {"benchmark": "scale_out", "at": "2026-11-21T03:48:40+00:00", "settings": {"quick": False},
           "machine": {"cpu": "AMD EPYC", "cores": 2, "mem_gib": 23.5, "python": "3.11.7", "torch": "2.13.0",
                       "load_average": [16.28, 14.68, 14.46]},
           "rows": [{"processes_per_role": 1, "flits_embedded_per_s": 23.9}]}
    (tmp_path / "scale_out.json").write_text(json.dumps(old))
    text = report.render(tmp_path)
    assert "Run at 2026-11-21T03:48:40+00:00, load average [16.28, 14.68, 14.46]" in text
    assert "flits_embedded_per_s" in text


def test_report_renders_the_committed_results() -> None:
    """`make bench` ends by rendering every record in benchmarks/results into BENCHMARKS.md: each must be one
    benchmark run (records of several runs, kept for a session's comparisons, live in results/runs/)."""
    results = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
    text = report.render(results)
    for name in ("ranker", "end_to_end", "embedding"):
        assert f"#### {name}\n" in text
