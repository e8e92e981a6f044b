"""data.synthetic.law_scores and lab/benchmarks/synthetic_ceiling.py: the generator's own law ranks the held-out cases of the synthetic world."""
import importlib.util

import numpy as np

from gensar_lib.config import REPO_ROOT, load_profile
from gensar_lib.data.synthetic import law_scores
from gensar_lib.evaluation import evaluate_scorer, held_out

spec = importlib.util.spec_from_file_location("synthetic_ceiling", REPO_ROOT / "lab" / "benchmarks" / "synthetic_ceiling.py")
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


def test_training_successors_are_the_targets_seen_often_enough_after_an_item(tiny_prepared):
    world, train = tiny_prepared.world, tiny_prepared.split.train
    pairs = [(c.history[-1].item, c.target.item) for c in train if c.history]
    once = synthetic_ceiling.training_successors(world, train, min_count=1)
    twice = synthetic_ceiling.training_successors(world, train, min_count=2)
    assert sum(len(n) for n in once.next_items) == len(set(pairs))
    a, b = pairs[0]
    assert b in once.next_items[a]
    assert (b in twice.next_items[a]) == (pairs.count((a, b)) >= 2)
    assert all(set(t) <= set(o) for t, o in zip(twice.next_items, once.next_items))
    assert world.next_items is not once.next_items  # the planted graph is left as it was


def test_the_law_with_learned_successors_stays_above_popularity(tiny_prepared):
    cases, candidates = held_out(tiny_prepared, load_profile("tiny"), "test")
    learned = synthetic_ceiling.training_successors(tiny_prepared.world, tiny_prepared.split.train)
    law = evaluate_scorer(lambda c: law_scores(learned, c), cases, candidates)
    popular = evaluate_scorer(lambda c: np.tile(learned.popularity, (len(c), 1)), cases, candidates)
    assert law["rec"]["sampled"]["HR@10"] > popular["rec"]["sampled"]["HR@10"] + 0.2
