"""Non-generative baselines for both tasks, under GenSAR's protocol; taught in notebook 06_identifier_ablation.

The paper (arXiv 2504.05730, Fig. 1 and its main results tables) compares GenSAR with many
published models: sequential recommenders (SASRec, BERT4Rec, ...), personalised
search models, joint search-and-recommendation models (UniSAR, ...) and
generative ones. *Departure from the paper*: this suite keeps four simple
representatives, each scoring EVERY item for EVERY case of BOTH tasks, so each
gets a point on Fig. 1 (search performance against recommendation performance):

- ``popularity``: how often each item is a training target of the case's task
  (``popularity_scores``); the same row for every case of a task.
- ``sasrec``: the cached SASRec (the suite's UniSAR stand-in,
  ``embeddings.cached_sasrec``) scores items after the user's recommendation
  history. For search cases it IGNORES THE QUERY: it recommends, whatever was
  asked. A case without recommendation history gets a row of zeros.
- ``bm25``: BM25 (bm25s, ``data.candidates.BM25Index``) over item title +
  description. Search cases: the query. Recommendation cases (content-based):
  the text of the user's last history item (the last event of the history, of
  either task) is the query. No history: a row of zeros.
- ``dense``: dense retrieval with the sentence encoder of the semantic item
  embeddings (``embeddings.cached_semantic_embeddings``); the score is the
  cosine of the query embedding with each item embedding. Recommendation cases:
  the last history item's embedding is the query. *Departure*: MiniLM
  (all-MiniLM-L6-v2, offline) by default, where the paper's semantic encoder
  is BGE (bge-base-en-v1.5). Queries are encoded in batches, each distinct
  string once per process.

Evaluation is GenSAR's (:mod:`gensar_lib.evaluation`): HR@1/5/10 and
NDCG@5/10 per task, under the sampled protocol (the target among its 99
candidate negatives) and under full ranking (all items, history not masked),
via ``evaluation.evaluate_scorer``. Ties count against the positive, so a row
of zeros puts the target last.

**BM25 is handicapped by construction under the sampled search protocol**: the
search candidate lists ARE BM25 hard negatives (``data/candidates.py``): the 99
negatives are the items BM25 ranks highest for the query (among those the user
never touched). Every item BM25 itself prefers to the target is therefore in
the list, so BM25's sampled search rank is (nearly) its full-ranking rank: it
gets none of the easy negatives the other methods get, and its sampled search
numbers understate it next to theirs (on Office, tiny profile: HR@10 0.22
sampled, 0.22 full). Compare BM25 on search under full ranking.
Content-based recommendation also ranks the last history item itself first
under full ranking (the history is not masked, as for the generative model).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gensar_lib.artifacts import ArtifactCache
from gensar_lib.config import EmbeddingConfig, Profile
from gensar_lib.data.candidates import BM25Index
from gensar_lib.data.pipeline import PreparedData
from gensar_lib.data.queries import text_terms
from gensar_lib.data.schema import Dataset
from gensar_lib.data.splits import Case, Split
from gensar_lib.embeddings import (
    cached_sasrec,
    cached_semantic_embeddings,
    encode_texts,
    rec_items,
    sasrec_scores,
)
from gensar_lib.evaluation import Metrics, evaluate_scorer

BASELINES: tuple[str, ...] = ("popularity", "sasrec", "bm25", "dense")


_BM25: dict[str, BM25Index] = {}  # per prepared.key: building the index costs a second on Office
_MAX_INDEXES = 2
_QUERY_VECTORS: dict[tuple[str, int], dict[str, np.ndarray]] = {}  # (encoder, max_seq_length) -> query -> vector


def check_name(name: str) -> str:
    """``name`` if it is a known baseline, else a ValueError naming the value and the choices."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose one of {BASELINES}")
    return name


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


def sasrec_baseline(
    prepared: PreparedData,
    profile: Profile,
    cases: Sequence[Case],
    cache: ArtifactCache | None = None,
    progress: bool = False,
) -> np.ndarray:
    """The cached SASRec's scores after each user's recommendation history; search queries are ignored.

    The model is the one ``pipeline.item_embeddings`` trains (same config and seed, so the same
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


_SCORERS = {
    "popularity": popularity_baseline,
    "sasrec": sasrec_baseline,
    "bm25": bm25_baseline,
    "dense": dense_baseline,
}


def baseline_scores(
    name: str, prepared: PreparedData, profile: Profile, cases: Sequence[Case], cache: ArtifactCache | None = None
) -> np.ndarray:
    """The score matrix [n_cases, n_items] of baseline ``name`` (one of ``BASELINES``)."""
    return _SCORERS[check_name(name)](prepared, profile, list(cases), cache)


# --------------------------------------------------------------------------------------
# Evaluation (gensar_lib.evaluation)
# --------------------------------------------------------------------------------------


def evaluate_baseline(
    name: str,
    prepared: PreparedData,
    profile: Profile,
    cases: Sequence[Case],
    candidates: np.ndarray,
    cache: ArtifactCache | None = None,
) -> Metrics:
    """``{task: {protocol: summary}}`` of a baseline, as ``evaluation.evaluate_generative`` returns it."""
    check_name(name)
    cache = cache or ArtifactCache()
    return evaluate_scorer(lambda task_cases: baseline_scores(name, prepared, profile, task_cases, cache),
                           cases, candidates)


def evaluate_baselines(
    prepared: PreparedData,
    profile: Profile,
    cases: Sequence[Case],
    candidates: np.ndarray,
    cache: ArtifactCache | None = None,
    names: Sequence[str] = BASELINES,
) -> dict[str, Metrics]:
    """``{name: evaluate_baseline(name, ...)}`` for each of ``names`` (all four by default)."""
    for name in names:
        check_name(name)
    return {name: evaluate_baseline(name, prepared, profile, cases, candidates, cache) for name in names}
