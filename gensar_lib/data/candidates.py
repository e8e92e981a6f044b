"""Candidate lists for the paper's sampled protocol (notebook 00_data).

Each validation / test case gets its positive plus ``n_negatives`` distinct
items the user never interacted with (in any task, at any time):

- recommendation: sampled without replacement with probability proportional
  to training popularity (count + 1), as the official code does;
- search: BM25 hard negatives, the items whose title + description best match
  the query; when fewer than ``n_negatives`` items share a query term (none
  for a query of stop words only), the rest are popularity-sampled.

Full ranking (every item is a candidate) needs no list; evaluation code ranks
the whole catalogue instead.
"""
from __future__ import annotations

from functools import lru_cache

import bm25s
import numpy as np

from gensar_lib.data.queries import text_terms
from gensar_lib.data.schema import DataError, Dataset
from gensar_lib.data.splits import Case, Split

CHUNK = 256


def popularity(ds: Dataset, split: Split) -> np.ndarray:
    """Training-target counts per item, plus one so every item can be drawn."""
    counts = np.ones(ds.n_items, dtype=np.float64)
    for case in split.train:
        counts[case.target.item] += 1
    return counts


def user_items(ds: Dataset) -> list[np.ndarray]:
    """Every item each user touched, in any task."""
    return [np.unique([e.item for e in seq]) for seq in ds.sequences]


class BM25Index:
    """BM25 (bm25s) over item title + description, tokenised with ``text_terms``."""

    def __init__(self, ds: Dataset):
        self.n_items = ds.n_items
        self.retriever = bm25s.BM25()
        self.retriever.index([text_terms(item.text) or ["<empty>"] for item in ds.items], show_progress=False)
        self.scores = lru_cache(maxsize=None)(self._scores)

    def _scores(self, query: str) -> np.ndarray:
        """BM25 score of every item; all zero for a query with no terms (only stop words)."""
        terms = text_terms(query)
        if not terms:  # bm25s raises IndexError on an empty query
            return np.zeros(self.n_items, dtype=np.float32)
        return self.retriever.get_scores(terms)


def _exclusion_mask(n_items: int, touched: list[np.ndarray], cases: list[Case]) -> np.ndarray:
    mask = np.zeros((len(cases), n_items), dtype=bool)
    for row, case in enumerate(cases):
        mask[row, touched[case.user]] = True
        mask[row, case.target.item] = True
    return mask


def _weighted_without_replacement(
    log_weights: np.ndarray, excluded: np.ndarray, k: int, rng: np.random.Generator
) -> np.ndarray:
    """k distinct columns per row, drawn proportionally to exp(log_weights) (Gumbel top-k)."""
    keys = log_weights[None, :] + rng.gumbel(size=excluded.shape)
    keys[excluded] = -np.inf
    top = np.argpartition(-keys, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def _bm25_negatives(
    index: BM25Index, cases: list[Case], excluded: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k BM25 items per case and a mask of which of them share a query term."""
    scores = np.stack([index.scores(c.target.query) for c in cases])
    scores[excluded] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return top, np.take_along_axis(scores, top, axis=1) > 0


def sample_candidates(
    ds: Dataset,
    split: Split,
    cases: list[Case],
    n_negatives: int = 99,
    seed: int = 0,
    index: BM25Index | None = None,
) -> np.ndarray:
    """Candidate lists [n_cases, 1 + n_negatives]; column 0 is the positive."""
    touched = user_items(ds)
    most = max((len(touched[c.user]) for c in cases), default=0)
    if ds.n_items - most < n_negatives:
        raise DataError(
            f"{ds.source or ds.name}: impossible config n_negatives = {n_negatives}: "
            f"a user touched {most} of {ds.n_items} items"
        )
    rng = np.random.default_rng(seed)
    log_pop = np.log(popularity(ds, split))
    if index is None and any(c.task == "search" for c in cases):
        index = BM25Index(ds)
    out = np.empty((len(cases), 1 + n_negatives), dtype=np.int64)
    for start in range(0, len(cases), CHUNK):
        chunk = cases[start : start + CHUNK]
        excluded = _exclusion_mask(ds.n_items, touched, chunk)
        negatives = _weighted_without_replacement(log_pop, excluded, n_negatives, rng)
        search_rows = [i for i, c in enumerate(chunk) if c.task == "search"]
        if search_rows:
            hard, shares_term = _bm25_negatives(
                index, [chunk[i] for i in search_rows], excluded[search_rows], n_negatives
            )
            for row, h, ok in zip(search_rows, hard, shares_term):
                chosen = set(h[ok].tolist())
                fill = [x for x in negatives[row] if x not in chosen]
                negatives[row] = np.concatenate([h[ok], fill])[:n_negatives]
        out[start : start + len(chunk), 0] = [c.target.item for c in chunk]
        out[start : start + len(chunk), 1:] = negatives
    return out


def build_candidates(ds: Dataset, split: Split, n_negatives: int = 99, seed: int = 0) -> dict[str, np.ndarray]:
    """Candidate lists for the validation and test cases, aligned with ``split.valid`` / ``split.test``."""
    index = BM25Index(ds)
    return {
        part: sample_candidates(ds, split, split.part(part), n_negatives, seed + i, index)
        for i, part in enumerate(("valid", "test"))
    }
