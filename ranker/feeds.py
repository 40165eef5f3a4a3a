"""The feed, stage by stage: the one place that lists what runs and in what order.

Adding a filter is one file in ``filters/`` and one line below.
"""

from __future__ import annotations

from flitfeed.index.base import VectorIndex
from flitfeed.index.catalogue import VectorCatalogue
from flitfeed.ranker.affinity import Affinity
from flitfeed.ranker.model import ActionModel
from flitfeed.ranker.coengagement import CoEngagement
from flitfeed.ranker.engagement import EngagementTracker
from flitfeed.ranker.filters import DuplicateFilter, MaxAgeFilter, MutedAuthorFilter, OwnFlitsFilter, SeenFilter
from flitfeed.ranker.params import RankerParams
from flitfeed.ranker.pipeline import FeedPipeline
from flitfeed.ranker.recent import RecentFlits
from flitfeed.ranker.scorers import (ActionScorer, CollaborativeScorer, EngagementScorer, FreshnessScorer,
                                    SimilarityScorer, WeightedScorer)
from flitfeed.ranker.selectors import DiversitySelector
from flitfeed.ranker.sources import (
    AffinityHydrator,
    CoEngagedSource,
    CollaborativeHydrator,
    EngagementHydrator,
    FreshPopularSource,
    SimilarityHydrator,
    VectorNeighboursSource,
)


def build_feed_pipeline(
    index: VectorIndex,
    engagement: EngagementTracker,
    recent: RecentFlits,
    params: RankerParams,
    coengagement: CoEngagement | None = None,
    model: ActionModel | None = None,
    affinity: Affinity | None = None,
    catalogue: VectorCatalogue | None = None,
) -> FeedPipeline:
    """The home-feed pipeline over the shared index, engagement, recent-flit and co-engagement state.

    With ``model`` (the service's default) candidates are scored by the learned ranking model,
    ``Σ value · P(action)`` (:class:`ActionScorer`); without it by the former hand-set blend of
    ``params.weights()`` (:class:`WeightedScorer`), which the evaluation keeps as a baseline.
    Without ``coengagement`` the collaborative source, hydrator and scorer are left out (a content +
    popularity ranker); without ``affinity`` author and tag affinities stay 0. With ``catalogue`` (the
    index's points mirrored in memory, fed by the caller with every write the index gets) the vector
    source searches it exactly while it mirrors the index, the index otherwise.
    """
    collaborative = coengagement is not None
    return FeedPipeline(
        sources=[
            VectorNeighboursSource(index, params.candidates_per_source, max_age_s=params.max_age_s,
                                   max_pushed_seen=params.max_pushed_seen, catalogue=catalogue),
            *([CoEngagedSource(coengagement, recent, params.candidates_per_source)] if collaborative else []),
            FreshPopularSource(recent, engagement, params.candidates_per_source, max_age_s=params.max_age_s,
                               popular_share=params.popular_share),
        ],
        hydrators=[
            EngagementHydrator(engagement),
            SimilarityHydrator(index, recent),
            *([CollaborativeHydrator(coengagement)] if collaborative else []),
            *([AffinityHydrator(affinity)] if affinity is not None else []),
        ],
        # Duplicates go first so that a flit two sources returned is counted
        # once in the later filters' removed counts.
        filters=[
            DuplicateFilter(),
            SeenFilter(),
            OwnFlitsFilter(),
            MutedAuthorFilter(),
            MaxAgeFilter(params.max_age_s, params.future_skew_s),
        ],
        # The model (or the blend) combines the others, so it runs last.
        scorers=[
            SimilarityScorer(),
            FreshnessScorer(params.freshness_half_life_s),
            EngagementScorer(params.engagement_saturation),
            *([CollaborativeScorer()] if collaborative else []),
            ActionScorer(model, affinity) if model is not None else WeightedScorer(params.weights()),
        ],
        selector=DiversitySelector(params, recent.author_flit_count),
    )
