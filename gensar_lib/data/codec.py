"""Datasets, splits and synthetic worlds as JSON-ready trees with numpy arrays, for the artifact cache.

:func:`gensar_lib.artifacts.write_tree` stores a tree as JSON with its arrays in an ``.npz``: nothing
stored can run code when loaded. Events are stored as columns (times, items, queries) with per-user
offsets, and a case as (user, position of its target, length of its history): a history is always a
prefix of the user's sequence (:func:`gensar_lib.data.splits.history`), so the decoded cases share the
events of the decoded sequences, as the original ones do.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gensar_lib.config import SyntheticConfig
from gensar_lib.data.schema import Dataset, Event, Item
from gensar_lib.data.splits import PARTS, Case, Split
from gensar_lib.data.synthetic import LeafWords, SyntheticWorld


def ragged(arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
    """A list of 1-D arrays of one dtype as their concatenation and ``len + 1`` offsets."""
    dtypes = {a.dtype for a in arrays}
    if len(dtypes) > 1 or any(a.ndim != 1 for a in arrays):
        raise TypeError(f"cannot store arrays of dtypes {sorted(map(str, dtypes))} or not 1-D as one ragged array")
    offsets = np.cumsum([0] + [len(a) for a in arrays], dtype=np.int64)
    values = np.concatenate(arrays) if arrays else np.zeros(0, np.int64)
    return {"values": values, "offsets": offsets}


def unragged(tree: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The arrays :func:`ragged` stored (copies, so that each owns its memory)."""
    values, offsets = tree["values"], tree["offsets"]
    return [values[a:b].copy() for a, b in zip(offsets[:-1], offsets[1:])]


def dataset_tree(ds: Dataset) -> dict[str, Any]:
    """A dataset as a tree: item fields as columns, events as columns with per-user offsets."""
    events = [ev for seq in ds.sequences for ev in seq]
    return {
        "name": ds.name, "source": ds.source, "meta": ds.meta, "users": list(ds.users),
        "items": {"id": [it.id for it in ds.items], "title": [it.title for it in ds.items],
                  "description": [it.description for it in ds.items], "brand": [it.brand for it in ds.items],
                  "categories": [list(it.categories) for it in ds.items]},
        "events": {"offsets": np.cumsum([0] + [len(s) for s in ds.sequences], dtype=np.int64),
                   "time": np.array([ev.time for ev in events], dtype=np.int64),
                   "item": np.array([ev.item for ev in events], dtype=np.int64),
                   "query": [ev.query for ev in events]},
    }


def dataset_from_tree(tree: dict[str, Any]) -> Dataset:
    """The dataset :func:`dataset_tree` stored."""
    it, ev = tree["items"], tree["events"]
    items = [Item(i, t, d, b, tuple(c)) for i, t, d, b, c in
             zip(it["id"], it["title"], it["description"], it["brand"], it["categories"], strict=True)]
    events = [Event(t, i, q) for t, i, q in zip(ev["time"].tolist(), ev["item"].tolist(), ev["query"], strict=True)]
    offsets = ev["offsets"].tolist()
    sequences = [events[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
    if len(sequences) != len(tree["users"]) or offsets[-1] != len(events):
        raise ValueError(f"{len(tree['users'])} users, {len(sequences)} sequences, {len(events)} events")
    return Dataset(tree["name"], items, list(tree["users"]), sequences, tree["source"], tree["meta"])


def split_tree(split: Split, ds: Dataset) -> dict[str, Any]:
    """A split as, per part, each case's user, its target's position in the user's sequence and its
    history's length; a case whose history is not a prefix of the sequence is refused."""
    positions = [{ev: i for i, ev in reversed(list(enumerate(seq)))} for seq in ds.sequences]
    tree: dict[str, Any] = {"protocol": split.protocol}
    for part in PARTS:
        cases = split.part(part)
        rows = []
        for case in cases:
            seq = ds.sequences[case.user]
            if case.target not in positions[case.user] or case.history != tuple(seq[:len(case.history)]):
                raise ValueError(f"cannot store a {part} case of user {case.user}: its target is not in the user's "
                                 "sequence or its history is not a prefix of it")
            rows.append((case.user, positions[case.user][case.target], len(case.history)))
        table = np.array(rows, dtype=np.int64).reshape(len(rows), 3)
        tree[part] = {"user": table[:, 0], "position": table[:, 1], "history": table[:, 2]}
    return tree


def split_from_tree(tree: dict[str, Any], ds: Dataset) -> Split:
    """The split :func:`split_tree` stored, its events those of ``ds``."""
    split = Split(protocol=tree["protocol"])
    for part in PARTS:
        cols = tree[part]
        for user, position, length in zip(cols["user"].tolist(), cols["position"].tolist(),
                                          cols["history"].tolist(), strict=True):
            seq = ds.sequences[user]
            split.part(part).append(Case(user, seq[position], tuple(seq[:length])))
    return split


_WORLD_ARRAYS = ("leaf_category", "leaf_department", "item_leaf", "item_category", "item_department",
                 "item_bundle", "item_step", "popularity")
_WORLD_RAGGED = ("next_items", "user_leaves", "user_bundles")
_WORLD_NAMES = ("leaf_names", "category_names", "department_names")


def world_tree(world: SyntheticWorld) -> dict[str, Any]:
    """A synthetic world without its dataset (stored beside it) as a tree."""
    relevant = list(world._relevant.items())
    return {
        "config": {f: getattr(world.config, f) for f in world.config.__dataclass_fields__},
        "leaves": [{"noun": lw.noun, "category": lw.category, "department": lw.department,
                    "features": list(lw.features), "looks": list(lw.looks), "brands": list(lw.brands)}
                   for lw in world.leaves],
        **{name: list(getattr(world, name)) for name in _WORLD_NAMES},
        **{name: getattr(world, name) for name in _WORLD_ARRAYS},
        **{name: ragged(getattr(world, name)) for name in _WORLD_RAGGED},
        "item_attributes": [list(a) for a in world.item_attributes],
        "bundles": [list(b) for b in world.bundles],
        "bundle_items": [ragged(steps) for steps in world.bundle_items],
        "relevant_keys": [[leaf, word] for (leaf, word), _ in relevant],
        "relevant": ragged([items for _, items in relevant]),
    }


def world_from_tree(tree: dict[str, Any], dataset: Dataset) -> SyntheticWorld:
    """The world :func:`world_tree` stored, with ``dataset`` as its dataset."""
    leaves = [LeafWords(lw["noun"], lw["category"], lw["department"], tuple(lw["features"]), tuple(lw["looks"]),
                        tuple(lw["brands"])) for lw in tree["leaves"]]
    relevant = unragged(tree["relevant"])
    if len(relevant) != len(tree["relevant_keys"]):
        raise ValueError(f"{len(tree['relevant_keys'])} relevance keys but {len(relevant)} item lists")
    return SyntheticWorld(
        dataset=dataset, config=SyntheticConfig(**tree["config"]), leaves=leaves,
        **{name: list(tree[name]) for name in _WORLD_NAMES},
        **{name: tree[name] for name in _WORLD_ARRAYS},
        **{name: unragged(tree[name]) for name in _WORLD_RAGGED},
        item_attributes=[tuple(a) for a in tree["item_attributes"]],
        bundles=[tuple(b) for b in tree["bundles"]],
        bundle_items=[unragged(steps) for steps in tree["bundle_items"]],
        _relevant={(leaf, word): items for (leaf, word), items in zip(tree["relevant_keys"], relevant)},
    )
