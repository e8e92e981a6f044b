"""Tests of gensar_lib.identifiers: tokens, collision strategies, diagnostics, JSON."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gensar_lib.config import QuantizeConfig
from gensar_lib.identifiers import (
    ItemIdentifiers,
    build_joint_identifiers,
    build_single_identifiers,
    code_entropy,
    code_stats,
    code_usage,
    collision_groups,
    collision_rate,
    dedup_codes,
    dedup_token,
    from_json,
    handle_collisions,
    identifier_stats,
    identifier_vocabulary,
    items_per_prefix,
    joint_identifiers,
    make_token,
    parse_token,
    reconstruction_error,
    resolve_paper,
    single_identifiers,
    to_json,
)
from gensar_lib.quantize import JointRQVAE, train_rqvae

# rows: 0,1,3 share [0, 1]; 2,4 share [2, 3]; 5 is alone -> 6 items, 3 distinct
HAND = np.array([[0, 1], [0, 1], [2, 3], [0, 1], [2, 3], [4, 5]])


# --------------------------------------------------------------------------- tokens


def test_token_format_and_parsing():
    assert make_token("shared", 0, 12) == "<shared_a_12>"
    assert make_token("shared", 1, 3) == "<shared_b_3>"
    assert make_token("semantic", 0, 7) == "<semantic_a_7>"
    assert make_token("collab", 1, 9) == "<collab_b_9>"
    assert dedup_token(2) == "<dedup_2>"
    assert parse_token("<semantic_b_1>") == ("semantic", 1, 1)
    assert parse_token("<dedup_4>") == ("dedup", None, 4)
    with pytest.raises(ValueError):
        parse_token("shared_a_1")
    with pytest.raises(ValueError):
        make_token("Shared", 0, 1)


def test_joint_identifiers_share_their_prefix():
    shared = np.array([[12, 3], [12, 4]])
    sem = np.array([[7, 1], [0, 0]])
    col = np.array([[5, 9], [1, 2]])
    ids = joint_identifiers(shared, sem, col, codebook_size=16, item_ids=["B01", "B02"])
    s, c = ids.get("B01")
    assert s == ("<shared_a_12>", "<shared_b_3>", "<semantic_a_7>", "<semantic_b_1>")
    assert c == ("<shared_a_12>", "<shared_b_3>", "<collab_a_5>", "<collab_b_9>")
    for s, c in zip(ids.semantic, ids.collaborative):
        assert s[:2] == c[:2] and s[2:] != c[2:]
    assert len(ids) == 2 and ids.index_of("B02") == 1
    assert ids.tokens_used() <= set(ids.vocabulary)


def test_vocabulary_lists_every_possible_token_once():
    cfg = QuantizeConfig(codebook_size=4)
    vocab = identifier_vocabulary(cfg)
    assert len(vocab) == len(set(vocab)) == (2 + 2 + 2) * 4
    assert vocab[:2] == ["<shared_a_0>", "<shared_a_1>"] and vocab[-1] == "<collab_b_3>"
    assert identifier_vocabulary(cfg, n_dedup=3)[-3:] == ["<dedup_0>", "<dedup_1>", "<dedup_2>"]


def test_single_identifiers_use_one_id_for_both_tasks():
    ids = single_identifiers(np.array([[1, 2, 3]]), codebook_size=4, kind="semantic")
    assert ids.semantic == ids.collaborative == (("<semantic_a_1>", "<semantic_b_2>",
                                                  "<semantic_c_3>"),)
    assert len(ids.vocabulary) == 12


# --------------------------------------------------------------------------- diagnostics


def test_collision_rate_usage_and_entropy_on_a_hand_case():
    assert collision_rate(HAND) == pytest.approx(3 / 6)
    assert collision_rate([tuple(map(str, r)) for r in HAND]) == pytest.approx(3 / 6)
    assert collision_rate(np.arange(5)) == 0.0 and collision_rate(np.zeros((0, 2), int)) == 0.0
    assert [g.tolist() for g in collision_groups(HAND)] == [[0, 1, 3], [2, 4]]
    np.testing.assert_allclose(code_usage(HAND, 8), [3 / 8, 3 / 8])
    # level 0 counts 3, 2, 1 of 6
    h = -(0.5 * np.log2(0.5) + (1 / 3) * np.log2(1 / 3) + (1 / 6) * np.log2(1 / 6))
    np.testing.assert_allclose(code_entropy(HAND, 8, normalise=False), [h, h])
    np.testing.assert_allclose(code_entropy(HAND, 8), [h / 3, h / 3])
    np.testing.assert_allclose(code_entropy(np.arange(8), 8), [1.0])  # uniform use
    assert code_entropy(np.zeros(5, int), 8)[0] == 0.0  # one code
    stats = code_stats(HAND, 8, ["shared_a", "shared_b"])
    assert stats["shared_a"]["usage"] == pytest.approx(3 / 8)


def test_items_per_prefix_and_reconstruction_error():
    assert items_per_prefix(HAND).tolist() == [3, 2, 1]
    codes = np.array([[0, 1], [0, 2], [1, 1]])
    assert items_per_prefix(codes, depth=1).tolist() == [2, 1]
    assert items_per_prefix([("a", "b"), ("a", "c")], depth=1).tolist() == [2]
    x = np.array([[0.0, 0.0], [1.0, 1.0]])
    x_hat = np.array([[0.0, 2.0], [1.0, 1.0]])
    assert reconstruction_error(x, x_hat) == pytest.approx(1.0)  # (4/2 + 0) / 2
    np.testing.assert_allclose(reconstruction_error(x, x_hat, per_item=True), [2.0, 0.0])


# --------------------------------------------------------------------------- collisions


def test_tiger_dedup_gives_exactly_zero_collisions():
    dedup = dedup_codes(HAND)
    assert dedup.tolist() == [0, 1, 0, 2, 1, 0]
    codes, d, report = handle_collisions(HAND, "tiger")
    assert report.before == pytest.approx(0.5) and report.after == 0.0 and report.n_dedup == 3
    ids = joint_identifiers(HAND[:, :1], HAND[:, 1:], HAND[:, 1:], 8,
                            semantic_dedup=d, collab_dedup=d)
    assert collision_rate(ids.semantic) == 0.0
    assert all(len(s) == 3 and s[-1].startswith("<dedup_") for s in ids.semantic)
    assert "<dedup_2>" in ids.vocabulary


def test_paper_strategy_separates_a_constructed_group():
    # four items share [0, 0]; their distance rows prefer code 0 but differ elsewhere
    codes = np.array([[0, 0]] * 4 + [[1, 0]])
    dist = np.array([
        [0.0, 0.5, 0.9, 0.9],
        [0.0, 0.9, 0.5, 0.9],
        [0.0, 0.9, 0.9, 0.5],
        [0.0, 0.6, 0.6, 0.6],
        [0.0, 1.0, 1.0, 1.0],
    ])
    assert np.array_equal(dist.argmin(1), codes[:, -1])  # argmin collides
    new, report = resolve_paper(codes, dist, rounds=20, epsilon=0.003)
    assert report.before == pytest.approx(3 / 5) and report.after == 0.0
    np.testing.assert_array_equal(new[:, 0], codes[:, 0])  # only the last code moves
    assert report.changed_items >= 3


def test_paper_strategy_keeps_exact_duplicates_and_never_increases_collisions():
    # items 0 and 1 are exact duplicates: nothing can separate them
    codes = np.array([[0, 0], [0, 0]])
    dist = np.array([[0.0, 1.0, 1.0], [0.0, 1.0, 1.0]])
    new, report = resolve_paper(codes, dist)
    assert report.after == report.before == 0.5 and report.unresolved_groups == 1
    # a change that would split a pair into two other occupied IDs is rejected
    codes = np.array([[0, 0], [0, 0], [0, 1], [0, 2]])
    dist = np.array([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    new, report = resolve_paper(codes, dist)
    np.testing.assert_array_equal(new, codes)
    assert report.rejected_groups == 1 and report.after == report.before
    # random cases: never worse
    rng = np.random.default_rng(0)
    for _ in range(8):
        codes = rng.integers(3, size=(40, 3))
        dist = rng.random((40, 3))
        new, report = resolve_paper(codes, dist, rounds=5)
        assert collision_rate(new) <= collision_rate(codes)
        np.testing.assert_array_equal(new[:, :-1], codes[:, :-1])


def test_strategy_errors_and_none():
    codes, dedup, report = handle_collisions(HAND, "none")
    np.testing.assert_array_equal(codes, HAND)
    assert dedup is None and report.after == report.before == 0.5
    with pytest.raises(ValueError, match="last_distances"):
        handle_collisions(HAND, "paper")
    with pytest.raises(ValueError, match="unknown"):
        handle_collisions(HAND, "magic")


# --------------------------------------------------------------------------- export


def test_json_round_trip_and_stats():
    shared, sem, col = HAND[:, :1], HAND[:, 1:], HAND[:, :1] + 1
    ids, reports = build_joint_identifiers(shared, sem, col, 8, "tiger", item_ids=list("abcdef"))
    data = to_json(ids)
    assert data["a"] == {"semantic": ["<shared_a_0>", "<semantic_a_1>", "<dedup_0>"],
                         "collaborative": ["<shared_a_0>", "<collab_a_1>", "<dedup_0>"]}
    back = from_json(json.loads(json.dumps(data)), codebook_size=8)
    assert back.semantic == ids.semantic and back.collaborative == ids.collaborative
    assert set(back.vocabulary) == set(ids.vocabulary)
    stats = identifier_stats(ids, reports)
    json.dumps(stats)
    assert stats["collision_rate"]["semantic"] == 0.0
    assert stats["collision_rate"]["shared_prefix"] == pytest.approx(3 / 6)
    assert stats["handling"]["semantic"]["before"] == pytest.approx(0.5)
    assert stats["levels"]["shared_a"]["usage"] == pytest.approx(3 / 8)
    with pytest.raises(ValueError, match="unique"):
        ItemIdentifiers(("x", "x"), ((),) * 2, ((),) * 2, (), 8)


def test_trained_model_to_identifiers_is_deterministic():
    rng = np.random.default_rng(0)
    n = 80
    sem = rng.normal(size=(4, 16))[rng.integers(4, size=n)] + 0.3 * rng.normal(size=(n, 16))
    col = 0.3 * rng.normal(size=(n, 8))
    cfg = QuantizeConfig(codebook_size=4, hidden_dims=(16,), epochs=2, collision_rounds=5)

    def run():
        model = JointRQVAE(16, 8, cfg)
        train_rqvae(model, (sem.astype(np.float32), col.astype(np.float32)), cfg, seed=7,
                    progress=False)
        shared, s, c = model.encode_codes(sem, col)
        d_s, d_c = model.last_level_distances(sem, col)
        ids, reports = build_joint_identifiers(shared, s, c, cfg.codebook_size, "paper",
                                               semantic_distances=d_s, collab_distances=d_c,
                                               cfg=cfg)
        return ids, reports, (shared, s, c)

    (ids1, rep1, codes), (ids2, _, _) = run(), run()
    assert to_json(ids1) == to_json(ids2)
    for key, raw in (("semantic", codes[1]), ("collaborative", codes[2])):
        before = collision_rate(np.concatenate([codes[0], raw], 1))
        assert rep1[key].before == pytest.approx(before)
        assert rep1[key].after <= rep1[key].before
    for s, c in zip(ids1.semantic, ids1.collaborative):
        assert s[:2] == c[:2] and s[0].startswith("<shared_a_")
    single, report = build_single_identifiers(codes[1], 4, "semantic", "tiger")
    assert collision_rate(single.semantic) == 0.0 and report.after == 0.0
