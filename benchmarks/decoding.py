"""Benchmark: batched constrained beam search vs ``generate(prefix_allowed_tokens_fn=trie)``.

Run from the repository root with no arguments::

    .venv/bin/python benchmarks/decoding.py

Two settings, beam 30, the same model and inputs for both implementations:

* candidates -- each query may only decode the items of its own 100-item list
  (the paper's protocol);
* full       -- the full catalogue.

For each, both paths run (best of ``REPEATS`` timings, after one warm-up),
the results are checked to agree (same top-10 items, scores within 1e-4),
and the per-query times are printed. The last line is exactly
``speedup: <ratio>``: the prefix-function path's time over ours, the smaller
of the two settings' ratios.

The model comes from :func:`benchmark_setup` only. For now it is a randomly
initialised T5 the size of the "small" profile; the lead will later switch
``benchmark_setup()`` to the trained model from the pipeline. Nothing else in
this script depends on where the model comes from.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gensar_lib.decoding import ItemTrie, constrained_beam_search, generate_reference  # noqa: E402

BEAM = 30
TOP = 10
N_CANDIDATES = 100
REPEATS = 2
SCORE_TOL = 1e-4
# One intra-op thread by default: on a small shared machine two OpenMP threads fighting other
# processes make every small op tens of times slower and the timings meaningless.
THREADS = int(os.environ.get("BENCH_THREADS", "1"))


def benchmark_setup(seed: int = 0):
    """(model, inputs, codes, behaviour token, candidates) for the benchmark.

    A random T5 of the small profile's size (d_model 128, d_ff 512, 2 + 2
    layers, 4 heads) over ~2,000 text tokens plus 256 identifier tokens;
    2,420 items (the Office catalogue size) with 4-token IDs (two shared
    levels of 64 codes, two specific levels of 64); 64 queries of 48 to 64
    tokens (right-padded); 100 candidate items per query.

    The lead will later switch this function to the trained model (and its
    codes, inputs and candidate lists) from the pipeline; keep the same return
    value and nothing else needs to change.
    """
    from transformers import T5Config, T5ForConditionalGeneration

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    n_special, n_text, n_levels, n_codes = 5, 2000, 4, 64  # <pad> </s> <unk> <rec_item> <src_item>
    behaviour = 3
    id_base = n_special + n_text
    vocab = id_base + n_levels * n_codes
    config = T5Config(
        vocab_size=vocab, d_model=128, d_ff=512, d_kv=32, num_heads=4, num_layers=2, num_decoder_layers=2,
        dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    )
    model = T5ForConditionalGeneration(config).eval()

    n_items = 2420
    seen: set[tuple[int, ...]] = set()
    rows = []
    while len(rows) < n_items:
        code = tuple(int(id_base + level * n_codes + rng.integers(n_codes)) for level in range(n_levels))
        if code not in seen:
            seen.add(code)
            rows.append(code)
    codes = np.array(rows, dtype=np.int64)

    n_queries, max_len = 64, 64
    input_ids = torch.from_numpy(rng.integers(n_special, n_special + n_text, size=(n_queries, max_len)))
    lengths = rng.integers(48, max_len + 1, size=n_queries)
    attention_mask = (torch.arange(max_len)[None, :] < torch.from_numpy(lengths)[:, None]).long()
    input_ids = input_ids * attention_mask  # pad id 0
    input_ids[torch.arange(n_queries), torch.from_numpy(lengths) - 1] = 1  # </s> ends each input
    candidates = np.stack([rng.choice(n_items, N_CANDIDATES, replace=False) for _ in range(n_queries)])
    return model, {"input_ids": input_ids, "attention_mask": attention_mask}, codes, behaviour, candidates


def _best_time(fn, repeats: int = REPEATS):
    result, best = None, float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return result, best


def _agreement(ours, ref, top: int = TOP, tol: float = SCORE_TOL) -> tuple[int, float]:
    """(queries whose top items differ, largest score gap). A swap between items whose scores
    tie within ``tol`` does not count as a difference."""
    differ, gap = 0, 0.0
    for e in range(len(ours.items)):
        a_items, b_items = ours.items[e, :top], ref.items[e, :top]
        a_sc, b_sc = ours.scores[e, :top], ref.scores[e, :top]
        finite = np.isfinite(a_sc) & np.isfinite(b_sc)
        if finite.any():
            gap = max(gap, float(np.abs(a_sc[finite] - b_sc[finite]).max()))
        if not np.array_equal(np.isfinite(a_sc), np.isfinite(b_sc)):
            differ += 1
            continue
        for i in np.flatnonzero(a_items != b_items):
            neighbours = np.abs(b_sc - a_sc[i]) < tol
            if a_items[i] not in b_items[neighbours]:
                differ += 1
                break
    return differ, gap


def main() -> int:
    torch.set_grad_enabled(False)
    torch.set_num_threads(THREADS)
    model, batch, codes, behaviour, candidates = benchmark_setup()
    n_queries = len(batch["input_ids"])
    print(f"torch threads: {torch.get_num_threads()} (BENCH_THREADS); {n_queries} queries, {len(codes)} items, "
          f"beam {BEAM}, vocab {model.config.vocab_size}")
    trie = ItemTrie(codes)  # built once, reused by every call
    ratios = {}
    all_agree = True
    for name, cands in [("candidates", candidates), ("full", None)]:
        def ours(impl="auto"):
            return constrained_beam_search(model, batch["input_ids"], batch["attention_mask"], trie, behaviour,
                                           BEAM, candidates=cands, impl=impl)

        def ref():
            return generate_reference(model, batch["input_ids"], batch["attention_mask"], trie, behaviour,
                                      BEAM, candidates=cands)

        ours()  # warm-up
        res_ours, t_ours = _best_time(ours)
        res_hf, t_hf = _best_time(lambda: ours("hf"))
        res_ref, t_ref = _best_time(ref)
        differ, gap = _agreement(res_ours, res_ref)
        differ_hf, gap_hf = _agreement(res_hf, res_ref)
        all_agree &= differ == 0 and gap <= SCORE_TOL and differ_hf == 0 and gap_hf <= SCORE_TOL
        ratios[name] = t_ref / t_ours
        label = f"{N_CANDIDATES}-candidate lists" if cands is not None else "full catalogue"
        print(f"[{name}] {label}: generate(prefix_allowed_tokens_fn) {1000 * t_ref / n_queries:.2f} ms/query, "
              f"constrained_beam_search {1000 * t_ours / n_queries:.2f} ms/query, x{ratios[name]:.1f}; "
              f"top-{TOP} differs on {differ}/{n_queries} queries, max score gap {gap:.2e}")
        print(f"[{name}]   (same search through the model's forward + EncoderDecoderCache: "
              f"{1000 * t_hf / n_queries:.2f} ms/query, x{t_ref / t_hf:.1f}; top-{TOP} differs on {differ_hf}, "
              f"max score gap {gap_hf:.2e})")
    if not all_agree:
        print("WARNING: the two implementations disagree")
    print(f"speedup: {min(ratios.values()):.2f}")
    return 0 if all_agree else 1


if __name__ == "__main__":
    raise SystemExit(main())
