"""The ranker's in-memory core, built in one place: what the service serves from and the evaluation replays.

The ranking state is a few learners shared by every embedding version the ranker holds (popularity,
co-engagement, author/tag affinity, the ranking model) and, per version, an index, its recent flits and
the feed pipeline over them. The service (:class:`~flitfeed.ranker.service.RankerService`) and the
offline evaluation (:class:`~flitfeed.evaluation.methods.FlitfeedMethod`) used to build all of it each
on their own, line by line alike, so a change to one (a new learner, another size) could silently
leave the evaluation measuring a ranker that no longer runs anywhere. Both now call
:func:`build_ranker_core`; only the sizes differ (:class:`CoreSizes`: a live stream's bounds, or a
catalogue that fits whole).

>>> from flitfeed.settings import RankerConfig
>>> from flitfeed.index.memory import MemoryIndex
>>> cfg = RankerConfig()
>>> core = build_ranker_core(cfg, RankerParams.from_config(cfg), CoreSizes.of(cfg))
>>> view = core.view(MemoryIndex(2))
>>> len(view.recent), view.pipeline.scorers[-1].name
(0, 'model')
"""

from __future__ import annotations

from dataclasses import dataclass

from flitfeed.index.base import VectorIndex
from flitfeed.index.catalogue import VectorCatalogue
from flitfeed.ranker.affinity import Affinity
from flitfeed.ranker.coengagement import CoEngagement
from flitfeed.ranker.engagement import EngagementTracker
from flitfeed.ranker.feeds import build_feed_pipeline
from flitfeed.ranker.model import ActionModel, prior_weights
from flitfeed.ranker.params import RankerParams
from flitfeed.ranker.pipeline import FeedPipeline
from flitfeed.ranker.recent import RecentFlits
from flitfeed.ranker.signals import learn_interaction
from flitfeed.settings import RankerConfig
from flitfeed.streams.events import Interaction

__all__ = ["CoreSizes", "FeedView", "RankerCore", "build_ranker_core"]


@dataclass(frozen=True, slots=True)
class CoreSizes:
    """How many flits each part of the core holds."""

    #: Flits whose popularity is tracked.
    engagement: int
    #: Flits held per version as candidates (author, age, tags, vector).
    recent: int
    #: Flits in the co-engagement model.
    coengagement: int

    @classmethod
    def of(cls, cfg: RankerConfig) -> CoreSizes:
        """A live ranker's: bounded by the settings (popularity tracks ten times the recent flits, since a
        flit keeps being engaged with after it left the recent store).

        >>> CoreSizes.of(RankerConfig(recent_flits_capacity=500, coengagement_capacity=300))
        CoreSizes(engagement=10000, recent=500, coengagement=300)
        """
        return cls(engagement=max(10 * cfg.recent_flits_capacity, 10_000), recent=cfg.recent_flits_capacity,
                   coengagement=cfg.coengagement_capacity)

    @classmethod
    def for_catalog(cls, cfg: RankerConfig, items: int) -> CoreSizes:
        """A replay of a fixed catalogue's: every item fits (no eviction), and the co-engagement model's
        dense matrix is no larger than the catalogue.

        >>> CoreSizes.for_catalog(RankerConfig(recent_flits_capacity=500), items=2000)
        CoreSizes(engagement=20000, recent=2000, coengagement=2000)
        """
        return cls(engagement=max(10 * items, 10_000), recent=max(cfg.recent_flits_capacity, items),
                   coengagement=items)


@dataclass(frozen=True, slots=True)
class FeedView:
    """One embedding version's side of the core: its index, the recent flits in it, the pipeline over both."""

    index: VectorIndex
    recent: RecentFlits
    pipeline: FeedPipeline
    #: The in-memory mirror of the index the vector source searches while it mirrors it (None: the index).
    catalogue: VectorCatalogue | None = None


@dataclass
class RankerCore:
    """The learners shared by every version held; :meth:`view` adds a version's index, recent flits and pipeline.

    ``coengagement`` is None for a content + popularity ranker; ``model`` and ``affinity`` are None for the
    hand-set blend without learning (evaluation baselines only: the service always learns).
    """

    params: RankerParams
    sizes: CoreSizes
    engagement: EngagementTracker
    coengagement: CoEngagement | None
    affinity: Affinity | None
    model: ActionModel | None

    def view(self, index: VectorIndex, catalogue: VectorCatalogue | None = None) -> FeedView:
        """A version's recent flits (empty) and its feed pipeline over ``index`` and the shared learners.

        ``catalogue``: an in-memory mirror of ``index`` (:mod:`flitfeed.index.catalogue`) the vector source
        searches exactly while it mirrors the index; the caller feeds it every write the index gets.
        """
        recent = RecentFlits(capacity=self.sizes.recent)
        pipeline = build_feed_pipeline(index, self.engagement, recent, self.params, self.coengagement,
                                       model=self.model, affinity=self.affinity, catalogue=catalogue)
        return FeedView(index, recent, pipeline, catalogue)

    def learn_interaction(self, event: Interaction, recent: RecentFlits | None) -> None:
        """Count ``event`` in every learner (``recent``: where the flit's author and tags are looked up)."""
        learn_interaction(self.engagement, self.coengagement, event, self.affinity, recent,
                          self.params.engagement_saturation)


def build_ranker_core(cfg: RankerConfig, params: RankerParams, sizes: CoreSizes, *, collaborative: bool = True,
                      learned: bool = True) -> RankerCore:
    """The ranker's learners, sized by ``sizes`` and shaped by ``params``.

    The model starts from the prior of ``params``' hand-set blend (:func:`~flitfeed.ranker.model.prior_weights`),
    so before its first example it ranks as the blend did.
    """
    coengagement = CoEngagement(capacity=sizes.coengagement, history=params.coengagement_history,
                                recency=params.coengagement_recency, beta=params.coengagement_beta,
                                max_users=cfg.coengagement_users) if collaborative else None
    model = ActionModel(learning_rate=cfg.model_learning_rate, prior=prior_weights(params.weights())) if learned else None
    return RankerCore(params=params, sizes=sizes,
                      engagement=EngagementTracker(half_life_s=cfg.popularity_half_life_s, capacity=sizes.engagement),
                      coengagement=coengagement,
                      affinity=Affinity(max_users=cfg.coengagement_users) if learned else None,
                      model=model)
