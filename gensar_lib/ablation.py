"""The identifier ablation, the single-task models and the baselines (notebook 06_identifier_ablation).

Every method is evaluated on the same test users with the same protocol and metrics
(:mod:`gensar_lib.evaluation`, through ``baselines.evaluate_baselines`` for the baselines). Generative methods
are the notebook 05 pipeline with only the identifiers or the task mix changed:

- ``gensar``: dual identifiers from the joint RQ-VAE (shared + specific codebooks);
- ``semantic`` (TIGER style) / ``collaborative`` / ``concatenated``: one identifier from a
  single RQ-VAE over one embedding, used for both tasks;
- ``separate``: a semantic ID and a collaborative ID from two single RQ-VAEs, with no
  shared codebooks (so the two IDs of an item share no prefix);
- ``random``: random, collision-free codes of the same length (atomic-like IDs that carry
  no information about the item);
- ``gensar-rec-only`` / ``gensar-search-only``: GenSAR identifiers, trained on one task's
  instructions (plus the identifier-language alignment), to show the trade-off of Fig. 1.

*Departures from the paper*: the paper's Fig. 1 places published search, recommendation
and joint models; here the baselines of :mod:`gensar_lib.baselines` stand in for them (counting,
text, fused and learned ones, each seeing the same training events as the generative models). The paper trains each variant once on 8 GPUs; on a CPU each variant is a small T5
trained from scratch (notebook 05), and the ``headline`` methods are repeated over seeds
(mean and standard deviation) while the others run for fewer seeds (``AblationConfig``).
The hyper-parameter figure reports identifier-level effects (collision rates, prefix
sharing) over the grid of shared/specific levels and codebook sizes; the paper reports
retrieval metrics, which would need one T5 per grid point.

This module runs the ablation (every method for its seeds, the baselines, the grid). One run is the
``ablation_run`` stage (:mod:`gensar_lib.ablation_run`); the methods are declared in :mod:`gensar_lib.methods`,
the results files live in :mod:`gensar_lib.results`, the tables in :mod:`gensar_lib.tables` and the figures
in :mod:`gensar_lib.plots`. Notebook 06 reads all of them as ``ablation.<name>``, hence the names below.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

# besides what runs here, what notebook 06 reads as ablation.<name> (the module docstring's last paragraph)
from gensar_lib.ablation_run import check_methods, run_method, run_profile, variant_identifiers
from gensar_lib.artifacts import ArtifactCache
from gensar_lib.config import ConfigError, Profile, fingerprint
from gensar_lib.data.pipeline import PreparedData
from gensar_lib.devices import machine_kind
from gensar_lib.evaluation import held_out
from gensar_lib.methods import LABELS, METHODS
from gensar_lib.plots import plot_collisions, plot_hparams, plot_tradeoff, plot_variants
from gensar_lib.results import (AblationResult, combine, committed_path, committed_status, downstream_frame,
                                downstream_path, load_committed)
from gensar_lib.rqvae import all_identifiers, identifier_model, identifiers, item_embeddings
from gensar_lib.structure import identifier_structure
from gensar_lib.tables import (baseline_gap, collision_frame, differences, paper_table, pareto_front, reproduction,
                               reproduction_lines, sources_frame, summary_frame, verdict)


def run_baselines(prepared: PreparedData, profile: Profile, seed: int, cache: ArtifactCache | None = None,
                  names: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """The baselines ``names`` (default: all of :mod:`gensar_lib.baselines`) on the same test cases, for
    one seed, each with what validation chose for it (``baselines.baseline_details``)."""
    from gensar_lib.baselines import BASELINES, baseline_details, evaluate_baseline

    cases, candidates = held_out(prepared, profile)
    prof, kind = replace(profile, seed=seed), machine_kind()
    return [{"method": name, "family": "baseline", "seed": seed,
             "metrics": evaluate_baseline(name, prepared, prof, cases, candidates, cache),
             **({"chosen": chosen} if (chosen := baseline_details(name, prepared, prof, cache)) else {}),
             **kind}
            for name in (BASELINES if names is None else names)]


def seeds_of(method: str, profile: Profile, seeds: int, all_seeds: bool = False) -> list[int]:
    """Headline methods (or all with ``all_seeds``) run ``seeds`` seeds; the others fewer."""
    n = seeds if all_seeds or method in profile.ablation.headline else min(seeds, profile.ablation.other_seeds)
    return [profile.seed + s for s in range(n)]


def hparam_grid(prepared: PreparedData, profile: Profile, cache: ArtifactCache | None = None,
                progress: bool = False) -> list[dict[str, Any]]:
    """GenSAR identifiers over (shared, specific) levels x codebook sizes: collision rates and prefix sharing."""
    emb = item_embeddings(prepared, profile, cache, progress=False)
    rows = []
    for shared, specific in profile.ablation.level_splits:
        for k in profile.ablation.codebook_sizes:
            prof = replace(profile, quantize=replace(profile.quantize, shared_levels=shared, specific_levels=specific,
                                                     codebook_size=k))
            res = identifiers("gensar", prepared, emb, identifier_model("gensar", emb, prof, cache, progress), prof)
            handling = res.stats["handling"]
            for name in ("semantic", "collaborative"):
                rows.append({"shared_levels": shared, "specific_levels": specific, "codebook_size": k,
                             "identifier": name, "before": handling[name]["before"],
                             "after": handling[name]["after"],
                             "shared_prefix_collision": res.stats["collision_rate"]["shared_prefix"]})
    return rows


def fig5_origin(runs: list[dict[str, Any]], prepared: PreparedData, profile: Profile,
                cache: ArtifactCache | None = None) -> list[str]:
    """Notebook 06, section 8: where Fig. 5's GenSAR rates come from, against this machine's GenSAR identifiers
    of the profile's seed (notebook 03's table), and why the two can differ."""
    first = next(r for r in runs if r["method"] == "gensar")
    here = {row["identifier"]: row["before"] for row in
            variant_identifiers("gensar", prepared, profile, cache).collisions}
    loaded = first.get("source", "trained now") != "trained now"
    kind = machine_kind()
    reasons = [why for why, differs in (
        ("another seed", first["seed"] != profile.seed),
        ("another kind of CPU", loaded and first.get("cpu") != kind["cpu"]),
        ("another torch thread count", loaded and first.get("torch_threads") != kind["torch_threads"])) if differs]
    lines = [f"Fig. 5's GenSAR bars come from seed {first['seed']}, "
             f"{'loaded from the committed runs' if loaded else 'trained now on this machine'}."]
    for row in first["collisions"]:
        shown, mine = row["before"], here[row["identifier"]]
        line = (f"GenSAR {row['identifier']} IDs before handling: {shown:.2%} in Fig. 5, {mine:.2%} for this "
                f"machine's identifiers of seed {profile.seed} (notebook 03)")
        if shown == mine:
            lines.append(line + ": the same.")
        elif reasons:
            lines.append(line + f": the RQ-VAE of Fig. 5 ran with {', '.join(reasons)}, so its floats, codes and "
                         "collisions differ.")
        else:
            lines.append(line + ": same seed, kind of CPU and thread count, so the code changed since Fig. 5's run.")
    return lines


def run_ablation(prepared: PreparedData, profile: Profile, seeds: int = 1, methods: tuple[str, ...] | None = None,
                 baselines: bool = True, all_seeds: bool = False, hparams: bool = True,
                 cache: ArtifactCache | None = None, progress: bool = True,
                 done: AblationResult | None = None,
                 on_run: Callable[[list[dict[str, Any]]], None] | None = None) -> AblationResult:
    """Every method for its seeds, the baselines per seed, and the hyper-parameter grid; with ``done``
    (earlier results of this profile, :func:`read_results`) only what it lacks. ``on_run`` gets the
    runs made so far after each generative run (the CLI saves them, so an interrupted session keeps them)."""
    if seeds < 1:
        raise ConfigError(f"impossible config: seeds = {seeds!r}, need at least 1")
    methods = check_methods(methods if methods is not None else profile.ablation.methods)
    made = {(r["method"], r["seed"]) for r in done.runs} if done else set()
    plan = [(m, s) for m in methods for s in seeds_of(m, profile, seeds, all_seeds) if (m, s) not in made]
    hparams = hparams and not (done and done.hparams)
    for method in methods:  # an impossible single-task mix fails before any training
        run_profile(profile, profile.seed, method)
    if profile.model.identifier_init == "codebook" and "random" in methods:
        raise ConfigError(f"impossible config: model.identifier_init = 'codebook' in profile {profile.name!r}, "
                          "but random identifiers have no codebook (leave out the method 'random')")
    runs: list[dict[str, Any]] = []
    for i, (method, seed) in enumerate(plan, 1):
        if progress:
            print(f"[{i}/{len(plan)}] {method} seed {seed}", flush=True)
        runs.append(run_method(method, prepared, profile, seed, cache, progress=False))
        if on_run is not None:
            on_run(runs)
    if baselines:
        from gensar_lib.baselines import BASELINES

        for seed in range(profile.seed, profile.seed + seeds):
            missing = tuple(name for name in BASELINES if (name, seed) not in made)
            if missing:
                if progress:
                    print(f"baselines seed {seed}: {', '.join(missing)}", flush=True)
                runs += run_baselines(prepared, profile, seed, cache, missing)
    grid = hparam_grid(prepared, profile, cache) if hparams else []
    if done and done.structure:  # the identifiers of this profile's seed: the same as when they were measured
        structure = done.structure
    else:
        emb = item_embeddings(prepared, profile, cache, progress=False)
        structure = identifier_structure(prepared, emb, all_identifiers(prepared, profile, cache=cache,
                                                                        progress=False), profile)
    return AblationResult(prepared.dataset.name, profile.name, runs, grid, structure, fingerprint(profile))
