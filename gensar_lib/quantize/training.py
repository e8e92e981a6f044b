"""Training an identifier model: :func:`train_rqvae` and the checkpoint rule (notebook 02).

The departures from the paper (k-means initialisation on all items, no warm-up by default, the
checkpoint rule) are stated in :mod:`gensar_lib.quantize`.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Literal, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from gensar_lib.codestats import code_entropy, code_usage, collision_rate
from gensar_lib.config import QuantizeConfig
from gensar_lib.quantize.models import RQVAE
from gensar_lib.quantize.residual import KMEANS_ITERS, _to_tensor

WEIGHT_DECAY = 1e-5  # official --weight_decay (AdamW)
GRAD_CLIP = 1.0  # official clip_grad_norm_ max norm


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


def _inputs(model: RQVAE, inputs) -> tuple[torch.Tensor, ...]:
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
    model: RQVAE,
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
