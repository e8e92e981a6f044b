"""The counting and text baselines, each a score for every item in every case of both tasks (notebook 06_identifier_ablation).

- ``popularity``: how often each item is a training target of the case's task
  (``popularity_scores``); the same row for every case of a task.
- ``query-popularity``: how often each item was the target of THIS EXACT QUERY in the training search
  events (``query_popularity_scores``); ties, and queries never seen in training, fall back to search
  popularity; recommendation cases get recommendation popularity. Search queries here are built from
  category paths, so they are few and repeat: memorising each query's popular items is the floor any
  search model must beat (notebook 06).
- ``sasrec``: the cached SASRec (``embeddings.cached_sasrec``) scores items after the user's
  recommendation history. For search cases it IGNORES THE QUERY: it recommends, whatever was
  asked. A case without recommendation history gets a row of zeros.
- ``bm25``: BM25 (bm25s, ``data.candidates.BM25Index``) over item title + description. Search cases:
  the query. Recommendation cases (content-based): the text of the user's last history item (the
  last event of the history, of either task) is the query. No history: a row of zeros.
- ``dense``: dense retrieval with the sentence encoder of the semantic item embeddings
  (``embeddings.cached_semantic_embeddings``); the score is the cosine of the query embedding with
  each item embedding. Recommendation cases: the last history item's embedding is the query.
  *Departure*: MiniLM (all-MiniLM-L6-v2, offline) by default, where the paper's semantic encoder is
  BGE (bge-base-en-v1.5). Queries are encoded in batches, each distinct string once per process.

**BM25 is handicapped by construction under the sampled search protocol**: the search candidate
lists ARE BM25 hard negatives (``data/candidates.py``): the 99 negatives are the items BM25 ranks
highest for the query (among those the user never touched). Every item BM25 itself prefers to the
target is therefore in the list, so BM25's sampled search rank is (nearly) its full-ranking rank: it
gets none of the easy negatives the other methods get. Compare BM25 on search under full ranking.
Content-based recommendation also ranks the last history item itself first under full ranking (the
history is not masked, as for the generative model).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gensar_lib.artifacts import ArtifactCache
from gensar_lib.config import EmbeddingConfig, Profile
from gensar_lib.data.candidates import BM25Index
from gensar_lib.data.pipeline import PreparedData
from gensar_lib.data.queries import query_key, text_terms
from gensar_lib.data.schema import Dataset
from gensar_lib.data.splits import Case, Split
from gensar_lib.embeddings import (
    cached_sasrec,
    cached_semantic_embeddings,
    encode_texts,
    rec_items,
    sasrec_scores,
)

_BM25: dict[str, BM25Index] = {}  # per prepared.key: building the index costs a second on Office
_MAX_INDEXES = 2
_QUERY_VECTORS: dict[tuple[str, int], dict[str, np.ndarray]] = {}  # (encoder, max_seq_length) -> query -> vector


def last_history_item(case: Case) -> int | None:
    """The item of the case's last history event (either task), or None for an empty history."""
    return case.history[-1].item if case.history else None


def text_query(case: Case, prepared: PreparedData) -> str | None:
    """The query text a text baseline uses: the search query, or the last history item's text (rec)."""
    if case.task == "search":
        return case.target.query
    last = last_history_item(case)
    return None if last is None else prepared.dataset.items[last].text


# --------------------------------------------------------------------------------------
# Score matrices [n_cases, n_items]
# --------------------------------------------------------------------------------------


def popularity_scores(dataset: Dataset, split: Split, cases: Sequence[Case]) -> np.ndarray:
    """Popularity scores [n_cases, n_items]: how often each item is a training target of the case's task.

    The same row for every case of a task (no personalisation). Ties count against
    the positive in ``evaluation.evaluate_scores``, so an unseen positive gets no luck.
    """
    counts = {task: np.zeros(dataset.n_items, dtype=np.float32) for task in ("rec", "search")}
    for case in split.train:
        counts[case.task][case.target.item] += 1
    if not len(cases):
        return np.zeros((0, dataset.n_items), dtype=np.float32)
    return np.stack([counts[c.task] for c in cases])


def popularity_baseline(
    prepared: PreparedData, profile: Profile, cases: Sequence[Case], cache: ArtifactCache | None = None
) -> np.ndarray:
    """Training-target counts of each case's task (no personalisation, query ignored)."""
    return popularity_scores(prepared.dataset, prepared.split, list(cases))


def query_popularity_scores(dataset: Dataset, split: Split, cases: Sequence[Case]) -> np.ndarray:
    """Query-popularity scores [n_cases, n_items] (the search floor, notebook 06).

    A search case's row ranks items by how often they were the target of the same query
    (``query_key``) in the training search events, and breaks ties (and unseen queries) by search
    popularity: ``log1p(count + popularity / (max popularity + 1))``, whose order is exactly that
    rule and whose log scale suits a z-scored fusion. A recommendation case gets the same form with
    recommendation popularity alone.
    """
    counts = {task: np.zeros(dataset.n_items, dtype=np.float64) for task in ("rec", "search")}
    per_query: dict[str, np.ndarray] = {}
    for case in split.train:
        counts[case.task][case.target.item] += 1
        if case.task == "search":
            row = per_query.setdefault(query_key(case.target.query), np.zeros(dataset.n_items, dtype=np.float64))
            row[case.target.item] += 1
    backoff = {task: c / (c.max() + 1) for task, c in counts.items()}
    out = np.zeros((len(cases), dataset.n_items), dtype=np.float32)
    for row, case in enumerate(cases):
        exact = per_query.get(query_key(case.target.query), 0.0) if case.task == "search" else 0.0
        out[row] = np.log1p(exact + backoff[case.task])
    return out


def query_popularity_baseline(
    prepared: PreparedData, profile: Profile, cases: Sequence[Case], cache: ArtifactCache | None = None
) -> np.ndarray:
    """Per-query training-target counts for search, popularity for recommendation (no personalisation)."""
    return query_popularity_scores(prepared.dataset, prepared.split, list(cases))


def sasrec_baseline(
    prepared: PreparedData,
    profile: Profile,
    cases: Sequence[Case],
    cache: ArtifactCache | None = None,
    progress: bool = False,
) -> np.ndarray:
    """The cached SASRec's scores after each user's recommendation history; search queries are ignored.

    The model is the one ``rqvae.item_embeddings`` trains (same config and seed, so the same
    cache entry). Cases without recommendation history get a row of zeros (SASRec would score
    them from an untrained padding-only state).
    """
    model = cached_sasrec(prepared.dataset, prepared.split, profile.embeddings, profile.seed, cache, progress,
                          profile.device)
    scores = sasrec_scores(model, list(cases))
    scores[[not rec_items(c.history) for c in cases]] = 0.0
    return scores


def bm25_index(prepared: PreparedData) -> BM25Index:
    """The BM25 index of the prepared data's items (one per process and data key)."""
    if prepared.key not in _BM25:
        while len(_BM25) >= _MAX_INDEXES:  # each index keeps a score row per distinct query: bound them
            _BM25.pop(next(iter(_BM25)))
        _BM25[prepared.key] = BM25Index(prepared.dataset)
    return _BM25[prepared.key]


def bm25_baseline(
    prepared: PreparedData, profile: Profile, cases: Sequence[Case], cache: ArtifactCache | None = None
) -> np.ndarray:
    """BM25 of the query (search) or of the last history item's text (rec) against item title + description.

    A case without a query (a rec case with an empty history) or whose query has no terms left
    after ``text_terms`` (e.g. only stop words) gets a row of zeros.
    """
    index = bm25_index(prepared)
    out = np.zeros((len(cases), prepared.dataset.n_items), dtype=np.float32)
    for row, case in enumerate(cases):
        query = text_query(case, prepared)
        if query is not None and text_terms(query):  # bm25s fails on a query without terms
            out[row] = index.scores(query)
    return out


def encode_queries(queries: Sequence[str], cfg: EmbeddingConfig, batch_size: int = 256,
                   device: str | None = None) -> np.ndarray:
    """L2-normalised embeddings [len(queries), d] (encoded on ``device``); each distinct string is
    encoded once per process."""
    memo = _QUERY_VECTORS.setdefault((cfg.encoder, cfg.max_seq_length), {})
    missing = sorted({q for q in queries if q not in memo})
    for start in range(0, len(missing), batch_size):
        chunk = missing[start : start + batch_size]
        memo.update(zip(chunk, encode_texts(chunk, cfg, progress=False, device=device)))
    if not len(queries):
        return encode_texts([], cfg, progress=False, device=device)  # [0, d]
    return np.stack([memo[q] for q in queries]).astype(np.float32)


def dense_baseline(
    prepared: PreparedData,
    profile: Profile,
    cases: Sequence[Case],
    cache: ArtifactCache | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Cosine of the query embedding (search) or the last history item's embedding (rec) with every item.

    Item embeddings are the cached semantic embeddings (unit rows), queries are encoded with the
    same encoder and ``max_seq_length``; a rec case with an empty history gets a row of zeros.
    """
    items = cached_semantic_embeddings(prepared.dataset, profile.embeddings, cache, progress, profile.device)
    queries = np.zeros((len(cases), items.shape[1]), dtype=np.float32)
    search_rows = [i for i, c in enumerate(cases) if c.task == "search"]
    if search_rows:
        queries[search_rows] = encode_queries([cases[i].target.query for i in search_rows], profile.embeddings,
                                              device=profile.device)
    for row, case in enumerate(cases):
        last = last_history_item(case)
        if case.task == "rec" and last is not None:
            queries[row] = items[last]
    return queries @ items.T
