"""The prequential (test-then-learn) replay.

For each event of the dataset, in timestamp order:

1. if it is a positive (a ``like``: rating ≥ 4 by default), every method is
   asked for the user's top-``k`` feed *as it stands*, with every item the
   user already interacted with excluded, and the feed is scored against the
   item the user actually chose (HR@k, Recall@k, NDCG@k, MRR@k, novelty,
   intra-list diversity; coverage over all feeds);
2. then every method learns the event (positives, views and hides alike).

The catalog is published before the first event (each method gets it at
construction). Metrics are kept per event and per calendar-year window.

>>> from flitfeed.evaluation.dataset import Dataset, Item
>>> items = tuple(Item(str(i), f"m{i}", (), f"movie {i}") for i in range(3))
>>> ds = Dataset("toy", items, np.array(["u1", "u2", "u2"], dtype=object), np.array([0, 0, 1], dtype=np.int32),
...              np.array([5.0, 5.0, 4.0], dtype=np.float32), np.array([0.0, 10.0, 20.0]))
>>> from flitfeed.evaluation.methods import PopularityMethod
>>> out = replay(ds, [PopularityMethod(3, half_life_s=None)], np.eye(3, dtype=np.float32), k=1)
>>> out["popularity"].log.values["hr"]    # u1: nothing known; u2 gets item 0 (hit); then item 0 is seen
[0.0, 1.0, 0.0]
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Sequence

import numpy as np

from flitfeed.evaluation.dataset import Dataset, interaction_kind
from flitfeed.evaluation.methods import Event, Method
from flitfeed.evaluation.metrics import (MetricLog, hit_rate, intra_list_diversity, ndcg, novelty, recall,
                                         reciprocal_rank)

log = logging.getLogger(__name__)


@dataclass
class MethodRun:
    name: str
    log: MetricLog = field(default_factory=MetricLog)
    #: Seconds per recommend call and per learn call.
    recommend_s: list[float] = field(default_factory=list)
    learn_s: list[float] = field(default_factory=list)


def window_of(ts: float) -> str:
    """The calendar year (UTC) of an epoch timestamp: the reporting window."""
    return str(datetime.fromtimestamp(ts, tz=timezone.utc).year)


def replay(dataset: Dataset, methods: Sequence[Method], vectors: np.ndarray, k: int = 10,
           positive_min: float = 4.0, hide_max: float = 1.5, progress_every: int = 10_000,
           score_from: int = 0) -> dict[str, MethodRun]:
    """Replay ``dataset`` through ``methods``; returns each method's per-event metrics and timings.

    Events before ``score_from`` are learned but not scored (a warm start: tuning on a late slice
    with every model already holding the history before it).
    """
    runs = {m.name: MethodRun(m.name) for m in methods}
    seen: dict[str, set[int]] = defaultdict(set)
    counts = np.zeros(len(dataset.items), dtype=np.float64)  # interactions per item so far (novelty)
    total = 0.0
    n_items = len(dataset.items)
    start = time.perf_counter()
    for i in range(len(dataset)):
        user = str(dataset.users[i])
        item = int(dataset.item_index[i])
        ts = float(dataset.timestamps[i])
        kind = interaction_kind(float(dataset.ratings[i]), positive_min, hide_max)
        if kind == "like" and i >= score_from:
            relevant = {item}
            user_seen = seen[user]
            window = window_of(ts)
            for m in methods:
                t = time.perf_counter()
                feed = m.recommend(user, ts, k, user_seen)
                runs[m.name].recommend_s.append(time.perf_counter() - t)
                if user_seen.intersection(feed):
                    raise AssertionError(f"{m.name} recommended an item {user} already saw")
                runs[m.name].log.add(window, {
                    "hr": hit_rate(feed, relevant, k),
                    "recall": recall(feed, relevant, k),
                    "ndcg": ndcg(feed, relevant, k),
                    "mrr": reciprocal_rank(feed, relevant, k),
                    "novelty": novelty(counts[feed], total, n_items) if feed else 0.0,
                    "diversity": intra_list_diversity(vectors[feed]) if feed else 0.0,
                }, feed)
        event = Event(event_id=f"ev-{i}", user=user, item=item, kind=kind, ts=ts)
        for m in methods:
            t = time.perf_counter()
            m.learn(event)
            runs[m.name].learn_s.append(time.perf_counter() - t)
        seen[user].add(item)
        counts[item] += 1.0
        total += 1.0
        if progress_every and (i + 1) % progress_every == 0:
            log.info("replay progress", extra={
                "events": i + 1, "of": len(dataset), "seconds": round(time.perf_counter() - start, 1),
                **{f"hr_{name}": round(float(np.mean(r.log.values["hr"])) if len(r.log) else 0.0, 4)
                   for name, r in runs.items()}})
    return runs
