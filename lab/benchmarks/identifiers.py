"""Benchmark: the semantic encoder's throughput and the identifier stage (joint RQ-VAE), uncached.

Run from the repository root with no arguments::

    .venv/bin/python lab/benchmarks/identifiers.py [--dataset FOLDER | synthetic]

The dataset defaults to the Amazon Office folder ``data/amazon-office`` (``fetch office``; relative to the
repository root) when it is there, else the synthetic world. Always the ``small`` profile.

What is timed (nothing read from the artifact cache):

* the semantic encoder (``semantic_embeddings``, all-MiniLM-L6-v2 in the small profile) on the first
  ``ENCODE_ITEMS`` items of the catalogue, after loading the model and a short warm-up: items/s;
* the joint RQ-VAE of ``identifier_model("gensar", ...)``, built and trained afresh with
  ``train_rqvae`` (k-means initialisation, then the profile's epochs; each epoch includes the
  per-epoch diagnostic pass over all items);
* identifier assignment with the paper's collision handling (``pipeline.identifiers``).

The item embeddings the RQ-VAE reads come from ``item_embeddings`` (cached by notebook 01; built here
if missing, and that time is reported separately, not counted in the identifier stage).

The last lines compare the whole identifier stage (training + identifiers) with the target: under
60 s on a 2-core CPU.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gensar_lib.config import REPO_ROOT, load_profile  # noqa: E402
from gensar_lib.data.pipeline import prepare_data  # noqa: E402
from gensar_lib.embeddings import load_encoder, semantic_embeddings  # noqa: E402
from gensar_lib.quantize import train_rqvae  # noqa: E402
from gensar_lib.rqvae import (  # noqa: E402
    SELECT,
    IdentifierModel,
    build_rqvae,
    collision_table,
    identifiers,
    item_embeddings,
)

PROFILE = "small"
ENCODE_ITEMS = 500
WARMUP_ITEMS = 16
TARGET_SECONDS = 60.0
OFFICE = REPO_ROOT / "data" / "amazon-office"  
# One intra-op thread by default, as lab/benchmarks/decoding.py: on a small shared machine two threads
# fighting other processes make small ops far slower and the timings meaningless.
THREADS = int(os.environ.get("BENCH_THREADS", "1"))


def default_dataset() -> str:
    return str(OFFICE) if (OFFICE / "Office.item.json").exists() else "synthetic"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default=None, help="a dataset folder or 'synthetic' (default: Office if present)")
    args = p.parse_args(argv)
    torch.set_num_threads(THREADS)
    profile = load_profile(PROFILE)
    dataset = args.dataset or default_dataset()

    t = time.perf_counter()
    prepared = prepare_data(dataset, profile)
    ds = prepared.dataset
    print(f"dataset {ds.name} ({ds.n_items} items), profile {profile.name}, torch threads {THREADS}; "
          f"data ready in {time.perf_counter() - t:.1f} s")

    # -- the semantic encoder ---------------------------------------------------------------
    cfg = profile.embeddings
    t = time.perf_counter()
    encoder = load_encoder(cfg.encoder)
    print(f"encoder {cfg.encoder} loaded in {time.perf_counter() - t:.1f} s "
          f"(max_seq_length {cfg.max_seq_length}, batch {cfg.batch_size})")
    items = ds.items[:ENCODE_ITEMS]
    semantic_embeddings(ds.items[:WARMUP_ITEMS], cfg, progress=False)  # warm-up
    tokens = [len(encoder.tokenizer(it.text, truncation=True, max_length=cfg.max_seq_length)["input_ids"])
              for it in items]
    t = time.perf_counter()
    semantic_embeddings(items, cfg, progress=False)
    encode_s = time.perf_counter() - t
    throughput = len(items) / encode_s
    print(f"semantic encoder: {len(items)} items in {encode_s:.1f} s = {throughput:.1f} items/s "
          f"(mean {np.mean(tokens):.0f} tokens per item after truncation); "
          f"the whole catalogue would take about {ds.n_items / throughput:.0f} s")

    # -- the identifier stage -----------------------------------------------------------------
    t = time.perf_counter()
    emb = item_embeddings(prepared, profile, progress=False)
    print(f"item embeddings (cached or built): {time.perf_counter() - t:.1f} s; "
          f"semantic {emb.semantic.shape}, collaborative {emb.collaborative.shape}")
    q = profile.quantize
    dims = (emb.semantic.shape[1], emb.collaborative.shape[1])

    t_stage = time.perf_counter()
    model = build_rqvae("gensar", dims, profile)
    history = train_rqvae(model, (emb.semantic, emb.collaborative), q, profile.seed, progress=False, select=SELECT)
    train_s = time.perf_counter() - t_stage
    trained = IdentifierModel("gensar", {k: v.detach().clone() for k, v in model.state_dict().items()},
                              history.as_dict(), dims)
    t = time.perf_counter()
    result = identifiers("gensar", prepared, emb, trained, profile)
    ids_s = time.perf_counter() - t
    stage_s = time.perf_counter() - t_stage

    epochs = np.asarray(history.epoch_seconds)
    print(f"joint RQ-VAE: {q.codebook_size} codes, {q.shared_levels}+{q.specific_levels} levels, "
          f"hidden {q.hidden_dims}, {q.epochs} epochs, batch {q.batch_size}")
    print(f"  k-means init      {history.init_seconds:6.2f} s")
    print(f"  per epoch         {1e3 * epochs.mean():6.0f} ms mean, {1e3 * np.median(epochs):.0f} ms median, "
          f"{1e3 * epochs.max():.0f} ms max")
    print(f"  training total    {train_s:6.1f} s (kept epoch {history.selected_epoch})")
    print(f"  identifiers       {ids_s:6.2f} s (assignment + paper collision handling)")
    for row in collision_table({"gensar": result}):
        print(f"  {row['identifier']:<24} collisions {row['before']:.2%} -> {row['after']:.2%}")
    print(f"semantic encoder throughput: {throughput:.1f} items/s")
    print(f"identifier stage total: {stage_s:.1f} s (target < {TARGET_SECONDS:.0f} s on a 2-core CPU): "
          f"{'OK' if stage_s < TARGET_SECONDS else 'OVER'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
