"""The feed ranker: a candidate pipeline in the style of xai-org/x-algorithm.

A batch of feeds (one per :class:`FeedQuery`) is built in a fixed order by
:class:`FeedPipeline`, every stage working on the candidates of the whole batch
held as columns (:class:`~flitfeed.ranker.candidates.CandidateBatch`):

1. **sources** produce candidates (vector neighbours of the user's taste;
   co-engaged, fresh and popular recent flits);
2. **hydrators** fill candidate columns (engagement, similarity, co-engagement,
   affinity);
3. **filters** drop what must not be shown (duplicates, seen, own flits,
   muted authors, too old);
4. **scorers** write per-component scores, then the base score (the learned
   model, or the weighted blend);
5. the **selector** picks each feed's top ``k`` with author/tag diversity and an
   exploration slot, as :class:`Candidate` objects.

:func:`build_feed_pipeline` (in :mod:`flitfeed.ranker.feeds`) lists the
stages; :class:`RankerParams` holds every tunable.
"""

from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.candidates import CandidateBatch
from flitfeed.ranker.engagement import EngagementTracker
from flitfeed.ranker.feeds import build_feed_pipeline
from flitfeed.ranker.params import RankerParams
from flitfeed.ranker.pipeline import FeedPipeline, PipelineResult
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.recent import RecentFlits

__all__ = [
    "Candidate",
    "CandidateBatch",
    "EngagementTracker",
    "FeedPipeline",
    "FeedQuery",
    "PipelineResult",
    "RankerParams",
    "RecentFlits",
    "build_feed_pipeline",
]
