"""Constrained beam search: the trie, agreement with generate, exactness, output properties.

A tiny randomly initialised T5 (seeded) and random item codes over a small
identifier-token range with shared prefixes; nothing is downloaded.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gensar_lib.decoding import (
    BeamResult,
    ItemTrie,
    constrained_beam_search,
    exhaustive_scores,
    generate_reference,
    make_prefix_allowed_tokens_fn,
    ranked_items,
    top_k_from_scores,
)

PAD, EOS, REC, SRC = 0, 1, 3, 4
TEXT = range(5, 25)
ID_BASE = 25  # identifier tokens: level l, code c -> ID_BASE + l * N_CODES + c
N_CODES, MAX_LEVELS = 5, 4
VOCAB = ID_BASE + MAX_LEVELS * N_CODES


def tiny_t5(seed: int = 0, variant: str = "tied-relu", init: float = 2.0):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    extra = {"tie_word_embeddings": False, "feed_forward_proj": "gated-gelu"} if variant == "untied-gated" else {}
    config = T5Config(
        vocab_size=VOCAB, d_model=32, d_ff=64, d_kv=8, num_heads=4, num_layers=2, num_decoder_layers=2,
        dropout_rate=0.0, decoder_start_token_id=PAD, pad_token_id=PAD, eos_token_id=EOS,
        initializer_factor=init, **extra,  # 2.0: less flat than the default, well separated scores
    )
    return T5ForConditionalGeneration(config).eval()


def random_codes(rng, n_items: int, depth: int, first_codes: int = 3) -> np.ndarray:
    """Distinct identifiers; the first level uses few codes so many items share prefixes."""
    radix = [first_codes] + [N_CODES] * (depth - 1)
    flat = rng.choice(int(np.prod(radix)), size=n_items, replace=False)
    levels = np.stack(np.unravel_index(flat, radix), axis=1)
    return ID_BASE + levels + N_CODES * np.arange(depth)


def random_inputs(rng, batch: int, length: int = 8):
    ids = torch.from_numpy(rng.integers(TEXT.start, TEXT.stop, size=(batch, length)))
    lengths = rng.integers(3, length + 1, size=batch)
    mask = (torch.arange(length)[None, :] < torch.from_numpy(lengths)[:, None]).long()
    return ids * mask, mask


def random_candidates(rng, batch: int, n_items: int, n_cand: int, pad: int = 0) -> np.ndarray:
    rows = [rng.choice(n_items, n_cand, replace=False) for _ in range(batch)]
    cands = np.stack(rows)
    if pad:
        cands[:, -pad:] = -1
    return cands


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: OpenMP threads only add barriers, and on a busy shared CPU those cost seconds."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model():
    return tiny_t5(0)


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(1)
    codes = random_codes(rng, 40, 3)
    ids, mask = random_inputs(rng, 5)
    cands = random_candidates(rng, 5, len(codes), 12)
    return codes, ids, mask, cands


# ---------------------------------------------------------------------------
# The trie
# ---------------------------------------------------------------------------

HAND = np.array([[5, 7, 9], [5, 7, 10], [6, 7, 9], [5, 8, 9], [5, 7, 9]])  # rows 0 and 4 collide


def test_trie_allowed_next_tokens_on_hand_made_codes():
    trie = ItemTrie(HAND)
    assert trie.allowed_next_tokens([]) == [5, 6]
    assert trie.allowed_next_tokens([5]) == [7, 8]
    assert trie.allowed_next_tokens([5, 7]) == [9, 10]
    assert trie.allowed_next_tokens([6]) == [7]
    assert trie.allowed_next_tokens([6, 7]) == [9]
    assert trie.allowed_next_tokens([5, 7, 10]) == []  # complete identifier
    with pytest.raises(KeyError):
        trie.allowed_next_tokens([7])
    with pytest.raises(KeyError):
        trie.allowed_next_tokens([6, 8])
    assert trie.items_of([5, 7]).tolist() == [0, 1, 4]
    assert trie.items_of([5, 7, 9]).tolist() == [0, 4]
    assert trie.items_of([9]).tolist() == []
    # 1 root + 2 depth-1 + 3 depth-2 + 4 leaves
    assert trie.n_nodes == 10
    # a shared identifier decodes to the lowest allowed item index
    leaf = trie.node_of([5, 7, 9])
    assert trie.leaf_items(np.array([leaf]))[0] == 0
    assert trie.leaf_items(np.array([leaf]), np.array([4, 2]))[0] == 4
    assert trie.leaf_items(np.array([-1]))[0] == -1


def test_trie_batched_children_masks_and_candidate_nodes():
    trie = ItemTrie(HAND)
    nodes = [trie.node_of(p) for p in ([], [5], [5, 7], [6, 7], [5, 8, 9])]
    mask = trie.next_token_mask(torch.tensor(nodes), vocab_size=12)
    expected = [[5, 6], [7, 8], [9, 10], [9], []]
    for row, allowed in zip(mask, expected):
        assert torch.nonzero(row).view(-1).tolist() == allowed
    child, tokens, valid = trie.children(torch.tensor([nodes[:2], nodes[2:4]]))
    assert child.shape == (2, 2, 2) and tokens[0, 1][valid[0, 1]].tolist() == [7, 8]
    # candidate lists: example 0 may decode items 2 and 3 only, example 1 item 1 (and padding)
    allowed = trie.allowed_nodes(np.array([[2, 3], [1, -1]]))
    restricted = trie.next_token_mask(torch.tensor([nodes[0]] * 2 + [nodes[1]] * 2), 12,
                                      torch.from_numpy(allowed[[0, 1, 0, 1]]))
    assert [torch.nonzero(r).view(-1).tolist() for r in restricted] == [[5, 6], [5], [8], [7]]


def test_trie_matches_brute_force_on_random_codes():
    rng = np.random.default_rng(3)
    for depth in (1, 2, 4):
        codes = rng.integers(10, 14, size=(30, depth))  # collisions likely at small depth
        trie = ItemTrie(codes)
        for item in range(len(codes)):
            for d in range(depth + 1):
                prefix = codes[item, :d]
                same = np.all(codes[:, :d] == prefix, axis=1)
                want = sorted(set(codes[same, d].tolist())) if d < depth else []
                assert sorted(trie.allowed_next_tokens(prefix.tolist())) == want
                assert trie.items_of(prefix.tolist()).tolist() == np.flatnonzero(same).tolist()


def test_prefix_allowed_tokens_fn_walks_behaviour_identifier_eos():
    trie = ItemTrie(HAND)
    fn = make_prefix_allowed_tokens_fn(trie, REC, EOS)
    assert fn(0, torch.tensor([PAD])) == [REC]
    assert fn(0, torch.tensor([PAD, REC])) == [5, 6]
    assert fn(0, torch.tensor([PAD, REC, 5, 7])) == [9, 10]
    assert fn(0, torch.tensor([PAD, REC, 6, 7, 9])) == [EOS]
    per_example = make_prefix_allowed_tokens_fn([trie, ItemTrie(HAND[[2]])], REC, EOS)
    assert per_example(1, torch.tensor([PAD, REC])) == [6]


# ---------------------------------------------------------------------------
# Agreement with generate(prefix_allowed_tokens_fn=...)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("impl", ["t5", "hf"])
@pytest.mark.parametrize("mode", ["full", "candidates"])
def test_same_items_and_scores_as_generate(model, world, mode, impl):
    codes, ids, mask, cands = world
    cands = cands if mode == "candidates" else None
    beam = 6
    ours = constrained_beam_search(model, ids, mask, codes, REC, beam, candidates=cands, impl=impl)
    ref = generate_reference(model, ids, mask, codes, REC, beam, candidates=cands)
    assert (ref.items >= 0).all()  # the test is not vacuous: every beam decoded an item
    np.testing.assert_array_equal(ours.items, ref.items)
    np.testing.assert_allclose(ours.scores, ref.scores, atol=1e-4)
    np.testing.assert_allclose(ours.log_likelihoods, ours.scores * 5.0, rtol=1e-6)  # L + 2 = 5 tokens


@pytest.mark.parametrize("variant", ["untied-gated"])
def test_same_as_generate_for_t5_v1_1_layout_and_no_length_penalty(world, variant):
    codes, ids, mask, _ = world
    other = tiny_t5(1, variant, init=0.5)  # no output rescaling when untied: keep logits moderate
    ours = constrained_beam_search(other, ids, mask, codes, SRC, 5, top_k=3, length_penalty=0.0)
    ref = generate_reference(other, ids, mask, codes, SRC, 5, top_k=3, length_penalty=0.0)
    np.testing.assert_array_equal(ours.items, ref.items)
    np.testing.assert_allclose(ours.scores, ref.scores, atol=1e-4)
    np.testing.assert_array_equal(ours.scores, ours.log_likelihoods)  # length_penalty 0: raw sums


# ---------------------------------------------------------------------------
# Exactness when the beam holds every item
# ---------------------------------------------------------------------------


def test_wide_beam_is_exact_top_k_of_exhaustive_scores(model, world):
    codes, ids, mask, cands = world
    # candidate mode: beam = list length
    exact = exhaustive_scores(model, ids, mask, codes, REC, candidates=cands)
    want_items, want_ll = top_k_from_scores(exact, 5, cands)
    got = constrained_beam_search(model, ids, mask, codes, REC, cands.shape[1], top_k=5, candidates=cands)
    np.testing.assert_array_equal(got.items, want_items)
    np.testing.assert_allclose(got.log_likelihoods, want_ll, atol=1e-4)
    # full catalogue: beam = catalogue size
    exact = exhaustive_scores(model, ids[:2], mask[:2], codes, REC)
    want_items, want_ll = top_k_from_scores(exact, 8)
    got = constrained_beam_search(model, ids[:2], mask[:2], codes, REC, len(codes), top_k=8)
    np.testing.assert_array_equal(got.items, want_items)
    np.testing.assert_allclose(got.log_likelihoods, want_ll, atol=1e-4)


def test_exhaustive_scores_are_normalised_over_the_allowed_items_only_by_beam_pruning(model, world):
    codes, ids, mask, cands = world
    full = exhaustive_scores(model, ids[:2], mask[:2], codes, REC)
    sub = exhaustive_scores(model, ids[:2], mask[:2], codes, REC, candidates=cands[:2])
    np.testing.assert_allclose(sub, np.take_along_axis(full, cands[:2], axis=1), atol=1e-5)
    assert np.all(full < 0) and np.exp(full).sum(axis=1).max() < 1.0  # probabilities of disjoint sequences


# ---------------------------------------------------------------------------
# Properties over random shapes
# ---------------------------------------------------------------------------


def test_outputs_are_valid_unique_items_with_their_exact_scores(model):
    for seed in range(6):
        rng = np.random.default_rng(100 + seed)
        depth = int(rng.integers(1, MAX_LEVELS + 1))
        first_codes = min(N_CODES, 2 + seed % 3)
        n_items = int(rng.integers(2, min(25, first_codes * N_CODES ** (depth - 1)) + 1))
        codes = random_codes(rng, n_items, depth, first_codes=first_codes)
        if seed % 2:  # collisions: copy an identifier onto another item
            codes[-1] = codes[0]
        batch = int(rng.integers(1, 5))
        ids, mask = random_inputs(rng, batch)
        beam = int(rng.integers(1, 9))
        top_k = int(rng.integers(1, beam + 1))
        use_cands = seed % 3 != 0
        cands = None
        if use_cands:
            n_cand = int(rng.integers(1, n_items + 1))
            cands = random_candidates(rng, batch, n_items, n_cand, pad=int(rng.integers(0, n_cand)))
        res = constrained_beam_search(model, ids, mask, codes, REC, beam, top_k=top_k, candidates=cands)
        assert res.items.shape == res.scores.shape == (batch, top_k)
        exact = exhaustive_scores(model, ids, mask, codes, REC)
        for e in range(batch):
            allowed = set(range(n_items)) if cands is None else set(cands[e][cands[e] >= 0].tolist())
            # an identifier shared by allowed items stands for the lowest of them
            idents = {}
            for i in sorted(allowed):
                idents.setdefault(tuple(codes[i]), i)
            decodable = set(idents.values())
            row, sc = res.items[e], res.log_likelihoods[e]
            n = int((row >= 0).sum())
            assert (row[:n] >= 0).all() and (row[n:] == -1).all(), "padding only at the end"
            assert np.isneginf(sc[n:]).all() and np.isfinite(sc[:n]).all()
            assert set(row[:n].tolist()) <= decodable, "only real (allowed) items"
            assert len(set(row[:n].tolist())) == n, "no duplicates"
            assert n <= min(top_k, len(decodable))
            if beam >= len(decodable):
                assert n == min(top_k, len(decodable))
            assert np.all(np.diff(sc[:n]) <= 1e-6), "best first"
            np.testing.assert_allclose(sc[:n], exact[e, row[:n]], atol=1e-4)


def test_ranked_items_drops_padding_and_model_mode_is_restored(world):
    res = BeamResult(np.array([[3, 1, -1], [-1, -1, -1]]), np.zeros((2, 3)), np.zeros((2, 3)))
    assert ranked_items(res) == [[3, 1], []]
    codes, ids, mask, _ = world
    m = tiny_t5(2).train()
    constrained_beam_search(m, ids[:1], mask[:1], codes, REC, 2)
    assert m.training


def test_bad_arguments_are_rejected(model, world):
    codes, ids, mask, cands = world
    with pytest.raises(ValueError):
        constrained_beam_search(model, ids, mask, codes, REC, 3, top_k=4)
    with pytest.raises(ValueError):
        constrained_beam_search(model, ids, mask, codes, REC, 3, candidates=cands[:2])
    with pytest.raises(ValueError):
        ItemTrie(np.zeros((0, 3), dtype=int))


# ---------------------------------------------------------------------------
# The fast path's pieces against the model's own modules
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["tied-relu", "untied-gated"])
def test_hand_written_encoder_matches_the_module(world, variant):
    from gensar_lib.decoding.fast import _is_plain_t5_encoder, _t5_encode

    _, ids, mask, _ = world
    m = tiny_t5(3, variant, init=0.5 if variant == "untied-gated" else 2.0)
    assert _is_plain_t5_encoder(m.get_encoder())
    mask = mask.clone()
    mask[1, :] = 0  # a row with nothing to attend to keeps every column, as in the module
    with torch.no_grad():
        want = m.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        for chunk in (1, 2, 16):  # chunks of different lengths, cut to their longest input
            got = _t5_encode(m, ids, mask, chunk=chunk)
            valid = mask.bool()
            valid[1, :] = True
            torch.testing.assert_close(got[valid], want[valid], atol=1e-5, rtol=1e-5)
            assert torch.isfinite(got).all()


def _count_final_passes(monkeypatch):
    import gensar_lib.decoding.fast as dec_mod

    calls = []
    original = dec_mod._T5StepDecoder.log_probs

    def counting(self, tokens, columns, **step):
        if step.get("commit") is False:
            calls.append((len(tokens), step.get("groups") is not None))
        return original(self, tokens, columns, **step)

    monkeypatch.setattr(dec_mod._T5StepDecoder, "log_probs", counting)
    return calls


@pytest.mark.parametrize("mode", ["full", "candidates"])
def test_pruned_final_step_is_exact(model, mode, monkeypatch):
    """top_k < beam: </s> is decoded only for hypotheses that can still reach the top k; the result equals
    decoding </s> for every beam (and generate), including when a second pass is needed."""
    rng = np.random.default_rng(7)
    codes = random_codes(rng, 60, 3)
    ids, mask = random_inputs(rng, 6)
    cands = random_candidates(rng, 6, len(codes), 20, pad=3) if mode == "candidates" else None
    beam = 8
    calls = _count_final_passes(monkeypatch)
    for top_k in (1, 3, 5):
        calls.clear()
        ours = constrained_beam_search(model, ids, mask, codes, REC, beam, top_k=top_k, candidates=cands)
        assert calls and calls[0][0] == len(ids) * top_k, "the first pass decodes </s> for top_k beams only"
        monkeypatch.undo()
        full = constrained_beam_search(model, ids, mask, codes, REC, beam, candidates=cands)  # no pruning
        ref = generate_reference(model, ids, mask, codes, REC, beam, top_k=top_k, candidates=cands)
        calls = _count_final_passes(monkeypatch)
        np.testing.assert_array_equal(ours.items, full.items[:, :top_k])
        np.testing.assert_allclose(ours.log_likelihoods, full.log_likelihoods[:, :top_k], atol=1e-5)
        np.testing.assert_array_equal(ours.items, ref.items)
        np.testing.assert_allclose(ours.scores, ref.scores, atol=1e-4)
    # a random model's </s> probabilities are far from 1: some examples needed the second pass
    calls.clear()
    constrained_beam_search(model, ids, mask, codes, REC, beam, top_k=1, candidates=cands)
    assert any(second for _, second in calls)


def test_decoder_chunks_give_the_same_result(model, world, monkeypatch):
    import functools

    import gensar_lib.decoding.fast as dec_mod

    codes, ids, mask, cands = world
    want = constrained_beam_search(model, ids, mask, codes, REC, 6, top_k=4, candidates=cands)
    monkeypatch.setattr(dec_mod, "_T5StepDecoder", functools.partial(dec_mod._T5StepDecoder, chunk_rows=7))
    got = constrained_beam_search(model, ids, mask, codes, REC, 6, top_k=4, candidates=cands)
    np.testing.assert_array_equal(got.items, want.items)
    np.testing.assert_allclose(got.log_likelihoods, want.log_likelihoods, atol=1e-5)


@pytest.mark.parametrize("mode", ["full", "candidates"])
def test_readable_beam_search_equals_the_fast_engine(model, world, mode):
    """The beam search notebook 05 steps through returns the fast engine's (and generate's) items and scores."""
    from gensar_lib.decoding import beam_search

    codes, ids, mask, cands = world
    cands = cands if mode == "candidates" else None
    slow = beam_search(model, ids, mask, codes, REC, 6, top_k=4, candidates=cands)
    fast = constrained_beam_search(model, ids, mask, codes, REC, 6, top_k=4, candidates=cands)
    assert (slow.items >= 0).all()
    np.testing.assert_array_equal(slow.items, fast.items)
    np.testing.assert_allclose(slow.log_likelihoods, fast.log_likelihoods, atol=1e-4)
    np.testing.assert_allclose(slow.scores, fast.scores, atol=1e-4)


def test_t5_internals_the_fast_path_reads_are_there(model, monkeypatch):
    """Fails, naming the attribute and the tested version, when a transformers release changes them."""
    import gensar_lib.decoding.fast as fast
    from gensar_lib.decoding import check_t5_internals

    check_t5_internals(model)
    attention = type(model.decoder.block[0].layer[0].SelfAttention)
    monkeypatch.delattr(attention, "_relative_position_bucket")
    with pytest.raises(fast.T5InternalsChanged, match=r"has no '_relative_position_bucket'.*tested with transformers 5\.24"):
        constrained_beam_search(model, torch.tensor([[5, 6, 1]]), None, np.array([[25, 30]]), REC, 2, impl="t5")
