"""Data-parallel training: one optimiser step shared by the processes of a launcher (``docs/scale.md``;
:func:`gensar_lib.t5.train.train` calls it under Accelerate; notebook 05_t5_training)."""
from __future__ import annotations

from typing import Any

import numpy as np

from gensar_lib.config import TrainConfig
from gensar_lib.t5.batches import EncodedPairs, collate
from gensar_lib.t5.model import response_loss


def shard_step(model: Any, data: EncodedPairs, rows: np.ndarray, optimizer: Any, scheduler: Any, cfg: TrainConfig,
                acc: Any) -> float:
    """One data-parallel optimiser step on one batch (:func:`train` under Accelerate); the batch's mean loss.

    Every process holds the whole batch ``rows`` and computes on its shard ``rows[rank::N]`` (a
    process whose shard is empty takes one row at weight 0, so that it still joins the gradient
    all-reduce). Each shard's loss is its token sum over the batch's token count, times N: the
    averaged gradient is then that of the whole batch's mean loss, as in one process.
    """
    rank, n = acc.process_index, acc.num_processes
    mine, weight = rows[rank::n], 1.0
    if len(mine) == 0:
        mine, weight = rows[:1], 0.0
    tokens = sum(len(data.targets[i]) for i in rows)
    batch = {k: v.to(acc.device) for k, v in collate([data.sources[i] for i in mine],
                                                      [data.targets[i] for i in mine]).items()}
    total = response_loss(model, batch, cfg.label_smoothing, reduction="sum") * weight
    optimizer.zero_grad(set_to_none=True)
    acc.backward(total * (n / tokens))
    if cfg.grad_clip > 0:
        acc.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    scheduler.step()
    return float(acc.reduce(total.detach(), "sum")) / tokens
