"""Constrained beam search over item identifiers with a T5 model (notebook 05_t5_training).

GenSAR decodes an item by generating its identifier. With the decoder start
token ``<pad>`` given, a valid output is exactly::

    <pad>  <behaviour>  c_1 c_2 ... c_L  </s>

where ``<behaviour>`` is the task's token (``<rec_item>`` or ``<src_item>``)
and ``c_1 .. c_L`` are the identifier tokens of one real item (``codes[i]``,
an int array ``[n_items, L]`` of token ids). Nothing else may be generated.

This module gives three ways to find the best items, from slowest to fastest:

* :func:`exhaustive_scores` -- teacher forcing: the exact log-likelihood of
  *every* allowed item. Expensive, but the ground truth for checks.
* :func:`generate_reference` -- the official code's path:
  ``model.generate(num_beams=B, prefix_allowed_tokens_fn=...)``; generate
  calls a Python function once per beam per step to learn the allowed tokens.
* :func:`constrained_beam_search` -- the same beam search written by hand and
  batched: the encoder runs once per batch, the decoder's key/value cache is
  reused and reordered across steps, the two first steps (start -> behaviour
  token -> first code) run with one row per example instead of one per beam,
  the cross-attention keys/values are kept once per example, and the allowed
  next tokens of all beams come from array look-ups in the trie instead of
  Python calls.

What is left is arithmetic: ``L`` decoder passes over ``batch * beam`` rows,
each ending in the full-vocabulary LM head, plus the encoder (on the
benchmark's model about 60% of the time is matrix products and a fifth is the
encoder, which ``generate`` runs too). ``benchmarks/decoding.py`` times both
paths.

Why the fast path returns *exactly* what ``generate`` returns: both take the
log-softmax over the full vocabulary and only then discard disallowed tokens
(``generate`` adds ``-inf`` to them), so a hypothesis's score is the sum of its
tokens' true log-probabilities, behaviour token and ``</s>`` included. Every
hypothesis has the same length ``L + 2``, so ``generate``'s length penalty
(``sequences_scores = sum_log_probs / (L + 2) ** length_penalty``) divides all
of them by the same number and never reorders them.

The trie (:class:`ItemTrie`) is built once from ``codes``: the codes are sorted
lexicographically, so every identifier prefix is a contiguous range of sorted
rows, and a node is just such a range. The children of a node are consecutive
node ids, so "the allowed next tokens of these 1,920 beams" is one vectorised
gather (:meth:`ItemTrie.children`), and "which of those are in this example's
100-candidate list" is a difference of two prefix counts
(:meth:`ItemTrie.allowed_nodes`).

Items that share one identifier (collisions) cannot be told apart by decoding:
an identifier stands for the lowest item index among the allowed items that
carry it.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

NEG_INF = float("-inf")
_JUNK_SCORE = -1.0e7  # generate's filler beams start at -1e9; anything below this is filler


# ---------------------------------------------------------------------------
# The trie
# ---------------------------------------------------------------------------


class ItemTrie:
    """Prefix trie over item identifiers ``codes [n_items, L]``, stored as node arrays.

    Rows of ``codes`` are sorted lexicographically (``order``: item index of
    each sorted row; ties keep ascending item index). A node of depth ``d`` is
    an identifier prefix of ``d`` tokens and owns the contiguous sorted rows
    ``[node_lo, node_hi)`` that start with it. Node 0 is the root (the empty
    prefix, all rows). Nodes are numbered depth by depth in sorted order, so
    the children of a node are the consecutive ids
    ``first_child[n] .. first_child[n] + n_children[n] - 1``; ``node_token`` is
    the token that leads into a node. Leaves have depth ``L``.

    >>> trie = ItemTrie(np.array([[5, 7], [5, 8], [6, 7]]))
    >>> trie.allowed_next_tokens([]), trie.allowed_next_tokens([5]), trie.allowed_next_tokens([5, 8])
    ([5, 6], [7, 8], [])
    """

    def __init__(self, codes: np.ndarray):
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[0] == 0 or codes.shape[1] == 0:
            raise ValueError(f"codes must be a non-empty [n_items, L] array, got shape {codes.shape}")
        if not np.issubdtype(codes.dtype, np.integer) or codes.min() < 0:
            raise ValueError("codes must hold non-negative integer token ids")
        codes = codes.astype(np.int64)
        n, depth = codes.shape
        self.codes = codes
        self.n_items, self.depth = n, depth
        # lexsort sorts by the last key first: pass columns reversed so column 0 is the primary key.
        self.order = np.lexsort(codes.T[::-1])
        self.rank = np.empty(n, dtype=np.int64)
        self.rank[self.order] = np.arange(n)
        sorted_codes = codes[self.order]
        self.sorted_codes = sorted_codes

        # changed[i, d]: sorted row i starts a new prefix of length d + 1 (differs from row i - 1
        # somewhere in its first d + 1 tokens); those rows are where the depth-(d + 1) nodes begin.
        changed = np.ones((n, depth), dtype=bool)
        changed[1:] = np.logical_or.accumulate(sorted_codes[1:] != sorted_codes[:-1], axis=1)
        lo, hi, tok, dep = [np.array([0])], [np.array([n])], [np.array([-1])], [np.array([0])]
        first_child = []
        n_children = []
        level_lo = np.array([0])  # row starts of the nodes of the previous depth
        next_id = 1
        for d in range(depth):
            starts = np.flatnonzero(changed[:, d])
            ends = np.append(starts[1:], n)
            # parent of each new node: the previous-depth node whose range holds its first row
            parent = np.searchsorted(level_lo, starts, side="right") - 1
            counts = np.bincount(parent, minlength=len(level_lo))
            first = next_id + np.concatenate(([0], np.cumsum(counts)[:-1]))
            first_child.append(first)
            n_children.append(counts)
            lo.append(starts)
            hi.append(ends)
            tok.append(sorted_codes[starts, d])
            dep.append(np.full(len(starts), d + 1))
            next_id += len(starts)
            level_lo = starts
        n_leaves = len(level_lo)
        first_child.append(np.full(n_leaves, next_id))  # leaves: no children
        n_children.append(np.zeros(n_leaves, dtype=np.int64))
        self.node_lo = np.concatenate(lo)
        self.node_hi = np.concatenate(hi)
        self.node_token = np.concatenate(tok)
        self.node_depth = np.concatenate(dep)
        self.first_child = np.concatenate(first_child)
        self.n_children = np.concatenate(n_children).astype(np.int64)
        self.n_nodes = len(self.node_lo)
        self._child_dicts: dict[int, dict[int, int]] = {}
        self._torch: dict[str, torch.Tensor] | None = None

    # -- the slow, one-prefix-at-a-time interface (generate's prefix_allowed_tokens_fn) --

    def _child_dict(self, node: int) -> dict[int, int]:
        found = self._child_dicts.get(node)
        if found is None:
            first, count = int(self.first_child[node]), int(self.n_children[node])
            found = {int(self.node_token[c]): c for c in range(first, first + count)}
            self._child_dicts[node] = found
        return found

    def node_of(self, prefix: Sequence[int]) -> int:
        """Node id of an identifier prefix; -1 if no item starts with it."""
        node = 0
        for token in prefix:
            node = self._child_dict(node).get(int(token), -1)
            if node < 0:
                return -1
        return node

    def allowed_next_tokens(self, prefix: Sequence[int]) -> list[int]:
        """Identifier tokens that may follow ``prefix`` (identifier tokens only, no behaviour token).

        Empty when ``prefix`` is already a complete identifier; raises
        ``KeyError`` when no item starts with ``prefix``.
        """
        node = self.node_of(prefix)
        if node < 0:
            raise KeyError(f"no item identifier starts with {list(prefix)}")
        return list(self._child_dict(node))

    def items_of(self, prefix: Sequence[int]) -> np.ndarray:
        """Item indices whose identifier starts with ``prefix`` (ascending)."""
        node = self.node_of(prefix)
        if node < 0:
            return np.zeros(0, dtype=np.int64)
        return np.sort(self.order[self.node_lo[node] : self.node_hi[node]])

    # -- the vectorised interface (the fast path) --

    def allowed_nodes(self, candidates: np.ndarray) -> np.ndarray:
        """``[batch, n_nodes]`` bool: does the node's subtree hold one of the example's candidates?

        ``candidates [batch, n_cand]`` are item indices, -1 for padding. A
        node owns sorted rows ``[lo, hi)``; with ``counts[b, r]`` = how many of
        example b's candidates sit at sorted rows ``< r``, the node is allowed
        iff ``counts[b, hi] - counts[b, lo] > 0``.
        """
        candidates = np.asarray(candidates, dtype=np.int64)
        if candidates.ndim != 2:
            raise ValueError("candidates must be a [batch, n_cand] array")
        if candidates.size and candidates.max() >= self.n_items:
            raise ValueError("candidate item index out of range")
        batch = candidates.shape[0]
        valid = candidates >= 0
        rows = np.repeat(np.arange(batch), candidates.shape[1])[valid.ravel()]
        ranks = self.rank[candidates[valid]]
        marks = np.zeros((batch, self.n_items + 1), dtype=np.int32)
        np.add.at(marks, (rows, ranks + 1), 1)
        counts = np.cumsum(marks, axis=1)
        return (counts[:, self.node_hi] - counts[:, self.node_lo]) > 0

    def _tensors(self) -> dict[str, torch.Tensor]:
        if self._torch is None:
            self._torch = {
                "first_child": torch.from_numpy(self.first_child),
                "n_children": torch.from_numpy(self.n_children),
                "node_token": torch.from_numpy(np.maximum(self.node_token, 0)),
            }
        return self._torch

    def children(self, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batched child look-up: for nodes of any shape ``S``, ``(child_ids, tokens, valid)`` of shape ``S + [C]``.

        ``C`` is the largest child count among ``nodes``; padding slots have
        ``valid == False`` (their ids/tokens are placeholders, 0).
        """
        t = self._tensors()
        count = t["n_children"][nodes]
        width = int(count.max()) if count.numel() else 0
        slot = torch.arange(width)
        valid = slot < count.unsqueeze(-1)
        child = torch.where(valid, t["first_child"][nodes].unsqueeze(-1) + slot, torch.zeros((), dtype=torch.long))
        return child, t["node_token"][child], valid

    def next_token_mask(self, nodes: torch.Tensor, vocab_size: int, node_allowed: torch.Tensor | None = None) -> torch.Tensor:
        """Dense ``[n, vocab_size]`` bool mask of the allowed next identifier tokens of ``nodes [n]``.

        ``node_allowed`` (``[n, n_nodes]`` bool, e.g. rows of
        :meth:`allowed_nodes`) restricts children to a candidate list. The
        beam search uses the sparse :meth:`children` directly; this dense form
        is what a logits processor would add as ``0 / -inf``.
        """
        child, tokens, valid = self.children(nodes)
        if node_allowed is not None:
            valid = valid & torch.gather(node_allowed, 1, child)
        mask = torch.zeros(len(nodes), vocab_size, dtype=torch.bool)
        mask[torch.arange(len(nodes)).unsqueeze(1).expand_as(tokens)[valid], tokens[valid]] = True
        return mask

    def leaf_items(self, leaves: np.ndarray, candidates_row: np.ndarray | None = None) -> np.ndarray:
        """Item index for leaf nodes (``-1`` stays ``-1``): the lowest allowed item with that identifier."""
        leaves = np.asarray(leaves, dtype=np.int64)
        out = np.full(leaves.shape, -1, dtype=np.int64)
        ok = leaves >= 0
        lo = self.node_lo[leaves[ok]]
        if candidates_row is None:
            out[ok] = self.order[lo]  # sorted rows tie-break by ascending item index
        else:
            cand = np.asarray(candidates_row)
            cand_ranks = np.sort(self.rank[cand[cand >= 0]])
            out[ok] = self.order[cand_ranks[np.searchsorted(cand_ranks, lo)]]
        return out


def make_prefix_allowed_tokens_fn(
    tries: ItemTrie | Sequence[ItemTrie], behaviour_token: int, eos_token: int
) -> Callable[[int, torch.Tensor], list[int]]:
    """``prefix_allowed_tokens_fn(batch_id, sent)`` for ``model.generate`` (the official-style slow path).

    ``sent`` is a beam's decoder sequence so far, decoder start token
    included. ``tries`` is one trie for all examples or one per example (the
    official code builds one per example for candidate lists).
    """
    shared = tries if isinstance(tries, ItemTrie) else None

    def allowed(batch_id: int, sent: torch.Tensor) -> list[int]:
        trie = shared if shared is not None else tries[batch_id]
        prefix = sent.tolist()[1:]  # drop the decoder start token
        if not prefix:
            return [behaviour_token]
        if prefix[0] != behaviour_token:
            return [eos_token]  # unreachable for live beams; never return [] (generate raises on it)
        ident = prefix[1:]
        if len(ident) >= trie.depth:
            return [eos_token]
        try:
            return trie.allowed_next_tokens(ident)
        except KeyError:  # unreachable for live beams
            return [eos_token]

    return allowed


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
# Model plumbing
# ---------------------------------------------------------------------------


def _cache_keyword(model) -> str:
    """transformers 5 renamed T5's ``past_key_values=`` keyword to ``cache=``; use what this version expects."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _new_cache(model):
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    try:
        return EncoderDecoderCache(DynamicCache(config=model.config), DynamicCache(config=model.config))
    except TypeError:  # older transformers: no config argument
        return EncoderDecoderCache(DynamicCache(), DynamicCache())


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
# Fast path: batched constrained beam search
# ---------------------------------------------------------------------------


def constrained_beam_search(
    model,
    input_ids,
    attention_mask,
    codes: np.ndarray | ItemTrie,
    behaviour_token: int,
    beam_size: int,
    top_k: int | None = None,
    candidates: np.ndarray | None = None,
    *,
    length_penalty: float = 1.0,
    eos_token: int | None = None,
    batch_size: int = 64,
    impl: str = "auto",
) -> BeamResult:
    """Batched constrained beam search; same items and scores as ``generate`` with a trie.

    ``codes`` is the ``[n_items, L]`` identifier token array (or an
    :class:`ItemTrie` built from it, to build the trie once for many calls).
    ``candidates [batch, n_cand]`` (item indices, -1 padding) restricts each
    example to its own list (the paper's 100-candidate protocol); ``None``
    decodes over the full catalogue. Returns the best ``top_k`` (default
    ``beam_size``, at most ``beam_size``) items per example.

    Per step, for ``E`` examples and ``W`` live beams each:

    1. one decoder step for the ``E * W`` last tokens, reusing the key/value
       cache; log-softmax over the full vocabulary;
    2. gather the log-probs of each beam's allowed children (trie look-up,
       masked by the candidate lists) and add them to the beam scores;
    3. keep the best ``beam_size`` of the ``W * C`` continuations per example
       (``C`` = most children of any beam), reorder the cache to follow them.

    The first two steps (``<pad> -> <behaviour>`` and ``<behaviour> -> c_1``)
    have one hypothesis per example, so they run on ``E`` rows, not
    ``E * beam_size``; the cross-attention keys/values are computed once on
    one row per example (``generate`` projects them for every beam and then
    copies them at every step). ``generate`` needs ``L + 2`` decoder passes
    over ``E * beam_size`` rows; this needs ``L`` (plus two over ``E`` rows).

    ``impl`` picks how a decoder step runs:

    * ``"hf"`` -- the model's own forward with its ``EncoderDecoderCache``
      (``cache=`` in transformers 5, ``past_key_values=`` before); the
      cross-attention cache is copied once per beam when the beam widens.
    * ``"t5"`` -- a hand-written incremental T5 step over the model's own
      modules (:class:`_T5StepDecoder`) whose cross-attention reads one
      key/value copy per example for all its beams; 1.5-2x faster on CPU.
    * ``"auto"`` (default) -- ``"t5"`` for T5/mT5 layouts, else ``"hf"``.

    Both give the same results up to float rounding (tests check both against
    ``generate``). ``batch_size`` examples are decoded together.
    """
    input_ids = _as_tensor(input_ids)
    attention_mask = torch.ones_like(input_ids) if attention_mask is None else _as_tensor(attention_mask)
    trie, candidates = _check_inputs(codes, candidates, len(input_ids))
    top_k = beam_size if top_k is None else top_k
    if beam_size < 1 or not 1 <= top_k <= beam_size:
        raise ValueError(f"need beam_size >= 1 and 1 <= top_k <= beam_size, got {beam_size}, {top_k}")
    start, eos = _special_tokens(model, eos_token)
    if impl == "auto":
        impl = "t5" if _is_plain_t5(model) else "hf"
    if impl not in ("t5", "hf"):
        raise ValueError(f"impl must be 'auto', 't5' or 'hf', got {impl!r}")
    parts = []
    with _EvalMode(model):
        for lo in range(0, len(input_ids), batch_size):
            sl = slice(lo, lo + batch_size)
            parts.append(
                _beam_search_batch(
                    model, input_ids[sl], attention_mask[sl], trie, int(behaviour_token), start, eos,
                    beam_size, top_k, None if candidates is None else candidates[sl], length_penalty, impl,
                )
            )
    if not parts:
        empty = np.zeros((0, top_k))
        return BeamResult(empty.astype(np.int64), empty.astype(np.float32), empty.astype(np.float32), length_penalty)
    return BeamResult(
        items=np.concatenate([p[0] for p in parts]),
        scores=np.concatenate([p[1] for p in parts]),
        log_likelihoods=np.concatenate([p[2] for p in parts]),
        length_penalty=length_penalty,
    )


class _HFCacheDecoder:
    """Decoder steps through the model's own forward and its ``EncoderDecoderCache`` (any HF seq2seq model).

    The cross-attention keys/values are computed once, on one row per
    example, at the first step; when the number of beams changes they are
    copied once per beam (every beam of an example needs the same rows).
    """

    def __init__(self, model, input_ids, attention_mask, max_rows):
        from transformers.modeling_outputs import BaseModelOutput

        self._wrap = BaseModelOutput
        self.model = model
        self.cache_kw = _cache_keyword(model)
        self.cache = _new_cache(model)
        self.encoded = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        self.enc_mask = attention_mask
        self.row_mask = attention_mask
        self.first = True
        # After the first call the cross-attention keys/values live in the cache; the encoder states
        # passed afterwards only give shapes (rows, length), so a zero-stride view suffices.
        enc_len, d_model = self.encoded.shape[1:]
        self.shape_only = self.encoded[:1, :1].expand(max_rows, enc_len, d_model)

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        rows = len(tokens)
        states = self.encoded if self.first else self.shape_only[:rows]
        self.first = False
        out = self.model(
            encoder_outputs=self._wrap(last_hidden_state=states),
            attention_mask=self.row_mask,
            decoder_input_ids=tokens.view(rows, 1),
            use_cache=True,
            **{self.cache_kw: self.cache},
        )
        return out.logits[:, -1, :]

    def log_probs(self, tokens: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
        """Feed one token per row; log-probabilities ``[rows, C]`` of the tokens ``columns [rows, C]``."""
        # log-softmax over the FULL vocabulary, before any masking (as generate does)
        return torch.log_softmax(self.logits(tokens).float(), dim=-1).gather(1, columns)

    def reorder(self, rows: torch.Tensor, n_ex: int, old_width: int, new_width: int) -> None:
        self.cache.self_attention_cache.reorder_cache(rows)
        if new_width != old_width:
            same_example = (torch.arange(n_ex)[:, None] * old_width).expand(n_ex, new_width).reshape(-1)
            self.cache.cross_attention_cache.reorder_cache(same_example)
            self.row_mask = self.enc_mask.repeat_interleave(new_width, dim=0)


def _is_plain_t5(model) -> bool:
    """True for T5 / mT5 layouts the hand-written step reproduces (relative bias in layer 0 only)."""
    try:
        blocks = model.decoder.block
        first = blocks[0].layer[0].SelfAttention
        ok = first.has_relative_attention_bias and not any(
            b.layer[0].SelfAttention.has_relative_attention_bias for b in blocks[1:]
        )
        return bool(ok) and all(len(b.layer) == 3 for b in blocks) and hasattr(model, "lm_head")
    except (AttributeError, IndexError, TypeError):
        return False


class _T5StepDecoder:
    """A hand-written incremental T5 decoder step with grouped cross-attention.

    It runs the model's own modules (embeddings, layer norms, q/k/v/o
    projections, feed-forward, LM head) one token at a time and keeps its own
    self-attention key/value cache, ``[rows, heads, t, d_kv]`` per layer,
    reordered when beams are chosen. The difference with the model's forward:
    the cross-attention keys/values stay at one row per *example*
    (``[E, heads, S, d_kv]``) and the ``W`` beams of an example attend to
    them together as a ``[E, heads, W, d_kv]`` query block, so they are never
    copied per beam nor re-read per beam.
    """

    def __init__(self, model, input_ids, attention_mask):
        self.model = model
        dec = model.decoder
        self.blocks = dec.block
        encoded = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        first = self.blocks[0].layer[0].SelfAttention
        self.heads, self.d_kv = first.n_heads, first.key_value_proj_dim
        n_ex, enc_len = encoded.shape[:2]
        self.cross = []
        for block in self.blocks:
            att = block.layer[1].EncDecAttention
            k = att.k(encoded).view(n_ex, enc_len, self.heads, self.d_kv).transpose(1, 2)
            v = att.v(encoded).view(n_ex, enc_len, self.heads, self.d_kv).transpose(1, 2)
            self.cross.append((k, v))
        dtype = encoded.dtype
        self.enc_bias = ((1.0 - attention_mask.to(dtype)) * torch.finfo(dtype).min)[:, None, None, :]
        self.self_cache: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(self.blocks)
        self.t = 0
        self.n_ex = n_ex
        self._bias_att = first
        self.scale = getattr(model.config, "scale_decoder_outputs", getattr(model.config, "tie_word_embeddings", True))

    def _position_bias(self, query_pos: int) -> torch.Tensor:
        """Relative position bias ``[1, heads, 1, query_pos + 1]`` of a decoder query at ``query_pos``."""
        att = self._bias_att
        rel = torch.arange(query_pos + 1) - query_pos  # memory - context, <= 0
        bucket = att._relative_position_bucket(
            rel, bidirectional=False, num_buckets=att.relative_attention_num_buckets,
            max_distance=att.relative_attention_max_distance,
        )
        return att.relative_attention_bias(bucket).t()[None, :, None, :]

    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per row (rows ordered example-major); the final hidden states ``[rows, d_model]``."""
        rows = len(tokens)
        width = rows // self.n_ex
        h = self.model.decoder.embed_tokens(tokens)  # [R, d]
        bias = self._position_bias(self.t)
        for i, block in enumerate(self.blocks):
            sa_layer, ca_layer, ff_layer = block.layer
            sa = sa_layer.SelfAttention
            x = sa_layer.layer_norm(h)
            q = sa.q(x).view(rows, self.heads, 1, self.d_kv)
            k = sa.k(x).view(rows, self.heads, 1, self.d_kv)
            v = sa.v(x).view(rows, self.heads, 1, self.d_kv)
            if self.self_cache[i] is not None:
                k = torch.cat([self.self_cache[i][0], k], dim=2)
                v = torch.cat([self.self_cache[i][1], v], dim=2)
            self.self_cache[i] = (k, v)
            w = torch.softmax((q @ k.transpose(-1, -2) + bias).float(), dim=-1).to(q.dtype)  # T5: no 1/sqrt(d)
            h = h + sa.o((w @ v).reshape(rows, -1))

            ca = ca_layer.EncDecAttention
            x = ca_layer.layer_norm(h)
            q = ca.q(x).view(self.n_ex, width, self.heads, self.d_kv).transpose(1, 2)  # [E, H, W, d_kv]
            ck, cv = self.cross[i]
            w = torch.softmax((q @ ck.transpose(-1, -2) + self.enc_bias).float(), dim=-1).to(q.dtype)
            h = h + ca.o((w @ cv).transpose(1, 2).reshape(rows, -1))

            h = h + ff_layer.DenseReluDense(ff_layer.layer_norm(h))
        h = self.model.decoder.final_layer_norm(h)
        if self.scale:
            h = h * (self.model.model_dim ** -0.5)
        self.t += 1
        return h

    def log_probs(self, tokens: torch.Tensor, columns: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        """Feed one token per row; log-probabilities ``[rows, C]`` of the tokens ``columns [rows, C]``.

        The LM head and the log-softmax over the full vocabulary run on
        ``chunk`` rows at a time, so the ``[chunk, vocab]`` logits stay in
        cache instead of a ``[rows, vocab]`` array going through memory twice.
        """
        h = self.hidden(tokens)
        out = torch.empty(columns.shape, dtype=torch.float32)
        for lo in range(0, len(h), chunk):
            logits = self.model.lm_head(h[lo : lo + chunk]).float()
            out[lo : lo + chunk] = torch.log_softmax(logits, dim=-1).gather(1, columns[lo : lo + chunk])
        return out

    def reorder(self, rows: torch.Tensor, n_ex: int, old_width: int, new_width: int) -> None:
        self.self_cache = [(k.index_select(0, rows), v.index_select(0, rows)) for k, v in self.self_cache]


def _beam_search_batch(model, input_ids, attention_mask, trie, behaviour, start, eos, beam_size, top_k,
                       candidates, length_penalty, impl):
    n_ex = len(input_ids)
    examples = torch.arange(n_ex)
    if impl == "t5":
        dec = _T5StepDecoder(model, input_ids, attention_mask)
    else:
        dec = _HFCacheDecoder(model, input_ids, attention_mask, n_ex * beam_size)
    node_allowed = None if candidates is None else torch.from_numpy(trie.allowed_nodes(candidates))
    # Each call feeds one token per hypothesis and returns the log-probabilities (log-softmax over
    # the FULL vocabulary, as generate takes them) of the tokens that hypothesis may emit next.
    # step 0: <pad> -> <behaviour> (the only allowed token)
    scores = dec.log_probs(torch.full((n_ex,), start), torch.full((n_ex, 1), behaviour))  # [E, W=1]
    # then <behaviour> -> c_1, c_1 -> c_2, ..., with the trie's children as the allowed tokens
    nodes = torch.zeros((n_ex, 1), dtype=torch.long)  # every hypothesis sits at the root
    tokens = torch.full((n_ex, 1), behaviour)
    width = 1
    for _depth in range(trie.depth):
        child, child_tokens, valid = trie.children(nodes)  # [E, W, C]
        valid &= torch.isfinite(scores).unsqueeze(-1)  # dead hypotheses have no continuation
        if node_allowed is not None:
            valid &= node_allowed[examples[:, None, None], child]
        n_cols = child.shape[-1]
        logp = dec.log_probs(tokens.view(-1), child_tokens.view(n_ex * width, n_cols))
        cand = scores.unsqueeze(-1) + logp.view(n_ex, width, n_cols)
        cand = cand.masked_fill(~valid, NEG_INF).view(n_ex, width * n_cols)
        new_width = max(1, min(beam_size, int(valid.view(n_ex, -1).sum(1).max())))
        scores, flat = torch.topk(cand, new_width, dim=1)
        parent = flat // n_cols
        nodes = torch.gather(child.view(n_ex, -1), 1, flat)
        tokens = torch.gather(child_tokens.view(n_ex, -1), 1, flat)
        nodes = nodes.masked_fill(torch.isneginf(scores), 0)  # dead hypotheses (too few items)
        # follow the chosen parents in the key/value cache
        dec.reorder((examples[:, None] * width + parent).view(-1), n_ex, width, new_width)
        width = new_width
    # last step: c_L -> </s>
    rows = n_ex * width
    scores = scores + dec.log_probs(tokens.view(-1), torch.full((rows, 1), eos)).view(n_ex, width)
    scores, order = torch.sort(scores, dim=1, descending=True)
    nodes = torch.gather(nodes, 1, order)
    k = min(top_k, width)
    scores, nodes = scores[:, :k].numpy(), nodes[:, :k].numpy()
    leaves = np.where(np.isneginf(scores), -1, nodes)
    items = np.full((n_ex, top_k), -1, dtype=np.int64)
    log_lik = np.full((n_ex, top_k), NEG_INF, dtype=np.float32)
    log_lik[:, :k] = scores
    for e in range(n_ex):
        items[e, :k] = trie.leaf_items(leaves[e], None if candidates is None else candidates[e])
    norm = float(trie.depth + 2) ** length_penalty
    return items, (log_lik / norm).astype(np.float32), log_lik


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
            allowed = np.unique(row[row >= 0])  # ascending: a shared identifier maps to the lowest item
            tries.append(ItemTrie(trie.codes[allowed]))
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
