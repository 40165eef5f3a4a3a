"""Candidate filters, one per file."""

from flitfeed.ranker.filters.duplicate_filter import DuplicateFilter
from flitfeed.ranker.filters.max_age_filter import MaxAgeFilter
from flitfeed.ranker.filters.muted_author_filter import MutedAuthorFilter
from flitfeed.ranker.filters.own_flits_filter import OwnFlitsFilter
from flitfeed.ranker.filters.seen_filter import SeenFilter

__all__ = ["DuplicateFilter", "MaxAgeFilter", "MutedAuthorFilter", "OwnFlitsFilter", "SeenFilter"]
