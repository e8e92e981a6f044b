"""Item embeddings: MiniLM semantic vectors, SASRec collaborative table, popularity and evaluation."""
import dataclasses

import numpy as np
import pytest

from gensar_lib.baselines import popularity_scores
from gensar_lib.config import EmbeddingConfig, load_profile
from gensar_lib.data.schema import Dataset, Event, Item
from gensar_lib.data.splits import Split, leave_one_out
from gensar_lib.embeddings import (
    EncoderError,
    collaborative_embeddings,
    load_encoder,
    nearest_neighbours,
    sasrec_scores,
    semantic_embeddings,
    train_sasrec,
    training_sequences,
)
from gensar_lib.evaluation import evaluate_scores

SEM_CFG = EmbeddingConfig(max_seq_length=32, batch_size=16)


def rec_cases(prepared, part):
    """The recommendation cases of a part and their candidate rows."""
    cases = prepared.split.part(part)
    keep = np.array([c.task == "rec" for c in cases])
    return [c for c in cases if c.task == "rec"], prepared.candidates[part][keep]


# ------------------------------------------------------------------ semantic


TEXTS = [
    ("Blue ballpoint pen", "A smooth blue ink ballpoint pen for everyday writing."),
    ("Blue ballpoint pens", "A smooth blue ink ballpoint pen for everyday writing, pack."),
    ("Stainless steel frying pan", "Non-stick 12 inch skillet for cooking eggs and vegetables."),
    ("Wireless computer mouse", "Ergonomic optical mouse with USB receiver."),
]


@pytest.fixture(scope="module")
def text_items():
    return [Item(id=str(i), title=t, description=d) for i, (t, d) in enumerate(TEXTS)]


@pytest.fixture(scope="module")
def text_embeddings(text_items):
    return semantic_embeddings(text_items, SEM_CFG, progress=False)


def test_semantic_shape_unit_norm_and_deterministic(text_items, text_embeddings):
    assert text_embeddings.shape == (4, 384) and text_embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(text_embeddings, axis=1), 1.0, atol=1e-5)
    again = semantic_embeddings(text_items, SEM_CFG, progress=False)
    np.testing.assert_allclose(again, text_embeddings, atol=1e-6)


def test_near_identical_texts_are_closer_than_unrelated(text_embeddings):
    sim = text_embeddings @ text_embeddings.T
    assert sim[0, 1] > 0.9
    assert sim[0, 1] > sim[0, 2] + 0.3 and sim[0, 1] > sim[0, 3] + 0.3


def test_unknown_encoder_gives_a_clear_error(tmp_path):
    missing = str(tmp_path / "no-such-encoder")
    with pytest.raises(EncoderError, match="no-such-encoder"):
        load_encoder(missing)


def test_unknown_hub_model_offline_fails_without_network(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EncoderError, match="no-such-org/no-such-model"):
        load_encoder("no-such-org/no-such-model")


def test_cached_semantic_embeddings_are_stored_as_npy(text_items, text_embeddings, tmp_path):
    from gensar_lib.artifacts import ArtifactCache
    from gensar_lib.embeddings import cached_semantic_embeddings

    ds = Dataset("texts", list(text_items), [], [])
    cache = ArtifactCache(tmp_path)
    first = cached_semantic_embeddings(ds, SEM_CFG, cache, progress=False)
    np.testing.assert_allclose(first, text_embeddings, atol=1e-6)
    files = list(tmp_path.rglob("semantic.npy"))
    assert len(files) == 1
    # changed text -> a new artifact, never the stale one
    ds.items[3] = Item(id="3", title="Frying pan", description="A skillet.")
    second = cached_semantic_embeddings(ds, SEM_CFG, cache, progress=False)
    assert len(list(tmp_path.rglob("semantic.npy"))) == 2
    assert not np.allclose(second[3], first[3])


# ------------------------------------------------------------------ SASRec: leakage and determinism


def leak_world(n_users=60, n_items=30, seed=0):
    """Every user: five random items with item A among them, then A (validation target), then X (test).

    A is an ordinary training item, X occurs nowhere but in the test targets, and
    the held-out pair is always "A -> X": a model that saw validation/test targets
    learns to put X first after A; one trained on training targets only has never
    seen X as a positive.
    """
    rng = np.random.default_rng(seed)
    a, x = n_items - 2, n_items - 1
    items = [Item(id=str(i), title=f"item {i}") for i in range(n_items)]
    seqs = []
    for _ in range(n_users):
        body = rng.choice(n_items - 2, size=5, replace=False).tolist()
        body.insert(int(rng.integers(0, 5)), a)
        seqs.append([Event(t, i) for t, i in enumerate(body + [a, x])])
    return Dataset("leak", items, [f"u{u}" for u in range(n_users)], seqs), a, x


def test_training_sequences_hold_only_training_targets():
    ds, a, x = leak_world()
    split = leave_one_out(ds)
    seqs = training_sequences(split, ds.n_users)
    for u, seq in enumerate(seqs):
        assert seq == [e.item for e in ds.sequences[u][:-2]]
        assert x not in seq


def x_ranks_after_a(split, ds, x):
    cfg = EmbeddingConfig(sasrec_dim=16, sasrec_blocks=1, sasrec_epochs=20, sasrec_max_len=10)
    model = train_sasrec(ds, split, cfg, seed=0, progress=False, batch_size=16, lr=5e-3)
    test = split.cases("test", "rec")
    scores = sasrec_scores(model, test)
    return (scores > scores[:, [x]]).sum(axis=1)


def test_sasrec_never_learns_held_out_targets():
    ds, a, x = leak_world()
    split = leave_one_out(ds)
    assert all(c.history[-1].item == a for c in split.cases("test", "rec"))  # A ends each test history
    # X was never a training positive: after A it ranks in the bottom half
    assert x_ranks_after_a(split, ds, x).min() >= ds.n_items // 2
    # control: trained on every case (a leak), the same model learns "A -> X" and puts X first
    leaky = Split(split.protocol, train=split.train + split.valid + split.test, test=split.test)
    assert np.median(x_ranks_after_a(leaky, ds, x)) == 0


def test_same_seed_same_item_table_other_seed_differs(tiny_prepared):
    ds, split = tiny_prepared.dataset, tiny_prepared.split
    cfg = dataclasses.replace(load_profile("tiny").embeddings, sasrec_epochs=2)
    one = collaborative_embeddings(train_sasrec(ds, split, cfg, seed=3, progress=False))
    two = collaborative_embeddings(train_sasrec(ds, split, cfg, seed=3, progress=False))
    other = collaborative_embeddings(train_sasrec(ds, split, cfg, seed=4, progress=False))
    assert one.shape == (ds.n_items, cfg.sasrec_dim) and one.dtype == np.float32
    np.testing.assert_array_equal(one, two)
    assert not np.allclose(one, other)


def test_cached_sasrec_round_trips(tiny_prepared, tmp_path):
    from gensar_lib.artifacts import ArtifactCache
    from gensar_lib.embeddings import cached_collaborative_embeddings, cached_sasrec

    ds, split = tiny_prepared.dataset, tiny_prepared.split
    cfg = dataclasses.replace(load_profile("tiny").embeddings, sasrec_epochs=1)
    cache = ArtifactCache(tmp_path)
    model = cached_sasrec(ds, split, cfg, 0, cache, progress=False)
    table = cached_collaborative_embeddings(ds, split, cfg, 0, cache, progress=False)
    np.testing.assert_array_equal(table, collaborative_embeddings(model))
    assert len(list(tmp_path.rglob("sasrec.pt"))) == 1  # the second call reused the artifact
    cases = split.cases("test", "rec")[:5]
    fresh = train_sasrec(ds, split, cfg, 0, progress=False)
    np.testing.assert_allclose(sasrec_scores(model, cases), sasrec_scores(fresh, cases), atol=1e-5)
    # another seed is another artifact
    cached_collaborative_embeddings(ds, split, cfg, 1, cache, progress=False)
    assert len(list(tmp_path.rglob("collaborative.npy"))) == 2


# ------------------------------------------------------------------ evaluation


def test_evaluate_scores_sampled_and_full_ranking():
    cases = leave_one_out(leak_world(n_users=3)[0]).cases("test", "rec")
    x = cases[0].target.item
    scores = np.zeros((3, 30), dtype=np.float32)
    scores[:, x] = [5.0, 5.0, 5.0]
    scores[1, 0] = 9.0  # one item above the target for case 1 (full rank 1)
    scores[2, :5] = 9.0  # five items above it for case 2 (full rank 5), none of them candidates
    candidates = np.tile(np.r_[x, np.arange(5, 20)], (3, 1))
    out = evaluate_scores(scores, cases, candidates)
    assert out["sampled"]["HR@1"] == 1.0  # only column 0 scores 5 among the candidates
    assert out["full"]["HR@1"] == pytest.approx(1 / 3)
    assert out["full"]["HR@5"] == pytest.approx(2 / 3)
    assert out["full"]["NDCG@5"] == pytest.approx((1 + 1 / np.log2(3)) / 3)
    with pytest.raises(ValueError, match="aligned"):
        evaluate_scores(scores, cases, candidates[:, ::-1])


def test_sasrec_beats_popularity_on_office(office_prepared):
    """Real data, the paper's sampled protocol: SASRec's HR@10 clearly above popularity's."""
    ds, split = office_prepared.dataset, office_prepared.split
    cfg = dataclasses.replace(load_profile("tiny").embeddings, sasrec_dim=32, sasrec_epochs=8)
    model = train_sasrec(ds, split, cfg, seed=0, progress=False)
    cases, candidates = rec_cases(office_prepared, "test")
    ours = evaluate_scores(sasrec_scores(model, cases), cases, candidates)
    pop = evaluate_scores(popularity_scores(ds, split, cases), cases, candidates)
    # measured: about 0.23 vs 0.014 (popularity also suffers from the sampled negatives being
    # popularity-weighted, and from Office's drift: test targets are mostly newer items)
    assert ours["sampled"]["HR@10"] > pop["sampled"]["HR@10"] + 0.1, (ours, pop)
    assert ours["sampled"]["NDCG@10"] > pop["sampled"]["NDCG@10"], (ours, pop)


# ------------------------------------------------------------------ synthetic ground truth


def test_sasrec_neighbours_share_bundles_semantic_neighbours_share_leaves(tiny_prepared):
    from gensar_lib.data.synthetic import neighbour_precision

    ds, split, world = tiny_prepared.dataset, tiny_prepared.split, tiny_prepared.world
    cfg = load_profile("tiny").embeddings
    # the tiny world is small: 10 epochs need small batches and a larger step to learn its bundles
    model = train_sasrec(ds, split, cfg, seed=0, progress=False, batch_size=32, lr=5e-3)
    collab = nearest_neighbours(collaborative_embeddings(model), 5)
    sem = nearest_neighbours(semantic_embeddings(ds.items, cfg, progress=False), 5)
    bundle = {name: neighbour_precision(nb, world.item_bundle) for name, nb in [("collab", collab), ("sem", sem)]}
    leaf = {name: neighbour_precision(nb, world.item_leaf) for name, nb in [("collab", collab), ("sem", sem)]}
    assert bundle["collab"] > bundle["sem"] + 0.1, bundle
    assert leaf["sem"] > leaf["collab"] + 0.3, leaf
