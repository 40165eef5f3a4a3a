"""Each ranking metric on hand-made cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flitfeed.evaluation.metrics import (MetricLog, coverage, hit_rate, intra_list_diversity, ndcg, novelty, recall,
                                         reciprocal_rank)

RANKED = ["a", "b", "c", "d", "e"]


@pytest.mark.parametrize("relevant, k, expected", [
    ({"a"}, 1, 1.0), ({"e"}, 4, 0.0), ({"e"}, 5, 1.0), ({"z"}, 5, 0.0), (set(), 5, 0.0), ({"c", "z"}, 3, 1.0)])
def test_hit_rate(relevant: set[str], k: int, expected: float) -> None:
    assert hit_rate(RANKED, relevant, k) == expected


@pytest.mark.parametrize("relevant, k, expected", [
    ({"a"}, 5, 1.0), ({"a", "z"}, 5, 0.5), ({"a", "b", "e", "z"}, 2, 0.5), ({"z"}, 5, 0.0), (set(), 5, 0.0)])
def test_recall(relevant: set[str], k: int, expected: float) -> None:
    assert recall(RANKED, relevant, k) == expected


def test_recall_equals_hit_rate_for_one_relevant_item() -> None:
    for item in RANKED + ["z"]:
        for k in range(1, 6):
            assert recall(RANKED, {item}, k) == hit_rate(RANKED, {item}, k)


def test_ndcg_known_values() -> None:
    assert ndcg(RANKED, {"a"}, 5) == 1.0
    assert ndcg(RANKED, {"c"}, 5) == pytest.approx(1 / math.log2(4))       # rank 3
    assert ndcg(RANKED, {"c"}, 2) == 0.0                                    # outside the cut
    # Two relevant at ranks 2 and 4; ideal puts them at 1 and 2.
    expected = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert ndcg(RANKED, {"b", "d"}, 5) == pytest.approx(expected)
    assert ndcg(RANKED, set(), 5) == 0.0


def test_reciprocal_rank() -> None:
    assert reciprocal_rank(RANKED, {"a"}, 5) == 1.0
    assert reciprocal_rank(RANKED, {"d", "b"}, 5) == 0.5      # the first relevant counts
    assert reciprocal_rank(RANKED, {"e"}, 4) == 0.0
    assert reciprocal_rank([], {"a"}, 10) == 0.0


def test_coverage() -> None:
    assert coverage([["a", "b"], ["a"], []], catalog_size=4) == 0.5
    assert coverage([], catalog_size=4) == 0.0
    assert coverage([["a"]], catalog_size=0) == 0.0


def test_novelty_prefers_rare_items() -> None:
    # 8 interactions over 4 items: p(popular) = (6+1)/12, p(rare) = (0+1)/12.
    assert novelty([6], total=8, n_items=4) == pytest.approx(-math.log2(7 / 12))
    assert novelty([0], total=8, n_items=4) == pytest.approx(math.log2(12))
    assert novelty([0, 6], total=8, n_items=4) == pytest.approx((math.log2(12) - math.log2(7 / 12)) / 2)
    assert novelty([], total=8, n_items=4) == 0.0


def test_intra_list_diversity() -> None:
    same = np.array([[1.0, 0.0], [1.0, 0.0]])
    orthogonal = np.array([[1.0, 0.0], [0.0, 1.0]])
    opposite = np.array([[1.0, 0.0], [-1.0, 0.0]])
    assert intra_list_diversity(same) == pytest.approx(0.0)
    assert intra_list_diversity(orthogonal) == pytest.approx(1.0)
    assert intra_list_diversity(opposite) == pytest.approx(2.0)
    assert intra_list_diversity(same[:1]) == 0.0


def test_metric_log_overall_and_per_window() -> None:
    log = MetricLog()
    zero = dict(hr=0.0, recall=0.0, ndcg=0.0, mrr=0.0, novelty=1.0, diversity=0.0)
    log.add("2000", dict(zero, hr=1.0, recall=1.0, ndcg=1.0, mrr=1.0), ["a", "b"])
    log.add("2000", zero, ["b"])
    log.add("2001", zero, ["c"])
    overall = log.summary(catalog_size=6)
    assert overall["hr"] == pytest.approx(1 / 3) and overall["events"] == 3
    assert overall["coverage"] == pytest.approx(0.5)
    windows = log.by_window(catalog_size=6)
    assert windows["2000"]["hr"] == 0.5 and windows["2000"]["events"] == 2
    assert windows["2001"]["hr"] == 0.0 and windows["2001"]["coverage"] == pytest.approx(1 / 6)
