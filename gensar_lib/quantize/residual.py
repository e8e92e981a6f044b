"""The residual quantiser: k-means, Sinkhorn, one VQ level and a residual stack (notebook 02).

The departures from the paper these parts carry are stated in :mod:`gensar_lib.quantize`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# Values the official code uses that QuantizeConfig does not carry.
SINKHORN_ITERS = 50  # official --sk_iters
KMEANS_ITERS = 100  # official --kmeans_iters
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
