"""What the ranker learns from each interaction it reads: one function, used by the service and the evaluator.

>>> from flitfeed.ranker.engagement import EngagementTracker, saturated
>>> from flitfeed.ranker.coengagement import CoEngagement
>>> from flitfeed.streams.events import Interaction
>>> e, c = EngagementTracker(half_life_s=3600.0, capacity=10), CoEngagement(capacity=10)
>>> learn_interaction(e, c, Interaction(event_id="e1", user_id="u", flit_id="f", kind="like", ts=0))
>>> e.score("f", now=0.0), len(c)
(1.0, 1)
"""

from __future__ import annotations

from flitfeed.ranker.affinity import Affinity
from flitfeed.ranker.coengagement import CoEngagement
from flitfeed.ranker.engagement import EngagementTracker, saturated
from flitfeed.ranker.recent import RecentFlits
from flitfeed.streams.events import Interaction, to_epoch


def learn_interaction(engagement: EngagementTracker, coengagement: CoEngagement | None, event: Interaction,
                      affinity: Affinity | None = None, recent: RecentFlits | None = None,
                      engagement_saturation: float = 5.0) -> None:
    """Count ``event`` in the flit's popularity and, when there are, in the co-engagement and affinity models.

    Affinity needs the flit's author and tags, from ``recent``; for a flit not held there only the
    user's activity counts. The "mainstream" statistic takes the flit's popularity *before* this event.
    """
    ts = to_epoch(event.ts)
    if affinity is not None:
        flit = None if recent is None else recent.get(event.flit_id)
        e = engagement.score(event.flit_id, ts)
        affinity.learn_one(event.user_id, None if flit is None else flit.author_id, () if flit is None else flit.tags,
                           event.kind, popularity=float(saturated(e, engagement_saturation)))
    engagement.learn_one(event.flit_id, event.kind, ts)
    if coengagement is not None:
        coengagement.learn_one(event.user_id, event.flit_id, event.kind, ts)
