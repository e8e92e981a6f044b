"""Residual quantisation and GenSAR's joint RQ-VAE; taught in notebooks 02 and 03.

Everything here works on plain arrays (one row per item); nothing knows about
datasets. Three modules, bottom-up:

* :mod:`~gensar_lib.quantize.residual` -- the residual quantiser: :func:`kmeans`
  (seeded, k-means++ start, Lloyd steps) to place codebooks on data,
  :func:`sinkhorn` (balanced assignment, float64), :class:`VQLevel` (one
  codebook, VQ-VAE loss, straight-through gradient) and
  :class:`ResidualQuantizer` (L levels on the running residual).
* :mod:`~gensar_lib.quantize.models` -- the identifier models behind one
  protocol, :class:`RQVAE`: :class:`JointRQVAE`, GenSAR's (paper section 3.2,
  summary in ``docs/method.md`` section 2: shared levels on
  the concatenated semantic and collaborative latents, then specific levels on
  each half of the residual), and :class:`SingleRQVAE`, a TIGER-style RQ-VAE on
  one embedding (the paper's Figure 4/5 ablations).
* :mod:`~gensar_lib.quantize.training` -- :func:`train_rqvae`: k-means
  initialisation plus AdamW training of any :class:`RQVAE`, with per-epoch
  diagnostics for the notebooks' training curves, and the checkpoint rule
  :func:`checkpoint_score`.

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

from gensar_lib.quantize.models import (
    JointOutput,
    JointRQVAE,
    RQVAE,
    SingleOutput,
    SingleRQVAE,
    Standardizer,
    mlp,
)
from gensar_lib.quantize.residual import (
    EMA_DECAY,
    KMEANS_ITERS,
    SINKHORN_ITERS,
    KMeansResult,
    ResidualQuantizer,
    RQOutput,
    VQLevel,
    center_distances,
    kmeans,
    level_letter,
    level_names,
    sinkhorn,
    sinkhorn_assign,
)
from gensar_lib.quantize.training import (
    GRAD_CLIP,
    SELECT_RULES,
    WEIGHT_DECAY,
    TrainHistory,
    checkpoint_score,
    train_rqvae,
)

__all__ = [
    "EMA_DECAY", "GRAD_CLIP", "KMEANS_ITERS", "SELECT_RULES", "SINKHORN_ITERS", "WEIGHT_DECAY",
    "JointOutput", "JointRQVAE", "KMeansResult", "RQOutput", "RQVAE", "ResidualQuantizer", "SingleOutput",
    "SingleRQVAE", "Standardizer", "TrainHistory", "VQLevel", "center_distances", "checkpoint_score", "kmeans",
    "level_letter", "level_names", "mlp", "sinkhorn", "sinkhorn_assign", "train_rqvae",
]
