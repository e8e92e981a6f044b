"""Benchmark: what checking the cache's manifests (sizes and SHA-256 of every file) costs a cached run.

Run from the repository root::

    OMP_NUM_THREADS=1 GENSAR_PROFILE=tiny .venv/bin/python lab/benchmarks/integrity.py

It loads what a cached ``python -m gensar_lib train`` loads (prepared data, embeddings, the GenSAR
RQ-VAE and identifiers, the T5), building what is missing first, in ``$GENSAR_CACHE`` (default
``data/cache``). Then, ``REPEATS`` times, it times that whole load and, in the same process, the time
spent in :func:`gensar_lib.artifacts.check_folder`. The last line is exactly ``integrity cost: <ratio>``,
the checks' share of the load time in the fastest repeat (the target: under 0.05).
"""
from __future__ import annotations

import os
import time

from gensar_lib import artifacts
from gensar_lib.config import load_profile
from gensar_lib.data.pipeline import prepare_data
from gensar_lib.rqvae import all_identifiers
from gensar_lib.t5.stage import train_generative

REPEATS = 5


def load_all() -> None:
    profile = load_profile()
    prepared = prepare_data("synthetic", profile)
    gensar = all_identifiers(prepared, profile, kinds=("gensar",), progress=False)["gensar"]
    train_generative(prepared, gensar.ids, profile, progress=False, vectors=gensar.vectors)


def main() -> None:
    checked = [0.0]
    check = artifacts.check_folder

    def timed_check(folder):  # the cache calls it through the module, so this sees every check
        start = time.perf_counter()
        try:
            return check(folder)
        finally:
            checked[0] += time.perf_counter() - start

    load_all()  # builds what is missing; afterwards every stage is cached
    artifacts.check_folder = timed_check
    rows = []
    for _ in range(REPEATS):
        checked[0] = 0.0
        start = time.perf_counter()
        load_all()
        rows.append((time.perf_counter() - start, checked[0]))
        print(f"load {rows[-1][0]:.3f} s, of which manifest checks {rows[-1][1]:.4f} s "
              f"({rows[-1][1] / rows[-1][0]:.2%})")
    total, checks = min(rows)
    print(f"profile {load_profile().name}, cache {artifacts.ArtifactCache().root}, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"integrity cost: {checks / total:.4f}")


if __name__ == "__main__":
    main()
