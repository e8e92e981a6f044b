"""Instruction pairs as token ids and padded batches, and the order of every epoch (notebook 05_t5_training).

:func:`encode_pairs` / :func:`collate` give token ids per pair, and padded batches whose labels are the
response only (source tokens never carry loss). Sources longer than ``TrainConfig.max_source_length``
lose their OLDEST tokens (left truncation), so the current query and the question survive.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gensar_lib.config import TrainConfig
from gensar_lib.t5.tokenizer import Tokenizer

LABEL_IGNORE = -100  # label value that cross-entropy skips (padding)


@dataclass
class EncodedPairs:
    """Token ids per pair: ``sources[i]`` and ``targets[i]`` both end with ``</s>``."""

    sources: list[list[int]]
    targets: list[list[int]]

    def __len__(self) -> int:
        return len(self.sources)


def _truncate_left(ids: list[int], max_length: int) -> list[int]:
    """The last ``max_length`` ids (the final ``</s>`` survives; the oldest history goes)."""
    return ids if len(ids) <= max_length else ids[-max_length:]


def _truncate_right(ids: list[int], max_length: int, eos_id: int) -> list[int]:
    """The first ``max_length - 1`` ids plus ``</s>``."""
    return ids if len(ids) <= max_length else ids[: max_length - 1] + [eos_id]


def encode_pairs(
    tokenizer: Tokenizer,
    pairs: Sequence[tuple[str, str]],
    max_source_length: int = 256,
    max_target_length: int = 64,
) -> EncodedPairs:
    """Encode sources (left-truncated) and targets (right-truncated), each ending with ``</s>``."""
    if not pairs:
        return EncodedPairs([], [])
    sources, targets = zip(*pairs)
    src = tokenizer(list(sources))["input_ids"]
    tgt = tokenizer(list(targets))["input_ids"]
    eos = tokenizer.eos_token_id
    return EncodedPairs(
        [_truncate_left(s, max_source_length) for s in src],
        [_truncate_right(t, max_target_length, eos) for t in tgt],
    )


def encode_sources(tokenizer: Tokenizer, sources: Sequence[str], max_source_length: int) -> dict[str, torch.Tensor]:
    """Prompts as one batch padded to its longest row (``input_ids``, ``attention_mask``), each cut as a
    training source is (:func:`encode_pairs`: the oldest tokens go, the question and ``</s>`` stay)."""
    ids = [_truncate_left(s, max_source_length) for s in tokenizer(list(sources))["input_ids"]]
    return {"input_ids": _pad(ids, tokenizer.pad_token_id), "attention_mask": (_pad(ids, -1) != -1).long()}


def _pad(rows: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def collate(
    sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], pad_id: int = 0
) -> dict[str, torch.Tensor]:
    """One batch, padded to its own longest row: ``input_ids``, ``attention_mask``, ``labels``.

    ``labels`` are the target ids only, padding set to -100, so the loss is on
    the response alone; the model shifts them right (decoder start = pad) to
    build its decoder inputs.
    """
    input_ids = _pad(sources, pad_id)
    return {
        "input_ids": input_ids,
        "attention_mask": (_pad(sources, -1) != -1).long(),
        "labels": _pad(targets, LABEL_IGNORE),
    }


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled example order of ``epoch`` (0-based): a function of (seed, epoch) only."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator)


def epoch_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int,
                  window: int = 0) -> list[np.ndarray]:
    """The batches (row indices) of one epoch over ALL examples: a function of (seed, epoch) only.

    Every example appears exactly once per epoch, in a fresh seeded order. With
    ``window > 0`` the order is cut into windows of ``window`` batches, each
    window is sorted by source length (so a batch pads to nearly its own length
    instead of the longest prompt of a random batch), and the batches are then
    shuffled again, so lengths do not drift through the epoch (notebook 05).
    """
    order = epoch_order(len(lengths), seed, epoch).numpy()
    if window > 0:
        lengths = np.asarray(lengths)
        span = window * batch_size
        order = np.concatenate([
            chunk[np.argsort(lengths[chunk], kind="stable")]
            for chunk in (order[i:i + span] for i in range(0, len(order), span))
        ])
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if window > 0:
        batches = [batches[i] for i in np.random.default_rng([seed, epoch]).permutation(len(batches))]
    return batches


def total_steps(cfg: TrainConfig, n_examples: int) -> int:
    """Optimiser steps of a run: ``cfg.max_steps`` when set (the CPU profiles' budget), else whole epochs."""
    return cfg.max_steps if cfg.max_steps else cfg.epochs * math.ceil(n_examples / cfg.batch_size)


def pairs_fingerprint(pairs: Sequence[tuple[str, str]]) -> str:
    """A hash of the training pairs, so a checkpoint never resumes on other data."""
    digest = hashlib.sha256()
    for source, target in pairs:
        digest.update(source.encode())
        digest.update(b"\x00")
        digest.update(target.encode())
        digest.update(b"\x01")
    return digest.hexdigest()[:16]
