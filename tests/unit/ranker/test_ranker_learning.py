"""The learned ranking: features, the online model, the impression join, affinity, exploration, the loop."""

from __future__ import annotations

import numpy as np
import pytest

from flitfeed.demo.simulation import simulate
from flitfeed.encoders.hashing import HashingEncoder
from flitfeed.ranker.affinity import Affinity
from flitfeed.ranker.candidate import Candidate
from flitfeed.ranker.feedback import ExampleLearner, impression_for
from flitfeed.ranker.features import FEATURE_SET, FEATURES, N_FEATURES, col, feature_matrix
from flitfeed.ranker.join import ImpressionJoin
from flitfeed.ranker.model import ActionModel
from flitfeed.ranker.params import RankerParams
from flitfeed.ranker.query import FeedQuery
from flitfeed.ranker.scorers import ActionScorer, WeightedScorer
from flitfeed.ranker.selectors import DiversitySelector
from flitfeed.streams.events import Example, Impression, ImpressionItem
from flitfeed.streams.vocabulary import ACTIONS

NOW = 1_000_000.0


def random_components(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {"similarity": rng.uniform(-1, 1, n), "freshness": rng.uniform(0, 1, n),
            "engagement": rng.uniform(-1, 1, n), "collaborative": rng.uniform(0, 1, n)}


def rows(comp: dict[str, np.ndarray], **user: float) -> np.ndarray:
    n = len(comp["similarity"])
    z = np.zeros(n)
    return feature_matrix(similarity=comp["similarity"], author_affinity=z, tag_affinity=z,
                          freshness=comp["freshness"], popularity=comp["engagement"],
                          co_engagement=comp["collaborative"], co_engagement_abs=z, cold_start=False,
                          activity=user.get("activity", 0.0), mainstream=user.get("mainstream", 0.0))


# --- the prior is the former blend -------------------------------------------------------------

def test_the_prior_ranks_exactly_as_the_hand_set_blend() -> None:
    rng = np.random.default_rng(1)
    params = RankerParams()
    for _ in range(20):
        comp = random_components(rng, 50)
        cands = [Candidate(f"f{i}", "a", NOW, "similar", components={k: float(v[i]) for k, v in comp.items()})
                 for i in range(50)]
        WeightedScorer(params.weights()).score(FeedQuery("u", 10, NOW), cands)
        blend = np.array([c.score for c in cands])
        prior = ActionModel().score_many(rows(comp))
        assert np.array_equal(np.argsort(-blend, kind="stable"), np.argsort(-prior, kind="stable"))


def test_feature_matrix_is_bounded_and_has_the_crosses() -> None:
    rng = np.random.default_rng(2)
    X = rows(random_components(rng, 30), activity=0.4, mainstream=0.7)
    assert X.shape == (30, N_FEATURES) and np.isfinite(X).all() and np.abs(X).max() <= 1.0
    np.testing.assert_allclose(X[:, col("similarity_x_activity")], X[:, col("similarity")] * 0.4)
    np.testing.assert_allclose(X[:, col("popularity_x_new_user")], X[:, col("popularity")] * 0.6)
    assert FEATURE_SET.startswith("f1:") and len(FEATURES) == N_FEATURES


# --- the online model ----------------------------------------------------------------------------

def test_the_model_learns_which_feature_predicts_the_action() -> None:
    """Labels follow similarity, not popularity (the blend's favourite): the model finds that out."""
    rng = np.random.default_rng(3)
    model = ActionModel()
    comp = random_components(rng, 4000)
    X = rows(comp)
    p_true = 1 / (1 + np.exp(-(-2.0 + 4.0 * X[:, col("similarity")])))
    engaged = rng.random(4000) < p_true
    model.learn_many(X, ActionModel.label_matrix([["engage"] if e else [] for e in engaged]))
    w, w0 = model.weights[:, 0], model.prior[:, 0]
    assert w[col("similarity")] > w0[col("similarity")] + 1.0
    assert w[col("popularity")] < w0[col("popularity")] - 0.25 and w[col("popularity")] < w[col("similarity")] / 4
    # Held-out: the learned ranking orders by similarity far better than the prior does.
    test = rows(random_components(rng, 500))
    sim_rank = np.argsort(-test[:, col("similarity")])
    learned_rank = np.argsort(-model.score_many(test))
    prior_rank = np.argsort(-model.score_many(test, prior=True))
    top = set(sim_rank[:50].tolist())
    assert len(top & set(learned_rank[:50].tolist())) > len(top & set(prior_rank[:50].tolist())) + 10
    assert model.examples == 4000 and np.isfinite(model.logloss).all()


def test_learning_is_deterministic_and_the_state_round_trips() -> None:
    rng = np.random.default_rng(4)
    X = rows(random_components(rng, 300))
    Y = ActionModel.label_matrix([["engage"] if v > 0.5 else (["negative"] if v < -0.8 else []) for v in X[:, 1]])
    a, b = ActionModel(), ActionModel()
    a.learn_many(X, Y)
    b.learn_many(X, Y)
    assert np.array_equal(a.weights, b.weights)
    c = ActionModel.from_dict(a.to_dict())
    assert np.array_equal(c.weights, a.weights) and c.examples == a.examples
    np.testing.assert_allclose(c.calibration(), a.calibration(), equal_nan=True)


def _textbook_steps(model: ActionModel, X: np.ndarray, Y: np.ndarray) -> None:
    """The AdaGrad step as the model's docstring states it, one example at a time (the reference)."""
    for x, y in zip(X, Y):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ model.weights, -30.0, 30.0)))
        loss = -(y * np.log(np.maximum(p, 1e-12)) + (1 - y) * np.log(np.maximum(1 - p, 1e-12)))
        g = np.outer(x, p - y) + model.l2 * (model.weights - model.prior)
        model.accum += g * g
        model.weights -= model.learning_rate * g / np.sqrt(model.accum)
        a = model.tracking if model.examples else 1.0
        model.logloss += a * (loss - model.logloss)
        model.mean_prediction += a * (p - model.mean_prediction)
        model.mean_label += a * (y - model.mean_label)
        model.examples += 1


@pytest.mark.parametrize("l2", [1e-4, 0.0])
def test_learn_many_takes_the_textbook_steps_in_order(l2: float) -> None:
    """The buffered loop gives bit-identical weights, and the running figures folded in per call agree,
    whether the examples come in one call, in uneven calls, or one by one."""
    rng = np.random.default_rng(11)
    X = rows(random_components(rng, 700))
    Y = ActionModel.label_matrix([["engage"] if v > 0.3 else (["negative", "dwell"] if v < -0.7 else [])
                                  for v in X[:, 1] + rng.normal(0, 0.3, 700)])
    reference = ActionModel(l2=l2)
    _textbook_steps(reference, X, Y)
    at_once, uneven, single = ActionModel(l2=l2), ActionModel(l2=l2), ActionModel(l2=l2)
    at_once.learn_many(X, Y)
    for lo, hi in [(0, 1), (1, 13), (13, 400), (400, 700)]:
        uneven.learn_many(X[lo:hi], Y[lo:hi])
    for x, y in zip(X[:50], Y[:50]):
        single.learn_many(x[None, :], y[None, :])
    for model in (at_once, uneven):
        assert np.array_equal(model.weights, reference.weights) and np.array_equal(model.accum, reference.accum)
        assert model.examples == reference.examples == 700
        for name in ("logloss", "mean_prediction", "mean_label"):
            np.testing.assert_allclose(getattr(model, name), getattr(reference, name), rtol=1e-9, atol=1e-12)
    short = ActionModel(l2=l2)
    _textbook_steps(short, X[:50], Y[:50])
    assert np.array_equal(single.weights, short.weights)
    np.testing.assert_allclose(single.logloss, short.logloss, rtol=1e-9, atol=1e-12)


def test_learn_many_skips_rows_that_are_not_finite() -> None:
    rng = np.random.default_rng(12)
    X = rows(random_components(rng, 20))
    Y = ActionModel.label_matrix([["engage"]] * 20)
    bad = X.copy()
    bad[3, 2] = np.nan
    bad[7, 0] = np.inf
    model, clean = ActionModel(), ActionModel()
    model.learn_many(bad, Y)
    keep = np.ones(20, dtype=bool)
    keep[[3, 7]] = False
    clean.learn_many(X[keep], Y[keep])
    assert model.examples == 18 and model.finite()
    assert np.array_equal(model.weights, clean.weights)
    assert model.learn_many(bad[[3]], Y[[3]]) == 0.0 and model.examples == 18


@pytest.mark.parametrize("broken", [
    {"feature_set": "f0:other"},
    {"actions": ["engage"]},
    {"weights": [[1.0]]},
    {"weights": [[float("nan")] * len(ACTIONS)] * N_FEATURES},
])
def test_a_snapshot_of_another_layout_or_with_bad_numbers_is_refused(broken: dict) -> None:
    with pytest.raises(ValueError):
        ActionModel.from_dict({**ActionModel().to_dict(), **broken})


def test_merge_weights_models_by_what_they_learned() -> None:
    a, b = ActionModel(), ActionModel()
    a.weights = a.weights + 1.0
    a.examples, b.examples = 300, 100
    m = a.merge(b)
    np.testing.assert_allclose(m.weights, b.weights + 0.75)
    assert m.examples == 400


def test_a_model_with_non_finite_scores_falls_back_to_the_prior_and_is_counted() -> None:
    model = ActionModel()
    model.weights[col("similarity"), 0] = np.nan
    scorer = ActionScorer(model)
    cands = [Candidate(f"f{i}", "a", NOW, "similar", components={"similarity": 0.1 * i}) for i in range(5)]
    scorer.score(FeedQuery("u", 5, NOW), cands)
    assert scorer.fallbacks == 1
    assert all(np.isfinite(c.score) for c in cands)
    assert [c.flit_id for c in sorted(cands, key=lambda c: -c.score)][0] == "f4"
    assert all(c.features is not None and len(c.features) == N_FEATURES for c in cands)


# --- the join -------------------------------------------------------------------------------------

def impression(iid: str, user: str, flits: list[str], served_at: float) -> Impression:
    return Impression(impression_id=iid, user_id=user, served_at=served_at, trigger_id="t", feature_set=FEATURE_SET,
                      items=[ImpressionItem(flit_id=f, author_id="a", position=i, score=0.1,
                                            features=[0.0] * N_FEATURES) for i, f in enumerate(flits)])


def test_the_join_labels_each_impressed_item_once_and_releases_it_when_the_window_closes() -> None:
    j = ImpressionJoin(window_s=60.0)
    j.add(impression("i1", "wren", ["f1", "f2", "f3", "f4", "f5"], served_at=100.0))
    assert j.learn_one("wren", "f1", "reflit", ts=101.0)
    assert not j.learn_one("wren", "f1", "like", ts=102.0)                 # already labelled
    assert j.learn_one("wren", "f2", "report", ts=103.0)
    assert j.learn_one("wren", "f3", "view", ts=104.0, dwell_ms=500)        # scrolled past
    assert not j.learn_one("wren", "f4", "like", ts=99.0)                   # before it was shown
    assert not j.learn_one("robin", "f4", "like", ts=101.0)                 # another user
    assert not j.learn_one("wren", "f4", "like", ts=161.0)                  # after the window
    # Nothing is released while the window is open: labels wait for the negatives of the same feed.
    assert j.expire(now=159.0) == [] and len(j) == 5
    released = {e.flit_id: e for e in j.expire(now=200.0)}
    assert {f: e.actions for f, e in released.items()} == {
        "f1": ["engage"], "f2": ["negative"], "f3": [], "f4": [], "f5": []}
    assert released["f1"].labelled_at == 101.0 and released["f5"].labelled_at == 160.0
    assert {e.example_id for e in released.values()} == {f"i1/f{i}" for i in range(1, 6)}
    assert len(j) == 0 and j.expire(now=300.0) == []


def test_a_burst_of_likes_reaches_the_learner_with_the_negatives_of_the_same_feeds() -> None:
    # The delayed-feedback bias: labels released at once would arrive ahead of the ignored items.
    j = ImpressionJoin(window_s=10.0)
    for u in range(20):
        j.add(impression(f"i{u}", f"fan{u}", [f"f{i}" for i in range(10)], served_at=100.0))
        j.learn_one(f"fan{u}", "f0", "like", ts=100.5)
    assert j.expire(now=105.0) == []
    released = j.expire(now=111.0)
    assert len(released) == 200 and sum(1 for e in released if e.actions) == 20


def test_the_next_feed_closes_the_one_it_replaced_after_a_grace() -> None:
    j = ImpressionJoin(window_s=60.0, replaced_grace_s=2.0)
    j.add(impression("i1", "wren", ["f1", "f2", "f3"], served_at=100.0))
    assert j.learn_one("wren", "f1", "like", ts=104.0)
    j.add(impression("i2", "wren", ["f3", "f4"], served_at=105.0))      # f3 shown again: superseded
    # The like that triggered i2 can still arrive within the grace and label i1's items.
    assert j.learn_one("wren", "f2", "reflit", ts=105.5)
    assert j.expire(now=106.0) == []
    assert sorted((e.example_id, tuple(e.actions)) for e in j.expire(now=107.5)) == [
        ("i1/f1", ("engage",)), ("i1/f2", ("engage",))]
    assert not j.learn_one("wren", "f1", "like", ts=108.0)              # i1 is closed
    # i2 stays open for its whole window unless another feed replaces it.
    assert j.expire(now=164.0) == []
    assert sorted(e.example_id for e in j.expire(now=166.0)) == ["i2/f3", "i2/f4"]
    # Other users' feeds close nothing of wren's, and without a grace only the window closes.
    k = ImpressionJoin(window_s=60.0, replaced_grace_s=None)
    k.add(impression("i1", "wren", ["f1"], served_at=100.0))
    k.add(impression("i2", "robin", ["f1"], served_at=101.0))
    k.add(impression("i3", "wren", ["f2"], served_at=102.0))
    assert k.expire(now=150.0) == [] and len(k.expire(now=170.0)) == 3


def test_a_newer_impression_supersedes_an_older_one_of_the_same_flit() -> None:
    j = ImpressionJoin(window_s=60.0)
    j.add(impression("i1", "wren", ["f1", "f2"], served_at=100.0))
    assert j.add(impression("i2", "wren", ["f2", "f3"], served_at=110.0)) == 1
    assert j.learn_one("wren", "f2", "like", ts=111.0)
    assert sorted((e.impression_id, e.flit_id, tuple(e.actions)) for e in j.expire(now=1000.0)) == [
        ("i1", "f1", ()), ("i2", "f2", ("engage",)), ("i2", "f3", ())]


def test_a_labelled_item_shown_again_is_released_at_once_not_lost() -> None:
    j = ImpressionJoin(window_s=60.0)
    j.add(impression("i1", "wren", ["f1"], served_at=100.0))
    assert j.learn_one("wren", "f1", "like", ts=101.0)
    assert j.add(impression("i2", "wren", ["f1"], served_at=110.0)) == 0   # not superseded: labelled
    assert [(e.impression_id, e.actions) for e in j.expire(now=111.0)] == [("i1", ["engage"])]


def test_forget_and_drop_users_and_the_per_user_bound() -> None:
    j = ImpressionJoin(window_s=60.0, max_per_user=3)
    j.add(impression("i1", "wren", ["f1", "f2", "f3", "f4"], served_at=100.0))
    assert len(j) == 3 and j.superseded == 1                 # f1 went first, without an example
    j.forget("wren", "i1", "f2")
    j.add(impression("i2", "robin", ["f9"], served_at=100.0))
    j.drop_users(["robin"])
    assert sorted(e.flit_id for e in j.expire(now=1000.0)) == ["f3", "f4"]


# --- learning from examples ---------------------------------------------------------------------------

def example(eid: str, **over) -> Example:
    base = dict(example_id=eid, user_id="u", flit_id="f", impression_id="i", served_at=0.0, labelled_at=1.0,
                feature_set=FEATURE_SET, features=[0.5] * N_FEATURES, actions=["engage"])
    return Example(**{**base, **over})


def test_examples_are_learned_once_and_bad_ones_never() -> None:
    learner = ExampleLearner(ActionModel())
    before = learner.model.weights.copy()
    learned, dropped = learner.learn_many([
        example("a"), example("a"),
        example("b", feature_set="f0:old"),
        example("c", features=[float("nan")] * N_FEATURES),
        example("d", features=[0.1]),
        example("e", actions=["teleport"]),
    ])
    assert learned == 1 and learner.model.examples == 1
    assert dropped == {"duplicate": 1, "feature_set": 1, "bad_features": 2, "unknown_action": 1}
    assert not np.array_equal(before, learner.model.weights)


def test_an_impression_records_what_each_item_was_scored_with() -> None:
    items = [Candidate("f1", "robin", NOW, "similar", score=0.7, features=np.full(N_FEATURES, 0.25)),
             Candidate("f2", "crow", NOW, "explore", score=0.1, features=np.zeros(N_FEATURES), propensity=0.2)]
    imp = impression_for(FeedQuery("wren", 2, NOW, trigger_id="r1"), items, "imp-9")
    assert [i.position for i in imp.items] == [0, 1] and imp.feature_set == FEATURE_SET
    assert imp.items[0].features == [0.25] * N_FEATURES and imp.items[0].propensity == 1.0
    assert imp.items[1].explore and imp.items[1].propensity == 0.2
    assert Impression.model_validate_json(imp.to_bytes()) == imp


# --- affinity ------------------------------------------------------------------------------------------

def test_affinity_is_bounded_per_user_and_in_users() -> None:
    a = Affinity(max_users=2, max_entries=2)
    for author in ("x", "y", "z"):
        a.learn_one("u1", author, (author,), "like")
    assert a.pair_many("u1", ["x", "y", "z"], [(), (), ()])[0] == [0.0, pytest.approx(1 / 3), pytest.approx(1 / 3)]
    a.learn_one("u2", "x", (), "like")
    a.learn_one("u3", "x", (), "like")
    assert a.user_stats("u1") == (0.0, 0.0) and len(a) == 2          # u1 was the least recently seen
    a.learn_one("u3", "x", (), "view")                                 # views are neutral here
    assert a.user_stats("u3")[0] == pytest.approx(1 / 21)


# --- exploration ----------------------------------------------------------------------------------------

def test_exploration_draws_with_a_logged_propensity_and_repeats_for_the_same_trigger() -> None:
    fresh = [Candidate(f"n{i}", f"new{i}", NOW - 60.0, "fresh", score=0.01) for i in range(4)]
    ranked = [Candidate(f"v{i}", "veteran", NOW - 86400.0, "similar", score=1.0 - i / 10) for i in range(9)]
    sel = DiversitySelector(RankerParams(author_decay=1.0, tag_decay=1.0, explore_share=0.1),
                            author_flit_count=lambda a: 1 if a.startswith("new") else 100)
    picks = []
    for t in range(200):
        out = sel.select(FeedQuery("u", 10, NOW, trigger_id=f"r{t}"), [*ranked, *[Candidate(**{
            s: getattr(c, s) for s in ("flit_id", "author_id", "created_at", "source", "score")}) for c in fresh]])
        explored = [c for c in out if c.source == "explore"]
        assert len(explored) == 1 and explored[0].propensity == pytest.approx(1 / 4)
        picks.append(explored[0].flit_id)
        again = sel.select(FeedQuery("u", 10, NOW, trigger_id=f"r{t}"), [*ranked, *[Candidate(**{
            s: getattr(c, s) for s in ("flit_id", "author_id", "created_at", "source", "score")}) for c in fresh]])
        assert [c.flit_id for c in again] == [c.flit_id for c in out]
    assert set(picks) == {"n0", "n1", "n2", "n3"}                       # every new flit gets its chance


# --- the loop, end to end on the demo world --------------------------------------------------------

def test_the_match_rises_as_the_model_learns_in_the_demo_world() -> None:
    """The demo's script in-process (flitfeed/demo/simulation.py) with the bag-of-words test encoder:
    the same defaults with learning off stay where the blend puts them; learning lifts the match."""
    encoder = HashingEncoder(dim=384)
    learned = simulate(7, 60.0, encoder=encoder)
    frozen = simulate(7, 60.0, encoder=encoder, learning=False)

    def late(r) -> float:  # noqa: ANN001
        return float(np.mean([m for m in r.windows[3:] if m is not None]))

    assert learned.examples > 300 and frozen.examples == 0
    assert late(learned) > late(frozen) + 0.2, (learned.windows, frozen.windows)
    assert late(learned) > 2 * learned.summary["random_match"]


def test_pair_columns_are_pair_arrays_for_every_row_of_a_batch() -> None:
    """The batch hydrator's one call over all rows must give each row exactly what pair_arrays gives its
    user alone: known and unknown users, authors and tags; 0-4 tags with repeats; flits that recur across
    feeds; codes missing after filtering (rows taken out)."""
    rng = np.random.default_rng(3)
    names = [f"t{i}" for i in range(12)]
    for _ in range(30):
        a = Affinity(max_entries=int(rng.integers(2, 10)))
        for _ in range(int(rng.integers(0, 400))):
            a.learn_one(f"u{rng.integers(8)}", f"a{rng.integers(15)}", tuple(rng.choice(names, int(rng.integers(0, 3)))),
                        str(rng.choice(["like", "reflit", "hide", "view", "reply"])))
        n_flits = int(rng.integers(1, 40))
        flit_tags = [tuple(rng.choice(names, int(rng.integers(0, 5)))) for _ in range(n_flits)]
        flit_author = rng.integers(0, 18, size=n_flits)
        user_ids = [f"u{rng.integers(10)}" for _ in range(int(rng.integers(1, 6)))]
        counts = rng.integers(0, 30, size=len(user_ids))
        query = np.repeat(np.arange(len(user_ids)), counts)
        flit = rng.integers(0, n_flits, size=len(query))
        author_ids = np.array([f"a{i}" for i in range(18)], dtype=object)
        tags = np.fromiter((flit_tags[f] for f in flit), dtype=object, count=len(flit))
        got_a, got_t = a.pair_columns(user_ids, query, flit_author[flit], author_ids, flit, n_flits, tags)
        for q, user in enumerate(user_ids):
            rows = query == q
            want_a, want_t = a.pair_arrays(user, author_ids[flit_author[flit[rows]]].tolist(), tags[rows].tolist())
            assert got_a[rows].tolist() == want_a.tolist()
            assert got_t[rows].tolist() == want_t.tolist()


def test_pair_many_on_one_two_and_more_tags() -> None:
    a = Affinity()
    for author, tags, kind in [("x", ("t1",), "like"), ("y", ("t1", "t2"), "hide"), ("x", ("t3",), "reflit")]:
        a.learn_one("u", author, tags, kind)
    # Net engagement: authors x +2.5, y -2; tags t1 -1, t2 -2, t3 +1.5; affinity = v / (|v| + 2).
    authors, tags = ["x", "y", "z", "x"], [("t1",), ("t2", "t3"), (), ("t1", "t2", "t3")]
    pa, pt = a.pair_many("u", authors, tags)
    np.testing.assert_allclose(pa, [2.5 / 4.5, -0.5, 0.0, 2.5 / 4.5])
    np.testing.assert_allclose(pt, [-1 / 3, -0.25 / 2.25, 0.0, -0.5 / 2.5])
    assert a.pair_many("nobody", authors, tags) == ([0.0] * 4, [0.0] * 4)
