"""Diagnosis: does a fresh small T5 learn to predict the FIRST identifier code from the prompt?

Run from the repository root::

    .venv/bin/python lab/benchmarks/first_code.py [--dataset synthetic | FOLDER] [--mix NRIP:1,NSIP:1]
        [--clip 1.0] [--history 5] [--window 0] [--steps 800] [--lr 3e-3] [--prompts paraphrases]
        [--seed 0] [--threads 2]

The identifiers' later codes are nearly determined by the earlier ones, so a model learns them from
the identifiers alone; only the prompt (the query, the last items) predicts the first code. This
script trains a fresh model of the ``small`` profile without dropout with
:func:`gensar_lib.t5.train.train` (GenSAR identifiers, the training instructions of ``--mix``;
default: every family, as ``TaskMix()``) and prints, for every 200 steps, :func:`gensar_lib.t5.model.position_nll` of the first two codes on 300 validation prompts
of each task, next to a uniform guess (``log codebook_size``) and to a smoothed lookup table from
the last recommended item's first code (recommendation) or from the query (search) to the target's
first code, fitted on the training cases: what a model that reads the prompt can at least reach.

It is the experiment behind lab/LOG.md's "why the small models sit near chance" rows; it does not
use the artifact cache for the model, so each run trains from scratch (1-3 min of training for 800 steps
on synthetic with 2 threads).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402


def lookup_nll(train: list[tuple[object, str]], test: list[tuple[object, str]], k: int, alpha: float = 0.5) -> float:
    """Held-out NLL of a table p(y | x), smoothed towards the (add-one) marginal with weight ``alpha * k``."""
    table: dict[object, Counter] = defaultdict(Counter)
    marginal = Counter(y for _, y in train)
    for x, y in train:
        table[x][y] += 1
    total = sum(marginal.values())
    nll = 0.0
    for x, y in test:
        row = table.get(x, Counter())
        prior = (marginal[y] + 1) / (total + k)
        nll -= math.log((row[y] + alpha * k * prior) / (sum(row.values()) + alpha * k))
    return nll / len(test)


def first_code_pairs(cases: list, ids, task: str) -> list[tuple[object, str]]:
    """(predictor, target's first code): the last recommended item's first code, or the query."""
    out = []
    for case in cases:
        if case.task != task:
            continue
        if task == "rec":
            recs = [e for e in case.history if e.query is None]
            if not recs:
                continue
            out.append((ids.collaborative[recs[-1].item][0], ids.collaborative[case.target.item][0]))
        else:
            out.append((case.target.query, ids.semantic[case.target.item][0]))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="synthetic")
    p.add_argument("--mix", default=None, help="task-mix weights, e.g. NRIP:1,NSIP:1 (default: TaskMix())")
    p.add_argument("--clip", type=float, default=1.0, help="max gradient norm; 0: no clipping")
    p.add_argument("--history", type=int, default=5)
    p.add_argument("--window", type=int, default=0, help="length-sorted windows of batches (0: plain shuffle)")
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--prompts", default="paraphrases", help="instruction templates: paraphrases or compact")
    p.add_argument("--seed", type=int, default=None, help="the profile's seed (default: the small profile's)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from gensar_lib.config import load_profile
    from gensar_lib.data.pipeline import prepare_data
    from gensar_lib.t5.batches import collate, encode_pairs
    from gensar_lib.t5.model import build_model, position_nll
    from gensar_lib.t5.tokenizer import behaviour_and_identifier_tokens, train_tokenizer
    from gensar_lib.t5.train import train
    from gensar_lib.instructions import TaskMix, evaluation_instructions, training_instructions
    from gensar_lib.rqvae import all_identifiers
    from gensar_lib.t5.stage import tokenizer_corpus

    profile = load_profile("small")
    data = prepare_data(args.dataset, profile)
    ids = all_identifiers(data, profile, kinds=("gensar",), progress=False)["gensar"].ids
    if args.seed is not None:  # the instructions', the model's and the batches' seed; the same identifiers
        profile = dataclasses.replace(profile, seed=args.seed)
    mix = TaskMix({k: float(v) for k, v in (part.split(":") for part in args.mix.split(","))}) if args.mix else None
    pairs = [(i.source, i.target) for i in training_instructions(
        data.dataset, data.split.train, ids, args.history, mix, profile.seed, args.prompts)]
    tokenizer = train_tokenizer(tokenizer_corpus(data, pairs), profile.model.vocab_size,
                                behaviour_and_identifier_tokens(ids.vocabulary))
    model = build_model(dataclasses.replace(profile.model, dropout_rate=0.0), tokenizer, profile.seed)
    valid = evaluation_instructions(data.split.valid, ids, args.history, args.prompts)
    probes = {}
    k = profile.quantize.codebook_size
    for family, task in (("NRIP", "rec"), ("NSIP", "search")):
        rows = [(i.source, i.target) for i in valid if i.task == family][:300]
        v = encode_pairs(tokenizer, rows, profile.train.max_source_length, profile.train.max_target_length)
        table = lookup_nll(first_code_pairs(data.split.train, ids, task), first_code_pairs(data.split.valid, ids, task), k)
        probes[family] = (collate(v.sources, v.targets), table)
    print(f"{args.dataset}: {len(pairs):,} training instructions, mix {mix.weights if mix else 'TaskMix()'}, "
          f"clip {args.clip}, history {args.history}, window {args.window}, lr {args.lr}, seed {profile.seed}, "
          f"{args.prompts} prompts; uniform first code "
          f"{math.log(k):.2f} nats; lookup table " + ", ".join(f"{f} {t:.2f}" for f, (_, t) in probes.items()))
    cfg = dataclasses.replace(profile.train, lr=args.lr, grad_clip=args.clip, length_window=args.window,
                              max_steps=args.steps, eval_every=200, checkpoint_every=0)
    rounds: list[dict[str, list[float]]] = []

    def probe(m) -> float:
        """The validation 'score' of a round: minus the mean first-code loss; printed afterwards."""
        rounds.append({family: position_nll(m, b) for family, (b, _) in probes.items()})
        return -sum(nll[1] for nll in rounds[-1].values()) / len(probes)

    with tempfile.TemporaryDirectory() as out:
        result = train(model, tokenizer, pairs, cfg, out, probe, profile.seed, progress=False, resume=False)
    for entry, nll in zip(result.history, rounds):
        parts = [f"{family} first code {v[1]:.2f}, second {v[2]:.2f}" for family, v in nll.items()]
        print(f"step {entry['step']}: " + " | ".join(parts) + f" ({entry['train_seconds']:.0f} s of training)")


if __name__ == "__main__":
    main()
