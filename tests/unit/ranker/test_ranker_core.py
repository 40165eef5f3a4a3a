"""The ranker core: one builder for the learners and pipelines the service, the evaluation and the demo use."""

from __future__ import annotations

import numpy as np
from dataclasses import replace

from flitfeed.index.memory import MemoryIndex
from flitfeed.ranker.core import CoreSizes, build_ranker_core
from flitfeed.ranker.model import prior_weights
from flitfeed.ranker.params import RankerParams
from flitfeed.settings import RankerConfig
from flitfeed.streams.events import Interaction


def core(**kw):  # noqa: ANN003, ANN202
    cfg = RankerConfig(recent_flits_capacity=100, coengagement_capacity=50, coengagement_users=7)
    return build_ranker_core(cfg, RankerParams.from_config(cfg), CoreSizes.of(cfg), **kw)


def test_the_learners_are_sized_by_the_settings_and_shared_by_every_view() -> None:
    c = core()
    assert c.engagement.capacity == 10_000 and c.coengagement.capacity == 50 and c.coengagement.max_users == 7
    a, b = c.view(MemoryIndex(2)), c.view(MemoryIndex(3))
    assert a.recent is not b.recent and a.recent.capacity == 100 and a.index.dim == 2
    # Two versions' pipelines, one model: what is learned in one ranks the other's feeds too.
    model_of = lambda view: view.pipeline.scorers[-1].model  # noqa: E731
    assert model_of(a) is model_of(b) is c.model


def test_the_model_starts_from_the_prior_of_the_params_blend() -> None:
    cfg = RankerConfig()
    params = replace(RankerParams.from_config(cfg), similarity_weight=0.9)
    c = build_ranker_core(cfg, params, CoreSizes.of(cfg))
    np.testing.assert_array_equal(c.model.weights, prior_weights(params.weights()))


def test_without_collaboration_or_learning_the_pipeline_leaves_those_stages_out() -> None:
    c = core(collaborative=False, learned=False)
    assert c.coengagement is None and c.model is None and c.affinity is None
    pipeline = c.view(MemoryIndex(2)).pipeline
    names = [s.name for s in (*pipeline.sources, *pipeline.hydrators, *pipeline.scorers)]
    assert "collaborative" not in names and "co_engaged" not in names and names[-1] == "weighted"


def test_an_interaction_is_learned_by_every_learner() -> None:
    c = core()
    recent = c.view(MemoryIndex(2)).recent
    recent.add_one("f1", "a1", 0.0, ("worms",), vector=np.array([1.0, 0.0], dtype=np.float32))
    c.learn_interaction(Interaction(event_id="e1", user_id="u", flit_id="f1", kind="like", ts=0), recent)
    assert c.engagement.score("f1", now=0.0) > 0 and len(c.coengagement) == 1 and len(c.affinity) == 1


def test_a_catalogue_replay_holds_every_item() -> None:
    sizes = CoreSizes.for_catalog(RankerConfig(recent_flits_capacity=10), items=5000)
    assert sizes.recent == 5000 and sizes.coengagement == 5000 and sizes.engagement == 50_000
