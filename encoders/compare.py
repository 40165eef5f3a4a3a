"""Compare two embedding models on the latest flits of the log: ``flitfeed versions compare``.

Before the worker switches to another model, an operator wants to know what the switch changes. This
reads the newest ``--recent`` flits of the ``flits`` topic (the log is the source of truth: no index,
no service needed), embeds them in-process with both models and prints them side by side::

    flitfeed versions compare --model static                       # the live encoder (FLITFEED_ENCODER) vs static
    flitfeed versions compare --model static --against minilm:torch --recent 5000 --k 10
    flitfeed versions compare --model static --dataset ../data/ml-latest-small --events 3000 --json cmp.json

``old`` is ``--against`` (default: the configured, live encoder), ``new`` is ``--model``; both take a
model spec (``minilm[:onnx-int8|onnx-fp32|torch]``, ``static``, ``hashing`` or a sentence-transformers
directory, see :mod:`flitfeed.encoders.factory`). The figures (README "Comparing embedding versions"):

* **between the two spaces** — the vectors have different dimensions and bases, so only what is
  invariant to those is compared: the overlap of each flit's ``k`` nearest neighbours among the recent
  flits (:func:`topk_overlap`: the feeds' ``similar`` source is a nearest-neighbour search, so this is
  the share of a user's content candidates that stay), the rank correlation of pairwise cosines
  (:func:`pairwise_similarity_correlation`) and linear CKA (:func:`linear_cka`);
* **per space** — spread (:func:`similarity_spread`: mean and sd of pairwise cosines, mean cosine of
  the k nearest: the scale of the ranker's similarity feature), and what the worker's drift monitor
  reports (:func:`stream_drift`, :class:`~flitfeed.monitoring.drift.EmbeddingDrift`, oldest against
  newest recent flits) with its thresholds, which were chosen on MiniLM;
* **speed** — texts/s at the worker's batch size (:func:`timed_encode`), and load time;
* **quality** — with ``--dataset``, the streaming evaluation (:func:`flitfeed.evaluation.run.evaluate`)
  of the embedding-dependent methods (``content``, ``flitfeed``) with each model on the same slice.

Exit 2 with one line when a model spec is bad, the topic holds no flits or the dataset folder is not
there; progress goes to stderr, the table to stdout, ``--json FILE`` gets every figure.

>>> rng = np.random.default_rng(0)
>>> a = rng.normal(size=(200, 16))
>>> rotation, _ = np.linalg.qr(rng.normal(size=(16, 16)))
>>> topk_overlap(a, a @ rotation, 5)["mean"]             # a rotation keeps every neighbourhood
1.0
>>> round(linear_cka(a, a @ rotation), 6)
1.0
>>> topk_overlap(a, rng.normal(size=(200, 16)), 5)["mean"] < 0.2
True
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, TextIO

import numpy as np

from flitfeed.encoders.base import l2_normalise
from flitfeed.kafka.reading import read_partition, watermarks
from flitfeed.progress import Progress
from flitfeed.settings import EncoderConfig, MonitoringConfig, Settings
from flitfeed.streams.topics import TOPIC_FLITS

__all__ = ["LogSample", "linear_cka", "nearest_neighbours", "pairwise_similarity_correlation",
           "read_recent_flits", "run_compare", "similarity_spread", "stream_drift", "tail_ranges",
           "timed_encode", "topk_overlap", "verdict"]

#: Exit status of a refusal (the same as a bad model spec or a missing dependency: flitfeed.startup).
EXIT_REFUSED = 2
#: The streaming-evaluation methods whose ranking depends on the embeddings (the others ignore them).
EVAL_METHODS = ("content", "flitfeed")
EVAL_METRICS = ("hr@10", "recall@10", "ndcg@10", "mrr@10")
#: Similarities are compared at this resolution when picking neighbours, so near-equal cosines
#: (duplicate texts, float noise of another basis) tie exactly and the tie goes to the older flit in
#: both spaces, instead of to whichever rounding error is larger.
_SIM_RESOLUTION = 1e6


# --------------------------------------------------------------------------------------------------------
# Pure functions (numpy): what is compared


def nearest_neighbours(vectors: np.ndarray, k: int, block: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` nearest other rows by cosine: ``(indices, cosines)``, each ``(n, k)``, nearest first.

    Exact, O(n² · dim): the recent flits are thousands. Computed ``block`` rows at a time (default: as
    many as keep a block to 2²⁴ similarities, ~200 MB with its keys, at most 1024) so memory stays
    bounded for any ``--recent``. Ties (at :data:`_SIM_RESOLUTION`) go to the lower index.

    >>> idx, sims = nearest_neighbours(np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]), 1)
    >>> idx.ravel().tolist()
    [1, 0, 1]
    """
    v = l2_normalise(vectors)
    n = len(v)
    if not 1 <= k < n:
        raise ValueError(f"k must be between 1 and n - 1 = {n - 1}, got {k}")
    block = block or max(1, min(1024, 2**24 // n))
    idx = np.empty((n, k), dtype=np.int64)
    sims = np.empty((n, k), dtype=np.float32)
    # Integer keys: quantised similarity first, then the lower index; argpartition on them is exact.
    tie = (n - 1 - np.arange(n, dtype=np.int64))[None, :]
    for s in range(0, n, block):
        e = min(n, s + block)
        s_block = v[s:e] @ v.T
        key = np.rint(s_block.astype(np.float64) * _SIM_RESOLUTION).astype(np.int64) * n + tie
        rows = np.arange(e - s)
        key[rows, s + rows] = np.iinfo(np.int64).min + 1  # a flit is not its own neighbour (+1: -key must not overflow)
        part = np.argpartition(-key, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(key, part, axis=1), axis=1)
        idx[s:e] = np.take_along_axis(part, order, axis=1)
        sims[s:e] = np.take_along_axis(s_block, idx[s:e], axis=1)
    return idx, sims


def _distribution(values: np.ndarray) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "p10": float(np.percentile(values, 10)),
            "p50": float(np.percentile(values, 50)), "p90": float(np.percentile(values, 90))}


def overlap_of_neighbours(idx_a: np.ndarray, idx_b: np.ndarray) -> np.ndarray:
    """Per row, the share of ``idx_a``'s neighbours that are also in ``idx_b``'s (``k`` each).

    >>> overlap_of_neighbours(np.array([[1, 2], [0, 2]]), np.array([[2, 1], [1, 2]])).tolist()
    [1.0, 0.5]
    """
    k = idx_a.shape[1]
    common = (idx_a[:, :, None] == idx_b[:, None, :]).any(axis=2).sum(axis=1)
    return common / k


def topk_overlap(a: np.ndarray, b: np.ndarray, k: int) -> dict[str, float]:
    """How far two spaces agree on each item's ``k`` nearest neighbours (among the same items).

    ``a`` and ``b`` embed the same rows (any dimensions). Per row: overlap@k = |N_a ∩ N_b| / k and
    Jaccard = |N_a ∩ N_b| / |N_a ∪ N_b|. Returns the mean overlap with its p10/p50/p90 over rows,
    the mean Jaccard, and ``none``: the share of rows that keep none of their neighbours.
    1 for identical spaces and for any rotation or rescaling of one; ≈ k / n for unrelated ones.
    """
    if len(a) != len(b):
        raise ValueError(f"the two spaces embed different items: {len(a)} != {len(b)} rows")
    idx_a, _ = nearest_neighbours(a, k)
    idx_b, _ = nearest_neighbours(b, k)
    return _overlap_stats(idx_a, idx_b)


def _overlap_stats(idx_a: np.ndarray, idx_b: np.ndarray) -> dict[str, float]:
    n, k = idx_a.shape
    per_row = overlap_of_neighbours(idx_a, idx_b)
    common = per_row * k
    return {**_distribution(per_row), "jaccard": float(np.mean(common / (2 * k - common))),
            "none": float(np.mean(common == 0)), "k": k, "n": n}


def _pair_sample(n: int, sample: int, seed: int) -> np.ndarray:
    """At most ``sample`` row indices, chosen once (the same rows in both spaces), sorted."""
    if n <= sample:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=sample, replace=False))


def _pairwise_cosines(vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    v = l2_normalise(vectors)[rows].astype(np.float64)
    upper = np.triu_indices(len(rows), k=1)
    return (v @ v.T)[upper]


def pairwise_similarity_correlation(a: np.ndarray, b: np.ndarray, sample: int = 1000,
                                    seed: int = 0) -> dict[str, float]:
    """Do the two spaces order pairs of items alike? Spearman and Pearson correlation of the cosines
    of every pair among ``sample`` items (the same items in both; ``sample`` = 1000 is 499,500 pairs).

    Works across dimensions; 1 for identical or rotated spaces, ≈ 0 for unrelated ones.

    >>> x = np.random.default_rng(1).normal(size=(50, 4))
    >>> pairwise_similarity_correlation(x, x * 3.0)["spearman"]
    1.0
    """
    from scipy.stats import spearmanr

    if len(a) != len(b):
        raise ValueError(f"the two spaces embed different items: {len(a)} != {len(b)} rows")
    rows = _pair_sample(len(a), sample, seed)
    ca, cb = _pairwise_cosines(a, rows), _pairwise_cosines(b, rows)
    if ca.size < 2 or np.ptp(ca) == 0 or np.ptp(cb) == 0:
        return {"spearman": float("nan"), "pearson": float("nan"), "pairs": int(ca.size)}
    return {"spearman": round(float(spearmanr(ca, cb).statistic), 12),
            "pearson": round(float(np.corrcoef(ca, cb)[0, 1]), 12), "pairs": int(ca.size)}


def linear_cka(a: np.ndarray, b: np.ndarray) -> float:
    """Linear centred kernel alignment of two embeddings of the same rows (Kornblith et al., 2019).

    ``‖Bᵀ A‖²_F / (‖Aᵀ A‖_F ‖Bᵀ B‖_F)`` on column-centred unit rows: a similarity of the two spaces'
    whole geometry that works across dimensions, 1 for a rotation or rescaling of the same space,
    near 0 for unrelated spaces (about ``√(d_a d_b) / n`` for random ones).
    """
    x = l2_normalise(a).astype(np.float64)
    y = l2_normalise(b).astype(np.float64)
    x -= x.mean(axis=0)
    y -= y.mean(axis=0)
    denom = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    if denom == 0.0:
        return float("nan")
    return float(np.linalg.norm(y.T @ x) ** 2 / denom)


def similarity_spread(vectors: np.ndarray, neighbour_cosines: np.ndarray | None = None, sample: int = 1000,
                      seed: int = 0) -> dict[str, float]:
    """One space's spread: mean and sd of pairwise cosines (a high mean = anisotropic, every vector in
    one cone; the sd is the contrast left between near and far), and the mean cosine of the nearest
    neighbours when given (the scale of the ranker's similarity feature and of the feeds' top score).

    >>> round(similarity_spread(np.eye(3))["mean_cosine"], 3)
    0.0
    """
    cos = _pairwise_cosines(vectors, _pair_sample(len(vectors), sample, seed))
    out = {"mean_cosine": float(cos.mean()) if cos.size else float("nan"),
           "cosine_sd": float(cos.std()) if cos.size else float("nan")}
    if neighbour_cosines is not None:
        out["mean_topk_cosine"] = float(np.mean(neighbour_cosines))
    return out


def stream_drift(vectors: np.ndarray, reference_size: int, window_size: int, projections: int = 16,
                 bins: int = 10, seed: int = 0) -> dict[str, Any]:
    """What the worker's drift monitor would report on these vectors (oldest first): the first
    ``reference_size`` as its reference window, the last ``window_size`` as its current window.

    Both windows shrink to half the rows when there are fewer than both sizes together (so they never
    overlap). Returns ``{}`` below 4 rows.

    >>> rng = np.random.default_rng(0)
    >>> d = stream_drift(rng.normal(loc=1.0, size=(400, 8)), 200, 200)
    >>> d["embedding_centroid"] < 0.05 and d["reference"] == d["window"] == 200
    True
    """
    from flitfeed.monitoring.drift import EmbeddingDrift

    v = np.asarray(vectors, dtype=np.float32)
    n = len(v)
    if n < 4:
        return {}
    ref, win = reference_size, window_size
    if ref + win > n:
        ref = min(reference_size, n // 2)
        win = min(window_size, n - ref)
    drift = EmbeddingDrift(v.shape[1], reference_size=ref, window_size=win, projections=projections,
                           bins=bins, seed=seed)
    drift.learn_many(v[:ref])
    drift.learn_many(v[n - win:])
    return {**drift.scores(), "reference": ref, "window": win}


def tail_ranges(ranges: dict[int, tuple[int, int]], n: int) -> dict[int, tuple[int, int]]:
    """The newest ``n`` offsets across partitions, shared in proportion to each partition's records.

    ``ranges``: partition → (low, high) watermarks. Returns partition → (start, high) for the
    partitions that give something; largest remainders get the leftover offsets.

    >>> tail_ranges({0: (0, 100), 1: (50, 100), 2: (7, 7)}, 30)
    {0: (80, 100), 1: (90, 100)}
    >>> tail_ranges({0: (0, 3), 1: (0, 2)}, 10)
    {0: (0, 3), 1: (0, 2)}
    """
    sizes = {p: max(0, high - low) for p, (low, high) in ranges.items()}
    total = sum(sizes.values())
    if total <= n:
        return {p: ranges[p] for p, size in sizes.items() if size}
    exact = {p: n * size / total for p, size in sizes.items()}
    take = {p: int(math.floor(x)) for p, x in exact.items()}
    for p in sorted(exact, key=lambda p: (take[p] - exact[p], p))[: n - sum(take.values())]:
        take[p] += 1
    return {p: (ranges[p][1] - t, ranges[p][1]) for p, t in sorted(take.items()) if t}


def timed_encode(encoder: Any, texts: Sequence[str], batch_size: int,
                 progress: "Progress | None" = None) -> tuple[np.ndarray, float]:
    """Embed ``texts`` in batches of ``batch_size``; returns ``(vectors, texts per second)``.

    One batch is embedded first, untimed (a model's first run allocates and tunes), then every text
    is embedded once, timed: the speed is that of a warm worker embedding batches of that size.
    """
    if not texts:
        return np.zeros((0, encoder.dim), dtype=np.float32), float("nan")
    encoder.encode_many(list(texts[:batch_size]))
    parts = []
    began = time.perf_counter()
    for s in range(0, len(texts), batch_size):
        parts.append(np.asarray(encoder.encode_many(list(texts[s:s + batch_size])), dtype=np.float32))
        if progress is not None:
            progress.update(min(len(texts), s + batch_size))
    seconds = time.perf_counter() - began
    if progress is not None:
        progress.finish()
    return np.concatenate(parts), len(texts) / seconds if seconds > 0 else float("inf")


# --------------------------------------------------------------------------------------------------------
# Status on stderr (progress lines: flitfeed/progress.py)


def say(line: str) -> None:
    """A status line on stderr (the table alone goes to stdout)."""
    print(line, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------------
# Reading the latest flits of the log


@dataclass
class LogSample:
    """The latest flits read from the log (oldest first by ``created_at``) and where they came from."""

    topic: str
    flits: list[Any] = field(default_factory=list)
    ranges: dict[int, tuple[int, int]] = field(default_factory=dict)
    records: int = 0
    #: Records the worker would reject (dead-lettered): not embedded, not compared.
    rejected: int = 0
    #: Older versions of a flit re-sent in the sample (the index keeps the last one).
    superseded: int = 0


def read_recent_flits(settings: Settings, n: int, progress_stream: TextIO | None = None) -> LogSample:
    """The newest ``n`` records of the ``flits`` topic (newest by offset per partition, in proportion to
    each partition's size), decoded and checked as the worker does, oldest first by ``created_at``."""
    from flitfeed.streams.events import decode_flit
    from flitfeed.streams.events import DecodeError

    topic = settings.kafka.topic(TOPIC_FLITS)
    sample = LogSample(topic=topic, ranges=tail_ranges(watermarks(settings.kafka, topic), n))
    total = sum(high - start for start, high in sample.ranges.values())
    progress = Progress(f"reading {topic}", total, progress_stream, unit="records")
    latest: dict[str, tuple[Any, int, int]] = {}
    now = time.time()
    for p, (start, high) in sample.ranges.items():
        for m in read_partition(settings.kafka, topic, p, start=start, until=high, timeout_s=120,
                                group_id=f"{settings.kafka.app_id}-versions-compare-unused"):
            offset, value = m.offset(), m.value()
            sample.records += 1
            progress.update(sample.records)
            try:
                flit = decode_flit(value, now=now, limits=settings.events)
            except DecodeError:
                sample.rejected += 1
                continue
            if flit.flit_id in latest:
                sample.superseded += 1
            # A flit is keyed by its id, so its versions share a partition: the higher offset is the last.
            latest[flit.flit_id] = (flit, p, offset)
    progress.finish()
    sample.flits = [f for f, _, _ in sorted(latest.values(), key=lambda r: (r[0].created_at, r[1], r[2]))]
    return sample


# --------------------------------------------------------------------------------------------------------
# The comparison


@dataclass
class Side:
    """One model of the comparison, loaded, with its vectors of the sample."""

    role: str
    spec: str
    encoder: Any
    load_s: float
    vectors: np.ndarray | None = None
    texts_per_s: float = float("nan")


def _load(role: str, spec: str, cfg: EncoderConfig) -> Side:
    from flitfeed.encoders.factory import encoder_for_spec

    say(f"loading the {role} model: {spec}")
    began = time.perf_counter()
    encoder = encoder_for_spec(spec, cfg)
    return Side(role, spec, encoder, time.perf_counter() - began)


def _refuse(line: str) -> int:
    print(f"flitfeed versions compare: {line}", file=sys.stderr, flush=True)
    return EXIT_REFUSED


def _evaluate_both(sides: Sequence[Side], dataset: Path, events: int | None,
                   settings: Settings) -> dict[str, Any]:
    """The streaming evaluation with each model, same slice, same methods; paired differences."""
    from flitfeed.evaluation.run import evaluate

    out: dict[str, Any] = {"dataset": str(dataset), "events": events, "methods": list(EVAL_METHODS)}
    per_event: dict[str, dict[str, list[float]]] = {}
    for side in sides:
        # evaluate() reports progress only every 10,000 events: say what runs, and how long the last one took.
        say(f"streaming evaluation with the {side.role} model ({side.encoder.model_version}) on {dataset}"
            + (f", {events:,} events" if events else ", every event")
            + (f" (the old model's took {out['old']['seconds']:.0f} s)" if "old" in out else ""))
        began = time.perf_counter()
        results, runs = evaluate(dataset, None, events=events, methods=EVAL_METHODS, settings=settings,
                                 encoder=side.encoder, plots=False)
        out[side.role] = {m: {key: results["methods"][m][key] for key in (*EVAL_METRICS, "events_scored")}
                          for m in EVAL_METHODS}
        out[side.role]["seconds"] = round(time.perf_counter() - began, 1)
        out.setdefault("scored_events", results["methods"][EVAL_METHODS[-1]]["events_scored"])
        per_event[side.role] = {m: list(runs[m].log.values.get("ndcg", [])) for m in EVAL_METHODS}
    # Both models are scored on the same positives in the same order, so the difference is paired:
    # its standard error says whether a gap is more than this slice's noise.
    out["ndcg@10_difference"] = {}
    for m in EVAL_METHODS:
        old, new = np.asarray(per_event["old"][m]), np.asarray(per_event["new"][m])
        if len(old) == len(new) and len(old) > 1:
            diff = new - old
            out["ndcg@10_difference"][m] = {"mean": float(diff.mean()),
                                            "se": float(diff.std(ddof=1) / math.sqrt(len(diff)))}
    return out


def verdict(report: dict[str, Any]) -> str:
    """The one-paragraph reading of a report: neighbourhoods, speed, quality, what a switch needs.

    >>> verdict({"k": 10, "between": {"overlap": {"mean": 0.42}}, "old": {"dim": 384, "texts_per_s": 500.0},
    ...          "new": {"dim": 256, "texts_per_s": 20000.0}})  # doctest: +NORMALIZE_WHITESPACE
    'neighbour overlap@10 0.42: the new model reorders neighbourhoods substantially; speed 40.0× (500 → 20,000
    texts/s); 384-d → 256-d: FLITFEED_VECTOR_DIM=256 and a re-embedded index are needed'
    """
    k = report["k"]
    overlap = report["between"]["overlap"]["mean"]
    if overlap >= 0.999:
        reading = "the same neighbourhoods"
    elif overlap >= 0.8:
        reading = "the new model keeps most neighbourhoods"
    elif overlap >= 0.5:
        reading = "the new model reorders neighbourhoods partly"
    else:
        reading = "the new model reorders neighbourhoods substantially"
    parts = [f"neighbour overlap@{k} {overlap:.2f}: {reading}"]
    old, new = report["old"], report["new"]
    if old.get("texts_per_s") and new.get("texts_per_s") and math.isfinite(old["texts_per_s"]) \
            and math.isfinite(new["texts_per_s"]):
        parts.append(f"speed {new['texts_per_s'] / old['texts_per_s']:.1f}× ({old['texts_per_s']:,.0f} → "
                     f"{new['texts_per_s']:,.0f} texts/s)")
    evaluation = report.get("evaluation")
    if evaluation:
        # The shipped method first: it is what users get; content-only shows the embeddings' own share.
        moves = []
        for m in reversed(EVAL_METHODS):
            a, b = evaluation["old"][m]["ndcg@10"], evaluation["new"][m]["ndcg@10"]
            diff = evaluation.get("ndcg@10_difference", {}).get(m)
            noise = ""
            if diff and diff["se"] > 0:
                noise = " (within this slice's noise)" if abs(diff["mean"]) < 2 * diff["se"] else \
                    (" (better beyond noise)" if diff["mean"] > 0 else " (worse beyond noise)")
            moves.append(f"{m} {a:.4f} → {b:.4f}{noise}")
        parts.append("evaluation NDCG@10 " + ", ".join(moves))
    alerts = [name for name in ("embedding_centroid", "embedding_mmd", "embedding_psi")
              if new.get("drift", {}).get(name, {}).get("alert") and not old.get("drift", {}).get(name, {}).get("alert")]
    if alerts:
        parts.append(f"the drift monitor would alert on this traffic with the new model ({', '.join(alerts)}; "
                     "thresholds chosen on MiniLM)")
    if old["dim"] != new["dim"]:
        parts.append(f"{old['dim']}-d → {new['dim']}-d: FLITFEED_VECTOR_DIM={new['dim']} and a re-embedded "
                     "index are needed")
    return "; ".join(parts)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def render_table(report: dict[str, Any]) -> str:
    """The side-by-side table (old | new), then what is between them, then the verdict."""
    old, new, k = report["old"], report["new"], report["k"]
    rows: list[tuple[str, str, str]] = [
        ("model", old["model_version"], new["model_version"]),
        ("spec", old["spec"], new["spec"]),
        ("dimension", _fmt(old["dim"]), _fmt(new["dim"])),
        ("load (s)", _fmt(old["load_s"], 2), _fmt(new["load_s"], 2)),
        (f"speed (texts/s, batch {report['batch_size']})", _fmt(old["texts_per_s"], 0), _fmt(new["texts_per_s"], 0)),
        ("mean pairwise cosine", _fmt(old["spread"]["mean_cosine"]), _fmt(new["spread"]["mean_cosine"])),
        ("pairwise cosine sd", _fmt(old["spread"]["cosine_sd"]), _fmt(new["spread"]["cosine_sd"])),
        (f"mean cosine of the {k} nearest", _fmt(old["spread"]["mean_topk_cosine"]),
         _fmt(new["spread"]["mean_topk_cosine"])),
    ]
    for name, label in (("embedding_centroid", "drift centroid"), ("embedding_mmd", "drift MMD²"),
                        ("embedding_psi", "drift PSI")):
        a, b = old["drift"].get(name), new["drift"].get(name)
        if a is None or b is None:
            continue
        flag = lambda d: _fmt(d["value"], 4) + (" ALERT" if d["alert"] else "")  # noqa: E731
        rows.append((f"{label} (alert > {a['threshold']:g})", flag(a), flag(b)))
    evaluation = report.get("evaluation")
    if evaluation:
        for m in EVAL_METHODS:
            for key, label in (("hr@10", "HR@10 = Recall@10"), ("ndcg@10", "NDCG@10"), ("mrr@10", "MRR@10")):
                rows.append((f"eval {m} {label}", _fmt(evaluation["old"][m][key], 4),
                             _fmt(evaluation["new"][m][key], 4)))
    width0 = max(len(r[0]) for r in rows)
    width1 = max(len("old" + (" (live)" if report["old_is_live"] else "")), *(len(r[1]) for r in rows))
    header = ("", "old" + (" (live)" if report["old_is_live"] else ""), "new")
    lines = [f"{header[0]:<{width0}}  {header[1]:<{width1}}  {header[2]}"]
    lines += [f"{a:<{width0}}  {b:<{width1}}  {c}" for a, b, c in rows]
    between = report["between"]
    ov, corr = between["overlap"], between["pairwise_similarity"]
    lines += ["", "between the two",
              f"  neighbour overlap@{k}: mean {ov['mean']:.3f} (p10 {ov['p10']:.2f}, p50 {ov['p50']:.2f}, "
              f"p90 {ov['p90']:.2f}); Jaccard {ov['jaccard']:.3f}; none kept {ov['none']:.1%}",
              f"  pairwise cosines: Spearman {_fmt(corr['spearman'])}, Pearson {_fmt(corr['pearson'])} "
              f"({corr['pairs']:,} pairs)",
              f"  linear CKA: {_fmt(between['cka'])}"]
    if evaluation:
        lines.append(f"  evaluation: {evaluation['scored_events']:,} scored positives of "
                     f"{Path(evaluation['dataset']).name}" + (f" (first {evaluation['events']:,} events)"
                                                             if evaluation["events"] else ""))
    lines += ["", f"verdict: {report['verdict']}"]
    return "\n".join(lines)


def compare_vectors(a: np.ndarray, b: np.ndarray, k: int, monitoring: MonitoringConfig) -> tuple[dict, dict, dict]:
    """Everything computed from the two embeddings of the sample: (between, old per-space, new per-space)."""
    idx_a, sims_a = nearest_neighbours(a, k)
    idx_b, sims_b = nearest_neighbours(b, k)
    between = {"overlap": _overlap_stats(idx_a, idx_b), "pairwise_similarity": pairwise_similarity_correlation(a, b),
               "cka": linear_cka(a, b)}
    from flitfeed.monitoring.monitors import drift_thresholds

    # The drift monitor's own thresholds (one mapping from the settings: monitors.drift_thresholds).
    limits = drift_thresholds(monitoring)
    thresholds = {name: getattr(limits, name) for name in ("embedding_centroid", "embedding_mmd", "embedding_psi")}

    def per_space(v: np.ndarray, sims: np.ndarray) -> dict[str, Any]:
        drift = stream_drift(v, monitoring.drift_reference_size, monitoring.drift_window_size,
                             monitoring.drift_projections, monitoring.drift_bins)
        windows = {"reference": drift.pop("reference", 0), "window": drift.pop("window", 0)}
        return {"spread": similarity_spread(v, sims),
                "drift": {name: {"value": value, "threshold": thresholds[name], "alert": value > thresholds[name]}
                          for name, value in drift.items()},
                "drift_windows": windows}

    return between, per_space(a, sims_a), per_space(b, sims_b)


def run_compare(args: argparse.Namespace, settings: Settings, stdout: TextIO | None = None) -> int:
    """``flitfeed versions compare``: returns the exit code (0, or 2 after one line on stderr)."""
    from flitfeed.encoders.factory import encoder_dim, model_spec_of, parse_model_spec
    from flitfeed.streams.embedding import flit_text

    stdout = stdout if stdout is not None else sys.stdout
    old_is_live = args.against is None
    old_spec = model_spec_of(settings.encoder) if old_is_live else args.against
    # Every refusal comes before anything slow (reading the log, loading a model).
    if old_is_live:
        encoder_dim(settings.encoder)  # an unknown FLITFEED_ENCODER: EncoderConfigError, one line, exit 2
    parse_model_spec(old_spec)
    parse_model_spec(args.model)
    if args.recent < 2:
        return _refuse(f"--recent must be at least 2 (got {args.recent})")
    if args.k < 1:
        return _refuse(f"--k must be at least 1 (got {args.k})")
    if args.dataset is not None and not all((args.dataset / name).is_file() for name in ("movies.csv", "ratings.csv")):
        return _refuse(f"--dataset {args.dataset} is not a MovieLens-shaped folder (movies.csv and ratings.csv)")

    try:
        sample = read_recent_flits(settings, args.recent)
    except TimeoutError as exc:  # the broker answered, then stopped delivering: one line, not a traceback
        return _refuse(f"cannot read the latest flits: {exc}")
    if len(sample.flits) < 2:
        what = "no flits" if not sample.flits else "only one flit"
        return _refuse(f"{what} in {sample.topic} on {settings.kafka.bootstrap_servers} ({sample.records} records read, "
                       f"{sample.rejected} rejected): nothing to compare on")
    k = min(args.k, len(sample.flits) - 1)
    if k != args.k:
        say(f"only {len(sample.flits)} flits: comparing {k} nearest neighbours instead of {args.k}")
    texts = [flit_text(f) for f in sample.flits]

    sides = [_load("old", old_spec, settings.encoder), _load("new", args.model, settings.encoder)]
    batch = settings.encoder.encoder_batch_size
    for side in sides:
        progress = Progress(f"embedding with the {side.role} model ({side.encoder.model_version})", len(texts),
                            unit="texts")
        side.vectors, side.texts_per_s = timed_encode(side.encoder, texts, batch, progress)

    say("comparing the two spaces")
    between, old_space, new_space = compare_vectors(sides[0].vectors, sides[1].vectors, k, settings.monitoring)
    created = [f.created_at for f in sample.flits]
    report: dict[str, Any] = {
        "flits": {"topic": sample.topic, "count": len(sample.flits), "records": sample.records,
                  "rejected": sample.rejected, "superseded": sample.superseded,
                  "partitions": {str(p): list(r) for p, r in sample.ranges.items()},
                  "created_from": min(created).isoformat(timespec="seconds"),
                  "created_to": max(created).isoformat(timespec="seconds")},
        "k": k, "batch_size": batch, "old_is_live": old_is_live,
        # Speeds depend on the machine and on what else runs on it: both are said with the figures.
        "machine": {"cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2)},
    }
    for side, space in zip(sides, (old_space, new_space)):
        report[side.role] = {"spec": side.spec, "model_version": side.encoder.model_version, "dim": side.encoder.dim,
                             "load_s": round(side.load_s, 3), "texts_per_s": side.texts_per_s, **space}
    report["between"] = between
    if args.dataset is not None:
        report["evaluation"] = _evaluate_both(sides, args.dataset, args.events, settings)
    report["verdict"] = verdict(report)

    f = report["flits"]
    print(f"{f['count']:,} latest flits of {f['topic']} ({f['created_from']} – {f['created_to']}; "
          f"{f['rejected']:,} rejected records skipped), k={k}; {report['machine']['cpus']} CPUs, load average "
          f"{report['machine']['load_average_1m']:g}", file=stdout)
    print(render_table(report), file=stdout, flush=True)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(_jsonable(report), indent=2, allow_nan=False) + "\n")
        say(f"figures written to {args.json}")
    return 0


def _jsonable(value: Any) -> Any:
    """The report as strict JSON: numpy scalars as Python numbers, NaN (a figure with no value) as null."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    return value
