"""Candidate scorers, one per file; :class:`WeightedScorer` combines the others."""

from flitfeed.ranker.scorers.action_scorer import ActionScorer
from flitfeed.ranker.scorers.collaborative_scorer import CollaborativeScorer
from flitfeed.ranker.scorers.engagement_scorer import EngagementScorer
from flitfeed.ranker.scorers.freshness_scorer import FreshnessScorer
from flitfeed.ranker.scorers.similarity_scorer import SimilarityScorer
from flitfeed.ranker.scorers.weighted_scorer import WeightedScorer

__all__ = ["ActionScorer", "CollaborativeScorer", "EngagementScorer", "FreshnessScorer", "SimilarityScorer", "WeightedScorer"]
