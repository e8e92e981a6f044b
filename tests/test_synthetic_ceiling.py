"""data.synthetic.law_scores and benchmarks/synthetic_ceiling.py: the generator's own law ranks the held-out cases of the synthetic world."""
import importlib.util

import numpy as np

from gensar_lib.config import REPO_ROOT, load_profile
from gensar_lib.data.synthetic import law_scores
from gensar_lib.evaluation import evaluate_scorer, held_out

spec = importlib.util.spec_from_file_location("synthetic_ceiling", REPO_ROOT / "benchmarks" / "synthetic_ceiling.py")
synthetic_ceiling = importlib.util.module_from_spec(spec)
spec.loader.exec_module(synthetic_ceiling)


def test_the_law_ranks_far_above_popularity_on_both_tasks(tiny_prepared):
    cases, candidates = held_out(tiny_prepared, load_profile("tiny"), "test")
    world = tiny_prepared.world
    law = evaluate_scorer(lambda c: law_scores(world, c), cases, candidates)
    popular = evaluate_scorer(lambda c: np.tile(world.popularity, (len(c), 1)), cases, candidates)
    for task in ("rec", "search"):
        for protocol in ("sampled", "full"):
            assert law[task][protocol]["HR@10"] > popular[task][protocol]["HR@10"] + 0.2, (task, protocol)


def test_history_tastes_are_what_the_user_touched(tiny_prepared):
    cases, _ = held_out(tiny_prepared, load_profile("tiny"), "test")
    world = tiny_prepared.world
    case = next(c for c in cases if c.task == "rec")
    read = synthetic_ceiling.history_tastes(world, [case])
    items = [e.item for e in case.history]
    assert set(read.user_leaves[case.user]) == set(world.item_leaf[items])
    assert set(read.user_bundles[case.user]) == set(world.item_bundle[items]) - {-1}
    other = next(u for u in range(len(world.user_leaves)) if u != case.user)
    assert read.user_leaves[other] is world.user_leaves[other] and world.user_leaves[case.user] is not read.user_leaves[case.user]
