"""What a feed is built for: the user's state at the moment of ranking."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True)
class FeedQuery:
    user_id: str
    k: int
    now: float  # epoch seconds; stages never read the clock themselves
    #: L2-normalised taste vector, or None for a cold-start user (no positive feedback yet).
    taste: np.ndarray | None = None
    seen: frozenset[str] = field(default_factory=frozenset)
    muted_authors: frozenset[str] = field(default_factory=frozenset)
    positives: int = 0
    #: What asked for the feed (request or event id): seeds the exploration draw, so the same
    #: trigger on the same state gives the same feed on any replica.
    trigger_id: str = ""

    @property
    def cold_start(self) -> bool:
        return self.taste is None or self.positives == 0
