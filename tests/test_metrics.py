"""HR and NDCG on hand-computed cases."""
import math

import numpy as np
import pytest

from gensar_lib.metrics import MISSING, hit_rate, ndcg, rank_of, ranks_from_scores, summarize


def test_rank_of_items_and_token_tuples():
    assert rank_of(7, [3, 7, 9]) == 1
    assert rank_of((5, 2), [(5, 1), (5, 2)]) == 1
    assert rank_of((9, 9), [(5, 1)]) == MISSING


def test_hand_computed_metrics():
    ranks = np.array([0, 2, 6, MISSING])
    assert hit_rate(ranks, 1) == 0.25
    assert hit_rate(ranks, 5) == 0.5
    assert hit_rate(ranks, 10) == 0.75
    assert ndcg(ranks, 5) == pytest.approx((1 + 1 / math.log2(4)) / 4)
    assert ndcg(ranks, 10) == pytest.approx((1 + 1 / math.log2(4) + 1 / math.log2(8)) / 4)
    row = summarize(ranks)
    assert list(row) == ["HR@1", "HR@5", "HR@10", "NDCG@5", "NDCG@10"]


def test_ranks_from_scores_counts_ties_against_the_positive():
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.2], [0.4, 0.4, 0.4]])
    assert ranks_from_scores(scores).tolist() == [0, 2, 2]
