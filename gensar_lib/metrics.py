"""Hit rate and NDCG at k, from ranks (notebooks 01_embeddings and 05_t5_training).

A rank is the 0-based position of the target in a ranked list, or ``MISSING``
(-1) when the target is absent (e.g. not among the beams). Ranked lists may
hold item indices or identifier token-id tuples; both reduce to a rank.
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

MISSING = -1


def rank_of(target: Hashable, ranked: Sequence[Hashable]) -> int:
    """Position of ``target`` in ``ranked`` (items or token-id tuples), or MISSING."""
    for position, candidate in enumerate(ranked):
        if candidate == target:
            return position
    return MISSING


def ranks_from_scores(scores: np.ndarray, positive_column: int | np.ndarray = 0) -> np.ndarray:
    """Ranks of the positive column (one for all rows, or one per row) of scores; ties count against it."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = scores[np.arange(len(scores)), positive_column]
    better = (scores > positive[:, None]).sum(axis=1)
    ties = (scores == positive[:, None]).sum(axis=1) - 1
    return better + ties


def hit_rate(ranks: np.ndarray, k: int) -> float:
    """Share of cases whose target is in the top k."""
    ranks = np.asarray(ranks)
    return float(((ranks >= 0) & (ranks < k)).mean()) if len(ranks) else 0.0


def ndcg(ranks: np.ndarray, k: int) -> float:
    """Mean NDCG@k with one relevant item: 1 / log2(rank + 2) inside the top k, else 0."""
    ranks = np.asarray(ranks)
    if not len(ranks):
        return 0.0
    hit = (ranks >= 0) & (ranks < k)
    return float(np.where(hit, 1.0 / np.log2(np.where(hit, ranks, 0) + 2.0), 0.0).mean())


def summarize(ranks: np.ndarray, hr_ks: Sequence[int] = (1, 5, 10), ndcg_ks: Sequence[int] = (5, 10)) -> dict[str, float]:
    """The paper's table row: HR@1/5/10 and NDCG@5/10."""
    out = {f"HR@{k}": hit_rate(ranks, k) for k in hr_ks}
    out.update({f"NDCG@{k}": ndcg(ranks, k) for k in ndcg_ks})
    return out
