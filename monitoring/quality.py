"""Online quality proxies computed from the stream itself (no labels, no offline evaluation).

The ranker sees every feed it publishes and (through its popularity reader) every
interaction. :class:`FeedQuality` remembers which user was served which flit
(bounded: ``capacity`` pairs, forgotten after ``window_s``) and classifies a later
interaction of that user with that flit as positive or negative feedback on the
feed; each served pair counts at most once. Catalog coverage is the share of the
recent catalog that appeared in at least one feed over the latest
``coverage_feeds`` feeds; intra-feed diversity is the share of distinct authors
among a feed's items.

>>> q = FeedQuality(window_s=600, capacity=100)
>>> q.learn_feed("wren", [("f1", "robin"), ("f2", "robin"), ("f3", "tit")], now=0.0)
>>> q.learn_interaction("wren", "f1", "like", ts=30.0), q.learn_interaction("wren", "f1", "reflit", ts=31.0)
('positive', None)
>>> q.learn_interaction("wren", "f3", "hide", ts=900.0)    # outside the window: not attributed to the feed
>>> q.learn_interaction("wren", "f2", "view", ts=40.0)     # a view is neither
>>> q.coverage(catalog_size=6)
0.5
>>> diversity([("f1", "robin"), ("f2", "robin"), ("f3", "tit"), ("f4", "jay")])
0.75
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from typing import Sequence

from flitfeed.streams.vocabulary import negative_kinds, positive_kinds

POSITIVE_KINDS = positive_kinds()
NEGATIVE_KINDS = negative_kinds()

__all__ = ["FeedQuality", "diversity", "POSITIVE_KINDS", "NEGATIVE_KINDS"]


def diversity(items: Sequence[tuple[str, str]]) -> float:
    """Distinct authors / items of one feed (1.0 = every item by a different author; 1.0 for an empty feed)."""
    if not items:
        return 1.0
    return len({author for _, author in items}) / len(items)


class FeedQuality:
    """Feedback on served items within ``window_s``, and catalog coverage over the latest feeds."""

    def __init__(self, window_s: float = 600.0, capacity: int = 200_000, coverage_feeds: int = 1000) -> None:
        self.window_s = window_s
        self.capacity = capacity
        self._served: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._recent_feeds: deque[tuple[str, ...]] = deque(maxlen=coverage_feeds)
        self._in_recent: Counter[str] = Counter()

    def learn_feed(self, user_id: str, items: Sequence[tuple[str, str]], now: float) -> None:
        """Remember a published feed's ``(flit_id, author_id)`` items."""
        for flit_id, _ in items:
            key = (user_id, flit_id)
            self._served.pop(key, None)
            self._served[key] = now
        while len(self._served) > self.capacity:
            self._served.popitem(last=False)
        self._expire(now)
        flits = tuple(dict.fromkeys(f for f, _ in items))
        if len(self._recent_feeds) == self._recent_feeds.maxlen:
            self._in_recent.subtract(self._recent_feeds[0])
        self._recent_feeds.append(flits)
        self._in_recent.update(flits)

    def learn_interaction(self, user_id: str, flit_id: str, kind: str, ts: float) -> str | None:
        """``"positive"`` / ``"negative"`` when this is feedback on a served item within the window, else None."""
        served_at = self._served.get((user_id, flit_id))
        if served_at is None or kind not in POSITIVE_KINDS | NEGATIVE_KINDS:
            return None
        if not 0.0 <= ts - served_at <= self.window_s and not (ts < served_at and served_at - ts < 5.0):
            # (a small negative gap is clock skew between producer and ranker, still feedback on the feed)
            return None
        del self._served[(user_id, flit_id)]
        return "positive" if kind in POSITIVE_KINDS else "negative"

    def coverage(self, catalog_size: int) -> float:
        """Share of a catalog of ``catalog_size`` flits shown in the latest feeds (capped at 1)."""
        if catalog_size <= 0:
            return 0.0
        shown = sum(1 for n in self._in_recent.values() if n > 0)
        return min(1.0, shown / catalog_size)

    def _expire(self, now: float) -> None:
        while self._served:
            key, served_at = next(iter(self._served.items()))
            if now - served_at <= self.window_s:
                break
            del self._served[key]
