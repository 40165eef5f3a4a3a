"""How well do the feeds match what the simulated birds secretly like?

:class:`Scoreboard` watches the feeds the recommender sends to the birds of a
:class:`~flitfeed.demo.world.World`. For each feed it measures the *interest
match*: the share of items whose topic is one of the bird's interest topics.
As a baseline it draws, with its own seeded generator, a random feed of the
same size from all flits the world has produced so far and measures that too;
``lift = match / random``. A recommender that learned nothing has a lift near
1; one that learned the birds' tastes has a lift well above it.

Pure: no I/O, no clock. Usage::

    >>> from flitfeed.demo.world import World
    >>> from flitfeed.streams.events import Feed, FeedItem
    >>> w = World(seed=3, n_birds=2, n_authors=3, start=0.0)
    >>> flits = w.next_flits(30, now=0.0)
    >>> bird = w.birds[0]
    >>> liked = [f for f in flits if w.topic_of(f.flit_id) in w.interests_of(bird)][:3]
    >>> feed = Feed(user_id=bird, generated_at=0.0, model_version="m", trigger_id="t",
    ...             trigger_kind="request",
    ...             items=[FeedItem(flit_id=f.flit_id, author_id=f.author_id, score=1.0, reason="x")
    ...                    for f in liked])
    >>> board = Scoreboard(w)
    >>> board.record_feed(feed)
    1.0
    >>> board.summary()["match"]
    1.0
    >>> print(board.render().splitlines()[0])            # doctest: +ELLIPSIS
    flitfeed demo scoreboard  feeds 1 ...
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from flitfeed.demo.world import World
from flitfeed.streams.events import Feed

__all__ = ["Scoreboard"]


@dataclass(frozen=True)
class _Scored:
    bird_id: str
    match: float
    random_match: float
    cold_start: bool


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _lift(match: float | None, baseline: float | None) -> float | None:
    if match is None or baseline is None or baseline <= 0.0:
        return None
    return match / baseline


def _fmt(value: float | None, width: int, digits: int = 3, suffix: str = "") -> str:
    text = "-" if value is None else f"{value:.{digits}f}{suffix}"
    return text.rjust(width)


class Scoreboard:
    """Interest-match statistics over the feeds the birds of ``world`` received.

    :param world: the world whose birds, interests and flits define the truth.
    :param seed: seeds the random-baseline draws (default: the world's seed).
    :param window: how many most recent scored feeds the ``recent_*`` figures cover.

    Feeds for users the world does not know are counted as ``ignored_feeds``
    and otherwise skipped; items naming flits the world never produced are
    counted as ``unknown_items`` and left out of both the match and the
    baseline; a feed with no known item counts in ``empty_feeds`` only.
    """

    def __init__(self, world: World, *, seed: int | None = None, window: int = 50,
                 period_s: float = 10.0) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self._world = world
        self._rng = np.random.default_rng([world.seed if seed is None else seed, 0x5C0BE])
        self._window = window
        self._all: list[_Scored] = []
        self._recent: deque[_Scored] = deque(maxlen=window)
        self._latest: dict[str, float] = {}
        self._per_bird_feeds: dict[str, int] = {}
        self._feeds = 0
        self._cold = 0
        self._ignored = 0
        self._empty = 0
        self._items = 0
        self._unknown_items = 0
        self._flit_topics: list[str] = []  # topic of every world flit, by production order
        #: Warm-feed matches per ``period_s`` of demo time (the ``at`` of :meth:`record_feed`).
        self._period_s = period_s
        self._periods: dict[int, list[float]] = {}

    def _sync_flits(self) -> None:
        new = self._world.n_flits - len(self._flit_topics)
        if new > 0:
            fresh = reversed(self._world.newest_flits(new))
            self._flit_topics.extend(self._world.topic_of(f.flit_id) for f in fresh)

    def _random_match(self, interests: dict[str, float], k: int) -> float:
        self._sync_flits()
        n = len(self._flit_topics)
        picks = self._rng.choice(n, size=min(k, n), replace=False)
        return float(np.mean([self._flit_topics[int(i)] in interests for i in picks]))

    def record_feed(self, feed: Feed, at: float | None = None) -> float | None:
        """Score one feed; returns its interest match (``None`` when it could not be scored).

        ``at``: seconds since the demo started; a warm feed's match then also counts in its
        ``period_s`` window (:meth:`periods`), which shows the match rising as the ranker learns.
        """
        world = self._world
        if feed.user_id not in world.birds:
            self._ignored += 1
            return None
        self._feeds += 1
        self._cold += int(feed.cold_start)
        self._per_bird_feeds[feed.user_id] = self._per_bird_feeds.get(feed.user_id, 0) + 1
        known = [item.flit_id for item in feed.items if world.knows_flit(item.flit_id)]
        self._unknown_items += len(feed.items) - len(known)
        self._items += len(known)
        if not known:
            self._empty += 1
            return None
        interests = world.interests_of(feed.user_id)
        match = sum(world.topic_of(fid) in interests for fid in known) / len(known)
        scored = _Scored(feed.user_id, match, self._random_match(interests, len(known)), feed.cold_start)
        self._all.append(scored)
        self._recent.append(scored)
        self._latest[feed.user_id] = match
        if at is not None and not feed.cold_start:
            self._periods.setdefault(int(at // self._period_s), []).append(match)
        return match

    def periods(self) -> list[float | None]:
        """Mean warm-feed match of each ``period_s`` window so far (None: no warm feed in it)."""
        last = max(self._periods, default=-1)
        return [_mean(self._periods.get(i, [])) for i in range(last + 1)]

    def summary(self) -> dict[str, Any]:
        """Every figure as plain data.

        Keys: ``feeds`` (for known birds), ``scored_feeds``, ``ignored_feeds``,
        ``empty_feeds``, ``items``, ``unknown_items``, ``birds`` (with a scored
        feed), ``cold_start_share``; ``match`` / ``random_match`` / ``lift``
        over all scored feeds (means of per-feed shares), the same prefixed
        ``recent_`` over the last ``window`` ones, ``warm_match`` / ``cold_match``
        (feeds with ``cold_start`` false / true), ``window``, and ``per_bird``:
        bird id -> match of its latest scored feed. Undefined figures are ``None``.
        """
        match = _mean([s.match for s in self._all])
        random_match = _mean([s.random_match for s in self._all])
        recent_match = _mean([s.match for s in self._recent])
        recent_random = _mean([s.random_match for s in self._recent])
        return {
            "feeds": self._feeds,
            "scored_feeds": len(self._all),
            "ignored_feeds": self._ignored,
            "empty_feeds": self._empty,
            "items": self._items,
            "unknown_items": self._unknown_items,
            "birds": len(self._latest),
            "cold_start_share": self._cold / self._feeds if self._feeds else None,
            "match": match,
            "random_match": random_match,
            "lift": _lift(match, random_match),
            "window": self._window,
            "recent_match": recent_match,
            "recent_random_match": recent_random,
            "recent_lift": _lift(recent_match, recent_random),
            "warm_match": _mean([s.match for s in self._all if not s.cold_start]),
            "cold_match": _mean([s.match for s in self._all if s.cold_start]),
            "per_bird": dict(sorted(self._latest.items())),
        }

    def render(self, max_birds: int = 12) -> str:
        """A compact fixed-width table for a terminal (at most ``max_birds`` bird rows)."""
        s = self.summary()
        cold = s["cold_start_share"]
        cold_text = "-" if cold is None else f"{100.0 * cold:.1f}%"
        lines = [
            f"flitfeed demo scoreboard  feeds {s['feeds']}  cold-start {cold_text}  "
            f"birds {s['birds']}/{len(self._world.birds)}  flits {self._world.n_flits}",
            f"{'':<16}{'match':>8}{'random':>8}{'lift':>8}",
            f"{'all feeds':<16}{_fmt(s['match'], 8)}{_fmt(s['random_match'], 8)}{_fmt(s['lift'], 8, 2, 'x')}",
            f"{'last ' + str(len(self._recent)):<16}{_fmt(s['recent_match'], 8)}"
            f"{_fmt(s['recent_random_match'], 8)}{_fmt(s['recent_lift'], 8, 2, 'x')}",
            f"{'warm feeds':<16}{_fmt(s['warm_match'], 8)}",
            f"{'warm, per ' + format(self._period_s, 'g') + ' s':<16}"
            + " ".join("-" if m is None else f"{m:.2f}" for m in self.periods()[-12:]),
            f"{'cold-start feeds':<16}{_fmt(s['cold_match'], 8)}",
            "",
            f"{'bird':<10}{'interests':<30}{'latest':>8}{'feeds':>7}",
        ]
        per_bird: dict[str, float] = s["per_bird"]
        for bird_id in list(per_bird)[:max(0, max_birds)]:
            interests = " ".join(f"{t}:{p:.2f}" for t, p in self._world.interests_of(bird_id).items())
            lines.append(f"{bird_id:<10}{interests[:29]:<30}{_fmt(per_bird[bird_id], 8)}"
                         f"{self._per_bird_feeds.get(bird_id, 0):>7}")
        hidden = len(per_bird) - max(0, max_birds)
        if hidden > 0:
            lines.append(f"... {hidden} more birds")
        return "\n".join(lines)
