"""Tests of gensar_lib.codestats: AMI, NMI, purity, pair agreement and next-item prefix matches
against hand-computed cases (notebook 03_identifiers, section 5)."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from gensar_lib import codestats
from gensar_lib.codestats import (
    next_item_prefix_match,
    pair_agreement,
    purity,
    structure_measures,
)


def entropy(counts) -> float:
    p = np.asarray(counts, float) / np.sum(counts)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def mutual_info(y, c) -> float:
    """I(Y; C) in nats from the contingency table, by hand."""
    n = len(y)
    total = 0.0
    for a in set(y):
        for b in set(c):
            nab = sum(1 for u, v in zip(y, c) if u == a and v == b)
            if nab:
                na, nb = list(y).count(a), list(c).count(b)
                total += nab / n * math.log(n * nab / (na * nb))
    return total


def test_nmi_and_ami_match_a_hand_computed_case():
    y = [0, 0, 1, 1]
    c = [0, 0, 0, 1]
    # H(Y) = ln 2; H(C) of (3, 1); I = H(Y) - H(Y | C) = ln 2 - 3/4 * H(2/3, 1/3)
    h_y, h_c = math.log(2), entropy([3, 1])
    mi = math.log(2) - 0.75 * entropy([2, 1])
    assert mutual_info(y, c) == pytest.approx(mi)
    # expected MI under random labelling: the mean over all 4! orders of the items' codes
    emi = np.mean([mutual_info(y, perm) for perm in itertools.permutations(c)])
    m = structure_measures(np.array(c), {"leaf": np.array(y)})
    assert m["nmi_leaf"] == pytest.approx(mi / ((h_y + h_c) / 2))
    assert m["ami_leaf"] == pytest.approx((mi - emi) / ((h_y + h_c) / 2 - emi))
    assert m["purity_leaf"] == pytest.approx(3 / 4)  # code 0: two of label 0; code 1: one item


def test_structure_measures_extremes():
    y = np.array([0, 0, 1, 1, 2, 2])
    same = structure_measures(np.array([5, 5, 3, 3, 9, 9]), {"leaf": y})  # the same partition, renamed
    assert same == pytest.approx({"ami_leaf": 1.0, "nmi_leaf": 1.0, "purity_leaf": 1.0})
    one = structure_measures(np.zeros(6, int), {"leaf": y})  # one code for everything
    assert one["ami_leaf"] == pytest.approx(0.0) and one["nmi_leaf"] == pytest.approx(0.0)
    assert one["purity_leaf"] == pytest.approx(1 / 3)
    rng = np.random.default_rng(0)  # random codes: AMI near 0, NMI clearly above it
    big = rng.integers(0, 20, 600)
    rand = structure_measures(rng.integers(0, 64, 600), {"leaf": big})
    assert abs(rand["ami_leaf"]) < 0.02 and rand["nmi_leaf"] > 0.2


def test_purity_skips_unlabelled_items_and_reads_rows_as_groups():
    labels = np.array([0, 0, 1, 1, 2, -1])
    codes = np.array([0, 0, 0, 1, 1, 1])
    # code 0 holds labels 0, 0, 1 (2 agree); code 1 holds 1, 2 (1 agrees); the -1 item is left out
    assert purity(labels, codes) == pytest.approx(3 / 5)
    rows = np.array([[0, 1], [0, 1], [0, 2], [1, 1]])  # prefixes of depth 2: three groups
    assert purity(np.array([4, 4, 4, 5]), rows) == pytest.approx(1.0)
    assert purity(np.array([4, 5, 4, 5]), rows) == pytest.approx(3 / 4)


def test_pair_agreement_and_lift_by_hand():
    codes = np.array([0, 0, 0, 1, 1])
    labels = np.array([0, 0, 1, 1, 1])
    out = pair_agreement(codes, labels)
    # pairs with the same code: 3 + 1 = 4; of them with the same label: (0,1) and (3,4) = 2
    # all pairs: 10, with the same label: 1 + 3 = 4
    assert out == pytest.approx({"pairs_same_code": 4, "share_same_label": 0.5,
                                 "random_share_same_label": 0.4, "lift": 1.25})
    prefix = pair_agreement(np.array([[0, 0], [0, 0], [0, 1], [1, 0], [1, 0]]), labels)
    assert prefix["pairs_same_code"] == 2 and prefix["share_same_label"] == pytest.approx(1.0)


def test_next_item_prefix_match_by_hand():
    prefixes = np.array([[0, 1], [0, 1], [1, 1], [2, 0]])
    out = next_item_prefix_match(prefixes, targets=[0, 2], previous=[1, 3])
    assert out == pytest.approx({"cases": 2, "share": 0.5, "chance": 0.5**2 + 0.25**2 + 0.25**2})


@pytest.mark.parametrize("n_items, n_ids", [(2, 3), (20, 50), (200, 64)])
def test_chance_rates_match_a_simulation(n_items, n_ids):
    rng = np.random.default_rng(0)
    draws = rng.integers(0, n_ids, size=(4000, n_items))
    rates, shares = [], []
    for row in draws:
        _, counts = np.unique(row, return_counts=True)
        rates.append(codestats.collision_rate(row[:, None]))
        shares.append(counts[counts > 1].sum() / n_items)
    assert codestats.chance_collision_rate(n_items, n_ids) == pytest.approx(np.mean(rates), abs=0.01)
    assert codestats.chance_shared_share(n_items, n_ids) == pytest.approx(np.mean(shares), abs=0.01)


def test_chance_rates_edges_and_large_id_spaces():
    assert codestats.chance_collision_rate(1, 10) == pytest.approx(0.0, abs=1e-12)
    assert codestats.chance_shared_share(1, 10) == 0.0
    assert codestats.chance_shared_share(5, 1) == 1.0 and codestats.chance_collision_rate(5, 1) == pytest.approx(0.8)
    # 64^4 IDs: the naive (1 - 1/m)^N loses digits; the rates stay positive and ordered
    m = 64 ** 4
    rate, share = codestats.chance_collision_rate(3000, m), codestats.chance_shared_share(3000, m)
    assert 0 < rate < share < 1e-3
    assert share == pytest.approx((3000 - 1) / m, rel=1e-3)
