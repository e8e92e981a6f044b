"""What identifier codes carry (notebook 03_identifiers, section 5; ``structure`` and ``prefix_structure`` in
``identifier_stats.json``).

Per level AMI, NMI and purity with the planted leaf and bundle (synthetic world) or the leaf category
(Amazon), the same for plain residual k-means on each input embedding (the floor), how often item pairs
sharing a prefix share a label, and how often a recommendation target shares its prefix with the previous
item. None of it is part of a cached stage.
"""
from __future__ import annotations

import numpy as np

from gensar_lib.codestats import next_item_prefix_match, pair_agreement, structure_measures
from gensar_lib.config import Profile
from gensar_lib.data.pipeline import PreparedData
from gensar_lib.identifiers import all_level_codes
from gensar_lib.quantize import kmeans, level_names
from gensar_lib.rqvae import Identifiers, ItemEmbeddings


def structure_labels(prepared: PreparedData) -> dict[str, np.ndarray]:
    """Known labels per item: planted ``leaf`` and ``bundle`` (synthetic world), else the leaf
    ``category`` (the full category path; -1 for items without one)."""
    if prepared.world is not None:
        return {"leaf": np.asarray(prepared.world.item_leaf), "bundle": np.asarray(prepared.world.item_bundle)}
    paths = [" > ".join(it.categories) for it in prepared.dataset.items]
    index = {p: i for i, p in enumerate(sorted(set(paths) - {""}))}
    return {"category": np.array([index.get(p, -1) for p in paths], np.int64)}


def kmeans_floor(x: np.ndarray, codebook_size: int, n_levels: int, seed: int, kind: str) -> dict[str, np.ndarray]:
    """Plain residual k-means on an embedding (no encoder, no training): ``{level name: codes}``.

    The floor the trained identifiers are compared with: what the input embedding gives without a
    learned latent. Level l is seeded ``(seed, 0, l)``, as in notebook 02.
    """
    residual, out = np.asarray(x, np.float64), {}
    for level, name in enumerate(level_names(kind, n_levels)):
        km = kmeans(residual, codebook_size, seed=(seed, 0, level))
        residual = residual - km.centroids[km.labels]
        out[name] = km.labels
    return out


def _previous_items(prepared: PreparedData) -> tuple[list[int], list[int]]:
    """(target, last earlier recommendation item) of every recommendation test case that has one."""
    targets, previous = [], []
    for case in prepared.split.test:
        rec = [e for e in case.history if e.task == "rec"]
        if case.task == "rec" and rec:
            targets.append(case.target.item)
            previous.append(rec[-1].item)
    return targets, previous


def _level_sets(emb: ItemEmbeddings, results: dict[str, Identifiers], profile: Profile) -> dict[str, dict]:
    """``{type: {level name: codes}}``: each identifier type (after collision handling) and
    ``kmeans:<embedding>`` for the semantic, collaborative and concatenated embeddings."""
    q = profile.quantize
    sets = {kind: all_level_codes(res.ids) for kind, res in results.items()}
    for name in ("semantic", "collaborative", "concatenated"):
        sets[f"kmeans:{name}"] = kmeans_floor(emb.inputs(name)[0], q.codebook_size,
                                              q.shared_levels + q.specific_levels, profile.seed, name)
    return sets


def identifier_structure(prepared: PreparedData, emb: ItemEmbeddings, results: dict[str, Identifiers],
                         profile: Profile) -> dict:
    """What each level's codes carry: ``{type: {level name: {"ami_<label>", "nmi_<label>",
    "purity_<label>"}}}`` (``structure`` in identifier_stats.json; notebook 03, section 5).

    Labels from :func:`structure_labels`. Types: every identifier type of ``results`` (codes after
    collision handling) and ``kmeans:semantic``, ``kmeans:collaborative``, ``kmeans:concatenated``,
    plain residual k-means on that embedding (:func:`kmeans_floor`, the floor).
    """
    labels = structure_labels(prepared)
    return {kind: {lv: structure_measures(c, labels) for lv, c in codes.items()}
            for kind, codes in _level_sets(emb, results, profile).items()}


def prefix_structure(prepared: PreparedData, emb: ItemEmbeddings, results: dict[str, Identifiers],
                     profile: Profile) -> dict:
    """How prefixes group items (``prefix_structure`` in identifier_stats.json; notebook 03).

    Per type (as :func:`identifier_structure`): ``first_code`` and ``shared_prefix`` (the first
    ``shared_levels`` codes of the semantic ID), each ``{label: pair_agreement}`` (of the item pairs
    with that prefix, the share with the same label, against random pairs: the lift); and
    ``next_item``: the share of recommendation test targets whose shared prefix equals that of the
    user's last earlier recommendation item, with its chance level.
    """
    labels = structure_labels(prepared)
    q = profile.quantize
    n_levels, lm = q.shared_levels + q.specific_levels, q.shared_levels
    targets, previous = _previous_items(prepared)
    out = {}
    for kind, codes in _level_sets(emb, results, profile).items():
        ordered = np.stack(list(codes.values())[:n_levels], 1)  # the semantic ID's levels come first
        out[kind] = {depth_name: {name: pair_agreement(ordered[:, :depth], lab) for name, lab in labels.items()}
                     for depth_name, depth in (("first_code", 1), ("shared_prefix", lm))}
        out[kind]["next_item"] = next_item_prefix_match(ordered[:, :lm], targets, previous)
    return out


def structure_targets(structure: dict) -> list[dict]:
    """The AMI the issue's targets name, each beside its k-means floor (synthetic world only).

    Rows: semantic-only first level vs leaf, collaborative-only first level vs bundle, and the best
    level of each GenSAR ID (semantic ID vs leaf, collaborative ID vs bundle). The floor of a single
    type is its own embedding's first k-means level; of a GenSAR ID, the best level of residual
    k-means on that side's embedding (``floor``) and on the concatenation (``floor_concatenated``).
    """
    lv = structure
    if "ami_leaf" not in next(iter(lv["gensar"].values())):
        return []

    def best(kind: str, label: str, prefixes: tuple[str, ...]) -> tuple[str, float]:
        name = max((n for n in lv[kind] if n.startswith(prefixes)), key=lambda n: lv[kind][n][f"ami_{label}"])
        return name, lv[kind][name][f"ami_{label}"]

    rows = []
    for kind, label in (("semantic", "leaf"), ("collaborative", "bundle")):
        first = f"{kind}_a"
        rows.append({"target": f"{kind}-only {first} vs {label}", "ami": lv[kind][first][f"ami_{label}"],
                     "floor": lv[f"kmeans:{kind}"][first][f"ami_{label}"], "floor_concatenated": None})
    for side, label, specific in (("semantic", "leaf", "semantic_"), ("collaborative", "bundle", "collab_")):
        name, value = best("gensar", label, ("shared_", specific))
        rows.append({"target": f"GenSAR {side} ID best level ({name}) vs {label}", "ami": value,
                     "floor": best(f"kmeans:{side}", label, (side,))[1],
                     "floor_concatenated": best("kmeans:concatenated", label, ("concatenated",))[1]})
    return rows
