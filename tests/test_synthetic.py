"""The synthetic world (notebook 00_data): determinism, schema, and the planted structure."""
from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from gensar_lib.config import ConfigError, SyntheticConfig, check_profile, load_profile
from gensar_lib.data.schema import validate
from gensar_lib.data.synthetic import (
    build_synthetic_world,
    neighbour_precision,
    tokens,
    transition_rate,
    vocabulary_leaves,
)

SMALL = SyntheticConfig(n_users=200, items_per_leaf=9, n_leaves=16, mean_length=12.0, min_length=8)
FULL_VOCAB = SyntheticConfig(n_users=40, items_per_leaf=12, n_leaves=64, mean_length=10.0, min_length=8)


@pytest.fixture(scope="module")
def world():
    return build_synthetic_world(SMALL)


@pytest.fixture(scope="module")
def full_world():
    return build_synthetic_world(FULL_VOCAB)


def _phrase_in(phrase: str, text: str) -> bool:
    return re.search(rf"\b{re.escape(phrase)}\b", text.lower()) is not None


# ---------------------------------------------------------------- determinism, schema
def test_same_seed_gives_identical_world(world):
    again = build_synthetic_world(SMALL)
    assert again.dataset.items == world.dataset.items
    assert again.dataset.sequences == world.dataset.sequences
    assert again.dataset.users == world.dataset.users
    assert np.array_equal(again.item_bundle, world.item_bundle)
    assert again.bundles == world.bundles


def test_different_seed_gives_different_world(world):
    other = build_synthetic_world(replace(SMALL, seed=1))
    assert other.dataset.items != world.dataset.items
    assert other.dataset.sequences != world.dataset.sequences
    assert not np.array_equal(other.item_bundle, world.item_bundle)


def test_dataset_passes_validate_and_is_labelled(world):
    ds = validate(world.dataset)
    assert ds.name == "synthetic"
    assert ds.source == f"synthetic world (seed {SMALL.seed})"
    assert ds.meta["config"]["n_users"] == SMALL.n_users
    assert all(re.fullmatch(r"S\d{5}", it.id) for it in ds.items)
    for i, it in enumerate(ds.items):
        leaf = world.item_leaf[i]
        assert it.categories == (
            world.department_names[world.item_department[i]],
            world.category_names[world.item_category[i]],
            world.leaf_names[leaf].title(),
        )
        assert world.leaf_path(leaf) == " > ".join(it.categories)
    for seq in ds.sequences:
        assert [ev.time for ev in seq] == list(range(len(seq)))


def test_tiny_profile_builds_and_validates():
    cfg = load_profile("tiny").data.synthetic
    w = build_synthetic_world(cfg)
    assert w.dataset.n_users == cfg.n_users
    assert w.dataset.n_items == cfg.n_leaves * cfg.items_per_leaf
    validate(w.dataset)


# ---------------------------------------------------------------- vocabulary and text
def test_vocabulary_is_big_and_spread_over_departments():
    leaves = vocabulary_leaves()
    assert len(leaves) >= 48
    departments = {lw.department for lw in leaves}
    assert 6 <= len(departments) <= 8
    assert len({lw.noun for lw in leaves}) == len(leaves)
    # any prefix spreads over departments: the first k leaves use min(k, #departments) of them
    for k in (4, 8, 16):
        assert len({lw.department for lw in leaves[:k]}) == min(k, len(departments))
    for lw in leaves:
        assert not set(lw.features) & set(lw.looks), lw.noun


def test_every_item_names_its_own_leaf_noun_and_no_other(full_world):
    nouns = full_world.leaf_names
    for i, item in enumerate(full_world.dataset.items):
        own = nouns[full_world.item_leaf[i]]
        assert _phrase_in(own, item.title) and _phrase_in(own, item.description), item
        others = [n for n in nouns if n != own and _phrase_in(n, item.text)]
        assert not others, (item, others)


def test_text_matching_equals_planted_relevance(full_world):
    """A query 'word noun' matches exactly the leaf's items with that attribute or brand."""
    w = full_world
    for leaf, noun in enumerate(w.leaf_names):
        leaf_items = np.flatnonzero(w.item_leaf == leaf)
        assert np.array_equal(w.matching_items(noun), leaf_items), noun
        words = w.query_words(leaf)
        assert len(words) >= 3
        for word in words:
            expected = w.relevant_items(leaf, word)
            assert len(expected) and set(expected) <= set(leaf_items)
            assert np.array_equal(w.matching_items(f"{word} {noun}"), expected), (word, noun)


def test_search_queries_name_the_clicked_item(world):
    n_search = 0
    for _, ev in world.dataset.events("search"):
        n_search += 1
        item = world.dataset.items[ev.item]
        assert ev.query == ev.query.lower()
        assert set(tokens(ev.query)) <= set(tokens(item.text)), (ev.query, item.text)
        assert _phrase_in(world.leaf_names[world.item_leaf[ev.item]], ev.query)
        assert ev.item in world.matching_items(ev.query)
    assert n_search > 0
    attribute_queries = [ev.query for _, ev in world.dataset.events("search") if len(ev.query.split()) > 1]
    assert attribute_queries, "some queries carry an attribute"


# ---------------------------------------------------------------- planted collaborative structure
def test_bundles_are_chains_of_leaves_across_departments(world):
    cfg = SMALL
    slots = cfg.n_leaves * (cfg.items_per_leaf // cfg.items_per_bundle_step)
    assert len(world.bundles) >= 0.8 * slots / cfg.bundle_length
    for b, chain in enumerate(world.bundles):
        assert len(chain) == cfg.bundle_length
        assert len(set(world.leaf_department[list(chain)])) == cfg.bundle_length
        for s, leaf in enumerate(chain):
            members = world.bundle_items[b][s]
            assert len(members) == cfg.items_per_bundle_step
            assert (world.item_leaf[members] == leaf).all()
            assert (world.item_bundle[members] == b).all() and (world.item_step[members] == s).all()
            expected_next = world.bundle_items[b][s + 1] if s + 1 < len(chain) else []
            for i in members:
                assert sorted(world.next_items[i]) == sorted(expected_next)
    unbundled = world.item_bundle == -1
    assert all(len(world.next_items[i]) == 0 for i in np.flatnonzero(unbundled))
    # near-identical items (one leaf) are split among several bundles
    spread = [len(set(world.item_bundle[(world.item_leaf == leaf) & ~unbundled]))
              for leaf in range(len(world.leaf_names))]
    assert min(spread) >= 2


def test_bundles_are_invisible_in_text(full_world):
    w = full_world
    X = TfidfVectorizer().fit_transform([it.text for it in w.dataset.items])
    rng = np.random.default_rng(0)

    def mean_cos(a, b):
        return float(np.asarray(X[a].multiply(X[b]).sum(axis=1)).mean())

    bundle_a, bundle_b = [], []
    for steps in w.bundle_items:
        for s in range(len(steps)):
            for t in range(s + 1, len(steps)):
                pairs = np.array(np.meshgrid(steps[s], steps[t])).reshape(2, -1)
                bundle_a.extend(pairs[0])
                bundle_b.extend(pairs[1])
    a, b = rng.integers(w.n_items, size=(2, 20000))
    other_leaf = w.item_leaf[a] != w.item_leaf[b]
    other_dept = w.item_department[a] != w.item_department[b]
    same_leaf = (w.item_leaf[a] == w.item_leaf[b]) & (a != b)
    bundle_sim = mean_cos(bundle_a, bundle_b)
    random_sim = mean_cos(a[other_leaf], b[other_leaf])
    assert bundle_sim <= random_sim + 0.01
    assert abs(bundle_sim - mean_cos(a[other_dept], b[other_dept])) < 0.005
    assert mean_cos(a[same_leaf], b[same_leaf]) > 3 * random_sim
    # within a leaf, sharing a bundle does not make two items read more alike
    in_bundle = same_leaf & (w.item_bundle[a] >= 0) & (w.item_bundle[b] >= 0)
    together = in_bundle & (w.item_bundle[a] == w.item_bundle[b])
    apart = in_bundle & (w.item_bundle[a] != w.item_bundle[b])
    assert together.sum() >= 20 and apart.sum() >= 100
    assert abs(mean_cos(a[together], b[together]) - mean_cos(a[apart], b[apart])) < 0.05


def _rec_pairs(world):
    prev, nxt = [], []
    for seq in world.dataset.sequences:
        for x, y in zip(seq, seq[1:]):
            if y.task == "rec":
                prev.append(x.item)
                nxt.append(y.item)
    return np.array(prev), np.array(nxt)


def _chance_rate(world, seed=0):
    """Transition rate with the next items shuffled across all pairs (same marginals)."""
    prev, nxt = _rec_pairs(world)
    m = world.transition_matrix()
    rng = np.random.default_rng(seed)
    return float(np.mean([np.asarray(m[prev, rng.permutation(nxt)]).mean() for _ in range(5)]))


def test_recommendations_follow_transitions_only_when_collaborative():
    strong = build_synthetic_world(replace(SMALL, collab_strength=0.9))
    none = build_synthetic_world(replace(SMALL, collab_strength=0.0))
    rate_strong, chance_strong = transition_rate(strong.dataset, strong), _chance_rate(strong)
    rate_none, chance_none = transition_rate(none.dataset, none), _chance_rate(none)
    assert rate_strong > 0.5 and rate_strong > 20 * chance_strong
    assert rate_none <= 2 * chance_none + 0.01
    # hand-computed rate agrees with the helper
    prev, nxt = _rec_pairs(strong)
    hits = [j in set(strong.next_items[i]) for i, j in zip(prev, nxt)]
    assert np.isclose(np.mean(hits), rate_strong)


def test_search_clicks_prefer_own_bundles_only_when_collaborative():
    def own_bundle_share(w):
        clicks = [(u, ev.item) for u, ev in w.dataset.events("search")]
        return np.mean([w.item_bundle[i] in w.user_bundles[u] for u, i in clicks])

    strong = build_synthetic_world(replace(SMALL, collab_strength=0.9))
    none = build_synthetic_world(replace(SMALL, collab_strength=0.0))
    base = SMALL.bundles_per_user / len(none.bundles)  # chance that a random item's bundle is the user's
    assert own_bundle_share(strong) > 0.5
    assert own_bundle_share(none) < 1.5 * base + 0.02


# ---------------------------------------------------------------- users and sizes
def test_every_user_has_enough_events(world):
    for seq in world.dataset.sequences:
        n_rec = sum(ev.query is None for ev in seq)
        assert len(seq) >= SMALL.min_length
        assert n_rec >= 3 and len(seq) - n_rec >= 3
    lengths = [len(s) for s in world.dataset.sequences]
    assert abs(np.mean(lengths) - SMALL.mean_length) < 1.0
    n_search = sum(1 for _ in world.dataset.events("search"))
    assert abs(n_search / sum(lengths) - SMALL.search_share) < 0.08


def test_user_tastes_are_exposed(world):
    assert len(world.user_leaves) == len(world.user_bundles) == SMALL.n_users
    for leaves, bundles in zip(world.user_leaves, world.user_bundles):
        assert len(leaves) == SMALL.leaves_per_user and len(set(world.leaf_department[leaves])) <= 2
        assert len(bundles) == SMALL.bundles_per_user
        assert ((0 <= bundles) & (bundles < len(world.bundles))).all()


def test_size_knobs_change_sizes():
    base = SyntheticConfig(n_users=30, items_per_leaf=6, n_leaves=8, mean_length=9.0, min_length=8)
    w = build_synthetic_world(base)
    assert (w.dataset.n_users, w.dataset.n_items) == (30, 48)
    assert build_synthetic_world(replace(base, n_users=50)).dataset.n_users == 50
    assert build_synthetic_world(replace(base, n_leaves=12)).dataset.n_items == 72
    assert build_synthetic_world(replace(base, items_per_leaf=9)).dataset.n_items == 72
    longer = build_synthetic_world(replace(base, mean_length=20.0))
    def mean_length(x):
        return np.mean([len(s) for s in x.dataset.sequences])

    assert mean_length(longer) > mean_length(w) + 5
    assert len(build_synthetic_world(replace(base, bundle_length=3)).bundles[0]) == 3


def test_popularity_is_zipf_like(world):
    pop = world.popularity
    assert np.isclose(pop.sum(), 1.0) and (pop > 0).all()
    assert pop.max() / np.median(pop) > 10
    flat = build_synthetic_world(replace(SMALL, popularity_exponent=0.0)).popularity
    assert np.allclose(flat, 1.0 / len(flat))


def test_neighbour_precision_against_leaves(world):
    labels = world.item_leaf
    same = np.array([np.flatnonzero(labels == labels[i])[:3] for i in range(world.n_items)])
    assert neighbour_precision(same, labels) == 1.0
    shifted = np.roll(np.arange(world.n_items), 1)[:, None]
    assert neighbour_precision(shifted, labels) < 0.5


def test_impossible_configs_are_rejected():
    profile = load_profile("tiny")
    for change in ({"n_leaves": 65}, {"items_per_bundle_step": 11}, {"bundle_length": 30},
                   {"bundles_per_user": 0}, {"popularity_exponent": -1.0}):
        synthetic = replace(profile.data.synthetic, **change)
        bad = replace(profile, data=replace(profile.data, synthetic=synthetic))
        with pytest.raises(ConfigError):
            check_profile(bad)
    with pytest.raises(ConfigError, match="n_leaves"):
        build_synthetic_world(replace(SMALL, n_leaves=len(vocabulary_leaves()) + 1))


def test_config_leaf_limit_matches_vocabulary():
    profile = load_profile("tiny")
    full = replace(profile.data.synthetic, n_leaves=len(vocabulary_leaves()))
    check_profile(replace(profile, data=replace(profile.data, synthetic=full)))  # accepted
    assert build_synthetic_world(replace(full, n_users=5)).dataset.n_items == full.n_leaves * full.items_per_leaf


# ---------------------------------------------------------------- the generator's exact law
def _draws(world, user: int, history: list[int], n: int, search: bool) -> list:
    """``n`` draws of the simulator's next step for ``user`` after ``history`` (items, or (item, query))."""
    from gensar_lib.data.synthetic import _Simulator

    sim = _Simulator(world, world.config, np.random.default_rng(7))
    state = sim.user(user)
    state.history = list(history)
    return [sim.search_step(state) if search else sim.rec_step(state) for _ in range(n)]


def _tv(a: np.ndarray, b: np.ndarray) -> float:
    return 0.5 * float(np.abs(a - b).sum())


@pytest.mark.parametrize("cut", [0, 5])
def test_rec_law_is_what_the_simulator_draws(world, cut):
    from gensar_lib.data.synthetic import next_event_law

    history = [e.item for e in world.dataset.sequences[3][:cut]]
    law = next_event_law(world, 3, history)
    assert law.shape == (world.n_items,) and law.sum() == pytest.approx(1.0)
    freq = np.bincount(_draws(world, 3, history, 20000, search=False), minlength=world.n_items) / 20000
    other = next_event_law(world, 4, [e.item for e in world.dataset.sequences[4][:6]])
    assert _tv(freq, law) < 0.04 < _tv(freq, other)


def test_search_law_is_what_the_simulator_draws_given_the_query(world):
    from collections import Counter

    from gensar_lib.data.synthetic import next_event_law

    history = [e.item for e in world.dataset.sequences[5][:6]]
    draws = _draws(world, 5, history, 20000, search=True)
    query, n = Counter(q for _, q in draws).most_common(1)[0]
    assert n > 1000
    freq = np.bincount([i for i, q in draws if q == query], minlength=world.n_items) / n
    law = next_event_law(world, 5, history, query)
    assert law.sum() == pytest.approx(1.0) and set(np.flatnonzero(freq)) <= set(np.flatnonzero(law))
    blind = next_event_law(world, 5, history)  # the recommendation law ignores the query
    assert _tv(freq, law) < 0.04 < _tv(freq, blind)
    with pytest.raises(ValueError, match="never writes the query"):
        next_event_law(world, 5, history, "no such query")
