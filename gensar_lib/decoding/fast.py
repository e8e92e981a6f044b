"""The fast constrained beam search behind evaluation (notebook 05_t5_training, where it is timed).

The engine behind evaluation: :func:`constrained_beam_search` is the beam search of
:func:`~gensar_lib.decoding.search.beam_search`, batched: the encoder runs once per batch, the
decoder's key/value cache is reused and reordered across steps, the two first steps (start ->
behaviour token -> first code) run with one row per example instead of one per beam, the cross-
attention keys/values are kept once per example, and the allowed next tokens of all beams come from
array look-ups in the trie instead of Python calls. When only the best ``top_k < beam_size`` items
are wanted, ``</s>`` is decoded only for the hypotheses that can still reach the top ``top_k`` (see
:func:`_final_step_pruned`). For plain T5 models the encoder and the decoder step are written out
(:func:`_t5_encode`, :class:`_T5StepDecoder`): fused projections, no per-step concatenation or
allocation of the key/value cache, padding cut per chunk of inputs.

What is left is arithmetic: ``L - 1`` decoder passes over up to ``batch *
beam`` rows plus one over the surviving hypotheses, each ending in the
full-vocabulary LM head, and the encoder, which ``generate`` runs too (on the
benchmark's trained tiny model, 1 thread: about a quarter of the time is the
encoder, 12-15 ms per wide decoder pass of 1,920 rows, of which the LM head
is a quarter). ``lab/benchmarks/decoding.py`` times both paths.

**Private internals.** The hand-written T5 path reads ``transformers``' T5 modules directly:
``T5Attention``'s ``q``/``k``/``v``/``o`` projections, ``n_heads``, ``key_value_proj_dim``,
``relative_attention_bias`` and its private ``_relative_position_bucket``, and the blocks' layer
layout. :func:`check_t5_internals` checks them before the fast path runs and names what changed;
``pyproject.toml`` pins the ``transformers`` range this was tested on (5.24).
"""
from __future__ import annotations

import inspect

import numpy as np
import torch

from gensar_lib.decoding.search import (
    NEG_INF,
    BeamResult,
    _as_tensor,
    _check_inputs,
    _EvalMode,
    _special_tokens,
)
from gensar_lib.decoding.trie import ItemTrie

TESTED_TRANSFORMERS = "5.24"  # the version the hand-written T5 path was tested against


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
    over ``E * beam_size`` rows; this needs ``L`` (plus two over ``E`` rows),
    and with the ``"t5"`` step and ``top_k < beam_size`` the last one (``c_L
    -> </s>``) runs only over the hypotheses that can still make the top
    ``top_k`` (:func:`_final_step_pruned`; the same items and scores).

    ``impl`` picks how a decoder step runs:

    * ``"hf"`` -- the model's own forward with its ``EncoderDecoderCache``
      (``cache=`` in transformers 5, ``past_key_values=`` before); the
      cross-attention cache is copied once per beam when the beam widens.
    * ``"t5"`` -- a hand-written T5 encoder (:func:`_t5_encode`) and
      incremental decoder step over the model's own weights
      (:class:`_T5StepDecoder`) whose cross-attention reads one key/value
      copy per example for all its beams, with the pruned last step; about
      3x faster than ``"hf"`` on CPU.
    * ``"auto"`` (default) -- ``"t5"`` for T5/mT5 layouts, else ``"hf"``.

    Both give the same results up to float rounding (tests check both against
    ``generate``). ``batch_size`` examples are decoded together, on the model's
    device (inputs are moved there; a GPU agrees with the CPU up to float
    tolerance, not bitwise).
    """
    device = next(model.parameters()).device  # every tensor of the search lives beside the weights
    input_ids = _as_tensor(input_ids).to(device)
    attention_mask = torch.ones_like(input_ids) if attention_mask is None else _as_tensor(attention_mask).to(device)
    trie, candidates = _check_inputs(codes, candidates, len(input_ids))
    top_k = beam_size if top_k is None else top_k
    if beam_size < 1 or not 1 <= top_k <= beam_size:
        raise ValueError(f"need beam_size >= 1 and 1 <= top_k <= beam_size, got {beam_size}, {top_k}")
    start, eos = _special_tokens(model, eos_token)
    if impl == "auto":
        impl = "t5" if _is_plain_t5(model) else "hf"
    if impl not in ("t5", "hf"):
        raise ValueError(f"impl must be 'auto', 't5' or 'hf', got {impl!r}")
    if impl == "t5":
        check_t5_internals(model)
    parts = []
    with _EvalMode(model), torch.device(device):
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


def _is_plain_t5_encoder(encoder) -> bool:
    """True for a T5 / mT5 encoder stack :func:`_t5_encode` reproduces."""
    try:
        blocks = encoder.block
        ok = blocks[0].layer[0].SelfAttention.has_relative_attention_bias and not any(
            b.layer[0].SelfAttention.has_relative_attention_bias for b in blocks[1:]
        )
        return bool(ok) and all(len(b.layer) == 2 for b in blocks) and hasattr(encoder, "final_layer_norm")
    except (AttributeError, IndexError, TypeError):
        return False


def _rms_norm(x: torch.Tensor, norm) -> torch.Tensor:
    """``T5LayerNorm`` (scale only, no mean, no bias) as one fused op."""
    if x.dtype != torch.float32 or norm.weight.dtype != torch.float32:
        return norm(x)  # half precision: keep the module's fp32 accumulation and casts
    return torch.nn.functional.rms_norm(x, (x.shape[-1],), norm.weight, norm.variance_epsilon)


def _feed_forward(ff, x: torch.Tensor) -> torch.Tensor:
    """``T5DenseActDense`` with ReLU without temporaries (in-place activation); other variants as they are."""
    F = torch.nn.functional
    if (
        hasattr(ff, "wi") and isinstance(getattr(ff, "act", None), torch.nn.ReLU)
        and ff.wi.bias is None and ff.wo.bias is None and ff.wo.weight.dtype == x.dtype
    ):
        return F.linear(F.linear(x, ff.wi.weight).relu_(), ff.wo.weight)
    return ff(x)


def _fused_weight(*linears) -> torch.Tensor:
    """The weights of bias-free linear layers stacked, so one matrix product computes all of them."""
    return torch.cat([lin.weight for lin in linears], dim=0)


def _t5_encode(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """The T5 encoder's last hidden state ``[E, S, d_model]``, written out for inference.

    The same arithmetic as the module, arranged for CPU inference: one
    matrix product for the query/key/value projections of a layer, the
    relative position bias and the padding mask added once per chunk, an
    in-place ReLU, fused RMS norms, and ``chunk`` examples at a time (in
    order of length) so that a chunk's activations stay in cache. Each chunk
    is cut to its longest input: the padding columns every example of the
    chunk masks add exactly zero attention weight. The outputs of the cut
    columns are left at zero (the module computes values there that the
    decoder's cross-attention masks anyway).
    """
    F = torch.nn.functional
    enc = model.get_encoder()
    blocks = enc.block
    first = blocks[0].layer[0].SelfAttention
    heads, d_kv = first.n_heads, first.key_value_proj_dim
    n_ex, length = input_ids.shape
    dtype = enc.embed_tokens.weight.dtype
    mask_bias = (1.0 - attention_mask.to(dtype))[:, None, None, :] * torch.finfo(dtype).min
    qkv_weights = [
        _fused_weight(b.layer[0].SelfAttention.q, b.layer[0].SelfAttention.k, b.layer[0].SelfAttention.v)
        for b in blocks
    ]
    # columns up to the last attended one; rows with nothing to attend to keep every column (as the module)
    positions = torch.arange(1, length + 1)
    used = (attention_mask.bool() * positions).amax(1)
    used = torch.where(used > 0, used, length)
    order = torch.argsort(used)
    out = torch.zeros(n_ex, length, enc.embed_tokens.weight.shape[1], dtype=dtype)
    biases: dict[int, torch.Tensor] = {}
    for lo in range(0, n_ex, chunk):
        idx = order[lo : lo + chunk]
        g, s = len(idx), int(used[idx].max())
        if s not in biases:
            biases[s] = first.compute_bias(s, s).to(dtype)  # [1, H, s, s], bidirectional buckets
        bias = biases[s] + mask_bias[idx, :, :, :s]  # [g, H, s, s]
        h = enc.embed_tokens(input_ids[idx, :s]).view(g * s, -1)
        for block, w_qkv in zip(blocks, qkv_weights):
            sa_layer, ff_layer = block.layer
            qkv = F.linear(_rms_norm(h, sa_layer.layer_norm), w_qkv).view(g, s, 3, heads, d_kv)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # [g, H, s, d_kv] each
            scores = torch.matmul(q, k.transpose(-1, -2)).add_(bias)  # T5: no 1/sqrt(d)
            att = torch.matmul(torch.softmax(scores.float(), dim=-1).to(dtype), v)  # [g, H, s, d_kv]
            h = h + F.linear(att.transpose(1, 2).reshape(g * s, heads * d_kv), sa_layer.SelfAttention.o.weight)
            h = h + _feed_forward(ff_layer.DenseReluDense, _rms_norm(h, ff_layer.layer_norm))
        out[idx, :s] = _rms_norm(h, enc.final_layer_norm).view(g, s, -1)
    return out


class _T5StepDecoder:
    """A hand-written incremental T5 decoder step with grouped cross-attention and a shared prefix.

    It runs the model's own weights (embeddings, layer norms, q/k/v/o
    projections, feed-forward, LM head) one token at a time. Differences with
    the model's forward, none of which changes the result beyond float
    rounding:

    * the encoder is :func:`_t5_encode` for plain T5 stacks (one product for
      q/k/v, bias added once, examples in cache-sized chunks);
    * the cross-attention keys/values of *all* decoder layers come from one
      matrix product and stay at one row per example (``[E, heads, S, d_kv]``,
      stored pre-transposed); the ``W`` beams of an example attend to them
      together as a ``[E, heads, W, d_kv]`` query block, so they are never
      copied per beam;
    * the self-attention keys/values of the positions fed while every
      example had a single hypothesis (``<pad>`` and the behaviour token) are
      kept once per example too; only later positions live per beam, one
      ``[rows, layers, 2, heads, d_kv]`` block per position, reordered by one
      ``index_select`` per position into a second block allocated once
      (no concatenation, no fresh allocation per step);
    * the self-attention of a single query over at most ``L + 2`` keys is
      written as products and sums (no batched 1-row matrix products).
    """

    def __init__(self, model, input_ids, attention_mask, max_len: int = 64, max_rows: int | None = None,
                 chunk_rows: int = 4096):
        F = torch.nn.functional
        self.model = model
        dec = model.decoder
        self.blocks = dec.block
        if _is_plain_t5_encoder(model.get_encoder()):
            encoded = _t5_encode(model, input_ids, attention_mask)
        else:
            encoded = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        first = self.blocks[0].layer[0].SelfAttention
        self.heads, self.d_kv = first.n_heads, first.key_value_proj_dim
        n_ex, enc_len = encoded.shape[:2]
        # cross-attention keys/values of every layer from one product per chunk of examples, stored as
        # keys pre-transposed [E, H, d_kv, S] and values [E, H, S, d_kv] for the batched products
        cross_w = _fused_weight(*[m for b in self.blocks for m in (b.layer[1].EncDecAttention.k,
                                                                  b.layer[1].EncDecAttention.v)])
        n_layers = len(self.blocks)
        keys = torch.empty(n_layers, n_ex, self.heads, self.d_kv, enc_len, dtype=encoded.dtype)
        values = torch.empty(n_layers, n_ex, self.heads, enc_len, self.d_kv, dtype=encoded.dtype)
        for lo in range(0, n_ex, 16):
            part = encoded[lo : lo + 16]
            g = len(part)
            kv = F.linear(part.reshape(g * enc_len, -1), cross_w).view(g, enc_len, n_layers, 2, self.heads, self.d_kv)
            keys[:, lo : lo + g] = kv[:, :, :, 0].permute(2, 0, 3, 4, 1)
            values[:, lo : lo + g] = kv[:, :, :, 1].permute(2, 0, 3, 1, 4)
        self.cross = [(keys[i], values[i]) for i in range(n_layers)]
        dtype = encoded.dtype
        self.dtype = dtype
        self.enc_bias = ((1.0 - attention_mask.to(dtype)) * torch.finfo(dtype).min)[:, None, None, :]
        self.qkv_w = [_fused_weight(b.layer[0].SelfAttention.q, b.layer[0].SelfAttention.k,
                                    b.layer[0].SelfAttention.v) for b in self.blocks]
        # relative position bias of query position t over keys 0..t: self.pos_bias[t, :t + 1]  ([T, T, H])
        rel = torch.arange(max_len)[None, :] - torch.arange(max_len)[:, None]  # memory - context
        bucket = first._relative_position_bucket(
            rel, bidirectional=False, num_buckets=first.relative_attention_num_buckets,
            max_distance=first.relative_attention_max_distance,
        )
        self.pos_bias = first.relative_attention_bias(bucket).to(dtype)  # [T, T, H]
        self.max_len = max_len
        # self-attention cache: per layer, keys/values of the shared positions ([E, H, d_kv] each, one per
        # position); per later position, a [max_rows, layers, 2 (key, value), H, d_kv] block and its spare
        self.shared: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in self.blocks]
        self.max_rows = max_rows
        self.beam: list[torch.Tensor] = []  # current block of each per-beam position (first `rows` rows used)
        self.spare: list[torch.Tensor] = []
        self.n_beam = 0
        self.t = 0
        self.n_ex = n_ex
        self.chunk_rows = chunk_rows
        self.scale = getattr(model.config, "scale_decoder_outputs", getattr(model.config, "tie_word_embeddings", True))

    def hidden(self, tokens: torch.Tensor, groups: torch.Tensor | None = None, beam_rows: torch.Tensor | None = None,
               commit: bool = True) -> torch.Tensor:
        """Feed one token per row; the final hidden states ``[rows, d_model]`` (rows ordered example-major).

        By default the rows are the current hypotheses (``n_ex * width``) and
        their keys/values join the cache. With ``commit=False`` the step is a
        look-ahead that leaves the cache alone, over any subset of
        hypotheses: ``groups`` (example of each group of rows, ``None``: all
        examples) and ``beam_rows`` (each row's current hypothesis, ``None``:
        all of them in order); every group has the same number of rows.
        """
        out = None
        for rows, h in self._steps(tokens, groups, beam_rows, commit):
            if out is None:
                out = torch.empty(len(tokens), h.shape[1], dtype=h.dtype)
            out[rows] = h
        return out

    def log_probs(self, tokens: torch.Tensor, columns: torch.Tensor, lm_chunk: int = 256, **step) -> torch.Tensor:
        """Feed one token per row; log-probabilities ``[rows, C]`` of the tokens ``columns [rows, C]``.

        The LM head and the log-softmax over the full vocabulary run on
        ``lm_chunk`` rows at a time, so the ``[lm_chunk, vocab]`` logits stay
        in cache instead of a ``[rows, vocab]`` array going through memory
        twice. ``step`` goes to :meth:`hidden` (look-ahead over
        a subset of rows).
        """
        out = torch.empty(columns.shape, dtype=torch.float32)
        head, bias = self.model.lm_head.weight, self.model.lm_head.bias
        for rows, h in self._steps(tokens, **step):
            for lo in range(0, len(h), lm_chunk):
                logits = torch.nn.functional.linear(h[lo : lo + lm_chunk], head, bias).float()
                sel = slice(rows.start + lo, min(rows.stop, rows.start + lo + lm_chunk))
                out[sel] = torch.log_softmax(logits, dim=-1).gather(1, columns[sel])
        return out

    def _steps(self, tokens: torch.Tensor, groups: torch.Tensor | None = None, beam_rows: torch.Tensor | None = None,
               commit: bool = True):
        """The decoder step of :meth:`hidden`, yielding ``(row slice, hidden states)`` per chunk of examples.

        Rows are processed ``chunk_rows`` at a time (whole examples). Smaller
        chunks keep the activations in cache but add per-op overhead; on the
        benchmark's model a single chunk of up to 4,096 rows was fastest.
        """
        rows = len(tokens)
        n_groups = self.n_ex if groups is None else len(groups)
        width = rows // n_groups
        shared_step = commit and self.n_beam == 0 and width == 1  # one hypothesis per example: keep it once
        if shared_step and groups is not None:
            raise AssertionError("a shared step runs over all examples")
        n = self.n_beam
        beam_blocks = self.beam[:n]  # per-beam positions so far: block[row, layer, 0 | 1] = keys | values
        if commit and not shared_step:
            self._new_position(rows, self.dtype)
        if shared_step:  # the new position is shared: one key/value row per example, filled chunk by chunk
            for layer in self.shared:
                layer.append((torch.empty(self.n_ex, self.heads, self.d_kv, dtype=self.dtype),
                              torch.empty(self.n_ex, self.heads, self.d_kv, dtype=self.dtype)))
        per_chunk = max(1, self.chunk_rows // width)
        for g0 in range(0, n_groups, per_chunk):
            g1 = min(n_groups, g0 + per_chunk)
            r0, r1 = g0 * width, g1 * width
            ex = slice(g0, g1) if groups is None else groups[g0:g1]
            if beam_rows is None:
                blocks = [blk[r0:r1] for blk in beam_blocks]
            else:
                blocks = [blk[beam_rows[r0:r1]] for blk in beam_blocks]
            new_block = self.beam[n][r0:r1] if commit and not shared_step else None
            h = self._layers(tokens[r0:r1], ex, g1 - g0, width, blocks, new_block, shared_step)
            yield slice(r0, r1), h
        if commit:
            self.t += 1
            if not shared_step:
                self.n_beam += 1

    def _layers(self, tokens, ex, n_groups, width, blocks, new_block, shared_step) -> torch.Tensor:
        """All decoder layers for the rows of the examples ``ex`` (a slice or index tensor)."""
        F = torch.nn.functional
        rows = len(tokens)
        heads, d_kv = self.heads, self.d_kv
        t = self.t
        bias = self.pos_bias[t, : t + 1].unsqueeze(1)  # [t + 1, 1, H]
        h = self.model.decoder.embed_tokens(tokens)  # [R, d]
        for i, block in enumerate(self.blocks):
            sa_layer, ca_layer, ff_layer = block.layer
            qkv = F.linear(_rms_norm(h, sa_layer.layer_norm), self.qkv_w[i]).view(rows, 3, heads, d_kv)
            q, k, v = qkv.unbind(1)  # [R, H, d_kv]
            shared = self.shared[i]
            if shared_step:
                shared[-1][0][ex] = k
                shared[-1][1][ex] = v
            p = len(shared)
            parts = []
            if p:
                sk = torch.stack([s[0][ex] for s in shared])  # [P, G, H, d_kv]
                sv = torch.stack([s[1][ex] for s in shared])
                qg = q.view(n_groups, width, heads, d_kv)
                parts.append((sk.unsqueeze(2) * qg).sum(-1).view(p, rows, heads))  # [P, R, H]
            if not shared_step:
                parts += [(blk[:, i, 0] * q).sum(-1).unsqueeze(0) for blk in blocks]  # [1, R, H] each
                parts.append((k * q).sum(-1).unsqueeze(0))
                if new_block is not None:
                    new_block[:, i, 0] = k
                    new_block[:, i, 1] = v
            scores = torch.cat(parts) if len(parts) > 1 else parts[0]  # [t + 1, R, H]
            # T5: no 1/sqrt(d); softmax over the key positions (dim 0)
            w = torch.softmax((scores + bias).float(), dim=0).to(h.dtype)
            if p:
                ws = w[:p].view(p, n_groups, width, heads, 1)
                att = (ws * sv.unsqueeze(2)).sum(0).view(rows, heads, d_kv)
            else:
                att = None
            if not shared_step:
                values = [blk[:, i, 1] for blk in blocks] + [v]
                for j, value in enumerate(values):
                    term = w[p + j].unsqueeze(-1) * value
                    att = term if att is None else att.add_(term)
            h = h + F.linear(att.view(rows, heads * d_kv), sa_layer.SelfAttention.o.weight)

            ca = ca_layer.EncDecAttention
            x = F.linear(_rms_norm(h, ca_layer.layer_norm), ca.q.weight)
            q = x.view(n_groups, width, heads, d_kv).transpose(1, 2)  # [G, H, W, d_kv]
            ck, cv = self.cross[i]
            w = torch.softmax(torch.matmul(q, ck[ex]).add_(self.enc_bias[ex]).float(), dim=-1).to(h.dtype)
            h = h + F.linear(torch.matmul(w, cv[ex]).transpose(1, 2).reshape(rows, -1), ca.o.weight)

            h = h + _feed_forward(ff_layer.DenseReluDense, _rms_norm(h, ff_layer.layer_norm))
        h = _rms_norm(h, self.model.decoder.final_layer_norm)
        if self.scale:
            h = h * (self.model.model_dim ** -0.5)
        return h

    def _new_position(self, rows: int, dtype) -> None:
        size = max(rows, self.max_rows or 0)
        shape = (size, len(self.blocks), 2, self.heads, self.d_kv)
        self.beam.append(torch.empty(shape, dtype=dtype))
        self.spare.append(torch.empty(shape, dtype=dtype))

    def reorder(self, rows: torch.Tensor, n_ex: int, old_width: int, new_width: int) -> None:
        """Follow the chosen hypotheses: new row ``r`` takes the per-beam keys/values of old row ``rows[r]``."""
        old_rows = n_ex * old_width
        for j in range(self.n_beam):
            if len(rows) > self.spare[j].shape[0]:  # wider than planned: grow
                self.spare[j] = torch.empty((len(rows),) + self.spare[j].shape[1:], dtype=self.spare[j].dtype)
            torch.index_select(self.beam[j][:old_rows], 0, rows, out=self.spare[j][: len(rows)])
            self.beam[j], self.spare[j] = self.spare[j], self.beam[j]


def _beam_search_batch(model, input_ids, attention_mask, trie, behaviour, start, eos, beam_size, top_k,
                       candidates, length_penalty, impl):
    n_ex = len(input_ids)
    examples = torch.arange(n_ex)
    if impl == "t5":
        dec = _T5StepDecoder(model, input_ids, attention_mask, max_len=trie.depth + 2,
                             max_rows=n_ex * beam_size)
    else:
        dec = _HFCacheDecoder(model, input_ids, attention_mask, n_ex * beam_size)
    node_allowed = None if candidates is None else torch.from_numpy(trie.allowed_nodes(candidates)).to(examples.device)
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
    if impl == "t5" and top_k < width:
        scores = _final_step_pruned(dec, scores, tokens, eos, top_k)
    else:
        rows = n_ex * width
        scores = scores + dec.log_probs(tokens.view(-1), torch.full((rows, 1), eos)).view(n_ex, width)
    scores, order = torch.sort(scores, dim=1, descending=True)
    nodes = torch.gather(nodes, 1, order)
    k = min(top_k, width)
    scores, nodes = scores[:, :k].cpu().numpy(), nodes[:, :k].cpu().numpy()
    leaves = np.where(np.isneginf(scores), -1, nodes)
    items = np.full((n_ex, top_k), -1, dtype=np.int64)
    log_lik = np.full((n_ex, top_k), NEG_INF, dtype=np.float32)
    log_lik[:, :k] = scores
    for e in range(n_ex):
        items[e, :k] = trie.leaf_items(leaves[e], None if candidates is None else candidates[e])
    norm = float(trie.depth + 2) ** length_penalty
    return items, (log_lik / norm).astype(np.float32), log_lik


def _final_step_pruned(dec, scores: torch.Tensor, tokens: torch.Tensor, eos: int, top_k: int) -> torch.Tensor:
    """Final scores ``[E, W]`` of the hypotheses that can reach the top ``top_k``; ``-inf`` for the others.

    Appending ``</s>`` adds ``log p(</s>) <= 0``, so a hypothesis scoring
    below the ``top_k``-th best *final* score already found can never
    overtake it. ``scores`` are sorted best first (``torch.topk``), so the
    first pass decodes ``</s>`` for the first ``top_k`` hypotheses of every
    example only; a second pass takes, for the examples that still need it,
    every hypothesis whose running score is not below that threshold. The
    set of top ``top_k`` final hypotheses and their scores are exactly those
    of decoding ``</s>`` for all ``W`` beams (what ``generate`` does); the
    skipped ones are only known to rank lower.
    """
    n_ex, width = scores.shape
    final = torch.full_like(scores, NEG_INF)
    live = torch.isfinite(scores)
    m = top_k
    cols = torch.arange(m)
    rows = (torch.arange(n_ex)[:, None] * width + cols).view(-1)
    eos_lp = dec.log_probs(tokens.view(-1)[rows], torch.full((len(rows), 1), eos), beam_rows=rows, commit=False)
    final[:, :m] = scores[:, :m] + eos_lp.view(n_ex, m)
    threshold = torch.topk(final, top_k, dim=1).values[:, -1]  # -inf while fewer than top_k are alive
    need = live & (scores >= threshold[:, None])
    need[:, :m] = False
    examples = torch.nonzero(need.any(1)).view(-1)
    if len(examples):
        last = int(need.sum(1).max()) + m  # sorted scores: the needed columns are m .. last - 1
        cols = torch.arange(m, last)
        rows = (examples[:, None] * width + cols).view(-1)
        eos_lp = dec.log_probs(tokens.view(-1)[rows], torch.full((len(rows), 1), eos), groups=examples,
                               beam_rows=rows, commit=False)
        more = scores[examples, m:last] + eos_lp.view(len(examples), last - m)
        final[examples, m:last] = torch.where(live[examples, m:last], more, NEG_INF)
    return final


class T5InternalsChanged(RuntimeError):
    """The installed ``transformers`` no longer has a T5 internal the fast path reads."""


def check_t5_internals(model) -> None:
    """Raise :class:`T5InternalsChanged`, naming the missing attribute and the versions, when the
    installed ``transformers``' T5 lacks what :class:`_T5StepDecoder` and :func:`_t5_encode` read."""
    import transformers

    first = model.decoder.block[0]
    needs = [(model, ("lm_head", "shared", "encoder", "decoder")),
             (model.encoder, ("block", "final_layer_norm", "embed_tokens")),
             (model.decoder, ("block", "final_layer_norm", "embed_tokens")),
             (first.layer[0].SelfAttention, ("q", "k", "v", "o", "n_heads", "key_value_proj_dim",
                                             "relative_attention_bias", "relative_attention_num_buckets",
                                             "relative_attention_max_distance", "_relative_position_bucket")),
             (first.layer[1].EncDecAttention, ("q", "k", "v", "o")),
             (first.layer[0], ("layer_norm",)), (first.layer[2], ("DenseReluDense", "layer_norm"))]
    for module, names in needs:
        for name in names:
            if not hasattr(module, name):
                raise T5InternalsChanged(
                    f"transformers {transformers.__version__}: {type(module).__name__} has no {name!r}, which the "
                    f"fast decoding path reads (tested with transformers {TESTED_TRANSFORMERS}); decode with "
                    f"constrained_beam_search(..., impl='hf') or install transformers {TESTED_TRANSFORMERS}")
