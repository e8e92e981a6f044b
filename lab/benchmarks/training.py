"""Benchmark: the small profile's T5 training step against the step the suite used before, same process.

Run from the repository root::

    .venv/bin/python lab/benchmarks/training.py [--dataset FOLDER | synthetic] [--threads 2] [--batches 15]

The data are the Amazon Office folder ``data/amazon-office`` (``python -m gensar_lib fetch office``) when it is there, else the
synthetic world; always the ``small`` profile's identifiers, tokenizer and fresh model (seed 0).

* **before**: paraphrased prompts with 5 events of each task whose entries are joined with "; "
  (the paper's format), batches cut from a plain shuffled order and padded to their longest prompt,
  and the plain ``T5ForConditionalGeneration`` loss (``model(**batch).loss``), backward, clipping,
  AdamW.
* **now**: the profile's prompts (``train.prompts``, ``train.history_length``; entries joined by a
  space: ``instructions.HISTORY_SEPARATOR``), batches from ``generative.epoch_batches`` with the
  profile's ``length_window`` (length-sorted windows), and ``t5.train._train_step`` with the
  profile's settings.

Both use the profile's task mix and one tokenizer trained on both prompt sets. Shorter prompts
(compact templates, a shorter history) are not exact: they change what the model reads, and
``lab/benchmarks/first_code.py`` and the budget curves measure what they do to learning.

Both train the same fresh model from the same weights, alternately (ABAB...) so that load changes
hit both alike. Reported: examples/s, and tokens/s counted as real (non-padding) source + target
tokens and as padded tokens. The padding cut is exact: the same batch padded to its own longest
row and padded 40 columns wider gives the same loss at the same weights (printed, eval mode).
One lever is timed on its own: PyTorch's fused attention (SDPA, the default of transformers for T5)
against the eager attention, same weights and batches. The last line is
``speedup: <now examples/s / before examples/s>``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from gensar_lib.config import REPO_ROOT, load_profile  # noqa: E402

OFFICE_DIR = REPO_ROOT / "data" / "amazon-office"  
BEFORE_HISTORY = 5  # the history length of the paper-style prompts the suite trained on before


def training_pairs(prepared, ids, profile, separator: str, prompts: str, history_length: int
                   ) -> list[tuple[str, str]]:
    """All training pairs of the profile's task mix, in a prompt style, history entries joined by ``separator``."""
    from gensar_lib import instructions

    saved = instructions.HISTORY_SEPARATOR
    instructions.HISTORY_SEPARATOR = separator
    try:
        return [(i.source, i.target) for i in instructions.training_instructions(
            prepared.dataset, prepared.split.train, ids, history_length,
            instructions.TaskMix.of(profile.train.task_mix), profile.seed, prompts)]
    finally:
        instructions.HISTORY_SEPARATOR = saved


def timed(step, batches) -> tuple[float, int, int, int]:
    """Seconds, examples, real tokens and padded tokens of running ``step`` on ``batches``."""
    examples = real = padded = 0
    start = time.perf_counter()
    for batch in batches:
        step(batch)
        examples += batch["input_ids"].shape[0]
        real += int(batch["attention_mask"].sum()) + int((batch["labels"] != -100).sum())
        padded += batch["input_ids"].numel() + batch["labels"].numel()
    return time.perf_counter() - start, examples, real, padded


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default=str(OFFICE_DIR) if (OFFICE_DIR / "Office.item.json").exists() else "synthetic")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batches", type=int, default=15, help="batches per timed block (3 blocks of each)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from gensar_lib.data.pipeline import prepare_data
    from gensar_lib.t5.batches import collate, encode_pairs, epoch_batches, epoch_order
    from gensar_lib.t5.model import build_model, response_loss
    from gensar_lib.t5.tokenizer import behaviour_and_identifier_tokens, train_tokenizer
    from gensar_lib.t5.train import _make_optimizer, _train_step
    from gensar_lib.rqvae import all_identifiers
    from gensar_lib.t5.stage import tokenizer_corpus

    profile = load_profile("small")
    cfg = profile.train
    prepared = prepare_data(args.dataset, profile)
    ids = all_identifiers(prepared, profile, kinds=("gensar",), progress=False)["gensar"].ids
    before_pairs = training_pairs(prepared, ids, profile, "; ", "paraphrases", BEFORE_HISTORY)
    now_pairs = training_pairs(prepared, ids, profile, " ", cfg.prompts, cfg.history_length)
    tokenizer = train_tokenizer(tokenizer_corpus(prepared, before_pairs + now_pairs), profile.model.vocab_size,
                                behaviour_and_identifier_tokens(ids.vocabulary))
    before = encode_pairs(tokenizer, before_pairs, cfg.max_source_length, cfg.max_target_length)
    now = encode_pairs(tokenizer, now_pairs, cfg.max_source_length, cfg.max_target_length)

    n = 3 * (args.batches + 2)
    order = epoch_order(len(before), profile.seed, 0).numpy()
    before_batches = [collate([before.sources[i] for i in rows], [before.targets[i] for i in rows])
                      for rows in (order[k * cfg.batch_size:(k + 1) * cfg.batch_size] for k in range(n))]
    plan = epoch_batches([len(s) for s in now.sources], cfg.batch_size, profile.seed, 0, cfg.length_window)
    now_batches = [collate([now.sources[i] for i in rows], [now.targets[i] for i in rows]) for rows in plan[:n]]

    model = build_model(profile.model, tokenizer, profile.seed)
    start_state = {k: v.clone() for k, v in model.state_dict().items()}

    # exactness of the padding cut: the same batch, padded wider, gives the same loss
    model.eval()
    batch = now_batches[0]
    wide = {k: torch.nn.functional.pad(v, (0, 40), value=0) for k, v in batch.items() if k != "labels"}
    wide["labels"] = batch["labels"]
    with torch.no_grad():
        tight_loss, wide_loss = float(model(**batch).loss), float(model(**wide).loss)
    print(f"same batch, own width {batch['input_ids'].shape[1]} vs +40 padding columns: loss {tight_loss:.6f} vs "
          f"{wide_loss:.6f} (difference {abs(tight_loss - wide_loss):.1e}); response_loss "
          f"{float(response_loss(model, batch).detach()):.6f}")
    model.train()

    optimizer, scheduler = _make_optimizer(model, cfg, 10_000)

    def before_step(b):
        loss = model(**b).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()

    def now_step(b):
        _train_step(model, b, optimizer, scheduler, cfg.grad_clip, cfg.label_smoothing)

    totals = {"before": np.zeros(4), "now": np.zeros(4)}
    load = os.getloadavg()
    for block in range(3):
        for name, step, batches in (("before", before_step, before_batches), ("now", now_step, now_batches)):
            model.load_state_dict(start_state)
            chunk = batches[block * (args.batches + 2):(block + 1) * (args.batches + 2)]
            timed(step, chunk[:2])  # warm-up
            totals[name] += timed(step, chunk[2:])
    print(f"data: {prepared.dataset.name}, {len(now)} training instructions; small profile (d_model "
          f"{profile.model.d_model}, {profile.model.num_layers}+{profile.model.num_layers} layers, batch "
          f"{cfg.batch_size}, length_window {cfg.length_window}); {args.threads} threads; load before "
          f"{load[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    print(f"source tokens per prompt: before {np.mean([len(s) for s in before.sources]):.1f}, "
          f"now {np.mean([len(s) for s in now.sources]):.1f}")
    for name, (seconds, examples, real, padded) in totals.items():
        print(f"{name:<7} {examples / seconds:7.1f} examples/s  {real / seconds:9.0f} real tokens/s  "
              f"{padded / seconds:9.0f} padded tokens/s  ({padded / examples:.1f} padded tokens per example)")
    attention_lever(model, start_state, now_batches[:args.batches + 2], now_step)
    ratio = (totals["now"][1] / totals["now"][0]) / (totals["before"][1] / totals["before"][0])
    print(f"speedup: {ratio:.2f}")


def attention_lever(model, start_state, batches, step) -> None:
    """PyTorch's fused attention (SDPA, transformers' default for T5) against the eager matmul-softmax attention:
    the loss of the same batch at the same weights, and examples/s of the now step (alternating blocks)."""
    from gensar_lib.t5.model import response_loss

    losses, speed = {}, {}
    for block in range(2):
        for impl in ("sdpa", "eager"):
            model.set_attn_implementation(impl)
            model.load_state_dict(start_state)
            if block == 0:  # the loss once per implementation, at the start weights
                with torch.no_grad():
                    losses[impl] = float(response_loss(model.eval(), batches[0]))
                model.train()
            timed(step, batches[:2])  # warm-up
            seconds, examples, _, _ = timed(step, batches[2:])
            speed[impl] = speed.get(impl, 0.0) + examples / seconds / 2
    model.set_attn_implementation("sdpa")
    print(f"attention: sdpa {speed['sdpa']:.1f} examples/s, eager {speed['eager']:.1f} "
          f"(sdpa / eager {speed['sdpa'] / speed['eager']:.2f}); same batch and weights, loss difference "
          f"{abs(losses['sdpa'] - losses['eager']):.1e}")


if __name__ == "__main__":
    main()
