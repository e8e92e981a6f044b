"""The ablation-run stage: one generative method for one seed, trained and scored (cached; notebook
06_identifier_ablation). A method is the notebook 05 pipeline with only the identifiers or the task mix
changed (:mod:`gensar_lib.methods` declares them); :func:`run_method` is what the ``ablation_run`` stage caches.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from gensar_lib.artifacts import ArtifactCache
from gensar_lib.config import ConfigError, Profile, fingerprint
from gensar_lib.data.pipeline import PreparedData
from gensar_lib.devices import machine_kind, processes
from gensar_lib.evaluation import evaluate_generative, held_out
from gensar_lib.identifiers import ItemIdentifiers, collision_rate, make_token, single_vocabulary, to_json
from gensar_lib.instructions import TaskMix
from gensar_lib.methods import METHODS, SINGLE_TASK
from gensar_lib.rqvae import KINDS, Identifiers, all_identifiers
from gensar_lib.stages import STAGES
from gensar_lib.t5.stage import train_generative


def check_methods(methods: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The methods, or a ConfigError naming the unknown one and the choices."""
    for m in methods:
        if m not in METHODS:
            raise ConfigError(f"unknown ablation method {m!r}; choose from {list(METHODS)}")
    return tuple(methods)


def random_identifiers(n_items: int, levels: int, codebook_size: int, seed: int, item_ids=None) -> ItemIdentifiers:
    """Distinct random codes (``<random_a_3> ...``), one ID for both tasks: no item information."""
    space = codebook_size ** levels
    if space < n_items:
        raise ConfigError(f"random identifiers: {codebook_size}^{levels} = {space} IDs for {n_items} items")
    flat = np.random.default_rng(seed).choice(space, size=n_items, replace=False)
    digits = np.stack([(flat // codebook_size ** (levels - 1 - lv)) % codebook_size for lv in range(levels)], 1)
    ids = tuple(tuple(make_token("random", lv, c) for lv, c in enumerate(row)) for row in digits.tolist())
    names = tuple(item_ids) if item_ids is not None else tuple(str(i) for i in range(n_items))
    return ItemIdentifiers(names, ids, ids, tuple(single_vocabulary("random", levels, codebook_size)), codebook_size)


def separate_identifiers(semantic: ItemIdentifiers, collaborative: ItemIdentifiers) -> ItemIdentifiers:
    """The semantic ID of one single RQ-VAE with the collaborative ID of another: no shared prefix."""
    vocab = tuple(dict.fromkeys(semantic.vocabulary + collaborative.vocabulary))
    return ItemIdentifiers(semantic.item_ids, semantic.semantic, collaborative.collaborative, vocab,
                           semantic.codebook_size)


@dataclass
class VariantIdentifiers:
    """The identifiers a method trains with, and their collision rates before/after handling."""

    ids: ItemIdentifiers
    collisions: list[dict]
    vectors: dict[str, np.ndarray] | None = None  # each token's codebook vector; random IDs have none


def _handling_rows(method: str, res: Identifiers, names: tuple[str, ...]) -> list[dict]:
    """Collisions before/after handling of the named IDs (a single RQ-VAE has one report for both)."""
    reports = KINDS[res.kind].reports(res.stats["handling"])
    return [{"method": method, "identifier": name, "before": reports[name]["before"], "after": reports[name]["after"]}
            for name in names]


def _random_variant(method: str, prepared: PreparedData, profile: Profile, cache: ArtifactCache | None,
                    progress: bool) -> VariantIdentifiers:
    q = profile.quantize
    ids = random_identifiers(prepared.dataset.n_items, q.shared_levels + q.specific_levels, q.codebook_size,
                             profile.seed, [it.id for it in prepared.dataset.items])
    rate = collision_rate(ids.semantic)  # one ID for both tasks, nothing to handle
    return VariantIdentifiers(ids, [{"method": method, "identifier": name, "before": rate, "after": rate}
                                    for name in ("semantic", "collaborative")])


def _separate_variant(method: str, prepared: PreparedData, profile: Profile, cache: ArtifactCache | None,
                      progress: bool) -> VariantIdentifiers:
    res = all_identifiers(prepared, profile, ("semantic", "collaborative"), cache=cache, progress=progress)
    rows = (_handling_rows(method, res["semantic"], ("semantic",))
            + _handling_rows(method, res["collaborative"], ("collaborative",)))
    return VariantIdentifiers(separate_identifiers(res["semantic"].ids, res["collaborative"].ids), rows,
                              {**res["semantic"].vectors, **res["collaborative"].vectors})


def _rqvae_variant(kind: str) -> Callable[..., VariantIdentifiers]:
    def make(method: str, prepared: PreparedData, profile: Profile, cache: ArtifactCache | None,
             progress: bool) -> VariantIdentifiers:
        res = all_identifiers(prepared, profile, (kind,), cache=cache, progress=progress)[kind]
        return VariantIdentifiers(res.ids, _handling_rows(method, res, ("semantic", "collaborative")), res.vectors)
    return make


# how each identifier variant is made: an RQ-VAE identifier type of rqvae.KINDS, or one of these
VARIANTS: dict[str, Callable[..., VariantIdentifiers]] = {
    **{kind: _rqvae_variant(kind) for kind in KINDS}, "separate": _separate_variant, "random": _random_variant}


def variant_identifiers(method: str, prepared: PreparedData, profile: Profile, cache: ArtifactCache | None = None,
                        progress: bool = False) -> VariantIdentifiers:
    """Identifiers of an ablation method (single-task methods use GenSAR's)."""
    check_methods([method])
    return VARIANTS["gensar" if method in SINGLE_TASK else method](method, prepared, profile, cache, progress)


def run_profile(profile: Profile, seed: int, method: str = "gensar") -> Profile:
    """The profile of one ablation run: its seed, the ablation's training overrides, and for a
    single-task method the profile's task mix cut to that task's families."""
    ab, tr = profile.ablation, profile.train
    train = replace(tr, epochs=ab.epochs or tr.epochs, max_steps=ab.max_steps or tr.max_steps)
    if method in SINGLE_TASK:
        mix = TaskMix.of(tr.task_mix).restricted(SINGLE_TASK[method])
        if not any(mix.weights.values()):
            raise ConfigError(f"ablation method {method!r}: train.task_mix = {tr.task_mix!r} in profile "
                              f"{profile.name!r} keeps none of its families {SINGLE_TASK[method]}")
        train = replace(train, task_mix=tuple(mix.weights.items()))
    return replace(profile, seed=seed, train=train)


def run_method(method: str, prepared: PreparedData, profile: Profile, seed: int,
               cache: ArtifactCache | None = None, progress: bool = False) -> dict[str, Any]:
    """Train (or load) one generative method for one seed and evaluate it (cached)."""
    cache = cache or ArtifactCache()
    prof = run_profile(profile, seed, method)
    variant = variant_identifiers(method, prepared, prof, cache, progress)
    cases, candidates = held_out(prepared, profile)

    def make() -> dict[str, Any]:
        start = time.perf_counter()
        gen = train_generative(prepared, variant.ids, prof, cache, progress, variant.vectors)
        metrics = evaluate_generative(gen, cases, candidates, prof)
        return {"metrics": metrics, "best_epoch": max((h["epoch"] for h in gen.history if h["best"]), default=None),
                "train_seconds": sum(h["seconds"] for h in gen.history),
                "total_seconds": time.perf_counter() - start, **machine_kind()}

    stage = STAGES["ablation_run"]
    config, inputs = {"method": method, **stage.config(prof)}, [prepared.key, fingerprint(to_json(variant.ids)),
                                                                 stage.code()]
    state = processes()
    if state is not None and not cache.exists(stage.name, cache.key(stage.name, config, inputs)):
        value = make()  # under a launcher every process trains and evaluates (data-parallel, sharded) ...
        if state.is_main_process:  # ... and the main one stores the result
            cache.cached(stage.name, config, lambda: value, inputs)
        state.wait_for_everyone()
    out = cache.cached(stage.name, config, make, inputs)
    return {"method": method, "family": "generative", "seed": seed, **out, "collisions": variant.collisions}
