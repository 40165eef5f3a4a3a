"""One evaluation run: load, embed (cached), replay every method, write the report.

The entry point of ``flitfeed evaluate``::

    flitfeed evaluate ../shared/data/ml-latest-small --out docs/evaluation/ml-latest-small

Methods (``--methods`` picks a subset, in this order):

========================  ====================================================================
``random``                uniformly random unseen items
``popularity``            most positives so far (no decay)
``popularity-1d``         most positives, recency-decayed with a 1-day half-life
``popularity-365d``       the same with a 1-year half-life (the best popularity on ml-latest-small)
``content``               the design card's content-only model: the production pipeline ranking
                          by similarity to the user's taste vector only
``als``                   ``implicit`` ALS retrained every 2,500 positives on everything so far
``blend``                 the former hand-set blend (``RankerParams`` weights), no learning
``flitfeed``              the shipped default: the learned ranking model, learning from each feed it
                          computes as an impression (ranker/feedback.py), RankerParams defaults
========================  ====================================================================
"""

from __future__ import annotations

import logging
import multiprocessing
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from flitfeed.evaluation.catalog import embed_catalog
from flitfeed.evaluation.dataset import Dataset, interaction_kind, load_movielens
from flitfeed.evaluation.methods import (ALSMethod, FlitfeedMethod, Method, PopularityMethod, RandomMethod,
                                         eval_settings)
from flitfeed.evaluation.replay import MethodRun, replay
from flitfeed.evaluation.report import build_results, write_report
from flitfeed.ranker.params import RankerParams
from flitfeed.settings import Settings

log = logging.getLogger(__name__)

METHODS = ("random", "popularity", "popularity-1d", "popularity-365d", "content", "als", "blend", "flitfeed")
SHIPPED = "flitfeed"
DAY = 86400.0

PROTOCOL = (
    "Protocol: prequential (test-then-learn) replay in timestamp order. The whole catalog is published as "
    "flits first. For each positive (rating ≥ 4) every method is asked for the user's top-10 feed as it "
    "stands, excluding every item the user interacted with before, and scored against the item the user "
    "chose; then every method learns the event (ratings 2–3.5 as views, ≤ 1.5 as hides, ≥ 4 as likes)."
)


def content_params(base: RankerParams) -> RankerParams:
    """The content-only model: similarity to the taste vector and nothing else."""
    return replace(base, similarity_weight=1.0, freshness_weight=0.0, engagement_weight=0.0,
                   collaborative_weight=0.0, author_decay=1.0, tag_decay=1.0, explore_share=0.0)


def build_methods(names: Sequence[str], dataset: Dataset, vectors: np.ndarray, settings: Settings,
                  params: RankerParams | None = None, seed: int = 0) -> list[Method]:
    params = params or RankerParams.from_config(settings.ranker)
    n = len(dataset.items)
    out: list[Method] = []
    for name in names:
        if name == "random":
            out.append(RandomMethod(n, seed=seed))
        elif name == "popularity":
            out.append(PopularityMethod(n, half_life_s=None, name=name))
        elif name == "popularity-1d":
            out.append(PopularityMethod(n, half_life_s=DAY, name=name))
        elif name == "popularity-365d":
            out.append(PopularityMethod(n, half_life_s=365 * DAY, name=name))
        elif name == "content":
            out.append(FlitfeedMethod(dataset, vectors, content_params(params), settings, collaborative=False,
                                      name=name, learned=False))
        elif name == "als":
            out.append(ALSMethod(n, seed=seed))
        elif name == "blend":
            out.append(FlitfeedMethod(dataset, vectors, params, settings, name=name, learned=False))
        elif name == "flitfeed":
            out.append(FlitfeedMethod(dataset, vectors, params, settings, name=name))
        else:
            raise ValueError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    return out


def _groups(methods: Sequence[str], jobs: int) -> list[tuple[str, ...]]:
    """Split methods into at most ``jobs`` groups: the pipeline methods alone, the cheap ones together.

    >>> _groups(METHODS, 3)
    [('flitfeed',), ('blend',), ('content', 'random', 'popularity', 'popularity-1d', 'popularity-365d', 'als')]
    """
    slow = [m for m in ("flitfeed", "blend", "content") if m in methods]
    fast = tuple(m for m in methods if m not in slow)
    groups = [(m,) for m in slow][: max(jobs - 1, 1)]
    rest = [m for m in slow if (m,) not in groups]
    tail = tuple(rest) + fast
    return groups + [tail] if tail else groups


def _replay_group(dataset: Dataset, vectors: np.ndarray, names: tuple[str, ...], settings: Settings,
                  params: RankerParams | None,
                  child: bool = False) -> tuple[dict[str, MethodRun], dict[str, dict[str, float]]]:
    if child:
        # A spawned process starts without the parent's logging: without this its progress lines
        # (every 10,000 events, with each method's running HR) were lost and a 40-minute run looked stuck.
        from flitfeed.logs import configure

        configure(settings.log_level, service="evaluate:" + "+".join(names))
    built = build_methods(names, dataset, vectors, settings, params)
    try:
        runs = replay(dataset, built, vectors)
    finally:
        for m in built:
            close = getattr(m, "close", None)
            if close is not None:
                close()
    stages = {m.name: {k: round(v, 4) for k, v in m.stage_times.mean_ms().items()}
              for m in built if isinstance(m, FlitfeedMethod)}
    return runs, stages


def holdout(dataset: Dataset, runs: dict[str, MethodRun], first_event: int) -> dict[str, Any]:
    """Each method's HR/Recall, NDCG and MRR over the positives scored from event ``first_event`` on.

    The ranker's defaults were chosen on the events before it (README "Learning from feedback"), so
    these figures are out of sample. Scored events are the positives, in order, so the split is the
    number of positives before ``first_event``.
    """
    ratings = np.asarray(dataset.ratings[:first_event], dtype=np.float64)
    before = int(sum(interaction_kind(float(r)) == "like" for r in ratings))
    out: dict[str, Any] = {"first_event": first_event, "methods": {}}
    for name, run in runs.items():
        tail = {m: run.log.values[m][before:] for m in ("recall", "ndcg", "mrr")}
        out["methods"][name] = {f"{m}@10": round(float(np.mean(v)), 4) if v else 0.0 for m, v in tail.items()}
        out["methods"][name]["events_scored"] = len(tail["recall"])
    return out


def load(dataset_dir: Path, extra_text: Path | None, start: int = 0, events: int | None = None) -> Dataset:
    dataset = load_movielens(dataset_dir, extra_text=extra_text)
    stop = len(dataset) if events is None else min(len(dataset), start + events)
    return dataset.slice_events(start, stop) if (start or stop < len(dataset)) else dataset


def evaluate(dataset_dir: Path, out: Path | None, *, extra_text: Path | None = None, start: int = 0,
             events: int | None = None, methods: Sequence[str] = METHODS, settings: Settings | None = None,
             params: RankerParams | None = None, encoder=None, cache_dir: Path = Path("var/eval-cache"),  # noqa: ANN001
             plots: bool = True, command: str | None = None,
             jobs: int = 1, holdout_from: int | None = None) -> tuple[dict[str, Any], dict[str, MethodRun]]:
    """Run the evaluation; writes ``results.json``, ``report.md`` and plots into ``out`` when given.

    ``jobs > 1`` replays groups of methods in that many processes (the production-pipeline methods
    are the slow ones and get a process each).
    """
    settings = eval_settings(settings)
    dataset = load(dataset_dir, extra_text, start, events)
    if encoder is None:
        from flitfeed.encoders.factory import make_encoder

        encoder = make_encoder(settings.encoder)
    vectors = embed_catalog(dataset, encoder, cache_dir)
    began = time.perf_counter()
    if jobs <= 1:
        runs, stages = _replay_group(dataset, vectors, tuple(methods), settings, params)
    else:
        runs, stages = {}, {}
        groups = _groups(methods, jobs)
        # Methods never share state, so replaying them in separate processes gives the same numbers.
        with ProcessPoolExecutor(max_workers=len(groups), mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_replay_group, dataset, vectors, group, settings, params, True)
                       for group in groups]
            for future in futures:
                r, st = future.result()
                runs.update(r)
                stages.update(st)
        runs = {name: runs[name] for name in methods}
    seconds = time.perf_counter() - began
    chosen = params or RankerParams.from_config(settings.ranker)
    info: dict[str, Any] = {
        "dataset": {
            "name": dataset.name, "path": str(dataset_dir), "extra_text": str(extra_text) if extra_text else None,
            "events": len(dataset), "first_event": start, "items": len(dataset.items),
            "users": int(len(set(dataset.users.tolist()))),
            "span": [float(dataset.timestamps[0]), float(dataset.timestamps[-1])] if len(dataset) else None,
        },
        "protocol": {"k": 10, "positive_min": 4.0, "hide_max": 1.5, "seen_excluded": True,
                     "catalog_published_first": True, "windows": "calendar year (UTC)"},
        "protocol_text": PROTOCOL,
        "model_version": encoder.model_version,
        "ranker_params": asdict(chosen),
        "stages_ms": {name: stages[name] for name in methods if name in stages},
        "replay_seconds": round(seconds, 1),
        "machine": {"python": platform.python_version(), "machine": platform.machine(),
                    "processor": platform.processor() or platform.machine()},
    }
    if command:
        info["command"] = command
    if holdout_from is not None:
        info["holdout"] = holdout(dataset, runs, holdout_from)
    results = build_results(runs, len(dataset.items), SHIPPED if SHIPPED in methods else methods[-1], info)
    if out is not None:
        write_report(results, runs, out, plots=plots)
    return results, runs
