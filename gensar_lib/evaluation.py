"""How every method is scored, in one place (notebooks 01, 05 and 06).

- **Which users.** ``held_out`` draws the test or validation cases of at most
  ``profile.eval.max_eval_users`` users with one seeded rule (``profile.data.seed``), so every method
  and every seed is scored on the same users.
- **Two protocols.** ``sampled`` (the paper's): the target ranked among its case's candidate list
  (column 0 the target, 99 negatives); ``full``: the target ranked among all items, the user's history
  not masked (a generative model may emit any item, so baselines are ranked the same way).
- **Ranking from scores** (``evaluate_scores``, ``evaluate_scorer``): the baselines, SASRec and
  popularity give a score per item; ties count against the target.
- **Ranking from generation** (``decode``, ``rank_cases``, ``evaluate_generative``): the T5 ranks
  items by constrained beam search; a target outside the beam gets ``metrics.MISSING``.
- **Validation** (``validation_score``, ``validator``): the checkpoint criterion during training.
- **Many processes** (``decode``): under a launcher (``torchrun``, ``accelerate launch``) each process
  decodes its share of the batches of prompts (batch ``b`` in process ``b % N``) and all gather the
  results in their original order: the same batches and the same decoding as in one process, hence
  exactly the same metrics.
- **Using a trained model** (``recommend``, ``search``): the top items for one history (and query).

Every evaluation returns ``{task: {protocol: {"HR@1": ..., "NDCG@10": ...}}}`` (:data:`Metrics`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from gensar_lib.config import Profile
from gensar_lib.data.schema import TASKS, Event
from gensar_lib.data.splits import Case
from gensar_lib.decoding import ItemTrie, constrained_beam_search, ranked_items
from gensar_lib.devices import processes
from gensar_lib.instructions import evaluation_instructions, source_text
from gensar_lib.metrics import MISSING, ndcg, rank_of, ranks_from_scores, summarize
from gensar_lib.t5.batches import encode_sources
from gensar_lib.t5.model import GenerativeModel

if TYPE_CHECKING:
    from gensar_lib.data.pipeline import PreparedData
    from gensar_lib.identifiers import ItemIdentifiers

PROTOCOLS: tuple[str, ...] = ("sampled", "full")
Metrics = dict[str, dict[str, dict[str, float]]]


# --------------------------------------------------------------------------------------
# Which users
# --------------------------------------------------------------------------------------


def subset(cases: list[Case], candidates: np.ndarray, max_users: int | None, seed: int
           ) -> tuple[list[Case], np.ndarray]:
    """The cases (and candidate rows) of at most ``max_users`` users, drawn with ``seed``."""
    if max_users is None:
        return cases, candidates
    users = sorted({c.user for c in cases})
    keep = set(np.random.default_rng(seed).choice(users, size=min(max_users, len(users)), replace=False).tolist())
    rows = [i for i, c in enumerate(cases) if c.user in keep]
    return [cases[i] for i in rows], candidates[rows]


def held_out(prepared: PreparedData, profile: Profile, part: str = "test", max_users: int | None = -1
             ) -> tuple[list[Case], np.ndarray]:
    """The ``part`` ("test" or "valid") cases every method is scored on, with their candidate rows:
    ``profile.eval.max_eval_users`` users by default (``None``: all), drawn with ``profile.data.seed``."""
    if part not in ("test", "valid"):
        raise ValueError(f"part must be 'test' or 'valid', got {part!r}")
    users = profile.eval.max_eval_users if max_users == -1 else max_users
    return subset(getattr(prepared.split, part), prepared.candidates[part], users, profile.data.seed)


# --------------------------------------------------------------------------------------
# Ranking from scores
# --------------------------------------------------------------------------------------


def evaluate_scores(
    scores: np.ndarray, cases: Sequence[Case], candidates: np.ndarray | None = None
) -> dict[str, dict[str, float]]:
    """HR@1/5/10 and NDCG@5/10 of a score matrix [n_cases, n_items]: ``{"full": ...}``, and
    ``"sampled"`` when ``candidates`` (aligned with ``cases``, column 0 the target) is given."""
    scores = np.asarray(scores)
    if scores.shape[0] != len(cases):
        raise ValueError(f"scores has {scores.shape[0]} rows but there are {len(cases)} cases")
    targets = np.array([c.target.item for c in cases], dtype=np.int64)
    out: dict[str, dict[str, float]] = {}
    if candidates is not None:
        candidates = np.asarray(candidates)
        if candidates.shape[0] != len(cases) or not np.array_equal(candidates[:, 0], targets):
            raise ValueError("candidate lists are not aligned with the cases (column 0 must be each case's target)")
        out["sampled"] = summarize(ranks_from_scores(np.take_along_axis(scores, candidates, axis=1)))
    out["full"] = summarize(ranks_from_scores(scores, targets))
    return out


def selection_score(scores: np.ndarray, cases: Sequence[Case], candidates: np.ndarray) -> float:
    """NDCG@10 of a score matrix on (validation) cases, the mean of the sampled and the full-ranking
    protocol: how a baseline chooses its fusion weight or its epoch (notebook 06)."""
    result = evaluate_scores(scores, cases, candidates)
    return float(np.mean([result[p]["NDCG@10"] for p in PROTOCOLS]))


def evaluate_scorer(score: Callable[[list[Case]], np.ndarray], cases: Sequence[Case],
                    candidates: np.ndarray) -> Metrics:
    """Both protocols per task for a scorer (cases -> [n_cases, n_items] scores); a task without
    cases scores zeros, as in :func:`evaluate_generative`."""
    cases, candidates = list(cases), np.asarray(candidates)
    if len(candidates) != len(cases):
        raise ValueError(f"{len(candidates)} candidate rows for {len(cases)} cases")
    out: Metrics = {}
    for task in TASKS:
        rows = [i for i, c in enumerate(cases) if c.task == task]
        if not rows:
            out[task] = {p: summarize(np.zeros(0, dtype=np.int64)) for p in PROTOCOLS}
            continue
        task_cases = [cases[i] for i in rows]
        result = evaluate_scores(score(task_cases), task_cases, candidates[rows])
        out[task] = {p: result[p] for p in PROTOCOLS}
    return out


# --------------------------------------------------------------------------------------
# Ranking from generation
# --------------------------------------------------------------------------------------


def decode(
    gen: GenerativeModel,
    sources: list[str],
    task: str,
    profile: Profile,
    candidates: np.ndarray | None = None,
    top_k: int = 10,
    batch_size: int = 64,
) -> list[list[int]]:
    """Top-k items per prompt by constrained beam search (over candidates, or the whole catalogue),
    on the model's device; under a launcher each process decodes every N-th batch, then all gather."""
    trie = ItemTrie(gen.codes(task))
    device = next(gen.model.parameters()).device
    starts = list(range(0, len(sources), batch_size))
    state = processes(device)
    mine = starts if state is None else starts[state.process_index::state.num_processes]
    ranked: dict[int, list[list[int]]] = {}
    for start in mine:
        enc = encode_sources(gen.tokenizer, sources[start:start + batch_size], profile.train.max_source_length)
        result = constrained_beam_search(
            gen.model, enc["input_ids"].to(device), enc["attention_mask"].to(device), trie,
            gen.behaviour_token(task), profile.eval.beam_size, top_k=min(top_k, profile.eval.beam_size),
            candidates=None if candidates is None else candidates[start:start + batch_size],
        )
        ranked[start] = ranked_items(result)
    if state is not None:
        from accelerate.utils import gather_object

        ranked = {start: items for part in gather_object([ranked]) for start, items in part.items()}
    return [items for start in starts for items in ranked[start]]


def rank_cases(gen: GenerativeModel, cases: list[Case], candidates: np.ndarray | None, profile: Profile
               ) -> np.ndarray:
    """Rank of each case's target in the constrained beam (sampled: among its candidates; full: all items)."""
    ranks = np.full(len(cases), MISSING, dtype=np.int64)
    for task in TASKS:
        rows = [i for i, c in enumerate(cases) if c.task == task]
        if not rows:
            continue
        sources = [ins.source for ins in evaluation_instructions([cases[i] for i in rows], gen.ids,
                                                                 profile.train.history_length, profile.train.prompts)]
        ranked = decode(gen, sources, task, profile, None if candidates is None else candidates[rows])
        for row, items in zip(rows, ranked):
            ranks[row] = rank_of(cases[row].target.item, items)
    return ranks


def evaluate_generative(gen: GenerativeModel, cases: list[Case], candidates: np.ndarray, profile: Profile
                        ) -> Metrics:
    """HR@1/5/10 and NDCG@5/10 per task under the sampled and full-ranking protocols."""
    out: Metrics = {}
    for protocol in PROTOCOLS:
        ranks = rank_cases(gen, cases, candidates if protocol == "sampled" else None, profile)
        for task in TASKS:
            mask = np.array([c.task == task for c in cases])
            out.setdefault(task, {})[protocol] = summarize(ranks[mask])
    return out


def validation_score(gen: GenerativeModel, cases: list[Case], candidates: np.ndarray, profile: Profile) -> float:
    """Mean NDCG@5 of the two tasks under the sampled protocol: the checkpoint criterion."""
    ranks = rank_cases(gen, cases, candidates, profile)
    return float(np.mean([ndcg(ranks[[c.task == t for c in cases]], 5) for t in TASKS]))


def validator(prepared: PreparedData, profile: Profile, tokenizer: Any, ids: ItemIdentifiers
              ) -> Callable[[Any], float]:
    """``validate(t5) -> score``: :func:`validation_score` on the validation cases of ``held_out``, for
    ``t5.train.train`` to call after each round (notebook 05)."""
    cases, candidates = held_out(prepared, profile, "valid")

    def validate(model: Any) -> float:
        return validation_score(GenerativeModel(model, tokenizer, ids, []), cases, candidates, profile)

    return validate


# --------------------------------------------------------------------------------------
# Using a trained model
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prompt:
    """A user's prompt and its length in tokens; the model reads its last ``kept`` (as in training)."""

    text: str
    tokens: int
    kept: int

    @property
    def truncated(self) -> bool:
        return self.kept < self.tokens


def prompt_for(gen: GenerativeModel, history: Sequence[Event], profile: Profile, query: str | None = None) -> Prompt:
    """The recommendation prompt after ``history`` (the search prompt with ``query``), as the model reads it."""
    text = source_text("NRIP" if query is None else "NSIP", history, gen.ids, profile.train.history_length,
                       query=query, prompts=profile.train.prompts)
    tokens = len(gen.tokenizer(text)["input_ids"])
    return Prompt(text, tokens, min(tokens, profile.train.max_source_length))


def recommend(gen: GenerativeModel, history: Sequence[Event], profile: Profile, k: int = 10) -> list[int]:
    """The top ``k`` items (indices) to recommend after ``history``, best first (notebook 05)."""
    return decode(gen, [prompt_for(gen, history, profile).text], "rec", profile, top_k=k)[0]


def search(gen: GenerativeModel, history: Sequence[Event], query: str, profile: Profile, k: int = 10) -> list[int]:
    """The top ``k`` items (indices) for ``query`` after ``history``, best first (notebook 05); an empty
    query is refused."""
    if not query.strip():
        raise ValueError(f"search query {query!r} is empty")
    return decode(gen, [prompt_for(gen, history, profile, query).text], "search", profile, top_k=k)[0]
