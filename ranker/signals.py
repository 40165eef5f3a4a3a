"""What the ranker learns from each interaction it reads: one function, used by the service and the evaluator.

>>> from flitfeed.ranker.engagement import EngagementTracker
>>> from flitfeed.ranker.coengagement import CoEngagement
>>> from flitfeed.streams.events import Interaction
>>> e, c = EngagementTracker(half_life_s=3600.0, capacity=10), CoEngagement(capacity=10)
>>> learn_interaction(e, c, Interaction(event_id="e1", user_id="u", flit_id="f", kind="like", ts=0))
>>> e.score("f", now=0.0), len(c)
(1.0, 1)
"""

from __future__ import annotations

from flitfeed.ranker.coengagement import CoEngagement
from flitfeed.ranker.engagement import EngagementTracker
from flitfeed.streams.events import Interaction, to_epoch


def learn_interaction(engagement: EngagementTracker, coengagement: CoEngagement | None, event: Interaction) -> None:
    """Count ``event`` in the flit's popularity and, when there is one, in the co-engagement model."""
    ts = to_epoch(event.ts)
    engagement.learn_one(event.flit_id, event.kind, ts)
    if coengagement is not None:
        coengagement.learn_one(event.user_id, event.flit_id, event.kind, ts)
