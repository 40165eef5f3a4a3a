"""Candidate sources, and the hydrators that fill candidates' fields after them."""

from flitfeed.ranker.sources.affinity_hydrator import AffinityHydrator
from flitfeed.ranker.sources.co_engaged_source import CoEngagedSource
from flitfeed.ranker.sources.collaborative_hydrator import CollaborativeHydrator
from flitfeed.ranker.sources.engagement_hydrator import EngagementHydrator
from flitfeed.ranker.sources.fresh_popular_source import FreshPopularSource
from flitfeed.ranker.sources.similarity_hydrator import SimilarityHydrator
from flitfeed.ranker.sources.vector_neighbours_source import VectorNeighboursSource

__all__ = ["AffinityHydrator", "CoEngagedSource", "CollaborativeHydrator", "EngagementHydrator", "FreshPopularSource", "SimilarityHydrator", "VectorNeighboursSource"]
