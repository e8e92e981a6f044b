"""Benchmark: how long each learned baseline trains (``gensar_lib.baselines.neural``), alone on this machine.

Run from the repository root, with nothing else running::

    .venv/bin/python lab/benchmarks/learned_baselines.py --dataset ../shared/data/amazon-office --profile small

It prepares the dataset, the semantic item embeddings and the query table (cached in ``$GENSAR_CACHE``), then
trains each learned baseline of the profile's seed as the ``learned_baseline`` stage does (one torch thread:
the same seed gives the same model), without the cache, and prints its training seconds, epochs and best
epoch, with the load average before and after. The target: at most 180 s each on Amazon Office (small).
"""
from __future__ import annotations

import argparse
import os

from gensar_lib.baselines.neural import VARIANTS, query_table, train_learned
from gensar_lib.config import load_profile
from gensar_lib.data.pipeline import prepare_data
from gensar_lib.embeddings import cached_semantic_embeddings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--profile", default="small")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    profile = load_profile(args.profile)
    prepared = prepare_data(args.dataset, profile)
    items = cached_semantic_embeddings(prepared.dataset, profile.embeddings, progress=False)
    queries = query_table(prepared, profile)
    print(f"{prepared.dataset.name}, profile {profile.name}, seed {profile.seed}; load before "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    for name in args.variants.split(","):
        _, log = train_learned(name, prepared, profile, items, queries)
        print(f"{name}: {log['train_seconds']:.1f} s, {log['epochs_run']} epochs, best epoch {log['best_epoch']} "
              f"(validation {max(log['validation']):.4f}); load after {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
