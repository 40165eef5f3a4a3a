"""The record vocabulary: every interaction kind and what it means, in one table.

Each kind says how it moves a user's taste (``taste_weight``, the worker's
update rule), how much it counts in a flit's popularity (``engagement_weight``,
on the positive or the negative side by ``polarity``), and which action of the
ranker's model it is evidence of (``action``). The ranker's model predicts the
probability of each :data:`ACTIONS` entry per candidate and scores a candidate
``Σ ACTION_VALUES[a] · P(a)``; the values are product constants, not fitted.

>>> KINDS["like"].polarity, KINDS["hide"].action, KINDS["view"].action
('positive', 'negative', None)
>>> action_of("view", dwell_ms=9_000), action_of("view", dwell_ms=1_000), action_of("reflit")
('dwell', None, 'engage')
>>> sorted(positive_kinds())
['like', 'reflit', 'reply']
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, Mapping

Polarity = Literal["positive", "negative", "neutral"]


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    #: How strongly the interaction pulls the user's taste towards the flit (negative: pushes away).
    taste_weight: float
    #: How much it counts in the flit's decayed popularity, on the side given by ``polarity``.
    engagement_weight: float
    #: ``positive``: the user wanted this; ``negative``: they did not; ``neutral``: a view.
    polarity: Polarity
    #: The model action it is a label of (a view only with enough dwell, see :func:`action_of`).
    action: str | None


#: Every interaction kind this version knows. A new kind is one row here.
KINDS: Mapping[str, Kind] = MappingProxyType({k.name: k for k in (
    # A view is cheap and automatic: weak evidence, scaled by its dwell time in the taste.
    Kind("view", taste_weight=0.2, engagement_weight=0.1, polarity="neutral", action=None),
    Kind("like", taste_weight=1.0, engagement_weight=1.0, polarity="positive", action="engage"),
    Kind("reflit", taste_weight=1.5, engagement_weight=1.5, polarity="positive", action="engage"),
    Kind("reply", taste_weight=1.2, engagement_weight=1.2, polarity="positive", action="engage"),
    Kind("hide", taste_weight=-1.0, engagement_weight=1.0, polarity="negative", action="negative"),
    Kind("report", taste_weight=-2.0, engagement_weight=2.0, polarity="negative", action="negative"),
)})

#: Kind names in table order (the ``kind`` values the ``interactions`` topic accepts).
INTERACTION_KINDS: tuple[str, ...] = tuple(KINDS)

#: A view at least this long is a positive label (action ``dwell``) for the ranker's model.
DWELL_POSITIVE_MS = 5_000
#: A view's taste weight reaches its full value at this dwell time.
FULL_DWELL_MS = 10_000

#: The actions the ranker's model predicts, in the order of its output columns.
ACTIONS: tuple[str, ...] = ("engage", "dwell", "negative")
#: Value of each action in the feed's objective ``Σ value · P(action)``: documented product constants
#: (x-algorithm's pattern: a negative action costs far more than a positive one earns, so a flit a user
#: is likely to hide must be very likely to please to be shown).
ACTION_VALUES: Mapping[str, float] = MappingProxyType({"engage": 1.0, "dwell": 0.3, "negative": -10.0})


def action_of(kind: str, dwell_ms: int | None = None) -> str | None:
    """The model action an interaction is a label of, or None (a short view: seen, not a label)."""
    spec = KINDS[kind]
    if spec.action is None and kind == "view" and dwell_ms is not None and dwell_ms >= DWELL_POSITIVE_MS:
        return "dwell"
    return spec.action


def positive_kinds() -> frozenset[str]:
    return frozenset(k.name for k in KINDS.values() if k.polarity == "positive")


def negative_kinds() -> frozenset[str]:
    return frozenset(k.name for k in KINDS.values() if k.polarity == "negative")
