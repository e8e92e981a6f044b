"""The readable constrained beam search, and the references every decoding path is tested against
(notebook 05_t5_training).

* :func:`beam_search` -- the algorithm as notebook 05 teaches it: one prompt at a time, the decoder
  re-run over each beam's whole prefix at every step, the allowed next tokens asked of the trie,
  the best ``beam_size`` continuations kept. Slow, and short enough to read in one sitting;
  :func:`~gensar_lib.decoding.fast.constrained_beam_search` is the same search made fast.
* :func:`generate_reference` -- the official code's path:
  ``model.generate(num_beams=B, prefix_allowed_tokens_fn=...)``; generate calls a Python function
  once per beam per step to learn the allowed tokens.
* :func:`exhaustive_scores` -- teacher forcing: the exact log-likelihood of *every* allowed item.
  Expensive, but the ground truth for checks.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gensar_lib.decoding.trie import ItemTrie, make_prefix_allowed_tokens_fn

NEG_INF = float("-inf")
_JUNK_SCORE = -1.0e7  # generate's filler beams start at -1e9; anything below this is filler


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


@dataclass
class BeamResult:
    """Per example, the top-k decoded items, best first.

    ``items [batch, k]``: item indices, -1 where fewer than k items could be
    decoded. ``log_likelihoods [batch, k]``: the sum of the token
    log-probabilities of ``<behaviour> c_1 .. c_L </s>`` (-inf for padding).
    ``scores [batch, k]``: what ``generate`` reports as ``sequences_scores``,
    ``log_likelihoods / (L + 2) ** length_penalty``.
    """

    items: np.ndarray
    scores: np.ndarray
    log_likelihoods: np.ndarray
    length_penalty: float = 1.0


def ranked_items(result: BeamResult) -> list[list[int]]:
    """Per example, the decoded item indices best first, padding dropped (input for :mod:`gensar_lib.metrics`)."""
    return [[int(i) for i in row if i >= 0] for row in result.items]


# ---------------------------------------------------------------------------
# Model plumbing shared by every path
# ---------------------------------------------------------------------------


def _special_tokens(model, eos_token: int | None) -> tuple[int, int]:
    start = model.config.decoder_start_token_id
    if start is None:
        start = model.config.pad_token_id
    if eos_token is None:
        eos_token = model.config.eos_token_id
    if start is None or eos_token is None:
        raise ValueError("the model config needs decoder_start_token_id (or pad_token_id) and eos_token_id")
    return int(start), int(eos_token)


def _as_tensor(x, dtype=torch.long) -> torch.Tensor:
    return x.to(dtype) if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x), dtype=dtype)


def _check_inputs(codes, candidates, n_examples):
    trie = codes if isinstance(codes, ItemTrie) else ItemTrie(codes)
    if candidates is not None:
        candidates = np.asarray(candidates, dtype=np.int64)
        if candidates.ndim != 2 or candidates.shape[0] != n_examples:
            raise ValueError(f"candidates must be [batch={n_examples}, n_cand], got {candidates.shape}")
        if candidates.size and (candidates.max() >= trie.n_items or candidates.min() < -1):
            raise ValueError("candidates must be item indices (or -1 for padding)")
    return trie, candidates


def _candidate_trie(trie: ItemTrie, row: np.ndarray) -> tuple[ItemTrie, np.ndarray]:
    """The trie over one candidate list's items (-1 padding dropped) and those items, ascending, so a
    leaf index of the new trie maps back to an item and a shared identifier to the lowest item."""
    allowed = np.unique(row[row >= 0])
    return ItemTrie(trie.codes[allowed]), allowed


class _EvalMode:
    """Run with dropout off and no autograd, then restore the model's mode."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.was_training = self.model.training
        self.model.eval()
        self.grad = torch.inference_mode()
        self.grad.__enter__()

    def __exit__(self, *exc):
        self.grad.__exit__(*exc)
        self.model.train(self.was_training)


# ---------------------------------------------------------------------------
# The readable beam search
# ---------------------------------------------------------------------------


def beam_search(model, input_ids, attention_mask, codes: np.ndarray | ItemTrie, behaviour_token: int,
                beam_size: int, top_k: int | None = None, candidates: np.ndarray | None = None, *,
                length_penalty: float = 1.0, eos_token: int | None = None,
                trace: list | None = None) -> BeamResult:
    """Constrained beam search, written to be read (notebook 05); same results as the fast engine.

    Per prompt: start from ``<pad>``; at each of the ``L + 2`` steps run the decoder over every beam's
    prefix, take the log-softmax over the full vocabulary, extend each beam by each token the trie
    allows after it (``<behaviour>`` first, then identifier codes, then ``</s>``), and keep the
    ``beam_size`` best by summed log-probability. ``candidates`` restricts a prompt to its own items.
    ``trace``, when given, receives each step's kept beams ``[(tokens, log-probability), ...]``.
    """
    from transformers.modeling_outputs import BaseModelOutput

    input_ids = _as_tensor(input_ids)
    attention_mask = torch.ones_like(input_ids) if attention_mask is None else _as_tensor(attention_mask)
    trie, candidates = _check_inputs(codes, candidates, len(input_ids))
    top_k = beam_size if top_k is None else top_k
    start, eos = _special_tokens(model, eos_token)
    items = np.full((len(input_ids), top_k), -1, dtype=np.int64)
    lls = np.full((len(input_ids), top_k), NEG_INF, dtype=np.float32)
    with _EvalMode(model):
        for e in range(len(input_ids)):
            own, allowed_items = ((trie, np.arange(trie.n_items)) if candidates is None
                                  else _candidate_trie(trie, candidates[e]))  # this prompt's items only
            allowed = make_prefix_allowed_tokens_fn(own, int(behaviour_token), eos)
            encoded = model.get_encoder()(input_ids=input_ids[e:e + 1], attention_mask=attention_mask[e:e + 1])
            beams = [([start], 0.0)]  # (decoder tokens so far, summed log-probability)
            for _ in range(trie.depth + 2):
                prefixes = torch.tensor([tokens for tokens, _ in beams])
                logits = model(encoder_outputs=BaseModelOutput(encoded.last_hidden_state.expand(len(beams), -1, -1)),
                               attention_mask=attention_mask[e:e + 1].expand(len(beams), -1),
                               decoder_input_ids=prefixes).logits[:, -1]
                log_probs = torch.log_softmax(logits.float(), dim=-1)
                grown = [(tokens + [t], score + float(log_probs[b, t]))
                         for b, (tokens, score) in enumerate(beams) for t in allowed(0, torch.tensor(tokens))]
                beams = sorted(grown, key=lambda beam: -beam[1])[:beam_size]
                if trace is not None:
                    trace.append(beams)
            for rank, (tokens, score) in enumerate(beams[:top_k]):  # tokens: <pad> <behaviour> c_1..c_L </s>
                items[e, rank] = allowed_items[own.items_of(tokens[2:-1])[0]]
                lls[e, rank] = score
    return BeamResult(items, (lls / float(trie.depth + 2) ** length_penalty).astype(np.float32), lls,
                      length_penalty)


# ---------------------------------------------------------------------------
# Reference path: generate(prefix_allowed_tokens_fn=...)
# ---------------------------------------------------------------------------


def generate_reference(
    model,
    input_ids,
    attention_mask,
    codes: np.ndarray | ItemTrie,
    behaviour_token: int,
    beam_size: int,
    candidates: np.ndarray | None = None,
    *,
    top_k: int | None = None,
    length_penalty: float = 1.0,
    eos_token: int | None = None,
) -> BeamResult:
    """The official-style path: ``model.generate`` with ``prefix_allowed_tokens_fn`` over a trie.

    Calls ``generate(num_beams=B, num_return_sequences=B,
    prefix_allowed_tokens_fn=..., output_scores=True,
    return_dict_in_generate=True, max_new_tokens=L + 2)`` once for the batch.
    In candidate mode each example gets its own trie over its candidate list,
    as the official code does. When fewer valid items than beams exist,
    ``generate`` fills the beams with copies scored about -1e9; those are
    dropped, and duplicates are kept once.
    """
    input_ids = _as_tensor(input_ids)
    attention_mask = torch.ones_like(input_ids) if attention_mask is None else _as_tensor(attention_mask)
    trie, candidates = _check_inputs(codes, candidates, len(input_ids))
    top_k = beam_size if top_k is None else top_k
    start, eos = _special_tokens(model, eos_token)
    depth = trie.depth
    if candidates is None:
        tries = trie
        lookups = [None] * len(input_ids)
    else:
        tries, lookups = [], []
        for row in candidates:
            own, allowed = _candidate_trie(trie, row)
            tries.append(own)
            lookups.append(allowed)
    full_lookup: dict[tuple[int, ...], int] = {}
    for i in trie.order[::-1]:  # lowest index wins for shared identifiers
        full_lookup[tuple(trie.codes[i].tolist())] = int(i)

    from transformers import GenerationConfig

    # a fresh config: settings saved with a trained model (repetition penalties, ...) must not apply
    config = GenerationConfig(
        num_beams=beam_size,
        num_return_sequences=beam_size,
        output_scores=True,
        return_dict_in_generate=True,
        max_new_tokens=depth + 2,
        length_penalty=length_penalty,
        early_stopping=False,
        do_sample=False,
        decoder_start_token_id=start,
        eos_token_id=eos,
        pad_token_id=model.config.pad_token_id,
        use_cache=True,
    )
    with _EvalMode(model):
        out = model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            generation_config=config,
            prefix_allowed_tokens_fn=make_prefix_allowed_tokens_fn(tries, int(behaviour_token), eos),
        )
    sequences = out.sequences.view(len(input_ids), beam_size, -1).numpy()
    seq_scores = out.sequences_scores.view(len(input_ids), beam_size).float().numpy()
    norm = float(depth + 2) ** length_penalty
    items = np.full((len(input_ids), top_k), -1, dtype=np.int64)
    scores = np.full((len(input_ids), top_k), NEG_INF, dtype=np.float32)
    for e in range(len(input_ids)):
        seen, kept = set(), 0
        for seq, score in zip(sequences[e], seq_scores[e]):
            if not score > _JUNK_SCORE or kept >= top_k:
                continue
            if seq.shape[0] < depth + 3 or seq[1] != behaviour_token or seq[depth + 2] != eos:
                raise AssertionError(f"generate returned a malformed sequence {seq.tolist()}")
            ident = tuple(int(t) for t in seq[2 : depth + 2])
            if lookups[e] is None:
                item = full_lookup[ident]
            else:
                item = int(lookups[e][tries[e].leaf_items(np.array([tries[e].node_of(ident)]))[0]])
            if item in seen:
                continue
            seen.add(item)
            items[e, kept], scores[e, kept] = item, score
            kept += 1
    return BeamResult(items, scores, (scores * norm).astype(np.float32), length_penalty)


# ---------------------------------------------------------------------------
# Ground truth: every allowed item's log-likelihood
# ---------------------------------------------------------------------------


def exhaustive_scores(
    model,
    input_ids,
    attention_mask,
    codes: np.ndarray | ItemTrie,
    behaviour_token: int,
    candidates: np.ndarray | None = None,
    *,
    eos_token: int | None = None,
    chunk_rows: int = 2048,
) -> np.ndarray:
    """Exact log-likelihood of every allowed item per example, by teacher forcing.

    The log-likelihood of item i is ``sum log p(t | prefix)`` over
    ``t = <behaviour>, codes[i, 0..L-1], </s>`` (log-softmax over the full
    vocabulary), i.e. :attr:`BeamResult.log_likelihoods` without any beam
    pruning. Returns ``[batch, n_items]`` (``candidates=None``) or
    ``[batch, n_cand]`` aligned with ``candidates`` (-inf where the candidate
    is -1). The encoder runs once per example; the (example, item) rows are
    decoded ``chunk_rows`` at a time.
    """
    from transformers.modeling_outputs import BaseModelOutput

    input_ids = _as_tensor(input_ids)
    attention_mask = torch.ones_like(input_ids) if attention_mask is None else _as_tensor(attention_mask)
    trie, candidates = _check_inputs(codes, candidates, len(input_ids))
    start, eos = _special_tokens(model, eos_token)
    n_ex = len(input_ids)
    if candidates is None:
        item_grid = np.broadcast_to(np.arange(trie.n_items), (n_ex, trie.n_items))
    else:
        item_grid = candidates
    ex_idx, col_idx = np.nonzero(item_grid >= 0)
    item_idx = item_grid[ex_idx, col_idx]
    out = np.full(item_grid.shape, NEG_INF, dtype=np.float32)
    codes_t = torch.from_numpy(trie.codes)
    with _EvalMode(model):
        encoded = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        for lo in range(0, len(item_idx), chunk_rows):
            ex = torch.from_numpy(ex_idx[lo : lo + chunk_rows])
            ident = codes_t[torch.from_numpy(item_idx[lo : lo + chunk_rows])]
            rows = len(ex)
            labels = torch.cat(
                [torch.full((rows, 1), behaviour_token), ident, torch.full((rows, 1), eos)], dim=1
            )
            dec_in = torch.cat([torch.full((rows, 1), start), labels[:, :-1]], dim=1)
            logits = model(
                encoder_outputs=BaseModelOutput(last_hidden_state=encoded[ex]),
                attention_mask=attention_mask[ex],
                decoder_input_ids=dec_in,
                use_cache=False,
            ).logits
            logp = torch.log_softmax(logits.float(), dim=-1)
            ll = torch.gather(logp, 2, labels.unsqueeze(-1)).squeeze(-1).sum(1)
            out[ex_idx[lo : lo + chunk_rows], col_idx[lo : lo + chunk_rows]] = ll.numpy()
    return out


def top_k_from_scores(scores: np.ndarray, k: int, candidates: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Best k (items, log-likelihoods) per row of :func:`exhaustive_scores` output (-1 / -inf padding)."""
    scores = np.asarray(scores)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(scores, order, axis=1)
    items = order if candidates is None else np.take_along_axis(np.asarray(candidates), order, axis=1)
    items = np.where(np.isneginf(top), -1, items)
    if top.shape[1] < k:
        pad = k - top.shape[1]
        items = np.pad(items, ((0, 0), (0, pad)), constant_values=-1)
        top = np.pad(top, ((0, 0), (0, pad)), constant_values=NEG_INF)
    return items, top
