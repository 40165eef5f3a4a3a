"""Tuning the ranker's weights by the streaming evaluation (the committed record of how defaults were chosen).

Every variant is the production pipeline (:class:`~flitfeed.evaluation.methods.FlitfeedMethod`)
with some :class:`~flitfeed.ranker.params.RankerParams` fields overridden. All
variants replay the same events in one pass; events before ``--score-from``
are learned but not scored (warm start), so a late slice of the stream can be
scored without paying for feeds over the whole history::

    .venv/bin/python -m flitfeed.evaluation.tune ../shared/data/ml-latest-small \\
        --score-from 60000 --events 66000 --out docs/evaluation/tuning.json

Prints a markdown table (best first) and writes the JSON record.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from flitfeed.evaluation.catalog import embed_catalog
from flitfeed.evaluation.dataset import load_movielens
from flitfeed.evaluation.methods import FlitfeedMethod, Method, PopularityMethod, eval_settings
from flitfeed.evaluation.replay import replay
from flitfeed.evaluation.run import DAY, content_params
from flitfeed.ranker.params import RankerParams
from flitfeed.settings import Settings

log = logging.getLogger(__name__)

#: name → RankerParams overrides. Diversity, freshness and exploration are inert on a catalog whose
#: items share one creation time and have no authors, so the grid spans the relevance weights and
#: the co-engagement shape.
GRID: dict[str, dict[str, Any]] = {
    "collab_only": dict(similarity_weight=0.0, engagement_weight=0.0, collaborative_weight=1.0),
    "c1_s0.1_e0.3": dict(similarity_weight=0.1, engagement_weight=0.3, collaborative_weight=1.0),
    "c1_s0.3_e0.3": dict(similarity_weight=0.3, engagement_weight=0.3, collaborative_weight=1.0),
    "c1_s0.1_e0.6": dict(similarity_weight=0.1, engagement_weight=0.6, collaborative_weight=1.0),
    "c1_s0.1_e0.3_sat50": dict(similarity_weight=0.1, engagement_weight=0.3, collaborative_weight=1.0,
                               engagement_saturation=50.0),
    "c1_s0.1_e0.3_h150": dict(similarity_weight=0.1, engagement_weight=0.3, collaborative_weight=1.0,
                              coengagement_history=150),
    "c1_s0.1_e0.3_r0.9": dict(similarity_weight=0.1, engagement_weight=0.3, collaborative_weight=1.0,
                              coengagement_recency=0.9),
}


def tune(dataset_dir: Path, *, score_from: int, events: int | None, grid: dict[str, dict[str, Any]],
         settings: Settings, cache_dir: Path = Path("var/eval-cache")) -> list[dict[str, Any]]:
    from flitfeed.encoders.factory import make_encoder

    dataset = load_movielens(dataset_dir)
    if events is not None:
        dataset = dataset.first_events(events)
    vectors = embed_catalog(dataset, make_encoder(settings.encoder), cache_dir)
    base = RankerParams.from_config(settings.ranker)
    methods: list[Method] = [PopularityMethod(len(dataset.items), settings.ranker.popularity_half_life_s,
                                              name="popularity (same half-life)"),
                             FlitfeedMethod(dataset, vectors, content_params(base), settings, collaborative=False,
                                            name="content", learned=False)]
    # The grid tunes the hand-set blend, which is now the learned model's prior (ranker/model.py).
    for name, overrides in grid.items():
        methods.append(FlitfeedMethod(dataset, vectors, replace(base, **overrides), settings, name=name,
                                      learned=False))
    runs = replay(dataset, methods, vectors, score_from=score_from)
    rows = []
    for m in methods:
        s = runs[m.name].log.summary(len(dataset.items))
        rows.append({"variant": m.name, "overrides": grid.get(m.name, {}), "recall@10": round(s["recall"], 5),
                     "ndcg@10": round(s["ndcg"], 5), "mrr@10": round(s["mrr"], 5),
                     "coverage": round(s["coverage"], 4), "scored": int(s["events"])})
    rows.sort(key=lambda r: -r["recall@10"])
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset", type=Path)
    p.add_argument("--score-from", type=int, required=True)
    p.add_argument("--events", type=int, default=None)
    p.add_argument("--popularity-half-life-days", type=float, default=365.0)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = eval_settings(popularity_half_life_s=args.popularity_half_life_days * DAY)
    rows = tune(args.dataset, score_from=args.score_from, events=args.events, grid=GRID, settings=settings)
    lines = ["| variant | Recall@10 | NDCG@10 | MRR@10 | coverage | scored |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['variant']} | {r['recall@10']:.4f} | {r['ndcg@10']:.4f} | {r['mrr@10']:.4f} | "
              f"{r['coverage']:.3f} | {r['scored']} |" for r in rows]
    print("\n".join(lines))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "grid": GRID,
                                        "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
