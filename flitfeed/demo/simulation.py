"""The demo's world run in-process, on simulated time: the services' code without Kafka.

``simulate(seed)`` plays the same script as ``flitfeed demo`` (every half second two new flits,
two spontaneous interactions and two feed requests; each bird reacts to the first three items of a
feed it asked for) through the production code: the real encoder, the worker's taste rule
(:func:`~flitfeed.streams.user_updates.apply_interaction`), the ranker's state and pipeline
(:func:`~flitfeed.ranker.feeds.build_feed_pipeline`) and its feedback loop (impressions, the join,
the learned model). Every interaction triggers a feed, as in the services. It takes seconds, not
minutes, and gives the same scoreboard, so it is where ranker defaults are compared
(``python -m flitfeed.demo.simulation --seeds 7 3 11``) before the live demo confirms them.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from flitfeed.demo.scoreboard import Scoreboard
from flitfeed.demo.world import World
from flitfeed.encoders.base import Encoder
from flitfeed.encoders.user_vector import UserProfile
from flitfeed.index.base import IndexedFlit
from flitfeed.index.memory import MemoryIndex
from flitfeed.ranker.affinity import Affinity
from flitfeed.ranker.coengagement import CoEngagement
from flitfeed.ranker.engagement import EngagementTracker
from flitfeed.ranker.feedback import ExampleLearner, impression_for
from flitfeed.ranker.feeds import build_feed_pipeline
from flitfeed.ranker.join import ImpressionJoin
from flitfeed.ranker.model import ActionModel
from flitfeed.ranker.params import RankerParams
from flitfeed.ranker.recent import RecentFlits
from flitfeed.ranker.service import feed_query, make_feed
from flitfeed.ranker.signals import learn_interaction
from flitfeed.settings import Settings
from flitfeed.streams.events import Feed, Interaction, to_epoch
from flitfeed.streams.user_updates import apply_interaction, taste_params, user_state

TICK_S = 0.5
WINDOW_S = 10.0


@dataclass
class SimulationResult:
    #: Warm-feed interest match per ``WINDOW_S`` window of simulated time (None: no warm feed then).
    windows: list[float | None]
    summary: dict[str, Any]
    #: Mean distinct authors / items, and distinct topics / items, of the warm feeds asked for.
    author_diversity: float = 0.0
    topic_diversity: float = 0.0
    examples: int = 0
    weights: np.ndarray | None = field(default=None, repr=False)


def simulate(seed: int, duration_s: float = 60.0, *, encoder: Encoder, settings: Settings | None = None,
             params: RankerParams | None = None, learning: bool = True, start: float = 1_800_000_000.0
             ) -> SimulationResult:
    settings = settings or Settings()
    params = params or RankerParams.from_settings(settings)
    world = World(seed=seed, start=start)
    board = Scoreboard(world)
    index = MemoryIndex(encoder.dim)
    recent = RecentFlits(capacity=settings.recent_flits_capacity)
    engagement = EngagementTracker(half_life_s=settings.popularity_half_life_s,
                                   capacity=max(10 * settings.recent_flits_capacity, 10_000))
    coengagement = CoEngagement(capacity=settings.coengagement_capacity, history=params.coengagement_history,
                                recency=params.coengagement_recency, beta=params.coengagement_beta)
    affinity = Affinity(max_users=settings.coengagement_users)
    model = ActionModel(learning_rate=settings.model_learning_rate)
    learner = ExampleLearner(model)
    join = ImpressionJoin(window_s=settings.feedback_window_s)
    pipeline = build_feed_pipeline(index, engagement, recent, params, coengagement, model=model, affinity=affinity)
    profiles: dict[str, UserProfile] = {}
    points: dict[str, IndexedFlit] = {}
    taste = taste_params(settings)
    windows: dict[int, list[float]] = {}
    diversity: list[tuple[float, float]] = []
    n_feeds = 0

    def add_flits(n: int, now: float) -> None:
        flits = world.next_flits(n, now)
        vectors = encoder.encode_many([f.text for f in flits])
        batch = []
        for f, v in zip(flits, vectors):
            p = IndexedFlit(flit_id=f.flit_id, author_id=f.author_id, created_at=to_epoch(f.created_at),
                            vector=np.asarray(v, dtype=np.float32), lang=f.lang, tags=tuple(f.tags))
            points[f.flit_id] = p
            batch.append(p)
            recent.add_one(p.flit_id, p.author_id, p.created_at, p.tags, p.lang, p.vector)
        index.upsert_many(batch)

    def serve(user: str, now: float, trigger_id: str, kind: str) -> Feed:
        nonlocal n_feeds
        n_feeds += 1
        profile = profiles.get(user)
        state = None if profile is None else user_state(profile, trigger_id=trigger_id, trigger_ts=now)
        query = feed_query(state, user, settings.feed_k, now, trigger_id=trigger_id)
        result = pipeline.run(query)
        impression = impression_for(query, result.items, f"imp-{n_feeds}")
        join.add(impression)
        return make_feed(query, result, model_version="sim", trigger_id=trigger_id, trigger_kind=kind,
                         impression_id=impression.impression_id)

    def interact(event: Interaction, now: float) -> None:
        profile = profiles.setdefault(event.user_id, UserProfile(event.user_id))
        if apply_interaction(event, profile, points.get, taste) != "applied":
            return
        examples = join.expire(now)
        labelled = join.learn_one(event.user_id, event.flit_id, event.kind, to_epoch(event.ts), event.dwell_ms)
        if learning:
            learner.learn_many(examples + ([labelled] if labelled is not None else []))
        learn_interaction(engagement, coengagement, event, affinity, recent, params.engagement_saturation)
        serve(event.user_id, now, event.event_id, "interaction")  # the services answer every state change

    now = start
    add_flits(60, now)
    ticks = int(duration_s / TICK_S)
    for tick in range(ticks):
        now = start + tick * TICK_S
        add_flits(2, now)
        for event in world.spontaneous_interactions(2, now):
            interact(event, now)
        for request in world.feed_requests(2):
            feed = serve(request.user_id, now, request.request_id, "request")
            match = board.record_feed(feed)
            if match is not None and not feed.cold_start:
                windows.setdefault(int((now - start) // WINDOW_S), []).append(match)
                n = len(feed.items)
                diversity.append((len({i.author_id for i in feed.items}) / n,
                                  len({world.topic_of(i.flit_id) for i in feed.items}) / n))
            for event in world.interactions_for_feed(feed, now)[:3]:
                interact(event, now)
    n_windows = int(np.ceil(duration_s / WINDOW_S))
    return SimulationResult(
        windows=[float(np.mean(windows[w])) if w in windows else None for w in range(n_windows)],
        summary=board.summary(), examples=model.examples, weights=model.weights.copy(),
        author_diversity=float(np.mean([a for a, _ in diversity])) if diversity else 0.0,
        topic_diversity=float(np.mean([t for _, t in diversity])) if diversity else 0.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 3, 11])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--no-learning", action="store_true")
    parser.add_argument("--set", nargs="*", default=[], help="RankerParams overrides, name=value")
    args = parser.parse_args(argv)
    from flitfeed.encoders.factory import make_encoder

    settings = Settings()
    params = RankerParams.from_settings(settings)
    if args.set:
        params = replace(params, **{k: float(v) for k, v in (s.split("=", 1) for s in args.set)})
    encoder = make_encoder(settings)
    for seed in args.seeds:
        r = simulate(seed, args.duration, encoder=encoder, settings=settings, params=params,
                     learning=not args.no_learning)
        s = r.summary
        per_window = " ".join("-" if m is None else f"{m:.2f}" for m in r.windows)
        print(f"seed {seed:>3}: warm match {s['warm_match']:.3f}  random {s['random_match']:.3f}  "
              f"per {WINDOW_S:.0f} s: {per_window}  examples {r.examples}  "
              f"authors/item {r.author_diversity:.2f}  topics/item {r.topic_diversity:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
