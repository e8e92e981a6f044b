"""Tests of gensar_lib.quantize: k-means, Sinkhorn, VQ levels, the RQ-VAEs, training."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs

from gensar_lib.config import QuantizeConfig
from gensar_lib.codestats import code_entropy
from gensar_lib.quantize import (
    JointRQVAE,
    ResidualQuantizer,
    SingleRQVAE,
    Standardizer,
    VQLevel,
    center_distances,
    checkpoint_score,
    kmeans,
    sinkhorn,
    sinkhorn_assign,
    train_rqvae,
)

# Small everything: 8 codes, one hidden layer, full batches unless a test says otherwise.
CFG = QuantizeConfig(codebook_size=8, hidden_dims=(32,), epochs=12, batch_size=1024)


def toy_items(n: int = 160, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Semantic rows in 6 clusters (L2-normalised, 24-d) and collaborative rows in 10 (8-d)."""
    rng = np.random.default_rng(seed)
    sem = rng.normal(size=(6, 24))[rng.integers(6, size=n)] + 0.4 * rng.normal(size=(n, 24))
    sem /= np.linalg.norm(sem, axis=1, keepdims=True)
    col = 0.3 * rng.normal(size=(10, 8))[rng.integers(10, size=n)] + 0.1 * rng.normal(size=(n, 8))
    return sem.astype(np.float32), col.astype(np.float32)


@pytest.fixture(scope="module")
def items():
    return toy_items()


@pytest.fixture(scope="module")
def trained(items):
    sem, col = items
    model = JointRQVAE(24, 8, CFG, seed=1)
    history = train_rqvae(model, items, CFG, seed=1, progress=False)
    return model, history


# --------------------------------------------------------------------------- k-means


def test_kmeans_centroids_are_means_of_their_points_and_match_sklearn():
    x, _ = make_blobs(n_samples=300, centers=6, n_features=5, random_state=0)
    ours = kmeans(x, 6, seed=0)
    for c in range(6):
        np.testing.assert_allclose(ours.centroids[c], x[ours.labels == c].mean(0), atol=1e-5)
    ref = KMeans(n_clusters=6, n_init=10, random_state=0).fit(x)
    assert ours.inertia <= 1.02 * ref.inertia_

    u = np.random.default_rng(1).uniform(size=(400, 4))  # no cluster structure: harder
    ours_u = kmeans(u, 8, seed=0)
    ref_u = KMeans(n_clusters=8, n_init=10, random_state=0).fit(u)
    assert ours_u.inertia <= 1.10 * ref_u.inertia_


def test_kmeans_with_fewer_distinct_points_than_codes():
    pts = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    x = np.repeat(pts, 10, axis=0)
    res = kmeans(x, 5, seed=0)
    assert res.centroids.shape == (5, 2) and np.isfinite(res.centroids).all()
    assert len(np.unique(res.centroids, axis=0)) == 5  # spare codes are jittered, not duplicates
    for p in pts:  # every distinct point is a code, and its items sit exactly on it
        assert np.isclose(res.centroids, p).all(1).any()
    assert res.inertia < 1e-10
    one = kmeans(np.ones((4, 3)), 3, seed=0)  # a single distinct point
    assert np.isfinite(one.centroids).all() and one.inertia < 1e-10


def test_kmeans_is_seeded():
    x = np.random.default_rng(0).normal(size=(200, 3))
    a, b = kmeans(x, 7, seed=3), kmeans(x, 7, seed=3)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    np.testing.assert_array_equal(a.labels, b.labels)


def test_vq_level_init_kmeans_places_codes_on_centroids_of_the_residuals():
    x, _ = make_blobs(n_samples=120, centers=4, n_features=5, random_state=2)
    level = VQLevel(4, 5)
    result = level.init_kmeans(x.astype(np.float32), seed=0)
    codebook = level.codebook.detach().numpy()
    np.testing.assert_allclose(codebook, result.centroids)
    codes = level.assign(torch.tensor(x, dtype=torch.float32)).numpy()
    for c in range(4):
        np.testing.assert_allclose(codebook[c], x[codes == c].mean(0), atol=1e-4)


# --------------------------------------------------------------------------- Sinkhorn


def test_sinkhorn_plan_has_the_right_marginals_in_float64():
    d = torch.rand(200, 10, generator=torch.Generator().manual_seed(0))
    for log_domain in (None, True):
        q = sinkhorn(d, epsilon=0.05, iters=200, log_domain=log_domain)
        assert q.dtype == torch.float64
        torch.testing.assert_close(q.sum(0), torch.full((10,), 20.0, dtype=torch.float64))
        torch.testing.assert_close(q.sum(1), torch.ones(200, dtype=torch.float64), atol=1e-6, rtol=0)
    fast, logd = sinkhorn(d, 0.003, 50), sinkhorn(d, 0.003, 50, log_domain=True)
    torch.testing.assert_close(fast, logd, atol=1e-9, rtol=1e-9)


def test_sinkhorn_is_finite_where_float32_overflows():
    assert torch.isinf(torch.exp(torch.tensor(1.0 / 0.003)))  # the official float32 kernel's max
    d = torch.rand(64, 16) * 1e4  # any scale: distances are normalised first
    for eps in (0.003, 1e-5):
        assert torch.isfinite(sinkhorn(d, eps, 30)).all()
    c = center_distances(d)
    assert c.min() >= -1 - 1e-9 and c.max() <= 1 + 1e-9


def test_sinkhorn_balances_a_skewed_assignment():
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(8, 4))
    n = 400
    crowded = rng.random(n) < 0.8  # 80% of the points sit around code 0
    x = np.where(crowded[:, None], codes[0], codes[rng.integers(8, size=n)])
    x = x + 0.3 * rng.normal(size=(n, 4))
    d = torch.cdist(torch.tensor(x), torch.tensor(codes)) ** 2
    argmin_counts = np.bincount(d.argmin(1).numpy(), minlength=8)
    sk_counts = np.bincount(sinkhorn_assign(d, epsilon=0.05, iters=100).numpy(), minlength=8)
    assert argmin_counts.max() > 0.6 * n
    assert sk_counts.max() <= 1.5 * n / 8 and sk_counts.min() >= 0.5 * n / 8
    # the official epsilon balances too, though less evenly with 50 iterations
    official = np.bincount(sinkhorn_assign(d, epsilon=0.003, iters=50).numpy(), minlength=8)
    assert official.max() < argmin_counts.max() / 2


# --------------------------------------------------------------------------- VQ level / RQ


def test_vq_level_loss_and_straight_through():
    level = VQLevel(4, 3, beta=0.25)
    r = torch.randn(10, 3, requires_grad=True)
    q, codes, loss = level(r)
    e = level.codebook[codes]
    torch.testing.assert_close(q, e)  # the value is the code vector
    torch.testing.assert_close(loss, 1.25 * F.mse_loss(e, r))  # codebook + beta * commitment
    q.sum().backward(retain_graph=True)
    torch.testing.assert_close(r.grad, torch.ones_like(r))  # identity gradient to the input
    assert level.codebook.grad is None  # the quantised value carries no codebook gradient
    loss.backward()
    assert level.codebook.grad.abs().sum() > 0


def test_ema_codebook_moves_to_the_running_mean_of_its_items():
    level = VQLevel(2, 1, ema_decay=0.5)
    assert not level.codebook.requires_grad  # EMA codebooks are not trained by gradient
    level.init_kmeans(np.array([[0.0], [1.0], [10.0], [11.0]]), seed=0)
    order = np.argsort(level.codebook.detach()[:, 0].numpy())
    np.testing.assert_allclose(level.codebook.detach()[order, 0].numpy(), [0.5, 10.5])
    batch = torch.tensor([[1.0], [1.0], [11.0], [11.0]])
    with torch.no_grad():  # inference (no gradients) leaves the codebook alone
        level.train()(batch)
    np.testing.assert_allclose(level.codebook.detach()[order, 0].numpy(), [0.5, 10.5])
    level.train()(batch.requires_grad_())
    # share stays 1/2 per code; sums: 0.5 * (0.5 * 0.5) + 0.5 * (2 * 1 / 4) = 0.375 -> 0.75, and
    # 0.5 * (0.5 * 10.5) + 0.5 * (2 * 11 / 4) = 5.375 -> 10.75
    np.testing.assert_allclose(level.codebook.detach()[order, 0].numpy(), [0.75, 10.75])
    with pytest.raises(ValueError, match="ema_decay"):
        VQLevel(2, 1, ema_decay=1.0)


def test_standardizer_centres_and_rescales_and_inverts():
    x = torch.tensor([[1.0, 2.0], [3.0, 2.0], [2.0, 5.0], [2.0, -1.0]])
    st = Standardizer(2)
    np.testing.assert_array_equal(st(x).numpy(), x.numpy())  # identity before fit
    st.fit(x)
    y = st(x)
    np.testing.assert_allclose(y.mean(0).numpy(), [0.0, 0.0], atol=1e-6)
    assert float(y.norm(dim=1).mean()) == pytest.approx(1.0)
    np.testing.assert_allclose(st.inverse(y).numpy(), x.numpy(), atol=1e-6)


def test_residual_identity_per_level():
    x = torch.randn(50, 6, generator=torch.Generator().manual_seed(0))
    rq = ResidualQuantizer(3, 8, 6)
    rq.init_kmeans(x, seed=0)
    out = rq(x)
    assert out.codes.shape == (50, 3) and len(out.residuals) == 4
    total = torch.zeros_like(x)
    for lv, level in enumerate(rq.levels):
        torch.testing.assert_close(out.code_vectors[lv], level.codebook.detach()[out.codes[:, lv]])
        assert torch.equal(out.codes[:, lv], level.distances(out.residuals[lv]).argmin(1))
        total = total + out.code_vectors[lv]
        torch.testing.assert_close(total + out.residuals[lv + 1], x, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.quantised, total, atol=1e-5, rtol=0)
    # later levels make the residual smaller on average
    norms = [float(r.norm(dim=1).mean()) for r in out.residuals]
    assert norms[-1] < norms[0]


# --------------------------------------------------------------------------- models


def test_joint_model_shapes_and_levels(items):
    sem, col = items
    model = JointRQVAE(24, 8, CFG, seed=0)
    assert model.level_names == ["shared_a", "shared_b", "semantic_a", "semantic_b",
                                 "collab_a", "collab_b"]
    out = model(sem, col)
    assert out.latent.shape == (len(sem), CFG.shared_dim)
    assert out.semantic_hat.shape == sem.shape and out.collab_hat.shape == col.shape
    shared, s, c = model.encode_codes(sem, col)
    assert shared.shape == (len(sem), 2) and s.shape == c.shape == (len(sem), 2)
    assert shared.dtype == np.int64 and shared.max() < CFG.codebook_size
    d_sem, d_col = model.last_level_distances(sem, col)
    assert d_sem.shape == d_col.shape == (len(sem), CFG.codebook_size)
    np.testing.assert_array_equal(d_sem.argmin(1), s[:, -1])
    np.testing.assert_array_equal(d_col.argmin(1), c[:, -1])
    with pytest.raises(ValueError, match="specific_dim"):
        JointRQVAE(24, 8, QuantizeConfig(shared_dim=64, specific_dim=16))


def test_straight_through_gradient_reaches_the_encoders(items):
    sem, col = items
    model = JointRQVAE(24, 8, CFG, seed=0)
    model.init_codebooks(sem, col, seed=0)
    out = model(sem, col, use_sinkhorn=False)
    recon = F.mse_loss(out.semantic_hat, torch.tensor(sem)) + F.mse_loss(out.collab_hat, torch.tensor(col))
    recon.backward()  # reconstruction only: its way to the encoders is the straight-through path
    assert model.semantic_encoder[0].weight.grad.abs().sum() > 0
    assert model.collab_encoder[0].weight.grad.abs().sum() > 0
    assert all(lv.codebook.grad is None for lv in model.shared.levels)


def test_sinkhorn_is_used_only_in_training_mode(items):
    sem, col = items
    model = JointRQVAE(24, 8, CFG, seed=0)
    model.init_codebooks(sem, col, seed=0)
    model.train()
    out = model(sem, col)
    assert torch.isfinite(out.vq_loss)
    d_sem, _ = model.last_level_distances(sem, col)
    balanced = sinkhorn_assign(d_sem, CFG.sinkhorn_epsilon).numpy()
    np.testing.assert_array_equal(out.semantic_codes[:, -1].numpy(), balanced)
    model.eval()
    np.testing.assert_array_equal(model(sem, col).semantic_codes[:, -1].numpy(), d_sem.argmin(1))


def test_training_reduces_the_loss_and_records_history(trained):
    _, h = trained
    assert h.epochs == list(range(1, CFG.epochs + 1))
    assert h.loss[-1] < 0.9 * h.loss[0]
    assert h.recon_loss[-1] < h.recon_loss[0] and h.eval_recon_loss[-1] < h.eval_recon_loss[0]
    assert set(h.collision_rate) == {"shared", "semantic", "collaborative"}
    assert set(h.code_usage) == {"shared_a", "shared_b", "semantic_a", "semantic_b",
                                 "collab_a", "collab_b"}
    for series in [*h.collision_rate.values(), *h.code_usage.values()]:
        assert len(series) == CFG.epochs and all(0.0 <= v <= 1.0 for v in series)
    assert set(h.init_inertia) == set(h.code_usage)
    assert h.selected_epoch == CFG.epochs and h.total_seconds > 0
    json.dumps(h.as_dict())  # notebooks save it


def test_same_seed_same_codes_and_history(items, trained):
    sem, col = items
    model, history = trained
    again = JointRQVAE(24, 8, CFG, seed=123)  # construction seed is overridden by reinit
    history2 = train_rqvae(again, items, CFG, seed=1, progress=False)
    assert history2.loss == history.loss
    for a, b in zip(model.encode_codes(sem, col), again.encode_codes(sem, col)):
        np.testing.assert_array_equal(a, b)


def test_mini_batches_and_best_collision_selection(items):
    sem, col = items
    cfg = QuantizeConfig(codebook_size=8, hidden_dims=(32,), epochs=6, batch_size=64)
    model = JointRQVAE(24, 8, cfg)
    h = train_rqvae(model, (sem, col), cfg, seed=0, progress=False, select="best_collision")
    mean = (np.array(h.collision_rate["semantic"]) + np.array(h.collision_rate["collaborative"])) / 2
    assert h.selected_epoch == int(np.argmin(mean)) + 1
    _, ids, _ = model.diagnostic_codes(sem, col)
    from gensar_lib.identifiers import collision_rate

    assert collision_rate(ids["semantic"]) == h.collision_rate["semantic"][h.selected_epoch - 1]
    with pytest.raises(ValueError, match="select"):
        train_rqvae(model, (sem, col), cfg, select="best", progress=False)


def test_checkpoint_score_by_hand():
    # half the first reconstruction error left, 80% of the capacity used: 0.5 + 0.2
    assert checkpoint_score(0.01, 0.02, [0.7, 0.9]) == pytest.approx(0.7)
    with pytest.raises(ValueError, match="first_recon"):
        checkpoint_score(0.01, 0.0, [1.0])


def test_checkpoint_rule_keeps_a_later_epoch_that_scores_better(items):
    """The rule keeps the epoch with the lowest score; here that is not the k-means state (epoch 1)."""
    sem, col = items
    model = JointRQVAE(24, 8, CFG, seed=1)
    h = train_rqvae(model, items, CFG, seed=1, progress=False, select="recon_entropy")
    entropies = np.array(list(h.code_entropy.values()))  # [levels, epochs]
    expected = [checkpoint_score(r, h.eval_recon_loss[0], entropies[:, e])
                for e, r in enumerate(h.eval_recon_loss)]
    np.testing.assert_allclose(h.score, expected)
    best = int(np.argmin(h.score)) + 1
    assert h.score[best - 1] < h.score[0]  # a later epoch is better on the rule's own criterion ...
    assert h.selected_epoch == best > 1  # ... and that is the epoch kept
    recon, _, levels = model.diagnostic_codes(sem, col)  # the model holds that epoch's weights
    assert recon == pytest.approx(h.eval_recon_loss[best - 1])
    kept_entropy = [code_entropy(c, CFG.codebook_size)[0] for c in levels.values()]
    np.testing.assert_allclose(kept_entropy, entropies[:, best - 1])


def test_single_rqvae_trains_and_encodes(items):
    sem, _ = items
    model = SingleRQVAE(24, CFG, kind="semantic", levels=3)
    h = train_rqvae(model, sem, CFG, seed=0, progress=False)
    assert h.loss[-1] < h.loss[0]
    assert list(h.collision_rate) == ["id"]
    assert list(h.code_usage) == ["semantic_a", "semantic_b", "semantic_c"]
    codes = model.encode_codes(sem)
    assert codes.shape == (len(sem), 3)
    assert model.last_level_distances(sem).argmin(1).tolist() == codes[:, -1].tolist()
    assert model.reconstruct(sem).shape == sem.shape


def test_training_is_reproducible_with_two_threads():
    """Indexing a codebook has a nondeterministic backward on CPU with >1 thread; F.embedding does not."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        rng = np.random.default_rng(0)
        sem = rng.normal(size=(2420, 384)).astype(np.float32)
        sem /= np.linalg.norm(sem, axis=1, keepdims=True)
        col = (rng.normal(size=(2420, 64)) / 8).astype(np.float32)
        cfg = QuantizeConfig(epochs=8)
        weights = []
        for _ in range(2):
            model = JointRQVAE(384, 64, cfg, seed=0)
            train_rqvae(model, (sem, col), cfg, 0, progress=False)
            weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
        assert torch.equal(weights[0], weights[1])
    finally:
        torch.set_num_threads(threads)
