"""Every tunable of the feed ranker, in one frozen object.

:func:`flitfeed.ranker.feeds.build_feed_pipeline` hands each stage the values
it needs from a :class:`RankerParams`; no stage has a hidden constant that
changes what users see. The stateful inputs the ranker reads
(:class:`~flitfeed.ranker.engagement.EngagementTracker` and
:class:`~flitfeed.ranker.recent.RecentFlits`) are sized by the service from
the ``popularity_half_life_s`` and ``recent_flits_capacity`` settings (``RankerConfig``).

>>> p = RankerParams()
>>> p.weights()
{'similarity': 0.6, 'freshness': 0.25, 'engagement': 1.8, 'collaborative': 6.0}
>>> RankerParams(author_decay=1.5)
Traceback (most recent call last):
...
ValueError: author_decay must be in [0, 1], got 1.5
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from flitfeed.settings import RankerConfig

#: The deployment settings' defaults: the values that are settings take their defaults from there (one place).
_DEPLOYED = RankerConfig()

HOUR = 3600.0
DAY = 24 * HOUR

#: Names of the scorer components the final weighted score combines.
SIMILARITY = "similarity"
FRESHNESS = "freshness"
ENGAGEMENT = "engagement"
COLLABORATIVE = "collaborative"


@dataclass(frozen=True, slots=True)
class RankerParams:
    # --- Candidate retrieval (the feed size is the request's k, or the feed_k setting) ----
    #: How many candidates each source may return.
    candidates_per_source: int = _DEPLOYED.candidates_per_source
    #: Cap on seen flit ids pushed into the index query; the seen filter
    #: catches the rest, so this only bounds the size of the index request.
    max_pushed_seen: int = 1000
    #: Share of the fresh/popular source's budget spent on the most engaged
    #: recent flits; the rest goes to the newest ones.
    popular_share: float = 0.5

    # --- Eligibility ------------------------------------------------------------
    #: Flits older than this are never candidates.
    max_age_s: float = _DEPLOYED.max_flit_age_s
    #: Flits dated further than this in the future (author clock skew) are dropped.
    future_skew_s: float = 300.0

    # --- The former hand-set blend: score = Σ weight · component -----------------
    # The service scores with the learned model (ranker/model.py, whose prior recasts this blend);
    # the blend is kept as the evaluation's baseline ("hand-set blend"). Tuned by the streaming evaluation (docs/evaluation/tuning.json, README
    # "Recommendation quality"): on ml-latest-small the best relevance mix was
    # similarity : engagement : collaborative = 0.1 : 0.3 : 1.0. Freshness is
    # inert there (a film catalog has no post times), so the three are scaled
    # ×6 to keep issue 2's similarity : freshness ratio (0.6 : 0.25) for short
    # posts; a common scale does not change a ranking.
    #: Weight of cosine similarity to the user's taste (component in [-1, 1];
    #: 0 for cold-start users, so this weight is then inert).
    similarity_weight: float = 0.6
    #: Weight of freshness, ``2^(-age / freshness_half_life_s)`` in (0, 1].
    freshness_weight: float = 0.25
    #: Weight of engagement, ``e / (e + engagement_saturation)`` in (-1, 1).
    engagement_weight: float = 1.8
    #: Age at which the freshness component has halved.
    freshness_half_life_s: float = 6 * HOUR
    #: Decayed engagement at which the engagement component reaches 0.5:
    #: diminishing returns so one viral flit cannot drown relevance.
    engagement_saturation: float = 5.0

    #: Weight of the collaborative component: co-engagement with the user's
    #: recent positives, scaled to [0, 1] per request (see CollaborativeScorer).
    collaborative_weight: float = 6.0

    # --- Collaborative signal (CoEngagement, learned online from interactions) --
    #: How many of a user's latest positive flits define their co-engagement
    #: neighbourhood (and how far apart two positives may be to co-occur).
    coengagement_history: int = 50
    #: Weight of the j-th most recent positive is ``recency ** j``.
    coengagement_recency: float = 0.95
    #: Popularity normalisation of co-engagement: 0.5 = cosine; higher favours niche neighbours.
    coengagement_beta: float = 0.5

    # --- Selection: diversity and exploration -----------------------------------
    # Chosen from the demo simulation's figures (README "Learning from feedback": warm match against
    # authors and topics per item over 5 seeds): 0.5 / 0.8 erased a single clear interest (match 0.65,
    # "feeds cycle through the topics"), 1.0 / 1.0 gave 0.43 authors per item; 0.8 / 1.0 keeps the
    # match (0.83 over the last 30 s) with 0.67 distinct authors per item.
    #: Each further pick from an already-picked author has its score multiplied
    #: by ``author_decay ** n`` (n = that author's items already picked);
    #: 0 = at most one item per author while others remain, 1 = no penalty.
    author_decay: float = 0.8
    #: Score multiplied by ``tag_decay ** overlap`` where overlap counts the
    #: candidate's tags already present among the picked items (1 = off: a topic tag
    #: repeated is what a user with one clear interest wants).
    tag_decay: float = 1.0
    #: Share of feed slots reserved for exploration: a fresh flit by a new
    #: author, drawn at random when one is available (never the whole feed:
    #: at most ``k - 1`` slots). 0.1 = one slot of a 10-item feed.
    explore_share: float = _DEPLOYED.explore_share
    #: An author with at most this many flits among the recent flits is "new".
    new_author_max_flits: int = 3
    #: Only flits at most this old qualify for an exploration slot.
    exploration_max_age_s: float = 6 * HOUR

    def __post_init__(self) -> None:
        for name in ("candidates_per_source", "coengagement_history"):
            _check(name, getattr(self, name), lo=1)
        for name in ("max_pushed_seen", "new_author_max_flits"):
            _check(name, getattr(self, name), lo=0)
        for name in ("max_age_s", "freshness_half_life_s", "engagement_saturation", "exploration_max_age_s"):
            _check(name, getattr(self, name), lo=0, strict=True)
        _check("future_skew_s", self.future_skew_s, lo=0)
        for name in ("popular_share", "author_decay", "tag_decay", "coengagement_beta", "explore_share"):
            _check(name, getattr(self, name), lo=0, hi=1)
        if not 0 < self.coengagement_recency <= 1:
            raise ValueError(f"coengagement_recency must be in (0, 1], got {self.coengagement_recency}")
        for name in ("similarity_weight", "freshness_weight", "engagement_weight", "collaborative_weight"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)}")

    def weights(self) -> dict[str, float]:
        """Scorer name → weight, as the weighted scorer combines them."""
        return {
            SIMILARITY: self.similarity_weight,
            FRESHNESS: self.freshness_weight,
            ENGAGEMENT: self.engagement_weight,
            COLLABORATIVE: self.collaborative_weight,
        }

    @classmethod
    def from_config(cls, cfg: RankerConfig, **overrides: Any) -> RankerParams:
        """Defaults, with the ranker values that are deployment settings taken from ``cfg``.

        >>> p = RankerParams.from_config(RankerConfig(max_flit_age_s=60.0), tag_decay=0.5)
        >>> p.candidates_per_source, p.max_age_s, p.tag_decay
        (200, 60.0, 0.5)
        >>> RankerParams.from_config(RankerConfig(explore_share=0.0)).explore_share
        0.0
        """
        base = cls(
            candidates_per_source=cfg.candidates_per_source,
            max_age_s=cfg.max_flit_age_s,
            explore_share=cfg.explore_share,
        )
        return replace(base, **overrides)


def _check(name: str, value: float, lo: float, hi: float | None = None, strict: bool = False) -> None:
    ok = math.isfinite(value) and (value > lo if strict else value >= lo) and (hi is None or value <= hi)
    if not ok:
        if hi is not None:
            raise ValueError(f"{name} must be in [{lo:g}, {hi:g}], got {value}")
        raise ValueError(f"{name} must be {'>' if strict else '>='} {lo:g}, got {value}")
