"""Benchmark: how high can any model score on the synthetic world? The generator's own law as a ranker.

Run from the repository root::

    .venv/bin/python lab/benchmarks/synthetic_ceiling.py [--profile small] [--part test]

Every event of the synthetic world is drawn from a known law (``gensar_lib.data.synthetic``): noise,
the planted successor of the last item, an item of a recent item's leaf, or an item of the user's
taste leaves; a search click also depends on the query. :func:`~gensar_lib.data.synthetic.next_event_law`
gives that law item by item (``law_scores`` for a list of cases; notebook 05 shows it), knowing the
user's planted tastes, which a model must infer from the history. Ranking the held-out cases by it is
the best ranking in expectation, so its HR@10 and NDCG@10 bound what GenSAR, SASRec or BM25 can reach
on the same cases, up to the sampling noise of 500 users.
A second row uses the same law with tastes read from the history instead (the leaves and bundles of the
items the user has touched): it still knows the planted successor graph, which a model must learn from
the training events, but nothing about the user that the prompt does not show.
A third row also replaces the planted successor graph by one read from the training cases (each item's
followers: the targets that came right after it in at least ``--min-count`` training cases, the pairs
NRIP and NSIP train on), so it knows nothing a model could not learn from its training data: it is
what a learner of this law's form reaches, well above the models of the same budget.

It scores the cases notebook 05 and the ablation score (``evaluation.held_out``: the profile's
evaluation users, both protocols) and prints them next to the committed ablation runs
(``figures/06_identifier_ablation/ablation_synthetic_<profile>.json``) where that file exists.
Nothing is trained; it takes seconds once the data stage is cached.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gensar_lib.config import REPO_ROOT, load_profile  # noqa: E402
from gensar_lib.data.pipeline import SYNTHETIC, prepare_data  # noqa: E402
from gensar_lib.data.splits import Case  # noqa: E402
from gensar_lib.data.synthetic import SyntheticWorld, law_scores  # noqa: E402
from gensar_lib.evaluation import Metrics, evaluate_scorer, held_out  # noqa: E402

COLUMNS = (("rec", "sampled"), ("rec", "full"), ("search", "sampled"), ("search", "full"))


def history_tastes(world: SyntheticWorld, cases: list[Case]) -> SyntheticWorld:
    """The world with each case's user's planted tastes replaced by the leaves and bundles of their history."""
    leaves, bundles = list(world.user_leaves), list(world.user_bundles)
    for c in cases:
        items = np.array([e.item for e in c.history], dtype=np.int64)
        leaves[c.user] = np.unique(world.item_leaf[items]) if len(items) else world.user_leaves[c.user]
        touched = world.item_bundle[items]
        bundles[c.user] = np.unique(touched[touched >= 0])
    return dataclasses.replace(world, user_leaves=leaves, user_bundles=bundles)


def training_successors(world: SyntheticWorld, train: list[Case], min_count: int = 2) -> SyntheticWorld:
    """The world with each item's planted successors replaced by the targets that followed it in at least
    ``min_count`` training cases (the case's last history event, then its target)."""
    pairs = Counter((c.history[-1].item, c.target.item) for c in train if c.history)
    followers: list[list[int]] = [[] for _ in range(world.n_items)]
    for (before, after), count in pairs.items():
        if count >= min_count:
            followers[before].append(after)
    return dataclasses.replace(world, next_items=[np.array(sorted(f), dtype=np.int64) for f in followers])


def task_law(worlds: dict[str, SyntheticWorld]):
    """A scorer for ``evaluate_scorer`` that ranks each task's cases by the law of that task's world."""
    return lambda task_cases: law_scores(worlds[task_cases[0].task], task_cases)


def row(name: str, metrics: Metrics) -> str:
    cells = [f"{metrics[t][p]['HR@10']:.3f} / {metrics[t][p]['NDCG@10']:.3f}" for t, p in COLUMNS]
    return f"{name:<28}" + "".join(f"{c:>17}" for c in cells)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="small", help="tiny | small | paper (default: small)")
    p.add_argument("--part", default="test", choices=("test", "valid"))
    p.add_argument("--min-count", type=int, default=2, help="training cases that make a follower (third row)")
    args = p.parse_args()
    profile = load_profile(args.profile)
    prepared = prepare_data(SYNTHETIC, profile)
    cases, candidates = held_out(prepared, profile, args.part)
    world = prepared.world
    ceiling = evaluate_scorer(lambda task_cases: law_scores(world, task_cases), cases, candidates)
    # one user has one test case per task, with the same history up to the other task's target
    read = {task: history_tastes(world, [c for c in cases if c.task == task]) for task in ("rec", "search")}
    reachable = evaluate_scorer(task_law(read), cases, candidates)
    learned = {task: training_successors(w, prepared.split.train, args.min_count) for task, w in read.items()}
    learnable = evaluate_scorer(task_law(learned), cases, candidates)
    print(f"synthetic world, profile {args.profile}, {args.part}: {len(cases)} cases of "
          f"{len({c.user for c in cases})} users; HR@10 / NDCG@10")
    print(f"{'':<28}" + "".join(f"{t + ' ' + q:>17}" for t, q in COLUMNS))
    print(row("generator's law (ceiling)", ceiling))
    print(row("its law, tastes from history", reachable))
    print(row(f"+ successors seen {args.min_count}x in train", learnable))
    runs = REPO_ROOT / "figures" / "06_identifier_ablation" / f"ablation_synthetic_{args.profile}.json"
    if args.part == "test" and runs.exists():
        for run in json.loads(runs.read_text())["runs"]:
            print(row(f"{run['method']} seed {run['seed']}", run["metrics"]))
        print(f"(committed runs: {runs.relative_to(REPO_ROOT)})")


if __name__ == "__main__":
    main()
