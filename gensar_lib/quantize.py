"""Residual quantisation and GenSAR's joint RQ-VAE; taught in notebooks 02 and 03.

Everything here works on plain arrays (one row per item); nothing knows about
datasets. The pieces, bottom-up:

* :func:`kmeans` -- a small seeded k-means (k-means++ start, Lloyd steps) used
  to place codebooks on data before training.
* :func:`sinkhorn` -- Sinkhorn-Knopp balanced assignment, in float64.
* :class:`VQLevel` -- one codebook with the VQ-VAE loss and a straight-through
  gradient.
* :class:`ResidualQuantizer` -- L levels applied to the running residual.
* :class:`JointRQVAE` -- GenSAR's identifier model (paper section 3.2, summary
  in ``shared/reference/gensar-method.md`` section 2): shared levels on the
  concatenated semantic and collaborative latents, then specific levels on
  each half of the residual.
* :class:`SingleRQVAE` -- a TIGER-style RQ-VAE on one embedding (semantic-only,
  collaborative-only or concatenated identifiers, the paper's Figure 4/5
  ablations).
* :func:`train_rqvae` -- k-means initialisation plus AdamW training with
  per-epoch diagnostics for the notebooks' training curves.

Departures from the paper, stated once here and again where they happen:

* Inputs: all-MiniLM-L6-v2 (384-d) text embeddings instead of BGE (768-d), and
  a SASRec item table instead of UniSAR's as the collaborative embedding.
* Sizes come from :class:`~gensar_lib.config.QuantizeConfig`: the CPU profiles
  use smaller hidden layers (``(256, 128)`` / ``(128,)``), smaller codebooks
  (64 / 16 codes instead of 256) and fewer epochs (100 / 30 instead of 500);
  the ``paper`` profile restores 256 codes and 500 epochs.
* Codebooks are k-means-initialised on *all* items' residuals, level by level,
  before training (the official code initialises lazily on the first
  mini-batch with scikit-learn's KMeans).
* Sinkhorn runs in float64, with a log-domain fallback (the official
  version exponentiates values near +-333 in float32, which overflows).
* No learning-rate warm-up by default (official trainer: 50 linear warm-up
  epochs, then constant); ``train_rqvae(warmup_epochs=...)`` restores one.
* The RQ-VAEs centre and rescale each input (:class:`Standardizer`) and update
  their codebooks by exponential moving averages (``ema_decay``, see
  :class:`VQLevel`) instead of by gradient; ``ema_decay=0`` restores the
  official gradient codebooks.
* The pipeline keeps the epoch chosen by :func:`checkpoint_score`
  (reconstruction from the codes plus unused codebook capacity), not the
  official one with the fewest collisions.

Why (notebook 02, section 3): an untrained encoder is a random projection in
which k-means finds little of the inputs' structure, so the official rule
(fewest collisions) keeps that state: codes without structure collide
least. With gradient codebooks at lr 1e-3 and two steps per epoch the
codebooks cannot follow the moving latent, so the VQ loss climbs while
reconstruction improves; EMA updates keep every code on the mean of its
items. The inputs share a mean direction (MiniLM rows have a mean of norm
0.4), which the random first layer turns into a common offset; centring
removes it.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from gensar_lib.codestats import code_entropy, code_usage, collision_rate
from gensar_lib.config import QuantizeConfig

# Values the official code uses that QuantizeConfig does not carry.
SINKHORN_ITERS = 50  # official --sk_iters
KMEANS_ITERS = 100  # official --kmeans_iters
WEIGHT_DECAY = 1e-5  # official --weight_decay (AdamW)
GRAD_CLIP = 1.0  # official clip_grad_norm_ max norm
EMA_DECAY = 0.9  # codebook EMA per mini-batch in the RQ-VAEs (official: 0, gradient codebooks)

def level_letter(level: int) -> str:
    """``0 -> 'a'``, ``1 -> 'b'``, ... (the level letters of identifier tokens)."""
    if not 0 <= level < 26:
        raise ValueError(f"level must be in 0..25, got {level}")
    return chr(ord("a") + level)


def level_names(kind: str, n_levels: int) -> list[str]:
    """``level_names("shared", 2) == ["shared_a", "shared_b"]``."""
    return [f"{kind}_{level_letter(i)}" for i in range(n_levels)]


# ---------------------------------------------------------------------------
# k-means
# ---------------------------------------------------------------------------


@dataclass
class KMeansResult:
    """Centroids ``[k, d]`` (float32), labels ``[N]``, inertia (sum of squared distances)."""

    centroids: np.ndarray
    labels: np.ndarray
    inertia: float
    n_iter: int


def _sq_distances(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    d = (x * x).sum(1, keepdims=True) - 2.0 * x @ c.T + (c * c).sum(1)[None, :]
    return np.maximum(d, 0.0)


def _assign(x: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = _sq_distances(x, c)
    labels = d.argmin(1)
    return labels, d[np.arange(len(x)), labels]


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeding (as scikit-learn): each step draws ``2 + log k``
    candidates with probability ~ D(x)^2 and keeps the one that lowers the
    potential (sum of D^2) most."""
    trials = 2 + int(np.log(k))
    centres = [x[rng.integers(len(x))]]
    d2 = _sq_distances(x, centres[0][None, :])[:, 0]
    for _ in range(1, k):
        total = d2.sum()
        if total <= 0:
            cand = rng.integers(len(x), size=trials)
        else:
            cand = rng.choice(len(x), size=trials, p=d2 / total)
        cand_d2 = np.minimum(d2[None, :], _sq_distances(x[cand], x))  # [trials, N]
        best = int(cand_d2.sum(1).argmin())
        centres.append(x[cand[best]])
        d2 = cand_d2[best]
    return np.stack(centres)


def kmeans(
    x: np.ndarray | torch.Tensor,
    k: int,
    seed: int | Sequence[int] = 0,
    iters: int = KMEANS_ITERS,
) -> KMeansResult:
    """Seeded k-means (greedy k-means++ start, Lloyd iterations) in float64 numpy.

    Stops when the assignment no longer changes, so at convergence every
    centroid is the mean of the points assigned to it. An empty cluster is
    re-seeded on the point farthest from its centroid. With ``k`` or fewer
    *distinct* rows, every distinct row becomes a centroid and the spare codes
    are copies of random rows plus a tiny jitter (1e-3 of the data's spread),
    so the codebook has no exact duplicates and inertia is 0.
    """
    x = np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"kmeans needs a non-empty 2-D array, got shape {x.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    rng = np.random.default_rng(seed)
    distinct = np.unique(x, axis=0)
    if len(distinct) <= k:
        spare = k - len(distinct)
        scale = 1e-3 * (float(x.std()) or max(float(np.abs(x).max()), 1.0))
        extra = distinct[rng.integers(len(distinct), size=spare)] + rng.normal(
            0.0, scale, size=(spare, x.shape[1])
        )
        centroids = np.concatenate([distinct, extra])
        labels, d2 = _assign(x, centroids)
        return KMeansResult(centroids.astype(np.float32), labels, float(d2.sum()), 0)

    centroids = _kmeans_pp(x, k, rng)
    labels = None
    n_iter = 0
    for n_iter in range(1, iters + 1):
        new_labels, d2 = _assign(x, centroids)
        if labels is not None and np.array_equal(new_labels, labels):
            break
        labels = new_labels
        sums = np.zeros_like(centroids)
        np.add.at(sums, labels, x)
        counts = np.bincount(labels, minlength=k)
        centroids = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centroids)
        far = d2.copy()
        for c in np.flatnonzero(counts == 0):  # re-seed empty clusters on far points
            idx = int(far.argmax())
            centroids[c] = x[idx]
            far[idx] = -1.0
    labels, d2 = _assign(x, centroids)
    return KMeansResult(centroids.astype(np.float32), labels, float(d2.sum()), n_iter)


# ---------------------------------------------------------------------------
# Sinkhorn-Knopp
# ---------------------------------------------------------------------------


def center_distances(distances: torch.Tensor) -> torch.Tensor:
    """Map distances affinely onto about [-1, 1] (the official normalisation).

    ``(d - middle) / amplitude`` with ``middle = (max + min) / 2`` and
    ``amplitude = max - middle + 1e-5``; ordering within every row is kept.
    """
    d = torch.as_tensor(distances, dtype=torch.float64)
    hi, lo = d.max(), d.min()
    middle = (hi + lo) / 2
    return (d - middle) / (hi - middle + 1e-5)


@torch.no_grad()
def sinkhorn(
    distances: np.ndarray | torch.Tensor,
    epsilon: float = 0.003,
    iters: int = SINKHORN_ITERS,
    normalise: bool = True,
    log_domain: bool | None = None,
) -> torch.Tensor:
    """Balanced transport plan ``Q`` [B, K] (float64) from a distance matrix.

    Solves entropic optimal transport between B items (mass 1/B each) and K
    codes (mass 1/K each) with cost = distance and temperature ``epsilon``,
    by alternately normalising rows and columns (Sinkhorn-Knopp). The result
    is scaled by B, so after the last (column) step every column sums to
    exactly B/K and every row sums to about 1 (exactly in the limit): row i is
    a soft assignment of item i; ``Q.argmax(1)`` is the balanced hard one.

    Computed in float64. The official version computes ``exp(-d / 0.003)``
    with d in [-1, 1], i.e. up to e^333, which is ``inf`` in float32 (max
    ~e^88) but fits float64 (max ~e^709). ``normalise`` first maps the
    distances onto [-1, 1] with :func:`center_distances`, as the official code
    does, so ``epsilon`` means the same thing whatever the scale of the
    residuals. ``log_domain=None`` runs the fast form (the kernel
    ``exp(-(d - row min) / epsilon)`` scaled by two vectors, ``Q = diag(u) K
    diag(v)``) and falls back to the log-domain form, which cannot overflow
    for any ``epsilon``, if anything is not finite; ``True`` forces the log
    domain. Both give the same plan.
    """
    d = torch.as_tensor(distances).to(torch.float64)
    if d.ndim != 2:
        raise ValueError(f"distances must be [B, K], got shape {tuple(d.shape)}")
    if epsilon <= 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    if normalise:
        d = center_distances(d)
    b, k = d.shape
    if not log_domain:
        kernel = torch.exp(-(d - d.min(dim=1, keepdim=True).values) / epsilon)
        v = torch.ones(k, dtype=torch.float64, device=d.device)
        for _ in range(iters):
            u = (1.0 / b) / (kernel @ v)  # rows -> 1/B
            v = (1.0 / k) / (kernel.t() @ u)  # cols -> 1/K
        q = u[:, None] * (kernel * v[None, :]) * b
        if torch.isfinite(q).all():
            return q
    log_q = -d / epsilon
    log_b, log_k = math.log(b), math.log(k)
    for _ in range(iters):
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - log_b  # rows -> 1/B
        log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) - log_k  # cols -> 1/K
    return torch.exp(log_q) * b


def sinkhorn_assign(
    distances: np.ndarray | torch.Tensor, epsilon: float = 0.003, iters: int = SINKHORN_ITERS
) -> torch.Tensor:
    """Balanced hard codes: ``sinkhorn(distances, epsilon, iters).argmax(1)``."""
    return sinkhorn(distances, epsilon, iters).argmax(dim=1)


# ---------------------------------------------------------------------------
# One VQ level and a residual stack
# ---------------------------------------------------------------------------


def _to_tensor(x: np.ndarray | torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    return t.to(device=device, dtype=torch.float32)


class VQLevel(nn.Module):
    """One codebook ``[K, d]``: nearest-code assignment, VQ loss, straight-through.

    ``forward(residual)`` returns ``(quantised, codes, loss)``:

    * ``codes`` = argmin over codes of the squared distance to the residual
      (or, when ``use_sinkhorn`` and ``sinkhorn_epsilon > 0``, the argmax of the
      balanced Sinkhorn plan);
    * ``loss`` = ``mean ||sg(r) - e||^2 + beta * mean ||r - sg(e)||^2`` (the
      codebook term moves codes to the data, the commitment term the data to
      its codes);
    * ``quantised`` = ``r + sg(e - r)``: the value of the chosen code vector
      with the gradient of the identity, so reconstruction gradients pass the
      non-differentiable argmin unchanged to the encoder.

    The codebook starts uniform in ``[-1/K, 1/K]`` (official init) until
    :meth:`init_kmeans` puts it on k-means centroids.

    ``ema_decay > 0`` (departure; the RQ-VAEs use :data:`EMA_DECAY`): the
    codebook is not a trained parameter but, after every training step (a
    training-mode forward with gradients enabled; no-grad passes such as the
    inference helpers leave it alone), the exponential moving average (decay ``ema_decay`` per batch) of the
    residuals assigned to each code, as in VQ-VAE-2 and SoundStream. A code
    nobody picks keeps its vector. The loss keeps both terms, but only the
    commitment term has a gradient. ``ema_decay = 0`` is the official
    gradient update.
    """

    def __init__(
        self,
        codebook_size: int,
        dim: int,
        beta: float = 0.25,
        sinkhorn_epsilon: float = 0.0,
        sinkhorn_iters: int = SINKHORN_ITERS,
        generator: torch.Generator | None = None,
        ema_decay: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        self.codebook_size = codebook_size
        self.dim = dim
        self.beta = beta
        self.sinkhorn_epsilon = sinkhorn_epsilon
        self.sinkhorn_iters = sinkhorn_iters
        self.ema_decay = ema_decay
        self.codebook = nn.Parameter(torch.empty(codebook_size, dim), requires_grad=ema_decay == 0)
        # EMA state: share of a batch's items per code and the share-weighted sum of their residuals
        self.register_buffer("ema_share", torch.full((codebook_size,), 1.0 / codebook_size))
        self.register_buffer("ema_sum", torch.zeros(codebook_size, dim))
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        k = self.codebook_size
        self.codebook.uniform_(-1.0 / k, 1.0 / k, generator=generator)
        self.ema_share.fill_(1.0 / k)
        self.ema_sum.copy_(self.codebook * self.ema_share[:, None])

    def distances(self, residual: torch.Tensor) -> torch.Tensor:
        """Squared Euclidean distances ``[N, K]`` from each residual to each code."""
        e = self.codebook
        d = (residual**2).sum(1, keepdim=True) - 2.0 * residual @ e.t() + (e**2).sum(1)[None, :]
        return d.clamp_min(0.0)

    @torch.no_grad()
    def assign(self, residual: torch.Tensor, use_sinkhorn: bool = False) -> torch.Tensor:
        """Codes ``[N]``: argmin distance, or balanced Sinkhorn codes when enabled."""
        d = self.distances(residual)
        if use_sinkhorn and self.sinkhorn_epsilon > 0:
            return sinkhorn_assign(d, self.sinkhorn_epsilon, self.sinkhorn_iters).to(d.device)
        return d.argmin(dim=1)

    def forward(
        self, residual: torch.Tensor, use_sinkhorn: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        codes = self.assign(residual.detach(), use_sinkhorn)
        e = F.embedding(codes, self.codebook)  # its backward is deterministic on CPU; indexing is not
        loss = F.mse_loss(e, residual.detach()) + self.beta * F.mse_loss(residual, e.detach())
        quantised = residual + (e - residual).detach()
        if self.training and self.ema_decay > 0 and torch.is_grad_enabled():  # a training step
            self._ema_update(residual.detach(), codes)
        return quantised, codes, loss

    @torch.no_grad()
    def _ema_update(self, residual: torch.Tensor, codes: torch.Tensor) -> None:
        """Move every code towards the mean of this batch's residuals assigned to it."""
        g = self.ema_decay
        onehot = F.one_hot(codes, self.codebook_size).to(residual.dtype)
        self.ema_share.mul_(g).add_(onehot.mean(0), alpha=1 - g)
        self.ema_sum.mul_(g).add_(onehot.t() @ residual / len(residual), alpha=1 - g)
        live = self.ema_share > 1e-8
        self.codebook.data[live] = self.ema_sum[live] / self.ema_share[live, None]

    @torch.no_grad()
    def init_kmeans(
        self, residuals: np.ndarray | torch.Tensor, seed: int | Sequence[int] = 0,
        iters: int = KMEANS_ITERS,
    ) -> KMeansResult:
        """Put the codebook on k-means centroids of ``residuals`` (see :func:`kmeans`)."""
        result = kmeans(residuals, self.codebook_size, seed=seed, iters=iters)
        self.codebook.copy_(torch.from_numpy(result.centroids).to(self.codebook))
        share = np.bincount(result.labels, minlength=self.codebook_size) / len(result.labels)
        self.ema_share.copy_(torch.from_numpy(share).to(self.ema_share))
        self.ema_sum.copy_(self.codebook * self.ema_share[:, None])
        return result


@dataclass
class RQOutput:
    """What :class:`ResidualQuantizer` returns.

    ``residuals`` has L+1 entries: ``residuals[0]`` is the input and
    ``residuals[l + 1] = residuals[l] - quantised_l``. ``code_vectors[l]`` is
    ``codebook_l[codes[:, l]]``. For every level l,
    ``input == sum(code_vectors[:l + 1]) + residuals[l + 1]`` up to float
    rounding. ``loss`` is the mean of ``level_losses``.
    """

    quantised: torch.Tensor
    codes: torch.Tensor
    residuals: list[torch.Tensor]
    code_vectors: list[torch.Tensor]
    loss: torch.Tensor
    level_losses: list[torch.Tensor]


class ResidualQuantizer(nn.Module):
    """``n_levels`` :class:`VQLevel` s applied to the running residual.

    Level l quantises ``r_l`` (``r_0`` = input), then ``r_{l+1} = r_l - q_l``
    where ``q_l`` is the straight-through quantised value (as in the official
    code: the residual chain carries no gradient back to the input, while the
    quantised sum ``sum_l q_l`` passes the identity gradient to the encoder).
    Only the last level gets ``sinkhorn_epsilon`` (0 switches Sinkhorn off).
    """

    def __init__(
        self,
        n_levels: int,
        codebook_size: int,
        dim: int,
        beta: float = 0.25,
        sinkhorn_epsilon: float = 0.0,
        sinkhorn_iters: int = SINKHORN_ITERS,
        generator: torch.Generator | None = None,
        ema_decay: float = 0.0,
    ) -> None:
        super().__init__()
        if n_levels < 1:
            raise ValueError(f"n_levels must be >= 1, got {n_levels}")
        self.dim = dim
        self.levels = nn.ModuleList(
            VQLevel(
                codebook_size,
                dim,
                beta=beta,
                sinkhorn_epsilon=sinkhorn_epsilon if i == n_levels - 1 else 0.0,
                sinkhorn_iters=sinkhorn_iters,
                generator=generator,
                ema_decay=ema_decay,
            )
            for i in range(n_levels)
        )

    def forward(self, x: torch.Tensor, use_sinkhorn: bool = False) -> RQOutput:
        residual = x
        residuals, vectors, codes, losses = [x], [], [], []
        quantised = torch.zeros_like(x)
        for level in self.levels:
            q, c, loss = level(residual, use_sinkhorn=use_sinkhorn)
            vectors.append(level.codebook.detach()[c])
            residual = residual - q
            quantised = quantised + q
            residuals.append(residual)
            codes.append(c)
            losses.append(loss)
        return RQOutput(
            quantised=quantised,
            codes=torch.stack(codes, dim=1),
            residuals=residuals,
            code_vectors=vectors,
            loss=torch.stack(losses).mean(),
            level_losses=losses,
        )

    @torch.no_grad()
    def init_kmeans(
        self, x: torch.Tensor, seed: int = 0, iters: int = KMEANS_ITERS, tag: int = 0
    ) -> tuple[list[KMeansResult], torch.Tensor]:
        """k-means-initialise level by level on the residuals left by the levels above.

        Returns the per-level results and the final residual. Level l is seeded
        with ``(seed, tag, l)``.
        """
        residual = x.detach()
        results = []
        for i, level in enumerate(self.levels):
            results.append(level.init_kmeans(residual, seed=(seed, tag, i), iters=iters))
            codes = level.assign(residual)
            residual = residual - level.codebook[codes]
        return results, residual


# ---------------------------------------------------------------------------
# Encoders / decoders
# ---------------------------------------------------------------------------


def mlp(dims: Sequence[int]) -> nn.Sequential:
    """Linear layers through ``dims`` with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _reset_mlp(module: nn.Module, generator: torch.Generator) -> None:
    """Xavier-normal weights and zero biases, as the official MLPLayers."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight, generator=generator)
            nn.init.zeros_(m.bias)


class Standardizer(nn.Module):
    """``(x - mean) / scale`` with the mean row and the mean norm of the centred rows of the data.

    Departure (the official encoders read the raw embeddings): sentence-encoder rows share a large
    mean direction, which a randomly initialised ReLU encoder maps to a common offset that hides the
    differences between items; centring removes it, and the scale puts every input on the scale of
    unit vectors. :meth:`fit` sets both from all items (``train_rqvae`` calls it through
    ``init_codebooks``); until then it is the identity.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(()))

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> None:
        self.mean.copy_(x.mean(0))
        self.scale.copy_((x - self.mean).norm(dim=1).mean().clamp_min(1e-12))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.scale

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.scale + self.mean


def _loss_dict(total: torch.Tensor, recon: torch.Tensor, vq: torch.Tensor) -> dict:
    return {"loss": total, "recon_loss": recon, "vq_loss": vq}


# ---------------------------------------------------------------------------
# The joint RQ-VAE
# ---------------------------------------------------------------------------


@dataclass
class JointOutput:
    """Forward pass of :class:`JointRQVAE` (codes are long tensors)."""

    semantic_hat: torch.Tensor
    collab_hat: torch.Tensor
    vq_loss: torch.Tensor
    shared_codes: torch.Tensor
    semantic_codes: torch.Tensor
    collab_codes: torch.Tensor
    latent: torch.Tensor
    level_losses: list[torch.Tensor]


class JointRQVAE(nn.Module):
    """GenSAR's joint identifier model (method summary, section 2).

    * Two MLP encoders, ``semantic_dim -> hidden_dims -> shared_dim/2`` and
      ``collab_dim -> hidden_dims -> shared_dim/2``; the latents are
      concatenated into ``shared_dim`` (paper: 32 + 32 = 64).
    * ``shared_levels`` codebooks of ``codebook_size x shared_dim`` quantise
      the concatenated latent residually.
    * The remaining residual is split: the first half goes through
      ``specific_levels`` semantic codebooks, the second half through
      ``specific_levels`` collaborative codebooks (each ``specific_dim``,
      which must equal ``shared_dim/2``).
    * Mirror MLP decoders rebuild each embedding from its half of the shared
      quantisation plus its own specific quantisation.
    * Loss = MSE(semantic) + MSE(collaborative) + mean over all
      ``shared_levels + 2 * specific_levels`` levels of the VQ loss.
    * With ``sinkhorn_last`` the last semantic and the last collaborative level
      assign codes with Sinkhorn (``cfg.sinkhorn_epsilon``) in training mode,
      as the official code does; evaluation always uses argmin.

    Departures: sizes from ``cfg`` (the CPU profiles use smaller hidden layers
    and 64/16 codes instead of the paper's 256), and MiniLM-384 / SASRec-64
    inputs instead of BGE-768 / UniSAR; each input is centred and rescaled
    (:class:`Standardizer`; the decoders predict in that frame and their
    output is mapped back, so the loss is the paper's MSE on the given
    embeddings; ``standardize=False`` reads them raw, as the official code);
    codebooks are updated by EMA (``ema_decay``, default :data:`EMA_DECAY`;
    0 gives the official gradient codebooks). Parameters are initialised from
    ``seed`` with a private generator (the global RNG is never touched).
    """

    def __init__(
        self,
        semantic_dim: int,
        collab_dim: int,
        cfg: QuantizeConfig = QuantizeConfig(),
        *,
        sinkhorn_last: bool = True,
        sinkhorn_iters: int = SINKHORN_ITERS,
        seed: int = 0,
        ema_decay: float = EMA_DECAY,
        standardize: bool = True,
    ) -> None:
        super().__init__()
        self.standardize = standardize
        if cfg.shared_dim % 2 or cfg.specific_dim != cfg.shared_dim // 2:
            raise ValueError(
                "JointRQVAE needs an even shared_dim and specific_dim == shared_dim // 2, got "
                f"shared_dim={cfg.shared_dim}, specific_dim={cfg.specific_dim}"
            )
        self.cfg = cfg
        self.semantic_dim = semantic_dim
        self.collab_dim = collab_dim
        half = cfg.shared_dim // 2
        self.half = half
        hidden = list(cfg.hidden_dims)
        self.semantic_input = Standardizer(semantic_dim)
        self.collab_input = Standardizer(collab_dim)
        self.semantic_encoder = mlp([semantic_dim, *hidden, half])
        self.collab_encoder = mlp([collab_dim, *hidden, half])
        self.semantic_decoder = mlp([half, *reversed(hidden), semantic_dim])
        self.collab_decoder = mlp([half, *reversed(hidden), collab_dim])
        eps = cfg.sinkhorn_epsilon if sinkhorn_last else 0.0
        k = cfg.codebook_size
        self.shared = ResidualQuantizer(cfg.shared_levels, k, cfg.shared_dim, cfg.beta, ema_decay=ema_decay)
        self.semantic_rq = ResidualQuantizer(
            cfg.specific_levels, k, cfg.specific_dim, cfg.beta, eps, sinkhorn_iters, ema_decay=ema_decay
        )
        self.collab_rq = ResidualQuantizer(
            cfg.specific_levels, k, cfg.specific_dim, cfg.beta, eps, sinkhorn_iters, ema_decay=ema_decay
        )
        self.reset_parameters(seed)

    # -- bookkeeping -------------------------------------------------------
    @property
    def level_names(self) -> list[str]:
        """``["shared_a", "shared_b", "semantic_a", "semantic_b", "collab_a", "collab_b"]``."""
        c = self.cfg
        return (
            level_names("shared", c.shared_levels)
            + level_names("semantic", c.specific_levels)
            + level_names("collab", c.specific_levels)
        )

    @torch.no_grad()
    def reset_parameters(self, seed: int = 0) -> None:
        """Re-initialise every weight and codebook from ``seed`` (private generator)."""
        g = torch.Generator().manual_seed(seed)
        for enc in (self.semantic_encoder, self.collab_encoder,
                    self.semantic_decoder, self.collab_decoder):
            _reset_mlp(enc, g)
        for rq in (self.shared, self.semantic_rq, self.collab_rq):
            for level in rq.levels:
                level.reset_parameters(g)

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    # -- forward -----------------------------------------------------------
    def encode(self, semantic: torch.Tensor, collab: torch.Tensor) -> torch.Tensor:
        """The concatenated latent ``[N, shared_dim]`` (inputs standardised first)."""
        return torch.cat([self.semantic_encoder(self.semantic_input(semantic)),
                          self.collab_encoder(self.collab_input(collab))], dim=-1)

    def _quantise(self, latent: torch.Tensor, use_sinkhorn: bool):
        sh = self.shared(latent)
        rest = sh.residuals[-1]
        se = self.semantic_rq(rest[:, : self.half], use_sinkhorn=use_sinkhorn)
        co = self.collab_rq(rest[:, self.half:], use_sinkhorn=use_sinkhorn)
        return sh, se, co

    def forward(
        self,
        semantic: np.ndarray | torch.Tensor,
        collab: np.ndarray | torch.Tensor,
        use_sinkhorn: bool | None = None,
    ) -> JointOutput:
        """``use_sinkhorn=None`` means: Sinkhorn on the last specific levels in training mode only."""
        dev = self._device()
        semantic, collab = _to_tensor(semantic, dev), _to_tensor(collab, dev)
        if use_sinkhorn is None:
            use_sinkhorn = self.training
        latent = self.encode(semantic, collab)
        sh, se, co = self._quantise(latent, use_sinkhorn)
        semantic_q = sh.quantised[:, : self.half] + se.quantised
        collab_q = sh.quantised[:, self.half:] + co.quantised
        losses = sh.level_losses + se.level_losses + co.level_losses
        return JointOutput(
            semantic_hat=self.semantic_input.inverse(self.semantic_decoder(semantic_q)),
            collab_hat=self.collab_input.inverse(self.collab_decoder(collab_q)),
            vq_loss=torch.stack(losses).mean(),
            shared_codes=sh.codes,
            semantic_codes=se.codes,
            collab_codes=co.codes,
            latent=latent,
            level_losses=losses,
        )

    def loss_terms(self, semantic, collab, use_sinkhorn: bool | None = None) -> dict:
        """``{"loss", "recon_loss", "vq_loss"}`` (tensors) for one batch."""
        out = self(semantic, collab, use_sinkhorn)
        dev = self._device()
        recon = F.mse_loss(out.semantic_hat, _to_tensor(semantic, dev)) + F.mse_loss(
            out.collab_hat, _to_tensor(collab, dev)
        )
        return _loss_dict(recon + out.vq_loss, recon, out.vq_loss)

    # -- inference helpers (numpy out) ------------------------------------
    @torch.no_grad()
    def encode_codes(self, semantic, collab) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(shared [N, Lm], semantic [N, Ln], collaborative [N, Ln])`` int64, argmin codes."""
        out = self(semantic, collab, use_sinkhorn=False)
        return (
            out.shared_codes.cpu().numpy(),
            out.semantic_codes.cpu().numpy(),
            out.collab_codes.cpu().numpy(),
        )

    @torch.no_grad()
    def last_level_distances(self, semantic, collab) -> tuple[np.ndarray, np.ndarray]:
        """Squared distances ``[N, K]`` (float64) of the residual entering the last
        semantic / collaborative level to that level's codes; the paper's collision
        handling re-assigns the last code with Sinkhorn over these."""
        dev = self._device()
        latent = self.encode(_to_tensor(semantic, dev), _to_tensor(collab, dev))
        sh, se, co = self._quantise(latent, use_sinkhorn=False)
        d_sem = self.semantic_rq.levels[-1].distances(se.residuals[-2])
        d_col = self.collab_rq.levels[-1].distances(co.residuals[-2])
        return d_sem.double().cpu().numpy(), d_col.double().cpu().numpy()

    @torch.no_grad()
    def reconstruct(self, semantic, collab) -> tuple[np.ndarray, np.ndarray]:
        """Decoded ``(semantic_hat, collab_hat)`` with argmin codes."""
        out = self(semantic, collab, use_sinkhorn=False)
        return out.semantic_hat.cpu().numpy(), out.collab_hat.cpu().numpy()

    @torch.no_grad()
    def init_codebooks(self, semantic, collab, seed: int = 0, iters: int = KMEANS_ITERS) -> dict:
        """Fit the input standardisers, then k-means-initialise every level on all items' residuals.

        Shared levels first (on the encoder's latent), then the semantic and
        collaborative levels on the two halves of the shared residual.
        Returns ``{level name: inertia}``.
        """
        dev = self._device()
        semantic, collab = _to_tensor(semantic, dev), _to_tensor(collab, dev)
        if self.standardize:
            self.semantic_input.fit(semantic)
            self.collab_input.fit(collab)
        latent = self.encode(semantic, collab)
        res_sh, rest = self.shared.init_kmeans(latent, seed, iters, tag=0)
        res_se, _ = self.semantic_rq.init_kmeans(rest[:, : self.half], seed, iters, tag=1)
        res_co, _ = self.collab_rq.init_kmeans(rest[:, self.half:], seed, iters, tag=2)
        return {n: r.inertia for n, r in zip(self.level_names, res_sh + res_se + res_co)}

    @torch.no_grad()
    def diagnostic_codes(self, semantic, collab) -> tuple[float, dict, dict]:
        """One no-grad argmin pass: ``(recon MSE, {ID name: codes}, {level name: codes})``.

        ID names: ``shared`` (the shared prefix alone), ``semantic`` and
        ``collaborative`` (the full identifiers).
        """
        dev = self._device()
        s, c = _to_tensor(semantic, dev), _to_tensor(collab, dev)
        out = self(s, c, use_sinkhorn=False)
        recon = float(F.mse_loss(out.semantic_hat, s) + F.mse_loss(out.collab_hat, c))
        sh = out.shared_codes.cpu().numpy()
        se = out.semantic_codes.cpu().numpy()
        co = out.collab_codes.cpu().numpy()
        ids = {
            "shared": sh,
            "semantic": np.concatenate([sh, se], 1),
            "collaborative": np.concatenate([sh, co], 1),
        }
        levels = dict(zip(self.level_names, np.concatenate([sh, se, co], 1).T))
        return recon, ids, levels


# ---------------------------------------------------------------------------
# A single RQ-VAE (TIGER-style)
# ---------------------------------------------------------------------------


@dataclass
class SingleOutput:
    """Forward pass of :class:`SingleRQVAE`."""

    x_hat: torch.Tensor
    vq_loss: torch.Tensor
    codes: torch.Tensor
    latent: torch.Tensor
    level_losses: list[torch.Tensor]


class SingleRQVAE(nn.Module):
    """A TIGER-style RQ-VAE on one embedding: ``input_dim -> hidden -> latent``, L levels.

    Used for the identifier ablations: semantic-only, collaborative-only and
    concatenated (semantic ++ collaborative) embeddings. Defaults: ``levels =
    shared_levels + specific_levels`` (4, the length of a GenSAR ID; TIGER used
    3 + a de-duplication digit) and ``latent_dim = shared_dim``. ``kind``
    names the levels (``<kind>_a``, ...) and the tokens built from them.
    Loss = MSE(x) + mean VQ loss over levels; the last level may use Sinkhorn
    in training (``sinkhorn_last``). Same departures as :class:`JointRQVAE`
    (standardised input, EMA codebooks).
    """

    def __init__(
        self,
        input_dim: int,
        cfg: QuantizeConfig = QuantizeConfig(),
        *,
        levels: int | None = None,
        latent_dim: int | None = None,
        kind: str = "item",
        sinkhorn_last: bool = True,
        sinkhorn_iters: int = SINKHORN_ITERS,
        seed: int = 0,
        ema_decay: float = EMA_DECAY,
        standardize: bool = True,
    ) -> None:
        super().__init__()
        self.standardize = standardize
        self.cfg = cfg
        self.kind = kind
        self.input_dim = input_dim
        self.n_levels = levels if levels is not None else cfg.shared_levels + cfg.specific_levels
        self.latent_dim = latent_dim or cfg.shared_dim
        hidden = list(cfg.hidden_dims)
        self.input = Standardizer(input_dim)
        self.encoder = mlp([input_dim, *hidden, self.latent_dim])
        self.decoder = mlp([self.latent_dim, *reversed(hidden), input_dim])
        self.rq = ResidualQuantizer(
            self.n_levels, cfg.codebook_size, self.latent_dim, cfg.beta,
            cfg.sinkhorn_epsilon if sinkhorn_last else 0.0, sinkhorn_iters, ema_decay=ema_decay,
        )
        self.reset_parameters(seed)

    @property
    def level_names(self) -> list[str]:
        return level_names(self.kind, self.n_levels)

    @torch.no_grad()
    def reset_parameters(self, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        _reset_mlp(self.encoder, g)
        _reset_mlp(self.decoder, g)
        for level in self.rq.levels:
            level.reset_parameters(g)

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The latent ``[N, latent_dim]`` (input standardised first)."""
        return self.encoder(self.input(x))

    def forward(self, x, use_sinkhorn: bool | None = None) -> SingleOutput:
        x = _to_tensor(x, self._device())
        if use_sinkhorn is None:
            use_sinkhorn = self.training
        latent = self.encode(x)
        rq = self.rq(latent, use_sinkhorn=use_sinkhorn)
        x_hat = self.input.inverse(self.decoder(rq.quantised))
        return SingleOutput(x_hat, rq.loss, rq.codes, latent, rq.level_losses)

    def loss_terms(self, x, use_sinkhorn: bool | None = None) -> dict:
        out = self(x, use_sinkhorn)
        recon = F.mse_loss(out.x_hat, _to_tensor(x, self._device()))
        return _loss_dict(recon + out.vq_loss, recon, out.vq_loss)

    @torch.no_grad()
    def encode_codes(self, x) -> np.ndarray:
        """Argmin codes ``[N, L]`` int64."""
        return self(x, use_sinkhorn=False).codes.cpu().numpy()

    @torch.no_grad()
    def last_level_distances(self, x) -> np.ndarray:
        """Squared distances ``[N, K]`` (float64) of the residual entering the last level."""
        rq = self.rq(self.encode(_to_tensor(x, self._device())), use_sinkhorn=False)
        return self.rq.levels[-1].distances(rq.residuals[-2]).double().cpu().numpy()

    @torch.no_grad()
    def reconstruct(self, x) -> np.ndarray:
        return self(x, use_sinkhorn=False).x_hat.cpu().numpy()

    @torch.no_grad()
    def init_codebooks(self, x, seed: int = 0, iters: int = KMEANS_ITERS) -> dict:
        """Fit the input standardiser, k-means-initialise every level; ``{level name: inertia}``."""
        x = _to_tensor(x, self._device())
        if self.standardize:
            self.input.fit(x)
        results, _ = self.rq.init_kmeans(self.encode(x), seed, iters)
        return {n: r.inertia for n, r in zip(self.level_names, results)}

    @torch.no_grad()
    def diagnostic_codes(self, x) -> tuple[float, dict, dict]:
        """``(recon MSE, {"id": codes [N, L]}, {level name: codes [N]})``."""
        x = _to_tensor(x, self._device())
        out = self(x, use_sinkhorn=False)
        codes = out.codes.cpu().numpy()
        return float(F.mse_loss(out.x_hat, x)), {"id": codes}, dict(zip(self.level_names, codes.T))


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------


@dataclass
class TrainHistory:
    """Per-epoch curves of :func:`train_rqvae` (plain lists: JSON-able via :meth:`as_dict`).

    * ``loss`` / ``recon_loss`` / ``vq_loss``: means over the epoch's
      mini-batches (training mode, Sinkhorn on where enabled);
    * ``eval_recon_loss``: reconstruction MSE of all items with argmin codes,
      after the epoch;
    * ``collision_rate``: per identifier (joint: ``shared`` prefix,
      ``semantic``, ``collaborative``; single: ``id``), from argmin codes of all
      items after the epoch;
    * ``code_usage``: per level, distinct codes used / K;
    * ``code_entropy``: per level, normalised entropy of the argmin codes;
    * ``score``: :func:`checkpoint_score` of the epoch (lower is better);
    * ``init_inertia``: k-means inertia per level at initialisation;
    * ``selected_epoch``: the epoch whose weights the model holds at the end
      (1-based; 0 = the k-means initialisation).
    """

    epochs: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    recon_loss: list[float] = field(default_factory=list)
    vq_loss: list[float] = field(default_factory=list)
    eval_recon_loss: list[float] = field(default_factory=list)
    collision_rate: dict[str, list[float]] = field(default_factory=dict)
    code_usage: dict[str, list[float]] = field(default_factory=dict)
    code_entropy: dict[str, list[float]] = field(default_factory=dict)
    score: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    init_inertia: dict[str, float] = field(default_factory=dict)
    init_seconds: float = 0.0
    select: str = "last"
    selected_epoch: int = 0

    @property
    def total_seconds(self) -> float:
        return self.init_seconds + float(sum(self.epoch_seconds))

    def as_dict(self) -> dict:
        d = asdict(self)
        d["total_seconds"] = self.total_seconds
        return d


def _inputs(model: nn.Module, inputs) -> tuple[torch.Tensor, ...]:
    if isinstance(inputs, (np.ndarray, torch.Tensor)):
        inputs = (inputs,)
    dev = next(model.parameters()).device
    xs = tuple(_to_tensor(x, dev) for x in inputs)
    n = len(xs[0])
    if any(len(x) != n for x in xs):
        raise ValueError(f"inputs disagree on the number of items: {[len(x) for x in xs]}")
    if n == 0:
        raise ValueError("no items to train on")
    return xs


SELECT_RULES = ("last", "best_collision", "best_loss", "recon_entropy")


def checkpoint_score(recon: float, first_recon: float, entropies: Sequence[float]) -> float:
    """The pipeline's checkpoint rule (lower is better; notebook 02, section 3).

    ``recon / first_recon + (1 - mean(entropies))``: the share of the first epoch's reconstruction
    error (all items, argmin codes: what the codes alone say about the embeddings) that is left,
    plus the share of codebook capacity the levels leave unused (``entropies``: normalised code
    entropy per level, 1 = every code used equally often). Both terms are dimensionless and start
    near the same size, so neither dominates. It uses no labels, so it works on real data; it
    ignores collisions, which are handled after training in any case.

    Departure: the official code keeps the epoch with the fewest collisions
    (``select="best_collision"``), which rewards codes without structure, e.g. k-means on the
    latent of an untrained encoder.
    """
    if first_recon <= 0:
        raise ValueError(f"first_recon must be > 0, got {first_recon}")
    return float(recon / first_recon + 1.0 - float(np.mean(entropies)))


def train_rqvae(
    model: JointRQVAE | SingleRQVAE,
    inputs,
    cfg: QuantizeConfig,
    seed: int = 0,
    progress: bool = True,
    *,
    select: Literal["last", "best_collision", "best_loss", "recon_entropy"] = "last",
    reinit: bool = True,
    weight_decay: float = WEIGHT_DECAY,
    grad_clip: float | None = GRAD_CLIP,
    warmup_epochs: int = 0,
    kmeans_iters: int = KMEANS_ITERS,
) -> TrainHistory:
    """Train an RQ-VAE in place and return its per-epoch history.

    ``inputs``: ``(semantic [N, ds], collab [N, dc])`` for :class:`JointRQVAE`,
    one ``[N, d]`` array for :class:`SingleRQVAE`.

    Steps: re-initialise the weights from ``seed`` (``reinit``), k-means-init
    every level on all items' residuals level by level, then ``cfg.epochs``
    epochs of AdamW (``cfg.lr``, ``weight_decay``, gradient clipping at
    ``grad_clip`` as the official trainer) over mini-batches of
    ``cfg.batch_size`` shuffled by a generator seeded with ``seed`` (one full
    batch when ``batch_size >= N``). After each epoch one no-grad argmin pass
    over all items gives the collision rates and code usage. Deterministic for
    a seed on a given machine and thread count.

    ``select``: which weights to keep at the end -- the last epoch, the one
    with the lowest mean collision rate of the full identifiers (the official
    ``best_collision_model``), the lowest training loss, or the lowest
    :func:`checkpoint_score` (``"recon_entropy"``, the pipeline's rule); the
    earliest on ties.
    """
    if select not in SELECT_RULES:
        raise ValueError(f"select must be one of {SELECT_RULES}, got {select!r}")
    xs = _inputs(model, inputs)
    n = len(xs[0])
    k = cfg.codebook_size
    history = TrainHistory(select=select)

    def record_diagnostics() -> float:
        recon, ids, levels = model.diagnostic_codes(*xs)
        history.eval_recon_loss.append(recon)
        for name, codes in ids.items():
            history.collision_rate.setdefault(name, []).append(collision_rate(codes))
        for name, codes in levels.items():
            history.code_usage.setdefault(name, []).append(float(code_usage(codes, k)[0]))
            history.code_entropy.setdefault(name, []).append(float(code_entropy(codes, k)[0]))
        history.score.append(checkpoint_score(recon, history.eval_recon_loss[0],
                                              [v[-1] for v in history.code_entropy.values()]))
        full = [history.collision_rate[i][-1] for i in ids if i != "shared"]
        return float(np.mean(full))

    t0 = time.perf_counter()
    if reinit:
        model.reset_parameters(seed)
    model.eval()
    history.init_inertia = model.init_codebooks(*xs, seed=seed, iters=kmeans_iters)
    history.init_seconds = time.perf_counter() - t0

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=weight_decay)
    batch = max(1, min(cfg.batch_size, n))
    steps_per_epoch = math.ceil(n / batch)
    warmup_steps = warmup_epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup_steps) if warmup_steps else 1.0
    )
    gen = torch.Generator().manual_seed(seed)
    best_score, best_state = math.inf, None

    bar = tqdm(range(1, cfg.epochs + 1), desc=type(model).__name__, disable=not progress)
    for epoch in bar:
        t_epoch = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=gen) if batch < n else torch.arange(n)
        sums = {"loss": 0.0, "recon_loss": 0.0, "vq_loss": 0.0}
        for start in range(0, n, batch):
            idx = order[start:start + batch].to(xs[0].device)
            terms = model.loss_terms(*(x[idx] for x in xs))
            opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            opt.step()
            sched.step()
            if not torch.isfinite(terms["loss"]):
                raise FloatingPointError(f"RQ-VAE loss became {terms['loss'].item()} at epoch {epoch}")
            for key in sums:
                sums[key] += float(terms[key].detach()) * len(idx)
        model.eval()
        history.epochs.append(epoch)
        history.loss.append(sums["loss"] / n)
        history.recon_loss.append(sums["recon_loss"] / n)
        history.vq_loss.append(sums["vq_loss"] / n)
        collision = record_diagnostics()
        history.epoch_seconds.append(time.perf_counter() - t_epoch)
        score = {"best_collision": collision, "best_loss": history.loss[-1],
                 "recon_entropy": history.score[-1]}.get(select)
        if score is not None and score < best_score:
            best_score, best_state = score, copy.deepcopy(model.state_dict())
            history.selected_epoch = epoch
        bar.set_postfix(loss=f"{history.loss[-1]:.4f}", collision=f"{collision:.4f}")
    if select == "last":
        history.selected_epoch = cfg.epochs
    elif best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history
