"""A candidate flit travelling through the feed pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(slots=True)
class Candidate:
    flit_id: str
    author_id: str
    created_at: float  # epoch seconds
    #: The source that produced it; published as the feed item's ``reason``.
    source: str
    #: Cosine similarity to the user's taste (0 when unknown, e.g. cold start).
    similarity: float = 0.0
    #: Decayed engagement count, filled by a hydrator.
    engagement: float = 0.0
    #: Co-engagement score for this user (0 when unknown), filled by a source or hydrator.
    collaborative: float = 0.0
    #: The user's affinity to the author and to the flit's tags, in (-1, 1), filled by a hydrator.
    author_affinity: float = 0.0
    tag_affinity: float = 0.0
    tags: tuple[str, ...] = ()
    lang: str | None = None
    #: Per-scorer components, e.g. {"similarity": 0.8, "freshness": 0.5}.
    components: dict[str, float] = field(default_factory=dict)
    score: float = 0.0
    #: The ranking model's feature row it was scored with (logged with the impression).
    features: np.ndarray | None = None
    #: Probability that the selector placed it: 1 for a ranked pick, 1/n for an exploration draw from n.
    propensity: float = 1.0
