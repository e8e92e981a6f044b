"""Learned non-generative baselines: a personalised search model and a joint search-and-recommendation
model, one small transformer in two configurations (notebook 06_identifier_ablation).

``SearchRecTransformer`` reads a user's last events and a final slot that holds the query (search) or
nothing (recommendation), and scores EVERY item with the slot's output, through a head of the case's
task, against the item table. Both configurations are trained from the training cases alone, with a
full softmax over the items, seeded, and cached as the ``learned_baseline`` stage; the epoch kept is
the one with the best validation score (``evaluation.selection_score``).

- ``personal-search``, in the spirit of TEM (Bi et al., 2020, a transformer over the query and the
  user's purchased items): the history is the user's last items (either task, no query text), it is
  trained on the training SEARCH cases only and has one head. A recommendation case is scored with
  an empty query: it never learned to recommend.
- ``joint``, in the spirit of UniSAR (Shi et al., 2024) and JSR (Zamani and Croft, 2018): the history
  is the user's last events of both tasks, each search event with its query, and it is trained on
  the training cases of BOTH tasks with a head per task.

*Departures from the published models*: an item is a learned ID embedding plus a linear map of its
frozen sentence embedding (MiniLM, the suite's semantic item embedding), and a query is the mean of
learned embeddings of its terms (``data.queries.text_terms``; terms never seen in a training query
are dropped) plus a linear map of its frozen sentence embedding, where TEM and UniSAR learn word
embeddings only; the model is two pre-norm transformer layers of width 64 (small profile); UniSAR's
separate transition encoders and contrastive alignment losses, and JSR's item reconstruction, are
not reproduced: one encoder and one cross-entropy over the batch (each case through its task's head)
stand in for them. Training is capped by a budget of training cases (``BaselineConfig.case_budget``), so
the joint model, which reads both tasks' cases every epoch, trains fewer epochs than the personalised one
on Amazon Office; it trains on one torch thread, so that a seed gives one model.
"""
from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from gensar_lib.artifacts import ArtifactCache, write_json
from gensar_lib.baselines.scores import encode_queries
from gensar_lib.config import BaselineConfig, Profile
from gensar_lib.data.pipeline import PreparedData
from gensar_lib.data.queries import query_key, text_terms
from gensar_lib.data.schema import TASKS
from gensar_lib.data.splits import Case
from gensar_lib.embeddings import cached_semantic_embeddings, torch_threads
from gensar_lib.evaluation import held_out, selection_score
from gensar_lib.stages import STAGES


@dataclass(frozen=True)
class Variant:
    """What a configuration trains on and reads: its tasks, and whether history events carry their query."""

    tasks: tuple[str, ...]
    history_queries: bool


VARIANTS: dict[str, Variant] = {
    "personal-search": Variant(tasks=("search",), history_queries=False),
    "joint": Variant(tasks=TASKS, history_queries=True),
}
KIND = {"rec": 0, "search": 1, "slot": 2}  # what a position of the sequence holds


# --------------------------------------------------------------------------------------
# Inputs: queries and histories as index tensors
# --------------------------------------------------------------------------------------


@dataclass
class QueryTable:
    """Every distinct query of the dataset (row 0: no query) as term indices and a sentence embedding.

    The term vocabulary is that of the TRAINING search events; a query's sentence embedding is an
    input, like its text, so held-out queries are encoded too.
    """

    index: dict[str, int]  # query_key -> row
    terms: np.ndarray  # [n_queries + 1, max_terms] term indices, 0 = padding
    vectors: np.ndarray  # [n_queries + 1, text_dim], row 0 zeros
    n_terms: int  # vocabulary size + 1 (padding)

    def row(self, query: str | None) -> int:
        return 0 if query is None else self.index[query_key(query)]


def query_table(prepared: PreparedData, profile: Profile) -> QueryTable:
    """The :class:`QueryTable` of a prepared dataset (queries of every event, vocabulary of training ones)."""
    vocabulary = sorted({t for c in prepared.split.train if c.task == "search" for t in text_terms(c.target.query)})
    term_index = {t: i + 1 for i, t in enumerate(vocabulary)}
    texts = sorted({query_key(e.query) for _, e in prepared.dataset.events("search")})
    rows = [[term_index[t] for t in text_terms(q) if t in term_index] for q in texts]
    terms = np.zeros((len(texts) + 1, max([1, *map(len, rows)])), dtype=np.int64)
    for i, r in enumerate(rows, 1):
        terms[i, :len(r)] = r
    vectors = encode_queries(texts, profile.embeddings, device=profile.device)
    vectors = np.concatenate([np.zeros((1, vectors.shape[1]), dtype=np.float32), vectors])
    return QueryTable({q: i for i, q in enumerate(texts, 1)}, terms, vectors, len(vocabulary) + 1)


def case_tensors(cases: Sequence[Case], queries: QueryTable, n_items: int, length: int) -> dict[str, torch.Tensor]:
    """The last ``length`` history events of each case, left-padded, and the slot's query:
    ``items`` (padding ``n_items``), ``kinds`` (:data:`KIND`), ``queries`` (QueryTable rows) [B, length],
    ``slot`` [B] (the case's own query row; 0 for recommendation) and ``task`` [B] (its :data:`KIND`)."""
    items = np.full((len(cases), length), n_items, dtype=np.int64)
    kinds = np.full((len(cases), length), KIND["slot"], dtype=np.int64)
    rows = np.zeros((len(cases), length), dtype=np.int64)
    for b, case in enumerate(cases):
        events = case.history[-length:]
        if events:
            items[b, -len(events):] = [e.item for e in events]
            kinds[b, -len(events):] = [KIND[e.task] for e in events]
            rows[b, -len(events):] = [queries.row(e.query) for e in events]
    slot = np.array([queries.row(c.target.query) for c in cases], dtype=np.int64)
    task = np.array([KIND[c.task] for c in cases], dtype=np.int64)
    return {name: torch.from_numpy(a) for name, a in
            (("items", items), ("kinds", kinds), ("queries", rows), ("slot", slot), ("task", task))}


# --------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------


class SearchRecTransformer(nn.Module):
    """History events and a query slot through a transformer encoder; the slot's output, through the
    head of the case's task, scores every item (dot product with the item table plus an item bias)."""

    def __init__(self, item_vectors: np.ndarray, queries: QueryTable, variant: Variant, cfg: BaselineConfig):
        super().__init__()
        n_items, text_dim = item_vectors.shape
        dim = cfg.dim
        self.n_items, self.variant, self.length = n_items, variant, cfg.history_length
        self.register_buffer("item_vectors", torch.from_numpy(np.asarray(item_vectors, dtype=np.float32)),
                             persistent=False)
        self.register_buffer("query_terms", torch.from_numpy(queries.terms), persistent=False)
        self.register_buffer("query_vectors", torch.from_numpy(queries.vectors), persistent=False)
        self.item_id = nn.Embedding(n_items, dim)
        self.item_text = nn.Linear(text_dim, dim, bias=False)
        self.term = nn.EmbeddingBag(queries.n_terms, dim, mode="mean", padding_idx=0)
        self.query_text = nn.Linear(text_dim, dim, bias=False)
        self.kind = nn.Embedding(len(KIND), dim)
        self.position = nn.Embedding(cfg.history_length + 1, dim)
        layer = nn.TransformerEncoderLayer(dim, cfg.heads, 4 * dim, cfg.dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.heads = nn.ModuleDict({task: nn.Linear(dim, dim) for task in variant.tasks})
        self.bias = nn.Parameter(torch.zeros(n_items))

    def items(self) -> torch.Tensor:
        """The item table [n_items, dim]: ID embedding + mapped sentence embedding."""
        return self.item_id.weight + self.item_text(self.item_vectors)

    def query_table(self) -> torch.Tensor:
        """Every QueryTable row's embedding [n_queries + 1, dim] (row 0, no query: zeros): the mean of
        its terms' embeddings plus its mapped sentence embedding."""
        return self.term(self.query_terms) + self.query_text(self.query_vectors)

    def forward(self, items: torch.Tensor, kinds: torch.Tensor, queries: torch.Tensor, slot: torch.Tensor,
                task: torch.Tensor) -> torch.Tensor:
        """Scores [B, n_items] of cases of either task (tensors of :func:`case_tensors`): one encoder pass for
        the batch, then each case's state through its task's head (a variant trained on one task has one)."""
        table, query = self.items(), self.query_table()
        padded = torch.cat([table, table.new_zeros(1, table.shape[1])])  # row n_items: padding
        events = padded[items] + self.kind(kinds)
        if self.variant.history_queries:
            events = events + query[queries]
        last = self.kind.weight[KIND["slot"]] + query[slot]
        x = torch.cat([events, last[:, None]], dim=1) + self.position.weight
        pad = torch.cat([items == self.n_items, torch.zeros_like(slot, dtype=torch.bool)[:, None]], dim=1)
        state = self.norm(self.encoder(x, src_key_padding_mask=pad)[:, -1])
        head = {name: self.heads[name if name in self.heads else self.variant.tasks[0]] for name in TASKS}
        out = torch.where((task == KIND["search"])[:, None], head["search"](state), head["rec"](state))
        return out @ table.T + self.bias


# --------------------------------------------------------------------------------------
# Training, scoring, caching
# --------------------------------------------------------------------------------------


@torch.no_grad()
def score_cases(model: SearchRecTransformer, cases: Sequence[Case], queries: QueryTable,
                batch_size: int = 512, tensors: dict[str, torch.Tensor] | None = None) -> np.ndarray:
    """Scores [n_cases, n_items] of any cases (each scored through its own task's head); ``tensors``: their
    :func:`case_tensors`, when already made."""
    model.eval()
    tensors = tensors or case_tensors(cases, queries, model.n_items, model.length)
    out = np.zeros((len(cases), model.n_items), dtype=np.float32)
    for start in range(0, len(cases), batch_size):
        out[start:start + batch_size] = model(**{k: v[start:start + batch_size] for k, v in tensors.items()}).numpy()
    return out


def validation_score(model: SearchRecTransformer, cases: Sequence[Case], candidates: np.ndarray,
                     queries: QueryTable, tensors: dict[str, torch.Tensor] | None = None) -> float:
    """Mean over the model's trained tasks of ``evaluation.selection_score`` on the validation cases
    (``tensors``: their :func:`case_tensors`, when already made)."""
    tensors = tensors or case_tensors(cases, queries, model.n_items, model.length)
    scores = []
    for task in model.variant.tasks:
        rows = np.array([i for i, c in enumerate(cases) if c.task == task], dtype=np.int64)
        part = [cases[i] for i in rows]
        if part:
            scores.append(selection_score(score_cases(model, part, queries, tensors={k: v[rows] for k, v in
                                                                                     tensors.items()}),
                                          part, candidates[rows]))
    return float(np.mean(scores))


def epochs_allowed(cfg: BaselineConfig, n_cases: int) -> int:
    """``cfg.epochs``, or fewer whole epochs where ``cfg.case_budget`` training cases run out first (at least one)."""
    return cfg.epochs if cfg.case_budget is None else max(1, min(cfg.epochs, cfg.case_budget // n_cases))


def train_learned(name: str, prepared: PreparedData, profile: Profile, items: np.ndarray, queries: QueryTable,
                  progress: bool = False) -> tuple[SearchRecTransformer, dict[str, Any]]:
    """Train baseline ``name`` (a key of :data:`VARIANTS`) on the training cases, with ``items`` the
    semantic item embeddings; return the model at its best validation epoch and its log (validation
    score per epoch, best epoch, epochs run, seconds). Stops after ``patience`` epochs without a better
    validation score."""
    variant, cfg = VARIANTS[name], profile.baselines
    train = [c for c in prepared.split.train if c.task in variant.tasks]
    valid, candidates = held_out(prepared, profile, "valid")
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]), torch_threads(1):  # one thread: the same seed gives the same model
        torch.manual_seed(profile.seed)
        model = SearchRecTransformer(items, queries, variant, cfg)
        optim = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        rng = np.random.default_rng(profile.seed)
        # every case's tensors, made once (a batch takes its rows)
        inputs = case_tensors(train, queries, model.n_items, model.length)
        targets = torch.tensor([c.target.item for c in train])
        valid_inputs = case_tensors(valid, queries, model.n_items, model.length)
        scores: list[float] = []
        best, best_state, waited = -1.0, None, 0
        for _ in tqdm(range(epochs_allowed(cfg, len(train))), desc=name, disable=not progress):
            model.train()
            order = rng.permutation(len(train))
            for s in range(0, len(order), cfg.batch_size):
                batch = order[s:s + cfg.batch_size]  # a joint batch holds both tasks' cases, each through its head
                loss = nn.functional.cross_entropy(model(**{k: v[batch] for k, v in inputs.items()}), targets[batch])
                loss.backward()
                optim.step()
                optim.zero_grad(set_to_none=True)
            scores.append(validation_score(model, valid, candidates, queries, valid_inputs))
            if scores[-1] > best:
                best, best_state, waited = scores[-1], copy.deepcopy(model.state_dict()), 0
            else:
                waited += 1
                if waited >= cfg.patience:
                    break
    model.load_state_dict(best_state)
    model.eval()
    log = {"validation": scores, "best_epoch": int(np.argmax(scores)) + 1, "epochs_run": len(scores),
           "train_seconds": time.perf_counter() - start}
    return model, log


@dataclass
class Learned:
    """A trained learned baseline: the model, the query table it reads, and its training log."""

    model: SearchRecTransformer
    queries: QueryTable
    log: dict[str, Any]

    def scores(self, cases: Sequence[Case]) -> np.ndarray:
        """Scores [n_cases, n_items] (:func:`score_cases`)."""
        return score_cases(self.model, cases, self.queries)


def cached_learned(name: str, prepared: PreparedData, profile: Profile, cache: ArtifactCache | None = None,
                   progress: bool = False) -> Learned:
    """:func:`train_learned`, stored in the artifact cache (``model.safetensors``, ``log.json``)."""
    cache = cache or ArtifactCache()
    stage = STAGES["learned_baseline"]
    config = {"baseline": name, **stage.config(profile)}
    items = cached_semantic_embeddings(prepared.dataset, profile.embeddings, cache, progress=False,
                                       device=profile.device)
    queries = query_table(prepared, profile)
    inputs = [prepared.key, hashlib.sha256(items.tobytes()).hexdigest()[:16], stage.code()]

    def build(folder: Path) -> None:
        model, log = train_learned(name, prepared, profile, items, queries, progress)
        save_file(model.state_dict(), str(folder / "model.safetensors"))
        write_json(folder / "log.json", log)

    def read(folder: Path) -> Learned:
        model = SearchRecTransformer(items, queries, VARIANTS[name], profile.baselines)
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
        return Learned(model.eval(), queries, json.loads((folder / "log.json").read_text()))

    return cache.load(stage.name, config, build, read, inputs)
