"""The feed ranker: a candidate pipeline in the style of xai-org/x-algorithm.

A feed for a :class:`FeedQuery` is built in a fixed order by
:class:`FeedPipeline`:

1. **sources** produce :class:`Candidate` objects (vector neighbours of the
   user's taste; fresh and popular recent flits);
2. **hydrators** fill candidate fields (engagement, similarity);
3. **filters** drop what must not be shown (duplicates, seen, own flits,
   muted authors, too old);
4. **scorers** write per-component scores, then a weighted base score;
5. the **selector** picks the top ``k`` with author/tag diversity and an
   exploration slot.

:func:`build_feed_pipeline` (in :mod:`flitfeed.ranker.feeds`) lists the
stages; :class:`RankerParams` holds every tunable.
"""

from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.engagement import EngagementTracker
from flitfeed.ranker.feeds import build_feed_pipeline
from flitfeed.ranker.params import RankerParams
from flitfeed.ranker.pipeline import FeedPipeline, PipelineResult
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.recent import RecentFlits

__all__ = [
    "Candidate",
    "EngagementTracker",
    "FeedPipeline",
    "FeedQuery",
    "PipelineResult",
    "RankerParams",
    "RecentFlits",
    "build_feed_pipeline",
]
