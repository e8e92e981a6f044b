"""A synthetic shop with planted structure; taught in notebook 00_data.

This world is a teaching device, not the paper's data (GenSAR uses Amazon
reviews). Because we plant its structure ourselves, every later notebook can
measure how much of it a method recovers, and tests can assert what holds by
construction. It makes the paper's central tension visible on a CPU: search
needs text, recommendation needs a signal that text does not carry.

Items carry two kinds of structure:

* **Semantic, visible in text.** A hand-written category tree
  (department > category > leaf product type, e.g. Electronics > Audio >
  Headphones). Each leaf has its own words: a type noun, features, the
  department's looks (colours, materials or scents) and brands. Title =
  brand + look + feature + noun + model code; the description names the leaf,
  its category, its department and the item's attributes. Items of one leaf
  read alike, items of different leaves do not.
* **Collaborative, invisible in text.** Bundles (think "projects") are
  ordered chains of leaves from different departments. The items of a leaf
  are split at random among the bundle steps that use that leaf, so two items
  with near-identical text sit in different bundles. Inside a bundle every
  item of step ``s`` leads to every item of step ``s + 1`` (the planted
  transitions). Item popularity is Zipf-like and independent of both.

Users have a semantic taste (a few leaves from one or two departments) and a
collaborative taste (a few bundles). Each step of a sequence is a search with
probability ``search_share``, else a recommendation event:

* recommendation: with probability ``noise`` a uniformly random item; else
  with probability ``collab_strength`` the planted successor of the previous
  item (or the first step of one of the user's bundles when there is none);
  else an item of the same leaf as a recent item, or a popular item of the
  user's taste leaves.
* search: the user wants an item (the planted successor, with probability
  ``collab_strength``; else an item of a taste leaf), writes a lower-case
  query from its leaf's words (``"headphones"``, ``"wireless headphones"``,
  ``"sonix headphones"``), sees the items whose text matches and clicks one,
  preferring items of their own bundles (personalised search).

With ``collab_strength = 0`` neither recommendations nor search clicks look
at bundles, so the collaborative structure carries no signal.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from gensar_lib.config import ConfigError, SyntheticConfig, as_dict
from gensar_lib.data.schema import Dataset, Event, Item, validate

if TYPE_CHECKING:
    from gensar_lib.data.splits import Case

VOCABULARY_FILE = Path(__file__).with_name("synthetic_vocabulary.json")


def load_vocabulary(path: Path = VOCABULARY_FILE) -> dict[str, dict]:
    """The built-in vocabulary (``synthetic_vocabulary.json``): department -> ``looks`` (its colours,
    materials or scents; a category may override them), ``brands`` (shared by its leaves) and
    ``categories`` -> category -> leaf noun -> its features."""
    return json.loads(path.read_text())


VOCABULARY: dict[str, dict] = load_vocabulary()

FIRST_SENTENCES = (
    "A {look} {feature} {noun} from the {category} range of our {department} department.",
    "This {noun} is part of the {category} collection in {department}.",
    "Shop {department} for this {category} essential: a {noun}.",
)
SECOND_SENTENCES = (
    "It comes in {look} and is {feature}.",
    "Key details: {look}, {feature}.",
    "Pick this {feature} {noun} in {look} for everyday use.",
)
THIRD_SENTENCES = (
    "Designed by {brand}, model {code}.",
    "{brand} stands behind every {noun}.",
)

# Behaviour constants the config does not expose (kept readable on purpose).
NOUN_QUERY_SHARE = 0.35  # query is just the noun; else noun + one attribute
BRAND_QUERY_SHARE = 0.15  # of the attribute queries, the attribute is the brand
TEXT_STEP_SHARE = 0.5  # non-collaborative rec: same leaf as a recent item (else popular)
RECENT_WINDOW = 3  # how far back "a recent item" looks
BUNDLE_CLICK_BOOST = 20.0  # search clicks: weight multiplier (x collab_strength) for own-bundle items


@dataclass(frozen=True)
class LeafWords:
    """The words of one leaf product type (one line of the vocabulary)."""

    noun: str
    category: str
    department: str
    features: tuple[str, ...]
    looks: tuple[str, ...]
    brands: tuple[str, ...]

    @property
    def path(self) -> str:
        return f"{self.department} > {self.category} > {self.noun.title()}"


def vocabulary_leaves() -> list[LeafWords]:
    """All built-in leaves, ordered so any prefix spreads over departments and categories."""
    per_department = []
    for department, dept in VOCABULARY.items():
        columns = []
        for category, leaves in dept["categories"].items():
            looks = leaves.get("looks", dept["looks"])
            columns.append([
                LeafWords(noun, category, department, tuple(feats), tuple(looks), tuple(dept["brands"]))
                for noun, feats in leaves.items() if noun != "looks"
            ])
        per_department.append(_interleave(columns))
    return _interleave(per_department)


def _interleave(lists: list[list]) -> list:
    """Round-robin merge: first of each list, then second of each, ..."""
    out = []
    for k in range(max(len(x) for x in lists)):
        out.extend(x[k] for x in lists if k < len(x))
    return out


def tokens(text: str) -> list[str]:
    """Lower-case alphanumeric words, the unit of query matching."""
    return re.findall(r"[a-z0-9]+", text.lower())


# --------------------------------------------------------------------------
# The world and its ground truth.
# --------------------------------------------------------------------------
@dataclass(repr=False)
class SyntheticWorld:
    """The dataset plus the planted ground truth (notebook 00_data).

    Leaves, categories and departments are indices into ``leaf_names``,
    ``category_names`` and ``department_names``; bundle ``b`` is the chain
    of leaves ``bundles[b]`` and ``bundle_items[b][s]`` are its items at step
    ``s``; ``next_items[i]`` are the planted successors of item ``i``.
    """

    dataset: Dataset
    config: SyntheticConfig
    leaves: list[LeafWords]
    leaf_names: list[str]
    category_names: list[str]
    department_names: list[str]
    leaf_category: np.ndarray
    leaf_department: np.ndarray
    item_leaf: np.ndarray
    item_category: np.ndarray
    item_department: np.ndarray
    item_attributes: list[tuple[str, str]]  # (look, feature), lower case
    bundles: list[tuple[int, ...]]
    bundle_items: list[list[np.ndarray]]
    item_bundle: np.ndarray  # -1: in no bundle
    item_step: np.ndarray  # position in its bundle, -1: in no bundle
    next_items: list[np.ndarray]
    popularity: np.ndarray  # sums to 1
    user_leaves: list[np.ndarray]
    user_bundles: list[np.ndarray]
    _relevant: dict[tuple[int, str | None], np.ndarray] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"SyntheticWorld({self.dataset.n_items} items, {self.dataset.n_users} users, "
            f"{len(self.leaf_names)} leaves, {len(self.department_names)} departments, "
            f"{len(self.bundles)} bundles, seed={self.config.seed})"
        )

    @property
    def n_items(self) -> int:
        return self.dataset.n_items

    def leaf_path(self, leaf: int) -> str:
        """Readable 'Department > Category > Leaf' of a leaf index."""
        return self.leaves[leaf].path

    def relevant_items(self, leaf: int, word: str | None = None) -> np.ndarray:
        """Items of a leaf, filtered by an attribute or brand word (lower case)."""
        return self._relevant.get((leaf, word), np.zeros(0, dtype=np.int64))

    def query_words(self, leaf: int) -> list[str]:
        """The attribute and brand words (lower case) that some item of the leaf carries."""
        return sorted(word for (lf, word) in self._relevant if lf == leaf and word is not None)

    def transition_matrix(self) -> sp.csr_matrix:
        """Planted transitions as a 0/1 sparse item x item matrix."""
        rows = np.repeat(np.arange(self.n_items), [len(n) for n in self.next_items])
        cols = np.concatenate(self.next_items) if self.next_items else np.zeros(0, np.int64)
        data = np.ones(len(rows), dtype=np.float32)
        return sp.csr_matrix((data, (rows, cols)), shape=(self.n_items, self.n_items))

    @cached_property
    def _token_index(self) -> dict[str, np.ndarray]:
        index: dict[str, set[int]] = {}
        for i, item in enumerate(self.dataset.items):
            for tok in set(tokens(item.text)):
                index.setdefault(tok, set()).add(i)
        return {tok: np.array(sorted(s), dtype=np.int64) for tok, s in index.items()}

    def matching_items(self, query: str) -> np.ndarray:
        """Items whose text contains every word of the query (the search ground truth)."""
        hits = None
        for tok in set(tokens(query)):
            found = self._token_index.get(tok, np.zeros(0, dtype=np.int64))
            hits = found if hits is None else np.intersect1d(hits, found)
        return np.zeros(0, dtype=np.int64) if hits is None else hits


# --------------------------------------------------------------------------
# Building the world.
# --------------------------------------------------------------------------
def build_synthetic_world(cfg: SyntheticConfig) -> SyntheticWorld:
    """The synthetic world of ``cfg``, identical for the same config (notebook 00_data)."""
    _check(cfg)
    rng = np.random.default_rng(cfg.seed)
    leaves = vocabulary_leaves()[: cfg.n_leaves]
    world = _catalogue(leaves, cfg, rng)
    _plant_bundles(world, cfg, rng)
    world.popularity = _zipf_popularity(world.n_items, cfg.popularity_exponent, rng)
    _draw_tastes(world, cfg, rng)
    users, sequences = _simulate(world, cfg, rng)
    world.dataset = validate(Dataset(
        name="synthetic",
        items=world.dataset.items,
        users=users,
        sequences=sequences,
        source=f"synthetic world (seed {cfg.seed})",
        meta={
            "generator": "gensar_lib.data.synthetic.build_synthetic_world",
            "notebook": "00_data",
            "config": as_dict(cfg),
            "n_leaves": len(leaves),
            "n_departments": len(world.department_names),
            "n_bundles": len(world.bundles),
        },
    ))
    return world


def _check(cfg: SyntheticConfig) -> None:
    """Reject configs the generator cannot honour, naming the field."""
    n_vocab = len(vocabulary_leaves())
    if not 2 <= cfg.n_leaves <= n_vocab:
        raise ConfigError(f"data.synthetic.n_leaves = {cfg.n_leaves}; the vocabulary has 2..{n_vocab}")
    if not 1 <= cfg.items_per_bundle_step <= cfg.items_per_leaf:
        raise ConfigError(
            f"data.synthetic.items_per_bundle_step = {cfg.items_per_bundle_step}; "
            f"needs 1..items_per_leaf ({cfg.items_per_leaf})"
        )
    if not 2 <= cfg.bundle_length <= cfg.n_leaves:
        raise ConfigError(f"data.synthetic.bundle_length = {cfg.bundle_length}; needs 2..n_leaves")
    if cfg.min_length < 3:
        raise ConfigError(f"data.synthetic.min_length = {cfg.min_length}; needs >= 3")


def _catalogue(leaves: list[LeafWords], cfg: SyntheticConfig, rng: np.random.Generator) -> SyntheticWorld:
    """Items with text; the world's other fields are filled in later."""
    categories = list(dict.fromkeys((lw.department, lw.category) for lw in leaves))
    departments = list(dict.fromkeys(lw.department for lw in leaves))
    leaf_category = np.array([categories.index((lw.department, lw.category)) for lw in leaves])
    leaf_department = np.array([departments.index(lw.department) for lw in leaves])

    n_items = len(leaves) * cfg.items_per_leaf
    item_leaf = rng.permutation(np.repeat(np.arange(len(leaves)), cfg.items_per_leaf))
    # raw draws, reduced modulo each leaf's pool size below (pools differ in size)
    looks_i = rng.integers(0, 1 << 30, n_items)
    feats_i = rng.integers(0, 1 << 30, n_items)
    brands_i = rng.integers(0, 1 << 30, n_items)
    templates = rng.integers(0, 6, size=(n_items, 3))
    with_third = rng.random(n_items) < 0.6
    letters = rng.integers(0, 26, size=(n_items, 2))
    digits = rng.integers(100, 1000, n_items)

    items, attributes = [], []
    relevant: dict[tuple[int, str | None], list[int]] = {}
    for i in range(n_items):
        lw = leaves[item_leaf[i]]
        look = lw.looks[looks_i[i] % len(lw.looks)]
        feature = lw.features[feats_i[i] % len(lw.features)]
        brand = lw.brands[brands_i[i] % len(lw.brands)]
        code = f"{chr(65 + letters[i, 0])}{chr(65 + letters[i, 1])}-{digits[i]}"
        items.append(_item(i, lw, look, feature, brand, code, templates[i], bool(with_third[i])))
        attributes.append((look, feature))
        for word in (None, look, feature, brand.lower()):
            relevant.setdefault((int(item_leaf[i]), word), []).append(i)

    empty = np.zeros(0, dtype=np.int64)
    return SyntheticWorld(
        dataset=Dataset(name="synthetic", items=items, users=[], sequences=[]),
        config=cfg,
        leaves=list(leaves),
        leaf_names=[lw.noun for lw in leaves],
        category_names=[c for _, c in categories],
        department_names=departments,
        leaf_category=leaf_category,
        leaf_department=leaf_department,
        item_leaf=item_leaf,
        item_category=leaf_category[item_leaf],
        item_department=leaf_department[item_leaf],
        item_attributes=attributes,
        bundles=[],
        bundle_items=[],
        item_bundle=np.full(n_items, -1),
        item_step=np.full(n_items, -1),
        next_items=[empty] * n_items,
        popularity=np.full(n_items, 1.0 / n_items),
        user_leaves=[],
        user_bundles=[],
        _relevant={k: np.array(v, dtype=np.int64) for k, v in relevant.items()},
    )


def _item(i: int, lw: LeafWords, look: str, feature: str, brand: str, code: str,
          tpl: np.ndarray, with_third: bool) -> Item:
    """One item: title from the leaf's words, description from template sentences."""
    words = dict(look=look, feature=feature, noun=lw.noun, category=lw.category,
                 department=lw.department, brand=brand, code=code)
    title = f"{brand} {look.title()} {feature.title()} {lw.noun.title()} {code}"
    sentences = [FIRST_SENTENCES[tpl[0] % len(FIRST_SENTENCES)],
                 SECOND_SENTENCES[tpl[1] % len(SECOND_SENTENCES)]]
    if with_third:
        sentences.append(THIRD_SENTENCES[tpl[2] % len(THIRD_SENTENCES)])
    description = " ".join(s.format(**words) for s in sentences)
    return Item(id=f"S{i:05d}", title=title, description=description, brand=brand,
                categories=(lw.department, lw.category, lw.noun.title()))


def _plant_bundles(world: SyntheticWorld, cfg: SyntheticConfig, rng: np.random.Generator) -> None:
    """Bundles as leaf chains; each leaf's items split among the steps that use it."""
    chains = _bundle_chains(world.leaf_department, cfg, rng)
    leaf_pool = [list(rng.permutation(np.flatnonzero(world.item_leaf == leaf)))
                 for leaf in range(len(world.leaf_names))]
    bundle_items = []
    for b, chain in enumerate(chains):
        steps = []
        for s, leaf in enumerate(chain):
            members = np.array(sorted(leaf_pool[leaf][: cfg.items_per_bundle_step]), dtype=np.int64)
            del leaf_pool[leaf][: cfg.items_per_bundle_step]
            world.item_bundle[members] = b
            world.item_step[members] = s
            steps.append(members)
        bundle_items.append(steps)
        for s in range(len(chain) - 1):
            for i in steps[s]:
                world.next_items[i] = steps[s + 1]
    world.bundles = chains
    world.bundle_items = bundle_items


def _bundle_chains(leaf_department: np.ndarray, cfg: SyntheticConfig,
                   rng: np.random.Generator) -> list[tuple[int, ...]]:
    """Chains of distinct leaves (distinct departments where possible), leaves used evenly."""
    slots = np.full(len(leaf_department), cfg.items_per_leaf // cfg.items_per_bundle_step)
    distinct_departments = len(np.unique(leaf_department)) >= cfg.bundle_length
    chains = []
    while True:
        chain: list[int] = []
        for _ in range(cfg.bundle_length):
            ok = slots > 0
            ok[chain] = False
            if distinct_departments:
                ok &= ~np.isin(leaf_department, leaf_department[chain])
            if not ok.any():
                break
            score = np.where(ok, slots + 0.5 * rng.random(len(slots)), -1.0)
            chain.append(int(np.argmax(score)))
        if len(chain) < cfg.bundle_length:
            return chains
        slots[chain] -= 1
        chains.append(tuple(int(x) for x in rng.permutation(chain)))


def _zipf_popularity(n_items: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Zipf-like popularity over a random ranking of the items (sums to 1)."""
    ranks = rng.permutation(n_items) + 1.0
    pop = ranks ** -exponent
    return pop / pop.sum()


def _draw_tastes(world: SyntheticWorld, cfg: SyntheticConfig, rng: np.random.Generator) -> None:
    """Each user's taste leaves (one or two departments) and bundles, drawn independently."""
    n_dept = len(world.department_names)
    for _ in range(cfg.n_users):
        depts = rng.choice(n_dept, size=min(2, n_dept), replace=False)
        pool = np.flatnonzero(np.isin(world.leaf_department, depts))
        k = min(cfg.leaves_per_user, len(pool))
        world.user_leaves.append(np.sort(rng.choice(pool, size=k, replace=False)))
        k = min(cfg.bundles_per_user, len(world.bundles))
        chosen = rng.choice(len(world.bundles), size=k, replace=False) if k else np.zeros(0, np.int64)
        world.user_bundles.append(np.sort(chosen))


# --------------------------------------------------------------------------
# Simulating users.
# --------------------------------------------------------------------------
def _pick(rng: np.random.Generator, items: np.ndarray, weights: np.ndarray) -> int:
    """One item drawn with probability proportional to its weight."""
    cum = np.cumsum(weights)
    k = int(np.searchsorted(cum, rng.random() * cum[-1], side="right"))
    return int(items[min(k, len(items) - 1)])


@dataclass
class _User:
    """One simulated user's tastes and history."""

    taste_leaves: np.ndarray
    taste_items: np.ndarray
    start_items: np.ndarray  # first-step items of the user's bundles
    in_bundles: np.ndarray  # bool per item
    history: list[int] = field(default_factory=list)


class _Simulator:
    """Draws events one step at a time from a world's planted structure."""

    def __init__(self, world: SyntheticWorld, cfg: SyntheticConfig, rng: np.random.Generator):
        self.w, self.cfg, self.rng = world, cfg, rng
        self.leaf_items = [np.flatnonzero(world.item_leaf == leaf) for leaf in range(len(world.leaves))]

    def user(self, u: int) -> _User:
        w = self.w
        taste_items = np.concatenate([self.leaf_items[leaf] for leaf in w.user_leaves[u]])
        starts = [w.bundle_items[b][0] for b in w.user_bundles[u]]
        start_items = np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)
        return _User(w.user_leaves[u], taste_items, start_items, np.isin(w.item_bundle, w.user_bundles[u]))

    def collab_next(self, user: _User) -> int | None:
        """The planted successor of the last item, or the start of one of the user's bundles."""
        last = user.history[-1] if user.history else None
        nxt = self.w.next_items[last] if last is not None else ()
        if len(nxt):
            return _pick(self.rng, nxt, self.w.popularity[nxt])
        if len(user.start_items):
            return _pick(self.rng, user.start_items, self.w.popularity[user.start_items])
        return None

    def rec_step(self, user: _User) -> int:
        rng, w = self.rng, self.w
        if rng.random() < self.cfg.noise:
            return int(rng.integers(w.n_items))
        if rng.random() < self.cfg.collab_strength:
            item = self.collab_next(user)
            if item is not None:
                return item
        if user.history and rng.random() < TEXT_STEP_SHARE:
            recent = user.history[-RECENT_WINDOW:]
            pool = self.leaf_items[w.item_leaf[recent[int(rng.integers(len(recent)))]]]
        else:
            pool = user.taste_items
        weights = w.popularity[pool] * (pool != user.history[-1]) if user.history else w.popularity[pool]
        return _pick(rng, pool, weights if weights.sum() > 0 else w.popularity[pool])

    def search_step(self, user: _User) -> tuple[int, str]:
        rng, w, cfg = self.rng, self.w, self.cfg
        if rng.random() < cfg.noise:
            target = int(rng.integers(w.n_items))
            return target, self.query_for(target)
        if rng.random() < cfg.collab_strength:
            target = self.collab_next(user)
            if target is not None:
                return target, self.query_for(target)
        leaf = int(user.taste_leaves[int(rng.integers(len(user.taste_leaves)))])
        anchor = _pick(rng, self.leaf_items[leaf], np.ones(len(self.leaf_items[leaf])))
        query = self.query_for(anchor)
        relevant = w.matching_items(query)
        weights = w.popularity[relevant] * (1.0 + BUNDLE_CLICK_BOOST * cfg.collab_strength
                                            * user.in_bundles[relevant])
        return _pick(rng, relevant, weights), query

    # The exact laws of the two steps above, item by item (kept beside them: change one, change both).

    def _pool_law(self, user: _User, pool: np.ndarray) -> np.ndarray:
        """What ``rec_step`` draws from ``pool``: popularity-weighted, the last item excluded."""
        weights = self.w.popularity[pool] * (pool != user.history[-1]) if user.history else self.w.popularity[pool]
        weights = weights if weights.sum() > 0 else self.w.popularity[pool]
        law = np.zeros(self.w.n_items)
        np.add.at(law, pool, weights / weights.sum())
        return law

    def collab_law(self, user: _User) -> np.ndarray | None:
        """The law of :meth:`collab_next` (None where it returns None)."""
        last = user.history[-1] if user.history else None
        pool = self.w.next_items[last] if last is not None else ()
        pool = pool if len(pool) else user.start_items
        if not len(pool):
            return None
        law = np.zeros(self.w.n_items)
        np.add.at(law, pool, self.w.popularity[pool] / self.w.popularity[pool].sum())
        return law

    def _branch_weights(self, user: _User) -> tuple[np.ndarray | None, float]:
        """The collaborative law and the probability left for the taste branch after noise and it."""
        collab = self.collab_law(user)
        rest = 1.0 - self.cfg.noise
        return collab, rest * (1.0 - self.cfg.collab_strength) if collab is not None else rest

    def rec_law(self, user: _User) -> np.ndarray:
        """The probability of each item being :meth:`rec_step`'s draw for ``user``."""
        w, cfg = self.w, self.cfg
        collab, rest = self._branch_weights(user)
        law = np.full(w.n_items, cfg.noise / w.n_items)
        if collab is not None:
            law += (1.0 - cfg.noise) * cfg.collab_strength * collab
        if user.history:
            recent = user.history[-RECENT_WINDOW:]
            for r in recent:
                law += rest * TEXT_STEP_SHARE / len(recent) * self._pool_law(user, self.leaf_items[w.item_leaf[r]])
            rest *= 1.0 - TEXT_STEP_SHARE
        return law + rest * self._pool_law(user, user.taste_items)

    @cached_property
    def _query_forms(self) -> tuple[np.ndarray, ...]:
        """Per item: its noun, "brand noun", "look noun" and "feature noun" (what :meth:`query_for` writes)."""
        w = self.w
        nouns = [w.leaf_names[leaf] for leaf in w.item_leaf]
        brands = [f"{item.brand.lower()} {noun}" for item, noun in zip(w.dataset.items, nouns)]
        looks = [f"{a[0]} {noun}" for a, noun in zip(w.item_attributes, nouns)]
        features = [f"{a[1]} {noun}" for a, noun in zip(w.item_attributes, nouns)]
        return tuple(np.array(x) for x in (nouns, brands, looks, features))

    def query_law(self, query: str) -> np.ndarray:
        """The probability that :meth:`query_for` writes ``query`` for each item."""
        nouns, brands, looks, features = self._query_forms
        other = 1.0 - NOUN_QUERY_SHARE
        return (NOUN_QUERY_SHARE * (nouns == query) + other * BRAND_QUERY_SHARE * (brands == query)
                + other * (1.0 - BRAND_QUERY_SHARE) * 0.5 * ((looks == query) + (features == query)))

    def search_law(self, user: _User, query: str) -> np.ndarray:
        """The probability of each item being :meth:`search_step`'s click, given that it wrote ``query``."""
        w, cfg = self.w, self.cfg
        collab, rest = self._branch_weights(user)
        q_item = self.query_law(query)
        joint = cfg.noise / w.n_items * q_item
        if collab is not None:
            joint += (1.0 - cfg.noise) * cfg.collab_strength * collab * q_item
        q_taste = np.mean([q_item[self.leaf_items[leaf]].mean() for leaf in user.taste_leaves])
        relevant = w.matching_items(query)
        if q_taste > 0 and len(relevant):
            weights = w.popularity[relevant] * (1.0 + BUNDLE_CLICK_BOOST * cfg.collab_strength * user.in_bundles[relevant])
            np.add.at(joint, relevant, rest * q_taste * weights / weights.sum())
        if joint.sum() <= 0:
            raise ValueError(f"the synthetic world never writes the query {query!r}")
        return joint / joint.sum()

    def query_for(self, item: int) -> str:
        """A lower-case query naming the item's leaf and maybe one of its attributes or brand."""
        rng, w = self.rng, self.w
        noun = w.leaf_names[w.item_leaf[item]]
        if rng.random() < NOUN_QUERY_SHARE:
            return noun
        if rng.random() < BRAND_QUERY_SHARE:
            return f"{w.dataset.items[item].brand.lower()} {noun}"
        return f"{w.item_attributes[item][int(rng.integers(2))]} {noun}"

    def sequence(self, u: int) -> list[Event]:
        user = self.user(u)
        events = []
        for t, is_search in enumerate(self.step_kinds()):
            if is_search:
                item, query = self.search_step(user)
                events.append(Event(time=t, item=item, query=query))
            else:
                item = self.rec_step(user)
                events.append(Event(time=t, item=item))
            user.history.append(item)
        return events

    def step_kinds(self) -> np.ndarray:
        """Search (True) or recommendation per step: >= 3 rec and, if any search, >= 3 search."""
        rng, cfg = self.rng, self.cfg
        length = cfg.min_length + int(rng.poisson(max(cfg.mean_length - cfg.min_length, 0.0)))
        kinds = rng.random(length) < cfg.search_share
        if cfg.search_share > 0:
            _flip_until(kinds, False, min(3, length - 3), rng)
        _flip_until(kinds, True, 3, rng)
        return kinds


def _flip_until(kinds: np.ndarray, value: bool, at_least: int, rng: np.random.Generator) -> None:
    """Flip random entries equal to ``value`` until ``not value`` occurs ``at_least`` times."""
    missing = at_least - int((kinds != value).sum())
    if missing > 0:
        kinds[rng.choice(np.flatnonzero(kinds == value), size=missing, replace=False)] = not value


def _simulate(world: SyntheticWorld, cfg: SyntheticConfig,
              rng: np.random.Generator) -> tuple[list[str], list[list[Event]]]:
    """User ids and their event sequences."""
    sim = _Simulator(world, cfg, rng)
    users = [f"U{u:05d}" for u in range(cfg.n_users)]
    return users, [sim.sequence(u) for u in range(cfg.n_users)]


def next_event_law(world: SyntheticWorld, user: int, history: list[int], query: str | None = None) -> np.ndarray:
    """The generator's probability of each item as ``user``'s next event after ``history`` (item indices): a
    recommendation when ``query`` is None, else the click of a search for ``query``.

    It knows the user's planted tastes, which a model can only infer from the history, so ranking the
    held-out cases by it bounds what any model can score on this world (notebook 05_t5_training,
    ``lab/benchmarks/synthetic_ceiling.py``).
    """
    sim = _Simulator(world, world.config, np.random.default_rng(0))
    state = sim.user(user)
    state.history = list(history)
    return sim.rec_law(state) if query is None else sim.search_law(state, query)


def law_scores(world: SyntheticWorld, cases: list[Case]) -> np.ndarray:
    """[n_cases, n_items]: each case's :func:`next_event_law` (notebook 05_t5_training), a score matrix for
    ``evaluation.evaluate_scorer``."""
    return np.stack([next_event_law(world, c.user, [e.item for e in c.history], c.target.query) for c in cases])


# --------------------------------------------------------------------------
# Measuring recovery of the planted structure.
# --------------------------------------------------------------------------
def transition_rate(dataset: Dataset, world: SyntheticWorld, task: str | None = "rec") -> float:
    """Share of ``task`` events (None: all) whose item is a planted successor of the previous item.

    Pairs are consecutive events of the full sequence (notebook 00_data); chance
    is about the average number of successors over the number of items.
    """
    prev, nxt = [], []
    for seq in dataset.sequences:
        for a, b in zip(seq, seq[1:]):
            if task is None or b.task == task:
                prev.append(a.item)
                nxt.append(b.item)
    if not prev:
        return 0.0
    hits = np.asarray(world.transition_matrix()[np.array(prev), np.array(nxt)]).ravel()
    return float(hits.mean())


def neighbour_precision(neighbours: np.ndarray, labels: np.ndarray) -> float:
    """Mean share of each item's neighbours (rows of item indices) sharing its label (notebook 00_data).

    Use leaf labels (``item_leaf``) for semantic neighbours and bundle labels
    (``item_bundle``) for collaborative ones; items labelled -1 are skipped.
    """
    neighbours = np.asarray(neighbours)
    labels = np.asarray(labels)
    keep = labels >= 0
    same = labels[neighbours[keep]] == labels[keep, None]
    return float(same.mean()) if same.size else 0.0
