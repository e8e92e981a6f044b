"""Statistics of code matrices: collisions, usage, entropy and structure; notebooks 02 and 03.

Everything takes plain integer arrays (one row per item) and knows nothing about models or
datasets, so both :mod:`gensar_lib.quantize` (per-epoch diagnostics and the checkpoint rule) and
:mod:`gensar_lib.identifiers` (identifier statistics) use it without importing each other.

* :func:`collision_rate`, :func:`code_usage`, :func:`code_entropy` -- how unique the identifiers
  are and how evenly a level uses its codebook;
* :func:`chance_collision_rate`, :func:`chance_shared_share` -- the same for identifiers drawn uniformly
  at random (notebook 06, exercise 6.2);
* :func:`purity`, :func:`structure_measures` -- what a level's codes carry of known labels (AMI and
  NMI from scikit-learn; AMI is 0 in expectation for random codes, NMI is not);
* :func:`pair_agreement` -- of the item pairs that share a code (or a prefix), the share that also
  share a label, against the share among all pairs (the lift);
* :func:`next_item_prefix_match` -- how often a target shares its prefix with a given previous item.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score


def as_codes(codes, name: str = "codes", n: int | None = None) -> np.ndarray:
    """An integer array ``[N, levels]`` (1-D codes become one level); raises on anything else."""
    arr = np.asarray(codes)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be an integer array [N, levels], got {arr.dtype} {arr.shape}")
    if n is not None and len(arr) != n:
        raise ValueError(f"{name} has {len(arr)} rows, expected {n}")
    return arr.astype(np.int64)


def group_ids(codes) -> tuple[np.ndarray, int]:
    """Per row, the index of its distinct value; and the number of distinct rows."""
    if isinstance(codes, np.ndarray) and codes.dtype != object:
        arr = codes[:, None] if codes.ndim == 1 else codes
        if len(arr) == 0:
            return np.zeros(0, np.int64), 0
        _, inverse = np.unique(arr, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        return inverse, int(inverse.max()) + 1
    lookup: dict = {}
    inverse = np.fromiter((lookup.setdefault(tuple(r), len(lookup)) for r in codes), np.int64)
    return inverse, len(lookup)


def collision_rate(codes) -> float:
    """``(N - #distinct identifiers) / N``; codes ``[N, L]`` ints or a sequence of token tuples."""
    inverse, distinct = group_ids(codes)
    n = len(inverse)
    return (n - distinct) / n if n else 0.0


def _none_other_draws(n_others: int, n_ids: int) -> float:
    """(1 - 1/n_ids) ** n_others, accurate when n_ids is large."""
    return float(n_others == 0) if n_ids == 1 else math.exp(n_others * math.log1p(-1.0 / n_ids))


def chance_collision_rate(n_items: int, n_ids: int) -> float:
    """Expected :func:`collision_rate` when each of ``n_items`` items draws one of ``n_ids`` identifiers
    uniformly: 1 - E[distinct] / N, with E[distinct] = n_ids (1 - (1 - 1/n_ids)^N) (notebook 06)."""
    return 1.0 - n_ids * (1.0 - _none_other_draws(n_items, n_ids)) / n_items


def chance_shared_share(n_items: int, n_ids: int) -> float:
    """Expected share of items whose identifier another item also draws, under uniform draws:
    1 - (1 - 1/n_ids)^(N - 1) (notebook 06, exercise 6.2)."""
    return 1.0 - _none_other_draws(n_items - 1, n_ids)


def code_usage(codes, codebook_size: int) -> np.ndarray:
    """Per level: distinct codes used / ``codebook_size`` (1-D codes count as one level)."""
    arr = as_codes(codes)
    return np.array([len(np.unique(arr[:, lv])) / codebook_size for lv in range(arr.shape[1])])


def code_entropy(codes, codebook_size: int, normalise: bool = True) -> np.ndarray:
    """Per level: entropy in bits of the code distribution; divided by log2(K) if ``normalise``.

    1.0 (normalised) means all K codes used equally often; 0 means one code.
    """
    arr = as_codes(codes)
    out = []
    for lv in range(arr.shape[1]):
        counts = np.bincount(arr[:, lv], minlength=codebook_size)
        p = counts[counts > 0] / counts.sum()
        h = float(-(p * np.log2(p)).sum()) if len(p) else 0.0
        out.append(h / np.log2(codebook_size) if normalise and codebook_size > 1 else h)
    return np.array(out) + 0.0  # + 0.0 turns -0.0 into 0.0


# ---------------------------------------------------------------------------
# Structure: codes against known labels
# ---------------------------------------------------------------------------


def _labelled(labels, codes) -> tuple[np.ndarray, np.ndarray]:
    """Labels and 1-D codes of the items whose label is >= 0 (-1 means unlabelled)."""
    labels = np.asarray(labels)
    codes = group_ids(as_codes(codes))[0]
    if len(labels) != len(codes):
        raise ValueError(f"{len(labels)} labels for {len(codes)} items")
    keep = labels >= 0
    return labels[keep], codes[keep]


def purity(labels, codes) -> float:
    """Share of items that carry the most frequent label of their code (1 = every code is one label).

    ``codes`` may be ``[N]`` or ``[N, L]`` (rows are then the groups); items labelled -1 are skipped.
    """
    labels, codes = _labelled(labels, codes)
    if len(labels) == 0:
        return 0.0
    _, lab = np.unique(labels, return_inverse=True)
    table = np.zeros((codes.max() + 1, lab.max() + 1), np.int64)
    np.add.at(table, (codes, lab), 1)
    return float(table.max(1).sum() / len(labels))


def structure_measures(codes, labels: Mapping[str, np.ndarray]) -> dict[str, float]:
    """``{"ami_<name>", "nmi_<name>", "purity_<name>"}`` of one level's codes for each label set.

    AMI (adjusted mutual information) is 0 in expectation for codes drawn at random and 1 when codes
    and labels are the same partition; NMI is not adjusted for chance, so many small codes get a
    positive NMI with anything. Both from scikit-learn (arithmetic normalisation).
    """
    out = {}
    for name, lab in labels.items():
        y, c = _labelled(lab, codes)
        out[f"ami_{name}"] = float(adjusted_mutual_info_score(y, c))
        out[f"nmi_{name}"] = float(normalized_mutual_info_score(y, c))
        out[f"purity_{name}"] = purity(y, c)
    return out


def _pairs(counts: np.ndarray) -> int:
    counts = np.asarray(counts, np.int64)
    return int((counts * (counts - 1) // 2).sum())


def pair_agreement(codes, labels) -> dict[str, float]:
    """Of the item pairs with the same code row, the share that also share a label; and the lift.

    ``codes`` ``[N]`` or ``[N, depth]`` (a prefix); items labelled -1 are left out. Returns
    ``pairs_same_code``, ``share_same_label`` (among those pairs), ``random_share_same_label``
    (among all pairs of labelled items) and ``lift`` = the ratio of the two shares (1 = no better
    than random pairs).
    """
    y, c = _labelled(labels, codes)
    same_code = _pairs(np.bincount(c))
    joint = group_ids(np.stack([c, y], 1))[0]
    same_both = _pairs(np.bincount(joint))
    n = len(y)
    all_pairs = n * (n - 1) // 2
    random_share = _pairs(np.unique(y, return_counts=True)[1]) / all_pairs if all_pairs else 0.0
    share = same_both / same_code if same_code else 0.0
    return {"pairs_same_code": same_code, "share_same_label": share, "random_share_same_label": random_share,
            "lift": share / random_share if random_share else 0.0}


def next_item_prefix_match(prefixes, targets: Sequence[int], previous: Sequence[int]) -> dict[str, float]:
    """Share of targets whose prefix row equals that of the paired previous item, and its chance level.

    ``prefixes`` ``[N, depth]``; ``targets[i]`` and ``previous[i]`` are item indices. ``chance`` is
    the probability that two items drawn uniformly at random share a prefix (sum of squared group
    shares).
    """
    inverse, _ = group_ids(as_codes(prefixes))
    targets, previous = np.asarray(targets, np.int64), np.asarray(previous, np.int64)
    share = float((inverse[targets] == inverse[previous]).mean()) if len(targets) else 0.0
    p = np.bincount(inverse) / len(inverse)
    return {"cases": int(len(targets)), "share": share, "chance": float((p**2).sum())}
