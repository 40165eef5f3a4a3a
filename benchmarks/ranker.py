"""Ranker throughput (feeds/s) and the cost of each stage, in process, on the real index.

``python -m benchmarks.ranker [--quick] [--json PATH] [--flits 20000] [--users 500] [--batch 32]``

The production pipeline (:func:`flitfeed.ranker.feeds.build_feed_pipeline`) over
a Qdrant Edge index of real flit embeddings (HNSW built), an engagement
tracker fed with the demo world's interactions, and users whose tastes are
means of the vectors of flits they liked (so ``similar`` candidates are real
neighbours). Each feed is run through the pipeline and serialised as the
service publishes it (``Feed.to_bytes``); reported: feeds/s on one thread,
p50/p99 per feed, and per stage (``kind:name``) the mean and p99 in ms and
its share of the feed's time. Feeds are built as the service builds them, a batch at a time
(``FeedPipeline.run_many``, ``--batch`` feeds per batch; a feed's time is its batch's share), and, in
alternating blocks of the same run, one at a time (``model, batch 1``), with the former hand-set
blend (``blend``), and through the former per-candidate path (``model, per candidate``:
``run_many(columnar=False)``, hydrators, filters and scorers per feed over ``Candidate`` objects), so
the rows compare like with like (``--reference`` adds the per-candidate row, and its per-stage rows
as ``reference_stage``). The service's vector source searches the in-memory catalogue that mirrors
the index (``index/catalogue.py``); ``model, engine search`` is the same pipeline searching the
Qdrant Edge index itself, as before the catalogue.
"""

from __future__ import annotations

import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks.common import Timer, bench_parser, percentiles, print_table, setup_logging, write_json
from benchmarks.corpus import Corpus
from flitfeed.encoders.base import l2_normalise
from flitfeed.index.base import IndexedFlit
from flitfeed.index.catalogue import VectorCatalogue
from flitfeed.index.edge import EdgeIndex
from flitfeed.ranker.engagement import EngagementTracker
from flitfeed.ranker.affinity import Affinity
from flitfeed.ranker.feedback import impression_for
from flitfeed.ranker.feeds import build_feed_pipeline
from flitfeed.ranker.model import ActionModel
from flitfeed.ranker.params import RankerParams
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.recent import RecentFlits
from flitfeed.ranker.publisher import make_feed
from flitfeed.settings import Settings

NOW = 1_800_000_000.0
#: The row of the former per-candidate path (the reference the columnar path is measured against).
PER_CANDIDATE = "model, per candidate"
#: The row whose vector source searches the engine (HNSW, payloads) instead of the catalogue.
ENGINE = "model, engine search"


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--flits", type=int, default=None, help="index size (default 20000; quick 2000)")
    parser.add_argument("--users", type=int, default=None, help="distinct users (default 500; quick 50)")
    parser.add_argument("--seen", type=int, default=50,
                        help="seen flits per user besides the 10 it liked (default 50; a user state carries up to "
                             "FLITFEED_SEEN_CAPACITY, 500, and the vector source pushes them into the index's filter)")
    parser.add_argument("--feeds", type=int, default=None, help="feeds to build (default 2000; quick 100)")
    parser.add_argument("--batch", type=int, default=32, help="feeds per batch, as the service polls (default 32)")
    parser.add_argument("--reference", action="store_true",
                        help="also the former per-candidate path (row 'model, per candidate'), same run")
    args = parser.parse_args(argv)
    setup_logging()
    n = args.flits or (2000 if args.quick else 20_000)
    n_users = args.users or (50 if args.quick else 500)
    n_feeds = args.feeds or (100 if args.quick else 2000)
    corpus = Corpus.hashing(n, seed=11) if args.quick else Corpus.real(n, seed=11)
    settings = Settings()
    params = RankerParams.from_config(settings.ranker)
    rng = np.random.default_rng(3)
    authors = [f"author-{i % 200:03d}" for i in range(n)]
    created = NOW - 2 * 86400 + np.sort(rng.uniform(0, 2 * 86400 - 60, size=n))
    engagement = EngagementTracker(half_life_s=settings.ranker.popularity_half_life_s,
                                   capacity=max(10 * settings.ranker.recent_flits_capacity, 10_000))
    recent = RecentFlits(capacity=settings.ranker.recent_flits_capacity)
    affinity = Affinity(max_users=settings.ranker.coengagement_users)
    kinds = ["view", "view", "view", "like", "reflit", "reply"]
    # Popularity: a Zipf-ish share of the newest flits gets most interactions, as in a live feed.
    for j in range(20 * n_users):
        i = n - 1 - min(n - 1, int(rng.zipf(1.3)))
        kind = kinds[int(rng.integers(len(kinds)))]
        engagement.learn_one(f"f{i}", kind, float(created[i]) + 30)
        affinity.learn_one(f"bird-{j % n_users:05d}", authors[i], (corpus.topics[i],), kind, popularity=0.5)
    topics = np.array(corpus.topics)
    with tempfile.TemporaryDirectory(prefix="flitfeed-bench-ranker-") as tmp:
        index = EdgeIndex(Path(tmp) / "flits", corpus.vectors.shape[1],
                          indexing_threshold_kb=100 if args.quick else None)
        batch = [IndexedFlit(f"f{i}", authors[i], float(created[i]), corpus.vectors[i], "en", (corpus.topics[i],))
                 for i in range(n)]
        index.upsert_many(batch)
        catalogue = VectorCatalogue(corpus.vectors.shape[1])  # what the service's replica feeds beside the index
        catalogue.upsert_many(batch)
        for f in batch:
            recent.add_one(f.flit_id, f.author_id, f.created_at, f.tags, f.lang, f.vector)
        with Timer() as opt:
            index.maybe_optimize(0)
        # The service's pipeline (the learned model, author/tag affinity) and, as the baseline of issue 14's
        # speed target, the former hand-set blend: measured in alternating blocks of the same run.
        model_pipeline = build_feed_pipeline(index, engagement, recent, params, model=ActionModel(), affinity=affinity,
                                             catalogue=catalogue)
        engine_pipeline = build_feed_pipeline(index, engagement, recent, params, model=ActionModel(),
                                              affinity=affinity)
        pipelines = {"model": (model_pipeline, args.batch, True), ENGINE: (engine_pipeline, args.batch, True),
                     "model, batch 1": (model_pipeline, 1, True),
                     "blend": (build_feed_pipeline(index, engagement, recent, params, catalogue=catalogue),
                               args.batch, True)}
        if args.reference:
            pipelines[PER_CANDIDATE] = (model_pipeline, args.batch, False)
        users = []
        for u in range(n_users):
            topic = sorted(set(corpus.topics))[u % len(set(corpus.topics))]
            liked = rng.choice(np.flatnonzero(topics == topic), size=10)
            taste = l2_normalise(corpus.vectors[liked].mean(axis=0, keepdims=True))[0]
            seen = frozenset(f"f{i}" for i in rng.choice(n, size=args.seen)) | {f"f{i}" for i in liked}
            users.append(FeedQuery(user_id=f"bird-{u:05d}", k=10, now=NOW, taste=taste, seen=seen,
                                   muted_authors=frozenset({authors[int(rng.integers(n))]}), positives=10))
        stage_times: dict[str, dict[str, list[float]]] = {"model": defaultdict(list), ENGINE: defaultdict(list),
                                                          PER_CANDIDATE: defaultdict(list)}
        totals: dict[str, list[float]] = {name: [] for name in pipelines}
        batches: dict[str, list[float]] = {name: [] for name in pipelines}
        for pipeline, _, columnar in pipelines.values():
            pipeline.run_many(users[: min(20, n_users)], columnar=columnar)  # warm-up
        block = max(args.batch, min(100, n_feeds // 10)) // args.batch * args.batch
        for start in range(0, n_feeds, block):
            for name, (pipeline, batch, columnar) in pipelines.items():
                for b in range(start, min(n_feeds, start + block), batch):
                    js = range(b, min(n_feeds, start + block, b + batch))
                    qs = [users[j % n_users] for j in js]
                    t0 = time.perf_counter()
                    results = pipeline.run_many(qs, columnar=columnar)
                    t1 = time.perf_counter()
                    for j, q, result in zip(js, qs, results):
                        make_feed(q, result, model_version=corpus.model_version, trigger_id=f"ev{j}",
                                  trigger_kind="interaction").to_bytes()
                        if name != "blend":  # the service records every feed of the model as an impression
                            impression_for(q, result.items, f"imp-{j}").to_bytes()
                    t2 = time.perf_counter()
                    totals[name].extend([(t2 - t0) / len(qs)] * len(qs))
                    batches[name].append(t2 - t0)
                    if name in stage_times:
                        for result in results:
                            for (kind, stage), seconds in result.timings.items():
                                stage_times[name][f"{kind}:{stage}"].append(seconds)
                        stage_times[name]["publish:serialise"].extend([(t2 - t1) / len(qs)] * len(qs))
        index.close()
    head = [{"pipeline": name, "batch": pipelines[name][1], "flits": n, "users": n_users, "seen": args.seen,
             "feeds": n_feeds,
             "feeds_per_s": round(len(t) / float(np.sum(t)), 1),
             **{f"feed_{k}": v for k, v in percentiles(t).items()},
             **{f"batch_{k}": v for k, v in percentiles(batches[name]).items() if k != "max_ms"},
             "optimize_s": round(opt.seconds, 1)}
            for name, t in totals.items()]
    stages = []
    for path, times in stage_times.items():
        if path not in totals:
            continue
        mean_total = float(np.mean(totals[path]))
        key = {"model": "stage", ENGINE: "engine_stage"}.get(path, "reference_stage")
        stages += [{key: name, "mean_ms": round(float(np.mean(v)) * 1000, 3),
                    "p99_ms": percentiles(v)["p99_ms"], "share": round(float(np.mean(v)) / mean_total, 3)}
                   for name, v in sorted(times.items(), key=lambda kv: -float(np.mean(kv[1])))]
    print_table(f"Ranker: {corpus.model_version}, one thread", head)
    print_table("Ranker: cost per stage (model, columnar)", [r for r in stages if "stage" in r])
    print_table(f"Ranker: cost per stage ({ENGINE})", [r for r in stages if "engine_stage" in r])
    if args.reference:
        print_table(f"Ranker: cost per stage ({PER_CANDIDATE})", [r for r in stages if "reference_stage" in r])
    if args.json:
        write_json(args.json, "ranker", {"quick": args.quick, "flits": n, "users": n_users, "seen": args.seen,
                                         "feeds": n_feeds},
                   head + stages)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
