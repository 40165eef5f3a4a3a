"""The feedback loop's plain parts: a served feed as an impression, and examples learned once each.

The ranker service and the streaming evaluation both use these, so the model learns the same way
in production and in a replay (README "Learning from feedback").

>>> import numpy as np
>>> from flitfeed.ranker.candidate import Candidate
>>> from flitfeed.ranker.features import N_FEATURES
>>> from flitfeed.ranker.model import ActionModel
>>> from flitfeed.ranker.query import FeedQuery
>>> from flitfeed.ranker.join import ImpressionJoin
>>> c = Candidate("f1", "robin", 0.0, "similar", score=0.4, features=np.ones(N_FEATURES))
>>> imp = impression_for(FeedQuery("wren", 10, now=100.0, trigger_id="r1"), [c], "imp-1")
>>> imp.items[0].flit_id, imp.served_at
('f1', 100.0)
>>> join = ImpressionJoin(window_s=60.0); _ = join.add(imp)
>>> learner = ExampleLearner(ActionModel())
>>> join.learn_one("wren", "f1", "like", ts=101.0)
True
>>> [ex] = join.expire(now=161.0)
>>> learner.learn_many([ex, ex])       # the repeat is not learned twice
(1, {'duplicate': 1})
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from typing import Iterable, Sequence

import numpy as np

from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.features import FEATURE_SET, N_FEATURES
from flitfeed.ranker.model import ActionModel
from flitfeed.ranker.query import FeedQuery
from flitfeed.streams.events import Example, Impression, ImpressionItem
from flitfeed.streams.vocabulary import ACTIONS


def impression_for(query: FeedQuery, items: Sequence[Candidate], impression_id: str) -> Impression:
    """The impression of a served feed: each item with the feature values it was scored with.

    Built from plain values and validated in one call: pydantic's validator is compiled, while
    ``model_construct`` runs in Python per item (a ten-item impression: 55–60 µs against 95–100 µs,
    BENCHMARKS.md "Session 13"). A value that fails validation raises, and the service dead-letters
    that feed's triggers rather than publish a record its readers would drop.
    """
    # The features of all items rounded in one call (6 decimals: the record stays small and the rounding
    # is far below the learning noise).
    scored = [c.features is not None for c in items]
    features = iter(np.round(np.stack([c.features for c in items if c.features is not None]), 6).tolist()
                    if any(scored) else [])
    return Impression.model_validate({
        "impression_id": impression_id, "user_id": query.user_id, "served_at": float(query.now),
        "trigger_id": query.trigger_id, "feature_set": FEATURE_SET,
        "items": [{"flit_id": c.flit_id, "author_id": c.author_id, "position": i, "score": round(float(c.score), 6),
                   "features": next(features) if has else [], "propensity": float(c.propensity),
                   "explore": c.source == "explore"}
                  for i, (c, has) in enumerate(zip(items, scored))]})


class ExampleLearner:
    """Learns the model from labelled examples; each ``example_id`` once (within ``memory`` ids).

    Examples of another feature layout, with a feature vector that is not finite or not the
    layout's length, or with an unknown action are dropped, by reason, and never learned.
    """

    def __init__(self, model: ActionModel, memory: int = 200_000) -> None:
        self.model = model
        self.memory = int(memory)
        self._learned: OrderedDict[str, None] = OrderedDict()

    def seen(self, example_id: str) -> bool:
        return example_id in self._learned

    def learn_many(self, examples: Iterable[Example]) -> tuple[int, dict[str, int]]:
        """Returns ``(learned, {reason: dropped})``."""
        dropped: Counter[str] = Counter()
        rows: list[list[float]] = []
        labels: list[list[str]] = []
        for ex in examples:
            reason = self._check(ex)
            if reason is not None:
                dropped[reason] += 1
                continue
            self._learned[ex.example_id] = None
            if len(self._learned) > self.memory:
                self._learned.popitem(last=False)
            rows.append(ex.features)
            labels.append(ex.actions)
        if rows:
            self.model.learn_many(np.asarray(rows, dtype=np.float64), ActionModel.label_matrix(labels))
        return len(rows), dict(dropped)

    def _check(self, ex: Example) -> str | None:
        if ex.example_id in self._learned:
            return "duplicate"
        if ex.feature_set != FEATURE_SET:
            return "feature_set"
        if len(ex.features) != N_FEATURES or not all(math.isfinite(v) for v in ex.features):
            return "bad_features"
        if any(a not in ACTIONS for a in ex.actions):
            return "unknown_action"
        return None
