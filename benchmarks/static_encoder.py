"""The second encoder (static model2vec, 256-d) against the shipped MiniLM (onnx-int8): speed and quality.

``python -m benchmarks.static_encoder [--quick] [--json PATH] [--repeats 3] [--static-dir DIR]
[--movielens ../shared/data/ml-latest-small]``

Speed: texts/s of ``encode_many`` on demo-world flits (~20 tokens, as
:mod:`benchmarks.embedding` measures MiniLM), by batch size, the encoders
interleaved within each of ``--repeats`` passes (median, min, max), with the
p50/p99 latency of one call; MiniLM runs as the product runs it
(``FLITFEED_ENCODER_BACKEND=onnx-int8``, the production run size).

Quality, on the same texts embedded by each encoder (``hashing``, the
bag-of-words test double, is the floor):

* ``overlap@10``: of each query's 10 nearest neighbours (cosine, itself
  excluded) under MiniLM, the share that are also among its 10 nearest under
  this encoder (MiniLM against itself: 1). How far the static model keeps
  MiniLM's neighbourhoods, i.e. what the "similar" source of the ranker sees.
* world corpus (``benchmarks.corpus``: 10,000 flits of the benchmark world,
  each written about one topic): ``topic_p@10``, the share of a flit's 10
  nearest neighbours on its own topic.
* MovieLens (``--movielens``, real data: ml-latest-small's 9,742 movies as
  the evaluation embeds them, title + genres + tags): a content-only
  recommender per user: the mean vector of the first 80% of the user's liked
  movies (rating ≥ 4, in time order) ranks every movie the user had not rated
  by then, and ``recall@10`` / ``recall@100`` is the share of the remaining
  20% of likes found in the top 10 / 100 (users with ≥ 5 likes). Read only by
  this benchmark, never by the product; skipped when the folder is absent (and
  in ``--quick`` unless given).

The static model is loaded from the model cache (built there first if missing:
``build_s``, the one-off distillation, is measured only then) or from
``--static-dir``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import Timer, bench_parser, percentiles, print_table, setup_logging, world_texts, write_json
from benchmarks.embedding import speed_runs

ENCODERS = ("onnx-int8", "static")
DEFAULT_MOVIELENS = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-latest-small"


def make(name: str, run_size: int, static_dir: Path | None) -> Any:  # noqa: ANN401 - an Encoder
    from flitfeed.encoders.factory import make_encoder
    from flitfeed.settings import EncoderConfig

    if name == "static" and static_dir is not None:
        from flitfeed.encoders.static import StaticEncoder

        return StaticEncoder(static_dir)
    if name == "hashing":
        return make_encoder(EncoderConfig(encoder="hashing"))
    if name == "static":
        return make_encoder(EncoderConfig(encoder="static"))
    return make_encoder(EncoderConfig(encoder="minilm", encoder_backend=name, encoder_run_size=run_size))


def top_k(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Indices of each query row's ``k`` nearest rows of ``vectors`` (cosine), the query itself excluded."""
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), 512):
        q = queries[start : start + 512]
        sims = vectors[q] @ vectors.T
        sims[np.arange(len(q)), q] = -np.inf
        part = np.argpartition(-sims, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1, kind="stable")
        out[start : start + len(q)] = np.take_along_axis(part, order, axis=1)
    return out


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean share of each row of ``a`` found in the same row of ``b``."""
    return float(np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a.tolist(), b.tolist())]))


def world_quality(encoders: dict[str, Any], n: int, n_queries: int) -> list[dict[str, Any]]:
    from benchmarks.corpus import world_flits

    texts, topics = world_flits(n, seed=11)
    topic_ids = np.unique(np.asarray(topics), return_inverse=True)[1]
    queries = np.random.default_rng(0).choice(n, size=min(n_queries, n), replace=False)
    neighbours = {name: top_k(enc.encode_many(texts), queries, 10) for name, enc in encoders.items()}
    reference = neighbours["onnx-int8"]
    return [{"corpus": f"world flits ({n:,})", "encoder": name, "dim": encoders[name].dim,
             "overlap@10": round(overlap(reference, nb), 4),
             "topic_p@10": round(float((topic_ids[nb] == topic_ids[queries, None]).mean()), 4)}
            for name, nb in neighbours.items()]


def movielens_quality(encoders: dict[str, Any], directory: Path, n_queries: int) -> list[dict[str, Any]]:
    from flitfeed.evaluation.dataset import POSITIVE_MIN, load_movielens

    data = load_movielens(directory)
    texts = data.texts()
    vectors: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    for name, enc in encoders.items():
        with Timer() as t:
            vectors[name] = enc.encode_many(texts)
        seconds[name] = t.seconds
    queries = np.random.default_rng(0).choice(len(texts), size=min(n_queries, len(texts)), replace=False)
    neighbours = {name: top_k(v, queries, 10) for name, v in vectors.items()}
    # Per user, in time order: the items rated, and which of them were liked.
    users: dict[str, list[tuple[int, bool]]] = {}
    for user, item, rating in zip(data.users.tolist(), data.item_index.tolist(), data.ratings.tolist()):
        users.setdefault(user, []).append((item, rating >= POSITIVE_MIN))
    rows = []
    for name, v in vectors.items():
        hits10, hits100, held = 0, 0, 0
        for events in users.values():
            liked_at = [k for k, (_, like) in enumerate(events) if like]
            if len(liked_at) < 5:
                continue
            cut = int(len(liked_at) * 0.8)
            profile_items = [events[k][0] for k in liked_at[:cut]]
            test_items = {events[k][0] for k in liked_at[cut:]}
            seen = {i for i, _ in events[: liked_at[cut - 1] + 1]}
            test_items -= seen
            if not test_items:
                continue
            scores = v @ v[profile_items].mean(axis=0)
            scores[list(seen)] = -np.inf
            top = np.argpartition(-scores, 100)[:100]
            top10 = top[np.argsort(-scores[top], kind="stable")[:10]]
            hits100 += len(test_items & set(top.tolist()))
            hits10 += len(test_items & set(top10.tolist()))
            held += len(test_items)
        rows.append({"corpus": f"MovieLens {directory.name} ({len(texts):,} movies)", "encoder": name,
                     "dim": v.shape[1], "overlap@10": round(overlap(neighbours["onnx-int8"], neighbours[name]), 4),
                     "recall@10": round(hits10 / max(held, 1), 4), "recall@100": round(hits100 / max(held, 1), 4),
                     "held_out_likes": held, "embed_texts_per_s": round(len(texts) / seconds[name], 1)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=None, help="passes over every encoder (default 3; quick 1)")
    parser.add_argument("--static-dir", type=Path, default=None,
                        help="a built static model (default: the model cache, built there if missing)")
    parser.add_argument("--movielens", type=Path, default=None,
                        help=f"a MovieLens folder for the retrieval test (default {DEFAULT_MOVIELENS} if present; "
                             "quick mode: only when given)")
    args = parser.parse_args(argv)
    setup_logging()
    from flitfeed.encoders.static import MANIFEST, build_static_model, cached_model_dir
    from flitfeed.settings import EncoderConfig

    cache_dir = EncoderConfig().model_cache_dir
    n = 64 if args.quick else 2048
    batches = (1, 32) if args.quick else (1, 32, 256)
    repeats = args.repeats or (1 if args.quick else 3)
    run_size = EncoderConfig.model_fields["encoder_run_size"].default
    build_s = None
    if args.static_dir is None and not (cached_model_dir(cache_dir) / MANIFEST).exists():
        with Timer() as build:
            build_static_model(cached_model_dir(cache_dir))
        build_s = round(build.seconds, 1)
    texts = world_texts(n, seed=5)
    encoders: dict[str, Any] = {}
    load_s: dict[str, float] = {}
    for name in ENCODERS:
        with Timer() as load:
            encoders[name] = make(name, run_size, args.static_dir)
        load_s[name] = load.seconds
    speeds, latencies = speed_runs({name: encoders[name] for name in ENCODERS}, texts, batches, repeats)
    speed_rows: list[dict[str, Any]] = []
    for name in ENCODERS:
        for batch in batches:
            runs = speeds[(name, batch)]
            speed_rows.append({"encoder": name, "model_version": encoders[name].model_version,
                               "dim": encoders[name].dim, "batch": batch,
                               "texts_per_s": round(float(np.median(runs)), 1),
                               "texts_per_s_min": round(min(runs), 1), "texts_per_s_max": round(max(runs), 1),
                               **percentiles(latencies[(name, batch)]), "load_s": round(load_s[name], 2)})
    for row in speed_rows:
        base = next(r for r in speed_rows if r["encoder"] == "onnx-int8" and r["batch"] == row["batch"])
        row["x_onnx_int8"] = round(row["texts_per_s"] / base["texts_per_s"], 1)
    if build_s is not None:
        speed_rows[-1]["build_s"] = build_s
    print_table(f"Embedding speed: static (model2vec) vs all-MiniLM-L6-v2 onnx-int8, {n} world texts", speed_rows)

    started = time.perf_counter()
    quality_encoders = {**encoders, "hashing": make("hashing", run_size, None)}
    quality_rows = world_quality(quality_encoders, 300 if args.quick else 10_000, 300 if args.quick else 2000)
    movielens = args.movielens or (None if args.quick else DEFAULT_MOVIELENS)
    if movielens is not None and (movielens / "movies.csv").exists():
        quality_rows += movielens_quality(quality_encoders, movielens, 2000)
    print_table("Quality: neighbour agreement with MiniLM (overlap@10), topic precision, MovieLens retrieval",
                quality_rows)
    if args.json:
        write_json(args.json, "static_encoder",
                   {"quick": args.quick, "texts": n, "batches": list(batches), "repeats": repeats,
                    "run_size": run_size, "movielens": str(movielens) if movielens else None,
                    "quality_s": round(time.perf_counter() - started, 1)}, speed_rows + quality_rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
