"""Writes an evaluation's results: ``results.json``, ``report.md`` and PNG plots.

>>> import tempfile, json
>>> from flitfeed.evaluation.replay import MethodRun
>>> run = MethodRun("popularity")
>>> run.log.add("1996", dict(hr=1.0, recall=1.0, ndcg=1.0, mrr=1.0, novelty=1.0, diversity=0.0), [0])
>>> run.recommend_s.append(0.001); run.learn_s.append(0.0001)
>>> out = Path(tempfile.mkdtemp())
>>> results = build_results({"popularity": run}, catalog_size=10, shipped="popularity", info={})
>>> write_report(results, {"popularity": run}, out, plots=False)
>>> json.loads((out / "results.json").read_text())["methods"]["popularity"]["hr@10"]
1.0
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from flitfeed.evaluation.replay import MethodRun

log = logging.getLogger(__name__)

#: results.json key → (MetricLog summary key, label in the report)
COLUMNS: dict[str, tuple[str, str]] = {
    "hr@10": ("hr", "HR@10"),
    "recall@10": ("recall", "Recall@10"),
    "ndcg@10": ("ndcg", "NDCG@10"),
    "mrr@10": ("mrr", "MRR@10"),
    "coverage": ("coverage", "coverage"),
    "novelty": ("novelty", "novelty (bits)"),
    "diversity": ("diversity", "intra-list diversity"),
}


def _rounded(x: float) -> float:
    return float(f"{x:.6g}")


def build_results(runs: Mapping[str, MethodRun], catalog_size: int, shipped: str,
                  info: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON-able results: per method the overall metrics, per-window metrics and latencies."""
    methods: dict[str, Any] = {}
    windows: dict[str, Any] = {}
    for name, run in runs.items():
        summary = run.log.summary(catalog_size)
        row = {key: _rounded(summary[src]) for key, (src, _) in COLUMNS.items()}
        row["events_scored"] = int(summary["events"])
        rec = np.asarray(run.recommend_s) * 1000.0
        lrn = np.asarray(run.learn_s) * 1000.0
        row["recommend_ms_mean"] = _rounded(float(rec.mean())) if rec.size else 0.0
        row["recommend_ms_p99"] = _rounded(float(np.percentile(rec, 99))) if rec.size else 0.0
        row["learn_ms_mean"] = _rounded(float(lrn.mean())) if lrn.size else 0.0
        row["shipped_default"] = name == shipped
        methods[name] = row
        windows[name] = {w: {k: _rounded(v) for k, v in vals.items()}
                         for w, vals in run.log.by_window(catalog_size).items()}
    return {"shipped_default": shipped, "methods": methods, "windows": windows, **info}


def rerender(out: Path) -> None:
    """Rewrite ``report.md`` from an existing ``results.json`` (no replay), keeping its plots."""
    results = json.loads((out / "results.json").read_text())
    images = [p for p in ("recall_over_time.png", "recall_per_year.png", "latency.png") if (out / p).exists()]
    (out / "report.md").write_text(render_markdown(results, images))


def write_report(results: Mapping[str, Any], runs: Mapping[str, MethodRun], out: Path, plots: bool = True) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    images = _plots(results, runs, out) if plots else []
    (out / "report.md").write_text(render_markdown(results, images))
    log.info("evaluation written", extra={"out": str(out)})


def render_markdown(results: Mapping[str, Any], images: list[str] | None = None) -> str:
    methods: dict[str, Any] = results["methods"]
    shipped = results["shipped_default"]
    lines = [f"# Streaming evaluation: {results.get('dataset', {}).get('name', 'dataset')}", ""]
    if "command" in results:
        lines += ["Reproduce with:", "", "```sh", results["command"], "```", ""]
    if "protocol_text" in results:
        lines += [results["protocol_text"], ""]
    header = ["method"] + [label for _, label in COLUMNS.values()] + ["scored", "feed ms (mean / p99)"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in methods.items():
        label = f"**{name}** (shipped default)" if name == shipped else name
        cells = [label] + [f"{row[key]:.4f}" for key in COLUMNS] + [
            f"{row['events_scored']:,}", f"{row['recommend_ms_mean']:.2f} / {row['recommend_ms_p99']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if shipped in methods:
        ratios = [f"{name} {methods[shipped]['recall@10'] / row['recall@10']:.2f}×"
                  for name, row in methods.items() if name != shipped and row["recall@10"] > 0]
        lines += ["Shipped default's Recall@10 relative to each method: " + ", ".join(ratios) + ".", ""]
    if results.get("holdout"):
        h = results["holdout"]
        lines += [f"## Out of sample: the positives from event {h['first_event']:,} on", "",
                  "The ranker's defaults were chosen on the events before it (README \"Learning from feedback\").", "",
                  "| method | Recall@10 | NDCG@10 | MRR@10 | scored |", "|---|---|---|---|---|"]
        for name, row in h["methods"].items():
            lines.append(f"| {name} | {row['recall@10']:.4f} | {row['ndcg@10']:.4f} | {row['mrr@10']:.4f} | "
                         f"{row['events_scored']:,} |")
        lines.append("")
    lines += ["HR@10 and Recall@10 coincide here: each test event has exactly one relevant item (the one the "
              "user chose), as in the streaming protocol of takuti/stream-recommender. MRR is cut at 10 (the feed).",
              ""]
    if results.get("windows"):
        years = sorted({w for per in results["windows"].values() for w in per})
        lines += ["## Recall@10 per year", "", "| year | " + " | ".join(methods) + " | scored |",
                  "|" + "---|" * (len(methods) + 2)]
        for y in years:
            cells = [f"{results['windows'][m].get(y, {}).get('recall', 0.0):.4f}" for m in methods]
            n = results["windows"][shipped].get(y, {}).get("events", 0) if shipped in results["windows"] else 0
            lines.append(f"| {y} | " + " | ".join(cells) + f" | {int(n):,} |")
        lines.append("")
    if results.get("stages_ms"):
        lines += ["## Latency of each step (in-process, ms per call)", ""]
        for name, stages in results["stages_ms"].items():
            lines += [f"**{name}**: " + ", ".join(f"{k} {v:.3f}" for k, v in stages.items()), ""]
    for image in images or []:
        lines += [f"![{image}]({image})", ""]
    return "\n".join(lines)


def _save(plt: Any, fig: Any, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


def _plots(results: Mapping[str, Any], runs: Mapping[str, MethodRun], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    written: list[str] = []
    fig, ax = plt.subplots(figsize=(9, 5))
    for name, run in runs.items():
        hr = np.asarray(run.log.values["recall"], dtype=np.float64)
        if hr.size == 0:
            continue
        ax.plot(np.arange(1, hr.size + 1), np.cumsum(hr) / np.arange(1, hr.size + 1), label=name)
    ax.set_xlabel("scored positives (time order)")
    ax.set_ylabel("Recall@10 so far")
    ax.set_title("Prequential Recall@10 over the stream")
    ax.legend()
    ax.grid(alpha=0.3)
    written.append(_save(plt, fig, out, "recall_over_time.png"))

    years = sorted({w for per in results["windows"].values() for w in per})
    fig, ax = plt.subplots(figsize=(9, 5))
    for name, per in results["windows"].items():
        ax.plot(years, [per.get(y, {}).get("recall", np.nan) for y in years], marker="o", label=name)
    ax.set_xlabel("year")
    ax.set_ylabel("Recall@10")
    ax.set_title("Recall@10 per year")
    ax.tick_params(axis="x", rotation=60)
    ax.legend()
    ax.grid(alpha=0.3)
    written.append(_save(plt, fig, out, "recall_per_year.png"))

    fig, ax = plt.subplots(figsize=(9, 5))
    labels, values = [], []
    for name, row in results["methods"].items():
        labels += [f"{name}\nrecommend", f"{name}\nlearn"]
        values += [row["recommend_ms_mean"], row["learn_ms_mean"]]
    for name, stages in (results.get("stages_ms") or {}).items():
        for stage, ms in stages.items():
            labels.append(f"{name}\n{stage}")
            values.append(ms)
    ax.barh(labels, values)
    ax.set_xlabel("ms per call (mean)")
    ax.set_title("Latency of each step")
    ax.tick_params(axis="y", labelsize=6)
    fig.set_size_inches(9, max(5, 0.22 * len(labels)))
    written.append(_save(plt, fig, out, "latency.png"))
    return written
