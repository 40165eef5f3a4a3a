"""Embedding throughput and latency by batch size, per encoder backend, with agreement to torch.

``python -m benchmarks.embedding [--quick] [--json PATH] [--backends torch,onnx-fp32,onnx-int8]``

For every backend and batch size: texts/s over the whole set (encoded in
batches of that size, one ``encode_many`` call per batch, as the worker's
``embed_flits`` agent does) and the p50/p99 latency of one batch. Agreement:
the cosine between each backend's vector and torch's for the same text (mean
and min over the set); the issue's bar is a mean ≥ 0.99. Texts are flits of the
demo world (~20 tokens), as in production.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from benchmarks.common import Timer, bench_parser, percentiles, print_table, setup_logging, world_texts, write_json

BACKENDS = ("torch", "onnx-fp32", "onnx-int8")


def make(backend: str, batch_size: int):  # noqa: ANN201 - an Encoder
    from flitfeed.encoders.factory import make_encoder
    from flitfeed.settings import Settings

    return make_encoder(Settings(encoder="minilm", encoder_backend=backend, encoder_batch_size=batch_size))


def measure(encoder: Any, texts: list[str], batch: int) -> dict[str, Any]:
    encoder.encode_many(texts[:batch])  # warm-up: first-call allocations, lazy init
    latencies = []
    with Timer() as total:
        for start in range(0, len(texts), batch):
            t0 = time.perf_counter()
            encoder.encode_many(texts[start : start + batch])
            latencies.append(time.perf_counter() - t0)
    return {"texts_per_s": round(len(texts) / total.seconds, 1), **percentiles(latencies)}


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(BACKENDS))
    args = parser.parse_args(argv)
    setup_logging()
    backends = [b for b in args.backends.split(",") if b]
    n = 64 if args.quick else 1024
    batches = (1, 32) if args.quick else (1, 8, 32, 128)
    texts = world_texts(n, seed=5)
    rows: list[dict[str, Any]] = []
    reference: np.ndarray | None = None
    for backend in backends:
        with Timer() as load:
            encoder = make(backend, batch_size=max(batches))
        vectors = encoder.encode_many(texts)
        if reference is None and backend == "torch":
            reference = vectors
        cos = (vectors * reference).sum(axis=1) if reference is not None else None
        for batch in batches:
            # Batch 1 is slow by nature; a slice keeps the run short without changing the figure.
            subset = texts[: min(len(texts), 128)] if batch == 1 else texts
            row = {"backend": backend, "batch": batch, **measure(encoder, subset, batch)}
            if cos is not None:
                row["agree_mean_cos"] = round(float(cos.mean()), 4)
                row["agree_min_cos"] = round(float(cos.min()), 4)
            row["load_s"] = round(load.seconds, 1)
            rows.append(row)
    torch_best = max((r["texts_per_s"] for r in rows if r["backend"] == "torch" and r["batch"] > 1), default=None)
    if torch_best:
        for r in rows:
            r["x_torch_batched"] = round(r["texts_per_s"] / torch_best, 2)
    print_table(f"Embedding: all-MiniLM-L6-v2, {n} world texts", rows)
    if args.json:
        write_json(args.json, "embedding", {"quick": args.quick, "texts": n, "batches": list(batches),
                                            "backends": backends}, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
