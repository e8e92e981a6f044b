"""Identifier-token embeddings initialised from the RQ-VAE codebook vectors (``model.identifier_init``; the
budget-curve candidate "small profile + codebook init")."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from gensar_lib import ablation
from gensar_lib.config import ConfigError, ModelConfig, check_profile, fingerprint, load_profile
from gensar_lib.t5.model import build_model, check_vectors, init_identifier_embeddings
from gensar_lib.t5.tokenizer import train_tokenizer
from gensar_lib.identifiers import token_vectors
from gensar_lib.rqvae import all_identifiers
from gensar_lib.t5.stage import train_generative
from gensar_lib.stages import STAGES

TINY = ModelConfig(d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16, dropout_rate=0.0)
LEVELS = {"shared_a": 8, "shared_b": 8, "semantic_a": 4, "collab_a": 4}  # level -> vector dimension


def _codebooks(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {level: rng.normal(size=(6, dim)).astype(np.float32) for level, dim in LEVELS.items()}


@pytest.fixture(scope="module")
def tokenizer():
    tokens = list(token_vectors(_codebooks())) + ["<dedup_0>"]
    return train_tokenizer(["red pen", "blue stapler", "desk lamp"] * 5, vocab_size=120, special_tokens=tokens)


def test_token_vectors_name_each_code_of_each_level():
    books = _codebooks()
    vectors = token_vectors(books)
    assert len(vectors) == sum(len(b) for b in books.values())
    np.testing.assert_array_equal(vectors["<shared_b_5>"], books["shared_b"][5])


def test_codebook_rows_replace_the_identifier_embeddings_and_nothing_else(tokenizer):
    books = _codebooks()
    books["shared_a"][3] = books["shared_a"][1]  # two codes at one point start at one embedding
    vectors = token_vectors(books)
    fresh = build_model(TINY, tokenizer, seed=0)
    model = build_model(TINY, tokenizer, seed=0)
    set_tokens = init_identifier_embeddings(model, tokenizer, vectors, seed=0)
    assert set_tokens == sorted(vectors)
    before, after = fresh.get_input_embeddings().weight, model.get_input_embeddings().weight
    row = {t: tokenizer.convert_tokens_to_ids(t) for t in [*vectors, "<dedup_0>"]}
    touched = torch.zeros(len(after), dtype=torch.bool)
    touched[[row[t] for t in vectors]] = True
    torch.testing.assert_close(after[~touched], before[~touched])  # text and dedup tokens keep T5's draw
    assert not torch.allclose(after[touched], before[touched])
    torch.testing.assert_close(after[row["<shared_a_3>"]], after[row["<shared_a_1>"]])
    reference = before[~touched].norm(dim=1).mean()
    for level in LEVELS:  # every level as large as the other embeddings, centred
        rows = after[[row[f"<{level}_{c}>"] for c in range(6)]]
        torch.testing.assert_close(rows.norm(dim=1).mean(), reference)
        assert rows.mean(dim=0).abs().max() < 1e-4
    assert model.get_output_embeddings().weight.data_ptr() == after.data_ptr()  # tied: the output layer too
    again = build_model(TINY, tokenizer, seed=0)
    init_identifier_embeddings(again, tokenizer, vectors, seed=0)
    torch.testing.assert_close(again.get_input_embeddings().weight, after)  # same seed, same weights


def test_the_projection_keeps_which_codes_are_near():
    """A Gaussian projection keeps distances up to a common factor: a code's nearest code stays its nearest."""
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(4, 16)) * 10
    book = np.concatenate([centres, centres + rng.normal(size=(4, 16)) * 0.1]).astype(np.float32)  # pairs i, i+4
    vectors = token_vectors({"shared_a": book})
    tokenizer = train_tokenizer(["red pen", "desk lamp"] * 5, vocab_size=120, special_tokens=list(vectors))
    model = build_model(ModelConfig(d_model=64, d_ff=64, num_layers=1, num_heads=2, d_kv=16), tokenizer, seed=0)
    init_identifier_embeddings(model, tokenizer, vectors, seed=0)
    rows = model.get_input_embeddings().weight[[tokenizer.convert_tokens_to_ids(f"<shared_a_{c}>") for c in range(8)]]
    distances = torch.cdist(rows, rows) + torch.eye(8) * 1e9
    assert distances.argmin(dim=1).tolist() == [4, 5, 6, 7, 0, 1, 2, 3]


def test_the_option_enters_keys_only_when_set():
    small = load_profile("small")
    codebook = replace(small, model=replace(small.model, identifier_init="codebook"))
    assert fingerprint(small) != fingerprint(codebook)
    assert STAGES["t5"].config(small) != STAGES["t5"].config(codebook)
    # keys made before the option existed still match, e.g. the committed ablation's profile_key
    committed = json.loads(ablation.committed_path("synthetic", "small").read_text())
    assert committed["profile_key"] == fingerprint(small)
    with pytest.raises(ConfigError, match="model.identifier_init = 'sparse'"):
        check_profile(replace(small, model=replace(small.model, identifier_init="sparse")))


def test_missing_vectors_fail_before_any_training(tiny_prepared, session_cache):
    profile = load_profile("tiny")
    profile = replace(profile, model=replace(profile.model, identifier_init="codebook"))
    gensar = all_identifiers(tiny_prepared, profile, kinds=("gensar",), cache=session_cache, progress=False)["gensar"]
    check_vectors(gensar.ids, gensar.vectors)  # the RQ-VAE names a vector for every token its items use
    with pytest.raises(ConfigError, match="needs the RQ-VAE's codebook vectors"):
        train_generative(tiny_prepared, gensar.ids, profile, session_cache, progress=False)
    first = sorted(gensar.ids.tokens_used())[0]
    partial = {t: v for t, v in gensar.vectors.items() if t != first}
    with pytest.raises(ConfigError, match=f"no codebook vector for identifier token '{first}'"):
        train_generative(tiny_prepared, gensar.ids, profile, session_cache, progress=False, vectors=partial)
    with pytest.raises(ConfigError, match="random identifiers have no codebook"):
        ablation.run_ablation(tiny_prepared, profile, methods=("gensar", "random"), cache=session_cache,
                              progress=False)


def test_every_rqvae_identifier_type_has_its_vectors(tiny_prepared, session_cache):
    profile = load_profile("tiny")
    for kind, res in all_identifiers(tiny_prepared, profile, cache=session_cache, progress=False).items():
        check_vectors(res.ids, res.vectors)
        dims = {profile.quantize.shared_dim, profile.quantize.specific_dim}
        assert {len(v) for v in res.vectors.values()} <= dims, kind
