"""Benchmark: batched constrained beam search vs ``generate(prefix_allowed_tokens_fn=trie)``.

Run from the repository root with no arguments::

    OMP_NUM_THREADS=1 .venv/bin/python lab/benchmarks/decoding.py

Model and data (:func:`benchmark_setup`): the trained T5 of the pipeline
(``gensar_lib.t5.stage.train_generative``), profile ``tiny`` trained briefly
(2 epochs over a seeded sample of 5,000 instructions), on the Amazon Office
data when ``data/amazon-office`` exists (``python -m gensar_lib fetch office``), the
synthetic world otherwise. Every stage is cached in ``data/cache`` (the
default ``ArtifactCache()``): the first run builds the data, embeddings,
RQ-VAE identifiers and the model (a few minutes on 1-2 cores), later runs
reuse them and take well under a minute. The queries are the evaluation
prompts of the first 64 recommendation test cases; the items are decoded as
their collaborative identifiers; candidate lists are the test candidate rows.
The script prints which model, data and cache folder it used.

Two settings, beam 30, top-10, the same model and inputs for both paths:

* candidates -- each query may only decode the items of its own 100-item list
  (the paper's protocol);
* full       -- the full catalogue.

For each, both paths run after one warm-up (best of ``REPEATS_OURS`` wall
times for ours, ``REPEATS_REF`` for the reference; the best process CPU
times are printed too, which a busy shared machine disturbs less), the
results are checked to agree (same top-10 items, scores within 1e-4), and the
per-query times are printed. The last line is exactly ``speedup: <ratio>``:
the prefix-function path's wall time over ours, the smaller of the two
settings' ratios.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gensar_lib.decoding import ItemTrie, constrained_beam_search, generate_reference  # noqa: E402

BEAM = 30
TOP = 10
REPEATS_OURS = 5
REPEATS_REF = 3
SCORE_TOL = 1e-4
# One intra-op thread by default: on a small shared machine two OpenMP threads fighting other
# processes make every small op tens of times slower and the timings meaningless.
THREADS = int(os.environ.get("BENCH_THREADS", "1"))


OFFICE_DIR = Path(__file__).resolve().parents[2] / "data" / "amazon-office"  
N_QUERIES = 64
TASK = "rec"  # next-item recommendation: collaborative identifiers, <rec_item>


def benchmark_profile():
    """The tiny profile, trained briefly so that a cold build takes a few minutes on 1-2 cores."""
    from gensar_lib.config import load_profile

    tiny = load_profile("tiny")
    return replace(
        tiny,
        train=replace(tiny.train, max_steps=300),  # about 2 epochs' worth of 5,000 examples
        eval=replace(tiny.eval, max_eval_users=20),
    )


def benchmark_setup():
    """(model, inputs, codes, behaviour token, candidates, description) for the benchmark.

    The trained T5 of the pipeline (``gensar_lib.t5.stage.train_generative``
    with the default ``ArtifactCache()``, so it lives in ``data/cache`` and a
    second run reuses it), on the Amazon Office data when it is found beside
    the checkout (``data/amazon-office``), the synthetic world
    otherwise. Profile: ``tiny`` with a budget of 300 optimiser steps (batches of
    32 drawn from all instructions) and 20 validation users (:func:`benchmark_profile`). The
    queries are the evaluation prompts (``evaluation_instructions``) of the
    first ``N_QUERIES`` recommendation test cases; their candidate lists are
    the matching rows of ``prepared.candidates["test"]``; the codes are the
    collaborative identifiers (``GenerativeModel.codes("rec")``).
    """
    from gensar_lib.data.pipeline import prepare_data
    from gensar_lib.instructions import evaluation_instructions
    from gensar_lib.rqvae import all_identifiers
    from gensar_lib.t5.stage import train_generative

    profile = benchmark_profile()
    spec = str(OFFICE_DIR) if (OFFICE_DIR / "Office.item.json").exists() else "synthetic"
    prepared = prepare_data(spec, profile)
    ids = all_identifiers(prepared, profile, kinds=("gensar",), progress=False)["gensar"].ids
    gen = train_generative(prepared, ids, profile, progress=False)
    rows = [i for i, c in enumerate(prepared.split.test) if c.task == TASK][:N_QUERIES]
    cases = [prepared.split.test[i] for i in rows]
    sources = [ins.source for ins in evaluation_instructions(cases, ids, profile.train.history_length,
                                                             profile.train.prompts)]
    enc = gen.tokenizer(sources, return_tensors="pt", padding=True, truncation=True,
                        max_length=profile.train.max_source_length)
    candidates = prepared.candidates["test"][rows]
    codes = gen.codes(TASK)
    data = "Amazon Office (" + spec + ")" if spec != "synthetic" else "the synthetic world (no Office data found)"
    description = (
        f"model: trained T5 from gensar_lib.t5.stage.train_generative, profile {profile.name!r} "
        f"({profile.train.max_steps} steps of {profile.train.batch_size}; d_model "
        f"{gen.model.config.d_model}, {gen.model.config.num_layers}+{gen.model.config.num_decoder_layers} layers, "
        f"vocab {gen.model.config.vocab_size}), cached at {gen.folder}\n"
        f"data: {data}; {len(rows)} recommendation test prompts (up to {enc['input_ids'].shape[1]} tokens), "
        f"collaborative IDs of {codes.shape[1]} tokens for {len(codes)} items, "
        f"{candidates.shape[1]}-candidate test lists"
    )
    inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    return gen.model, inputs, codes, gen.behaviour_token(TASK), candidates, description


def _best_time(fn, repeats: int):
    """(last result, best wall time, best process CPU time) over ``repeats`` calls."""
    result, wall, cpu = None, float("inf"), float("inf")
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return result, wall, cpu


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
    torch.set_num_threads(THREADS)
    t0 = time.perf_counter()
    model, batch, codes, behaviour, candidates, description = benchmark_setup()  # may train: needs autograd
    torch.set_grad_enabled(False)
    print(description)
    from gensar_lib.artifacts import ArtifactCache

    print(f"setup (data, identifiers, trained model; cached under {ArtifactCache().root}): "
          f"{time.perf_counter() - t0:.1f} s")
    n_queries = len(batch["input_ids"])
    print(f"torch threads: {torch.get_num_threads()} (BENCH_THREADS); {n_queries} queries, {len(codes)} items, "
          f"beam {BEAM}, vocab {model.config.vocab_size}")
    trie = ItemTrie(codes)  # built once, reused by every call
    ratios = {}
    all_agree = True
    for name, cands in [("candidates", candidates), ("full", None)]:
        def ours(impl="auto"):
            return constrained_beam_search(model, batch["input_ids"], batch["attention_mask"], trie, behaviour,
                                           BEAM, top_k=TOP, candidates=cands, impl=impl)

        def ref():
            return generate_reference(model, batch["input_ids"], batch["attention_mask"], trie, behaviour,
                                      BEAM, top_k=TOP, candidates=cands)

        ours()  # warm-up
        res_ours, t_ours, c_ours = _best_time(ours, REPEATS_OURS)
        res_hf, t_hf, c_hf = _best_time(lambda: ours("hf"), REPEATS_REF)
        res_ref, t_ref, c_ref = _best_time(ref, REPEATS_REF)
        differ, gap = _agreement(res_ours, res_ref)
        differ_hf, gap_hf = _agreement(res_hf, res_ref)
        all_agree &= differ == 0 and gap <= SCORE_TOL and differ_hf == 0 and gap_hf <= SCORE_TOL
        ratios[name] = t_ref / t_ours
        label = f"{cands.shape[1]}-candidate lists" if cands is not None else "full catalogue"

        def ms(seconds: float) -> str:
            return f"{1000 * seconds / n_queries:.2f}"

        print(f"[{name}] {label}: generate(prefix_allowed_tokens_fn) {ms(t_ref)} ms/query (CPU {ms(c_ref)}), "
              f"constrained_beam_search {ms(t_ours)} ms/query (CPU {ms(c_ours)}), x{ratios[name]:.1f} "
              f"(CPU x{c_ref / c_ours:.1f}); top-{TOP} differs on {differ}/{n_queries} queries, "
              f"max score gap {gap:.2e}")
        print(f"[{name}]   (same search through the model's forward + EncoderDecoderCache, impl='hf': "
              f"{ms(t_hf)} ms/query (CPU {ms(c_hf)}), x{t_ref / t_hf:.1f}; top-{TOP} differs on {differ_hf}, "
              f"max score gap {gap_hf:.2e})")
    if not all_agree:
        print("WARNING: the two implementations disagree")
    print(f"speedup: {min(ratios.values()):.2f}")
    return 0 if all_agree else 1


if __name__ == "__main__":
    raise SystemExit(main())
