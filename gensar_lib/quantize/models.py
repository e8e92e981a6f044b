"""The identifier models behind one protocol, :class:`RQVAE`: GenSAR's joint RQ-VAE and a single
(TIGER-style) RQ-VAE (notebooks 02 and 03).

The departures from the paper these models carry are stated in :mod:`gensar_lib.quantize`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gensar_lib.config import QuantizeConfig
from gensar_lib.quantize.residual import (
    EMA_DECAY,
    KMEANS_ITERS,
    SINKHORN_ITERS,
    ResidualQuantizer,
    _to_tensor,
    level_names,
)


class RQVAE(Protocol):
    """What :func:`~gensar_lib.quantize.training.train_rqvae` and the pipeline need of an identifier
    model. ``*inputs`` is ``(semantic, collab)`` for :class:`JointRQVAE` and ``(x,)`` for
    :class:`SingleRQVAE`."""

    def level_names(self) -> list[str]: ...
    def reset_parameters(self, seed: int = 0) -> None: ...
    def init_codebooks(self, *inputs, seed: int = 0, iters: int = KMEANS_ITERS) -> dict: ...
    def loss_terms(self, *inputs) -> dict: ...
    def diagnostic_codes(self, *inputs) -> tuple[float, dict, dict]: ...
    def codebooks(self) -> dict[str, np.ndarray]: ...


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
    """GenSAR's joint identifier model (``docs/method.md`` section 2).

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

    def codebooks(self) -> dict[str, np.ndarray]:
        """Each level's codebook by level name (``shared_a``: codebook_size x shared_dim; notebook 03)."""
        levels = [*self.shared.levels, *self.semantic_rq.levels, *self.collab_rq.levels]
        return {name: level.codebook.detach().cpu().numpy().copy() for name, level in zip(self.level_names, levels)}

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

    def codebooks(self) -> dict[str, np.ndarray]:
        """Each level's codebook by level name (``semantic_a``: codebook_size x latent_dim)."""
        return {name: level.codebook.detach().cpu().numpy().copy()
                for name, level in zip(self.level_names, self.rq.levels)}

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
