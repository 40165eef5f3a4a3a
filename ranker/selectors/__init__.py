"""Feed selectors: turn scored candidates into the ordered feed."""

from flitfeed.ranker.selectors.diversity_selector import DiversitySelector

__all__ = ["DiversitySelector"]
