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
"""
from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from gensar_lib.artifacts import ArtifactCache, write_json
from gensar_lib.config import REPO_ROOT, ConfigError, Profile, fingerprint
from gensar_lib.data.pipeline import PreparedData
from gensar_lib.devices import processes
from gensar_lib.identifiers import ItemIdentifiers, collision_rate, make_token, single_vocabulary, to_json
from gensar_lib.instructions import TaskMix
from gensar_lib.pipeline import (
    KINDS,
    Identifiers,
    all_identifiers,
    identifier_model,
    identifier_structure,
    identifiers,
    item_embeddings,
    train_generative,
)
from gensar_lib.evaluation import evaluate_generative, held_out
from gensar_lib.stages import STAGES

IDENTIFIER_VARIANTS: tuple[str, ...] = ("gensar", "semantic", "collaborative", "concatenated", "separate", "random")
# the families a single-task run keeps from the profile's task mix
SINGLE_TASK: dict[str, tuple[str, ...]] = {
    "gensar-rec-only": ("NRIP", "ITEM2ID", "ID2ITEM"),
    "gensar-search-only": ("NSIP", "NSQP", "ITEM2ID", "ID2ITEM", "QUERY2ID"),
}
METHODS: tuple[str, ...] = IDENTIFIER_VARIANTS + tuple(SINGLE_TASK)
LABELS = {
    "gensar": "GenSAR (shared + specific)", "semantic": "semantic-only (TIGER)",
    "collaborative": "collaborative-only", "concatenated": "concatenated embedding",
    "separate": "separate sem. + collab. (no shared)", "random": "random IDs",
    "gensar-rec-only": "GenSAR, rec. data only", "gensar-search-only": "GenSAR, search data only",
    "popularity": "popularity", "query-popularity": "query popularity", "sasrec": "SASRec", "bm25": "BM25",
    "dense": "dense (MiniLM)", "query-popularity+sasrec": "query popularity + SASRec", "bm25+sasrec": "BM25 + SASRec",
    "personal-search": "personalised search (TEM-like)", "joint": "joint search + rec. (UniSAR-like)",
}
NOTEBOOK = "06_identifier_ablation"
COMMITTED = REPO_ROOT / "figures" / NOTEBOOK  # the committed multi-seed results notebook 06 loads


def check_methods(methods: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The methods, or a ConfigError naming the unknown one and the choices."""
    for m in methods:
        if m not in METHODS:
            raise ConfigError(f"unknown ablation method {m!r}; choose from {list(METHODS)}")
    return tuple(methods)


# ---------------------------------------------------------------------------
# Identifiers of every variant
# ---------------------------------------------------------------------------


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


# how each identifier variant is made: an RQ-VAE identifier type of pipeline.KINDS, or one of these
VARIANTS: dict[str, Callable[..., VariantIdentifiers]] = {
    **{kind: _rqvae_variant(kind) for kind in KINDS}, "separate": _separate_variant, "random": _random_variant}


def variant_identifiers(method: str, prepared: PreparedData, profile: Profile, cache: ArtifactCache | None = None,
                        progress: bool = False) -> VariantIdentifiers:
    """Identifiers of an ablation method (single-task methods use GenSAR's)."""
    check_methods([method])
    return VARIANTS["gensar" if method in SINGLE_TASK else method](method, prepared, profile, cache, progress)


# ---------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------


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
                "total_seconds": time.perf_counter() - start}

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


def run_baselines(prepared: PreparedData, profile: Profile, seed: int, cache: ArtifactCache | None = None,
                  names: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """The baselines ``names`` (default: all of :mod:`gensar_lib.baselines`) on the same test cases, for
    one seed, each with what validation chose for it (``baselines.baseline_details``)."""
    from gensar_lib.baselines import BASELINES, baseline_details, evaluate_baseline

    cases, candidates = held_out(prepared, profile)
    prof = replace(profile, seed=seed)
    return [{"method": name, "family": "baseline", "seed": seed,
             "metrics": evaluate_baseline(name, prepared, prof, cases, candidates, cache),
             **({"chosen": chosen} if (chosen := baseline_details(name, prepared, prof, cache)) else {})}
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


@dataclass
class AblationResult:
    """Every run (method x seed), the variants' collision rates and the hyper-parameter grid."""

    dataset: str
    profile: str
    runs: list[dict[str, Any]]
    hparams: list[dict[str, Any]] = field(default_factory=list)
    structure: dict[str, Any] = field(default_factory=dict)  # pipeline.identifier_structure of the profile seed
    profile_key: str = ""  # config.fingerprint of the profile: committed results name the profile they ran
    provenance: dict[str, Any] = field(default_factory=dict)  # command, date, machine, code (the CLI sets it)

    def as_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "profile": self.profile, "profile_key": self.profile_key,
                "seeds": sorted({r["seed"] for r in self.runs}), "runs": self.runs, "hparams": self.hparams,
                "structure": self.structure, "provenance": self.provenance}


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


def dataset_stem(dataset: str) -> str:
    """A dataset's name as it appears in committed file names (``Office`` -> ``office``)."""
    return dataset.lower()


def committed_path(dataset: str, profile: str) -> Path:
    """Where the committed results of a dataset and profile live (the CLI's ``--commit`` writes them)."""
    return COMMITTED / f"ablation_{dataset_stem(dataset)}_{profile}.json"


def from_dict(report: dict[str, Any]) -> AblationResult:
    """An :class:`AblationResult` from its ``ablation.json`` form."""
    return AblationResult(report["dataset"], report["profile"], report["runs"], report.get("hparams", []),
                          report.get("structure", {}), report.get("profile_key", ""), report.get("provenance", {}))


def load_committed(dataset: str, profile: Profile, path: Path | None = None) -> AblationResult | None:
    """The committed results of this dataset and profile; None (with a warning) when absent or made
    with other profile values, so that no stale number is shown as today's."""
    path = path or committed_path(dataset, profile.name)
    if not path.exists():
        warnings.warn(f"no committed ablation results at {path}: every method is trained now", stacklevel=2)
        return None
    result = from_dict(json.loads(path.read_text()))
    if result.profile_key != fingerprint(profile):
        warnings.warn(f"{path}: field 'profile_key' = {result.profile_key!r}, but profile {profile.name!r} is now "
                      f"{fingerprint(profile)!r} (its values changed since these results were made): they are "
                      f"not loaded, and every method is trained now", stacklevel=2)
        return None
    return result


def read_results(path: Path, profile: Profile, dataset: str | None = None) -> AblationResult:
    """Earlier results of this profile (and dataset, when given: the CLI's ``--extend``); a clear error otherwise."""
    try:
        result = from_dict(json.loads(Path(path).read_text()))
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ConfigError(f"{path}: not an ablation results file ({err})") from None
    if dataset is not None and result.dataset != dataset:
        raise ConfigError(f"{path}: field 'dataset' = {result.dataset!r}, but this run is on {dataset!r}")
    if result.profile_key != fingerprint(profile):
        raise ConfigError(f"{path}: field 'profile_key' = {result.profile_key!r}, but profile {profile.name!r} "
                          f"with these --set values is {fingerprint(profile)!r}: its runs are another recipe's")
    return result


def extend(earlier: AblationResult | None, now: AblationResult) -> AblationResult:
    """Earlier results (if any) with the runs made now, each run stamped with the date it was ``made``;
    how a multi-seed ablation longer than one working session is completed over several (``lab/README.md``)."""
    date = now.provenance.get("date", "undated")
    if earlier is None:
        return replace(now, runs=[{**r, "made": date} for r in now.runs])
    fresh = {(r["method"], r["seed"]) for r in now.runs}
    runs = [{"made": earlier.provenance.get("date", "undated"), **r} for r in earlier.runs
            if (r["method"], r["seed"]) not in fresh] + [{**r, "made": date} for r in now.runs]
    sessions = [*earlier.provenance.get("earlier", []),
                {k: v for k, v in earlier.provenance.items() if k != "earlier"}]
    return replace(now, runs=runs, hparams=now.hparams or earlier.hparams,
                   structure=now.structure or earlier.structure, provenance={**now.provenance, "earlier": sessions})


def combine(now: AblationResult, committed: AblationResult | None) -> AblationResult:
    """The runs made now, and the committed runs of every other (method, seed); each run names its
    ``source``. The hyper-parameter grid and structure are today's when computed, else the committed ones."""
    fresh = {(r["method"], r["seed"]) for r in now.runs}
    runs = [{**r, "source": "trained now"} for r in now.runs]
    if committed is None:
        return replace(now, runs=runs)
    date = committed.provenance.get("date", "undated")
    runs += [{**r, "source": f"loaded ({r.get('made', date)})"} for r in committed.runs
             if (r["method"], r["seed"]) not in fresh]
    return replace(now, runs=runs, hparams=now.hparams or committed.hparams,
                   structure=now.structure or committed.structure)


def sources_frame(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """Which seeds of each method were trained now and which were loaded."""
    df = pd.DataFrame([{"method": r["method"], "source": r.get("source", "trained now"), "seed": r["seed"]}
                       for r in runs])
    return (df.groupby(["method", "source"], sort=False)["seed"].agg(lambda s: ", ".join(map(str, sorted(s))))
            .rename("seeds").reset_index())


def reproduction(now: AblationResult, committed: AblationResult) -> pd.DataFrame:
    """For each (method, seed) in both: the largest absolute difference of any metric (0: reproduced)."""
    def values(run: dict[str, Any]) -> pd.Series:
        return long_frame([run]).set_index(["task", "protocol", "metric"])["value"]

    old = {(r["method"], r["seed"]): values(r) for r in committed.runs}
    rows = [{"method": r["method"], "seed": r["seed"],
             "max_abs_difference": float((values(r) - old[(r["method"], r["seed"])]).abs().max())}
            for r in now.runs if (r["method"], r["seed"]) in old]
    return pd.DataFrame(rows, columns=["method", "seed", "max_abs_difference"])


# ---------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------


def downstream_path(dataset: str, suffix: str = "json") -> Path:
    """Where ``lab/benchmarks/budget_curves.py --name identifiers_downstream`` writes a dataset's comparison."""
    return REPO_ROOT / "figures" / "05_t5_training" / f"identifiers_downstream_{dataset_stem(dataset)}.{suffix}"


def downstream_frame(dataset: str, profile: Profile) -> pd.DataFrame | None:
    """The identifiers downstream (notebook 06, section 11): GenSAR trained with the same recipe and budget on
    the GenSAR identifiers from before the RQ-VAE change (standardised inputs, EMA codebooks, a wider latent)
    and on today's. A row per run: the best
    validation score, when it was reached, and test HR@10 of each task and protocol. None (with a warning) when
    not measured, or measured with other values of ``profile`` (the small profile, which the runs start from)."""
    path = downstream_path(dataset)
    if not path.exists():
        warnings.warn(f"no identifiers-downstream comparison at {path}", stacklevel=2)
        return None
    report = json.loads(path.read_text())
    if report.get("profile_key") != fingerprint(profile):
        warnings.warn(f"{path}: field 'profile_key' = {report.get('profile_key')!r}, but profile {profile.name!r} is "
                      f"now {fingerprint(profile)!r}: not shown", stacklevel=2)
        return None
    rows = []
    for run in report["results"]:
        best = max(run["history"], key=lambda h: h["val_score"])
        rows.append({"run": run["candidate"], "best validation NDCG@5": best["val_score"],
                     "at minute": best["train_seconds"] / 60, "step": best["step"],
                     **{f"{task} {protocol} HR@10": run["test"][task][protocol]["HR@10"]
                        for task in ("rec", "search") for protocol in ("sampled", "full")}})
    return pd.DataFrame(rows).set_index("run")


def long_frame(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per method, seed, task, protocol and metric."""
    rows = [{"method": r["method"], "family": r["family"], "seed": r["seed"], "task": task, "protocol": protocol,
             "metric": metric, "value": value}
            for r in runs for task, by_p in r["metrics"].items() for protocol, row in by_p.items()
            for metric, value in row.items()]
    return pd.DataFrame(rows)


def summary_frame(runs: list[dict[str, Any]], protocol: str = "sampled") -> pd.DataFrame:
    """Mean, standard deviation (ddof=1; NaN for one seed) and seed count per method, task and metric."""
    df = long_frame(runs)
    df = df[df.protocol == protocol]
    grouped = df.groupby(["method", "family", "task", "metric"], sort=False)["value"]
    return grouped.agg(mean="mean", std="std", seeds="count").reset_index()


def paper_table(runs: list[dict[str, Any]], protocol: str = "sampled") -> pd.DataFrame:
    """The paper's main table: one row per method, (task, metric) columns, ``mean ± std`` cells; the best
    mean of each column is marked `` *`` (every method that ties it too)."""
    s = summary_frame(runs, protocol)
    best = s.groupby(["task", "metric"])["mean"].transform("max")
    s["cell"] = [(f"{m:.4f}" if np.isnan(sd) else f"{m:.4f} ± {sd:.4f}") + (" *" if np.isclose(m, b) else "")
                 for m, sd, b in zip(s["mean"], s["std"], best)]
    table = s.pivot_table(index="method", columns=["task", "metric"], values="cell", aggfunc="first", sort=False)
    order = [m for m in LABELS if m in table.index]
    table = table.loc[order]
    table.index = [LABELS[m] for m in order]
    metrics = ["HR@1", "HR@5", "HR@10", "NDCG@5", "NDCG@10"]
    return table[[(t, m) for t in ("rec", "search") for m in metrics if (t, m) in table.columns]]


def pareto_front(points: dict[str, tuple[float, float]]) -> set[str]:
    """Methods no other method dominates (>= on both scores and > on one); exercise 6.1 rebuilds it."""
    def dominates(p: tuple[float, float], q: tuple[float, float]) -> bool:
        return p[0] >= q[0] and p[1] >= q[1] and p != q

    return {m for m, p in points.items() if not any(dominates(q, p) for n, q in points.items() if n != m)}


def _difference(ref: pd.Series, other: pd.Series) -> dict[str, Any]:
    """``ref`` mean minus ``other`` mean (rows of :func:`summary_frame`), its standard error
    (sqrt(s1^2/n1 + s2^2/n2), a method with one seed counting as unknown spread: NaN) and whether the
    difference exceeds two of them (None when the error is unknown)."""
    se = float(np.sqrt(ref["std"] ** 2 / ref["seeds"] + other["std"] ** 2 / other["seeds"]))
    diff = float(ref["mean"] - other["mean"])
    return {"difference": diff, "standard_error": se, "seeds": f"{int(ref['seeds'])} vs {int(other['seeds'])}",
            "beyond_2se": bool(abs(diff) > 2 * se) if np.isfinite(se) else None}


def differences(runs: list[dict[str, Any]], protocol: str = "sampled", metric: str = "NDCG@10",
                reference: str = "gensar") -> pd.DataFrame:
    """``reference`` minus every other generative method, per task (:func:`_difference`)."""
    s = summary_frame(runs, protocol)
    s = s[(s.metric == metric) & (s.family == "generative")].set_index(["method", "task"])
    rows = [{"method": method, "task": task, **_difference(s.loc[(reference, task)], other)}
            for (method, task), other in s.iterrows() if method != reference]
    return pd.DataFrame(rows, columns=["method", "task", "difference", "standard_error", "seeds", "beyond_2se"])


def baseline_gap(runs: list[dict[str, Any]], protocol: str = "full", metric: str = "HR@10",
                 reference: str = "gensar") -> pd.DataFrame:
    """Per task, ``reference`` minus the best non-generative baseline of that task (highest mean), with the
    standard error and the two-standard-error verdict of :func:`_difference`: the paper's claim, tested."""
    s = summary_frame(runs, protocol)
    s = s[s.metric == metric]
    rows = []
    for task in ("rec", "search"):
        part = s[s.task == task].set_index("method")
        best = part[part.family == "baseline"]["mean"].idxmax()
        rows.append({"task": task, "best_baseline": best, **_difference(part.loc[reference], part.loc[best])})
    return pd.DataFrame(rows, columns=["task", "best_baseline", "difference", "standard_error", "seeds",
                                       "beyond_2se"])


TASK_NAMES = {"rec": "recommendation", "search": "search"}


def _standing(diff: float, se: float, beyond: bool | None) -> str:
    """How a difference and its standard error read: beyond two standard errors, within them, or unknown."""
    if beyond is None:
        return "one of the two ran one seed, so no standard error: not evidence either way"
    return (f"{abs(diff):.3f} ± {se:.3f}, " + ("beyond two standard errors" if beyond
                                                 else "within two standard errors: level"))


def verdict(runs: list[dict[str, Any]], protocol: str = "full", metric: str = "HR@10",
            identifiers: tuple[str, ...] = ("gensar", "semantic", "collaborative")) -> list[str]:
    """Lines that start with ``Verdict:``, computed from the runs: per task, which of ``identifiers`` scores
    highest and by how much against the runner-up, and how GenSAR stands against the strongest baseline
    (:func:`baseline_gap`); each in the direction the numbers give (notebook 06)."""
    s = summary_frame(runs, protocol)
    s = s[s.metric == metric].set_index(["method", "task"])
    lines = []
    for task in ("rec", "search"):
        ranked = sorted((m for m in identifiers if (m, task) in s.index), key=lambda m: -s.loc[(m, task), "mean"])
        if len(ranked) >= 2:
            first, second = ranked[:2]
            d = _difference(s.loc[(first, task)], s.loc[(second, task)])
            lines.append(f"Verdict: on {TASK_NAMES[task]}, {LABELS[first]} identifiers score highest "
                         f"({s.loc[(first, task), 'mean']:.3f} {metric}, {protocol}), ahead of {LABELS[second]} by "
                         f"{_standing(d['difference'], d['standard_error'], d['beyond_2se'])}.")
    if "gensar" in {r["method"] for r in runs} and any(r["family"] == "baseline" for r in runs):
        for row in baseline_gap(runs, protocol, metric).itertuples():
            word = "beats" if row.difference > 0 else "trails" if row.difference < 0 else "equals"
            lines.append(f"Verdict: on {TASK_NAMES[row.task]}, GenSAR {word} the strongest baseline, "
                         f"{LABELS[row.best_baseline]}, in {metric} ({protocol}) by "
                         f"{_standing(row.difference, row.standard_error, row.beyond_2se)}.")
    return lines


def collision_frame(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """Collision rates before/after handling of each variant's identifiers (first seed of each method)."""
    seen, rows = set(), []
    for r in runs:
        if r["family"] == "generative" and r["method"] in IDENTIFIER_VARIANTS and r["method"] not in seen:
            seen.add(r["method"])
            rows += r["collisions"]
    return pd.DataFrame(rows, columns=["method", "identifier", "before", "after"])


# ---------------------------------------------------------------------------
# Figures (each returns the figure and the data behind it)
# ---------------------------------------------------------------------------


def plot_tradeoff(runs: list[dict[str, Any]], protocol: str = "sampled", metric: str = "NDCG@10"
                  ) -> tuple[plt.Figure, pd.DataFrame]:
    """Fig. 1: each method's search performance against its recommendation performance."""
    s = summary_frame(runs, protocol)
    s = s[s.metric == metric]
    rec, search = (s[s.task == t].drop(columns=["task", "metric", "seeds"]) for t in ("rec", "search"))
    data = rec.merge(search, on=["method", "family"], suffixes=("_rec", "_search"))
    data = data.rename(columns={"mean_rec": "rec_mean", "std_rec": "rec_std", "mean_search": "search_mean",
                                "std_search": "search_std"}).reset_index(drop=True)
    data["number"] = range(1, len(data) + 1)  # each point is numbered; the key beside the axes names it
    fig, (ax, key) = plt.subplots(1, 2, figsize=(11, 5), gridspec_kw={"width_ratios": [3, 2]})
    for family, marker in (("generative", "o"), ("baseline", "s")):
        part = data[data.family == family]
        ax.errorbar(part.rec_mean, part.search_mean, xerr=part.rec_std.fillna(0), yerr=part.search_std.fillna(0),
                    fmt=marker, capsize=3, label=family)
        for row in part.itertuples():
            ax.annotate(str(row.number), (row.rec_mean, row.search_mean), fontsize=8, xytext=(3, 3),
                        textcoords="offset points")
    ax.set(xlabel=f"recommendation {metric} ({protocol})", ylabel=f"search {metric} ({protocol})",
           title="Search vs recommendation (paper Fig. 1)")
    ax.legend(loc="lower right")
    key.axis("off")
    key.text(0, 1, "\n".join(f"{row.number:>2}  {LABELS.get(row.method, row.method)}" for row in data.itertuples()),
             va="top", family="monospace", fontsize=8, transform=key.transAxes)
    return fig, data


def plot_variants(runs: list[dict[str, Any]], protocol: str = "sampled", metric: str = "NDCG@10"
                  ) -> tuple[plt.Figure, pd.DataFrame]:
    """Fig. 4: each identifier variant on both tasks (mean and std over seeds)."""
    s = summary_frame(runs, protocol)
    data = s[(s.metric == metric) & s.method.isin(IDENTIFIER_VARIANTS)].reset_index(drop=True)
    order = [m for m in IDENTIFIER_VARIANTS if m in set(data.method)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=False)
    for ax, task in zip(axes, ("rec", "search")):
        part = data[data.task == task].set_index("method").loc[order]
        ax.bar(range(len(order)), part["mean"], yerr=part["std"].fillna(0), capsize=3,
               color=[f"C{i}" for i in range(len(order))])
        ax.set_xticks(range(len(order)), [LABELS[m] for m in order], rotation=35, ha="right", fontsize=8)
        ax.set(title=f"{'recommendation' if task == 'rec' else 'search'}", ylabel=f"{metric} ({protocol})")
    fig.suptitle("Identifier variants on both tasks (paper Fig. 4)")
    return fig, data


SINGLE_ID = ("semantic", "collaborative", "concatenated", "random")  # one ID serves both tasks


def plot_collisions(frame: pd.DataFrame) -> tuple[plt.Figure, pd.DataFrame]:
    """Fig. 5: collision rate of each variant's identifiers, before and after handling.

    A single-ID method (:data:`SINGLE_ID`) has one identifier for both tasks, so it is shown once;
    GenSAR and the separate IDs show their semantic and their collaborative ID.
    """
    single = frame.method.isin(SINGLE_ID)
    frame = frame[~single | ~frame.duplicated("method")]
    data = frame.melt(id_vars=["method", "identifier"], value_vars=["before", "after"], var_name="stage",
                      value_name="collision_rate")
    data["label"] = [LABELS[m] if m in SINGLE_ID else f"{LABELS[m]}\n{i} ID"
                     for m, i in zip(data.method, data.identifier)]
    fig, ax = plt.subplots(figsize=(10, 4))
    labels = list(dict.fromkeys(data.label))
    x = np.arange(len(labels))
    for j, stage in enumerate(("before", "after")):
        vals = data[data.stage == stage].set_index("label").loc[labels, "collision_rate"]
        ax.bar(x + (j - 0.5) * 0.4, vals * 100, width=0.4, label=f"{stage} handling")
    ax.set_xticks(x, labels, rotation=40, ha="right", fontsize=7)
    ax.set(ylabel="items sharing their ID (%)", title="Collision rates of the identifier variants (paper Fig. 5)")
    ax.legend()
    return fig, data


def plot_hparams(rows: list[dict[str, Any]]) -> tuple[plt.Figure, pd.DataFrame]:
    """Hyper-parameters: collision rate (before handling) against codebook size per shared/specific split."""
    data = pd.DataFrame(rows)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, name in zip(axes, ("semantic", "collaborative")):
        for (shared, specific), part in data[data.identifier == name].groupby(["shared_levels", "specific_levels"]):
            ax.plot(part.codebook_size, part.before * 100, marker="o", label=f"{shared} shared + {specific} specific")
        ax.set_xscale("log", base=2)
        ax.set(xlabel="codebook size", ylabel="collisions before handling (%)", title=f"{name} ID")
    axes[0].legend(fontsize=8)
    fig.suptitle("Shared vs specific levels and codebook size (paper hyper-parameter study, identifier level)")
    return fig, data


FIGURES: dict[str, Callable[[AblationResult], tuple[plt.Figure, pd.DataFrame]]] = {
    "fig1_tradeoff": lambda r: plot_tradeoff(r.runs),
    "fig4_identifier_variants": lambda r: plot_variants(r.runs),
    "fig5_collision_rates": lambda r: plot_collisions(collision_frame(r.runs)),
    "hparam_levels_codebook": lambda r: plot_hparams(r.hparams),
}


def write_ablation(out: str | Path, result: AblationResult) -> list[Path]:
    """``ablation.json`` and every figure (PNG + CSV) under ``out/figures``, each written atomically."""
    from gensar_lib.plots import save_fig

    out = Path(out)
    paths = [write_json(out / "ablation.json", result.as_dict())]
    for name, draw in FIGURES.items():
        if name == "hparam_levels_codebook" and not result.hparams:
            continue
        fig, data = draw(result)
        paths.append(save_fig(fig, NOTEBOOK, name, data, root=out / "figures"))
        plt.close(fig)
    return paths
