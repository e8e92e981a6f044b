"""What tests/test_distributed.py runs, under ``torchrun --nproc_per_node 2`` or as one process.

``python tests/distributed_run.py steps OUT``: two optimiser steps of a small T5 on ten pairs
(batches of 9 then 1 row: uneven shards, then an empty one); each process saves its weights and
step losses to ``OUT/rank<r>.pt``.

``python tests/distributed_run.py cli CHECKPOINT_EVERY ARGS...``: the command line (``python -m
gensar_lib ARGS``) with the tiny profile cut to 60 optimiser steps (validation at 30 and 60).
"""
from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

import torch

from gensar_lib import config

WORDS = ["red pen", "blue stapler", "desk lamp", "paper clips", "black ink", "office chair",
         "sticky notes", "file folder", "glue stick", "white board"]
IDENTIFIERS = [f"<shared_a_{i}>" for i in range(11)]


def steps(out: Path) -> None:
    from gensar_lib.t5.model import build_model
    from gensar_lib.t5.tokenizer import train_tokenizer
    from gensar_lib.t5.train import train

    pairs = [(f"after {WORDS[i]} what comes next?", f"<rec_item><shared_a_{i + 1}>") for i in range(10)]
    tokenizer = train_tokenizer([t for p in pairs for t in p] + WORDS * 3, 120, IDENTIFIERS)
    model = build_model(config.ModelConfig(d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16,
                                           dropout_rate=0.0), tokenizer, seed=0)
    cfg = config.TrainConfig(batch_size=9, max_steps=2, lr=1e-2, warmup_ratio=0.0, length_window=0)
    result = train(model, tokenizer, pairs, cfg, out / "run", seed=0, progress=False, device="cpu")
    rank = int(os.environ.get("RANK", "0"))
    torch.save({"weights": model.state_dict(), "losses": result.step_losses}, out / f"rank{rank}.pt")


def cli(checkpoint_every: int, argv: list[str]) -> int:
    tiny = config.PROFILES["tiny"]

    def short() -> config.Profile:
        p = tiny()
        return replace(p, train=replace(p.train, max_steps=60, eval_every=30, checkpoint_every=checkpoint_every))

    config.PROFILES["tiny"] = short
    from gensar_lib.__main__ import main

    return main(argv)


if __name__ == "__main__":
    torch.set_num_threads(1)
    if sys.argv[1] == "steps":
        steps(Path(sys.argv[2]))
    else:
        sys.exit(cli(int(sys.argv[2]), sys.argv[3:]))
