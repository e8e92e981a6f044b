"""Score fusion of two baselines, its weight chosen on validation cases (notebook 06_identifier_ablation).

Each case's two score rows are z-scored over the items (a constant row gives zeros) and added as
``z(first) + w * z(second)``. The weight ``w`` is chosen per task from :data:`WEIGHTS` by
``evaluation.selection_score`` on the validation cases of ``evaluation.held_out``, never on test cases;
ties keep the smaller weight. ``w = 0`` is the first baseline alone, so a fusion is never worse on
validation than its first part.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from gensar_lib.artifacts import ArtifactCache
from gensar_lib.config import Profile, fingerprint
from gensar_lib.data.pipeline import PreparedData
from gensar_lib.data.schema import TASKS
from gensar_lib.data.splits import Case
from gensar_lib.evaluation import held_out, selection_score

Scorer = Callable[[PreparedData, Profile, Sequence[Case], "ArtifactCache | None"], np.ndarray]
WEIGHTS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
_CHOSEN: dict[tuple[str, str, str, str], dict[str, float]] = {}  # (first, second, data key, profile) -> weights


def zscore(scores: np.ndarray) -> np.ndarray:
    """Each row minus its mean, over its standard deviation; a constant row becomes zeros."""
    scores = np.asarray(scores, dtype=np.float64)
    std = scores.std(axis=1, keepdims=True)
    return np.where(std > 0, (scores - scores.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1.0), 0.0)


def fuse(first: np.ndarray, second: np.ndarray, weight: float) -> np.ndarray:
    """``z(first) + weight * z(second)``, float32."""
    return (zscore(first) + weight * zscore(second)).astype(np.float32)


def choose_weights(first: Scorer, second: Scorer, prepared: PreparedData, profile: Profile,
                   cache: ArtifactCache | None = None) -> dict[str, float]:
    """``{task: weight}``: the weight of :data:`WEIGHTS` with the best validation score per task
    (memoised per process)."""
    key = (first.__name__, second.__name__, prepared.key, fingerprint(profile))
    if key not in _CHOSEN:
        cases, candidates = held_out(prepared, profile, "valid")
        chosen = {}
        for task in TASKS:
            rows = [i for i, c in enumerate(cases) if c.task == task]
            part = [cases[i] for i in rows]
            a, b = first(prepared, profile, part, cache), second(prepared, profile, part, cache)
            quality = [selection_score(fuse(a, b, w), part, candidates[rows]) if part else 0.0 for w in WEIGHTS]
            chosen[task] = WEIGHTS[int(np.argmax(quality))]
        _CHOSEN[key] = chosen
    return _CHOSEN[key]


def fusion(first: Scorer, second: Scorer) -> Scorer:
    """The scorer of ``z(first) + w * z(second)`` with ``w`` from :func:`choose_weights` per task."""
    def fused(prepared: PreparedData, profile: Profile, cases: Sequence[Case],
              cache: ArtifactCache | None = None) -> np.ndarray:
        weights = choose_weights(first, second, prepared, profile, cache)
        cases = list(cases)
        a, b = first(prepared, profile, cases, cache), second(prepared, profile, cases, cache)
        out = np.zeros_like(a, dtype=np.float32)
        for task in TASKS:
            rows = [i for i, c in enumerate(cases) if c.task == task]
            out[rows] = fuse(a[rows], b[rows], weights[task])
        return out

    fused.__name__ = f"{first.__name__}+{second.__name__}"
    return fused
