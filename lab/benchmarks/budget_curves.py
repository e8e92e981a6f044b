"""Budget curves: validation score against wall-clock training minutes, one line per candidate recipe.

Run from the repository root::

    .venv/bin/python lab/benchmarks/budget_curves.py [--dataset FOLDER | synthetic] [--candidates a,b]
        [--steps N] [--seed N] [--jobs 2] [--threads 1]

Each candidate is the ``small`` profile with the paper-style recipe it had before issue 10
(:data:`PAPER_STYLE`: paraphrased prompts over 5 events, every task family, dropout 0.1, clipping at
1.0, warm-up 1%, no label smoothing, weight decay 1e-7) and a few fields overridden (:data:`CANDIDATES`);
"small profile" is today's profile. Since 2026-12-03 that profile warms up over 5% of its steps and smooths
labels by 0.1, and since 2026-12-06 its weight decay is 0.1, so the candidates that add those levers to it
now equal it; their lines committed before then (lab/LOG.md, "Measured" of 2026-12-02 to 2026-12-04) were the
profile of that day plus the lever. It is
trained with ``gensar_lib.t5.stage.train_generative`` (the artifact cache keys it, so a rerun only
plots) for ``--steps`` optimiser steps over all training instructions, validated every
``--eval-every`` steps on the profile's validation users (mean NDCG@5 of both tasks, the
checkpoint criterion), and its best checkpoint is scored on the test users (sampled and full
ranking). The x axis is the cumulative training time of each validation round (validation
excluded), so candidates of different speed compare at the same wall-clock budget.

A candidate may also replace the identifiers (its ``identifiers`` entry names a file committed in
``lab/benchmarks/data``): "small profile + identifiers before the RQ-VAE change" trains today's recipe on the
GenSAR identifiers the suite made before issue 11 changed the RQ-VAE (lab/LOG.md, "Identifiers downstream";
``--name identifiers_downstream`` keeps that comparison in its own files). Committed results name it by its
old name, "small profile + identifiers before issue 11" (:data:`RENAMED`; ``--merge`` reads them under the new).

``--jobs 2`` trains two candidates at once, each in its own process with ``--threads`` threads:
on the 2-core machine that halves the time of a sweep, and every candidate sees the same load, so
the curves compare fairly with each other (not with a quiet-machine run). Writes
``figures/05_t5_training/<name>_<dataset>.{png,csv}`` and ``<name>_<dataset>.json``
(histories, test metrics, provenance).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gensar_lib.config import REPO_ROOT, Profile, fingerprint, load_profile, with_overrides  # noqa: E402

OFFICE_DIR = REPO_ROOT / "data" / "amazon-office"  

# The paper-style recipe the small profile had before issue 10 (the candidates' base, so that the
# committed curves keep their meaning when the profile changes).
PAPER_STYLE: dict[str, Any] = {"model.dropout_rate": 0.1, "train.grad_clip": 1.0, "train.history_length": 5,
                               "train.prompts": "paraphrases", "train.task_mix": None, "train.warmup_ratio": 0.01,
                               "train.label_smoothing": 0.0, "train.weight_decay": 1e-7}


def profile_values(keys) -> dict[str, Any]:
    """The small profile's own values of ``"section.field"`` keys."""
    profile = load_profile("small")
    return {key: getattr(getattr(profile, key.split(".")[0]), key.split(".")[1]) for key in keys}


SMALL_RECIPE = profile_values(PAPER_STYLE)  # today's profile: it undoes every PAPER_STYLE field
# A candidate's "identifiers" entry names a committed identifier file, lab/benchmarks/data/identifiers_<name>_<dataset>.json
# (made by an earlier commit, named in its "provenance"); without it, the profile's own GenSAR identifiers.
IDS = "identifiers"
IDS_DIR = Path(__file__).resolve().parent / "data"
# name -> {"section.field": value} overrides of PAPER_STYLE on the small profile
CANDIDATES: dict[str, dict[str, Any]] = {
    "baseline": {},
    "lr 1e-2": {"train.lr": 1e-2},
    "no dropout": {"model.dropout_rate": 0.0},
    "lr 1e-2 + no dropout": {"train.lr": 1e-2, "model.dropout_rate": 0.0},
    "batch 128 + lr 6e-3": {"train.batch_size": 128, "train.lr": 6e-3},
    "history 3": {"train.history_length": 3},
    "d256": {"model.d_model": 256, "model.d_ff": 1024, "model.d_kv": 64},
    "4+4 layers": {"model.num_layers": 4},
    "warm-up 5%": {"train.warmup_ratio": 0.05},
    "label smoothing 0.1": {"train.label_smoothing": 0.1},
    "no dropout + lr 6e-3 + warm-up 5%": {"model.dropout_rate": 0.0, "train.lr": 6e-3, "train.warmup_ratio": 0.05},
    "no dropout + no clipping": {"model.dropout_rate": 0.0, "train.grad_clip": 0.0},
    "no dropout + no clipping + NRIP/NSIP only": {"model.dropout_rate": 0.0, "train.grad_clip": 0.0,
                                                  "train.task_mix": (("NRIP", 1.0), ("NSIP", 1.0))},
    "small profile": SMALL_RECIPE,
    "small profile + lr 6e-3": {**SMALL_RECIPE, "train.lr": 6e-3},
    # identifier-token embeddings from the RQ-VAE codebook vectors (generative.init_identifier_embeddings)
    "small profile + codebook init": {**SMALL_RECIPE, "model.identifier_init": "codebook"},
    # issue 11, part 4: today's recipe on the GenSAR identifiers the suite made before issue 11's RQ-VAE fix
    "small profile + identifiers before the RQ-VAE change": {**SMALL_RECIPE, IDS: "before_issue11"},
}
# old candidate name (in committed results) -> its name now
RENAMED = {"small profile + identifiers before issue 11": "small profile + identifiers before the RQ-VAE change"}
# today's recipe with one lever of the paper-style sweep: "small profile + warm-up 5%", ...
CANDIDATES.update({f"small profile + {lever}": {**SMALL_RECIPE, **CANDIDATES[lever]}
                   for lever in ("label smoothing 0.1", "warm-up 5%", "d256", "4+4 layers")})
# the two levers that beat today's profile (2026-12-02), together, and with a larger batch or peak learning rate
WARM_SMOOTH = {**CANDIDATES["small profile + warm-up 5%"], **CANDIDATES["label smoothing 0.1"]}
CANDIDATES.update({
    "small profile + warm-up 5% + label smoothing 0.1": WARM_SMOOTH,
    "small profile + warm-up 5% + label smoothing 0.1 + lr 6e-3": {**WARM_SMOOTH, "train.lr": 6e-3},
    # the same examples in half the steps (its own step budget, whatever --steps says)
    "small profile + warm-up 5% + label smoothing 0.1 + batch 128": {
        **WARM_SMOOTH, "train.batch_size": 128, "train.lr": 4.2e-3, "train.max_steps": 1600, "train.eval_every": 400},
})
# levers for the synthetic world's recommendation target (2026-12-04): the profile (then warm-up 5% and label
# smoothing 0.1; since 2026-12-06 also weight decay 0.1, so the first lever equals it) with weight decay against
# the decline after step 4,350 of the longer run, twice the NRIP instructions, one more event of each task,
# dropout over its ~20 epochs, or the steps that fill the 10-minute limit there (its own step budget, whatever
# --steps says)
CANDIDATES.update({
    "small profile + weight decay 0.1": {**SMALL_RECIPE, "train.weight_decay": 0.1},
    "small profile + NRIP x2": {**SMALL_RECIPE, "train.task_mix": (("NRIP", 2.0), ("NSIP", 1.0))},
    "small profile + history 3": {**SMALL_RECIPE, "train.history_length": 3},
    "small profile + dropout 0.1": {**SMALL_RECIPE, "model.dropout_rate": 0.1},
    "small profile + 5800 steps": {**SMALL_RECIPE, "train.max_steps": 5800, "train.eval_every": 1450},
})
# Levers for GenSAR against the learned baselines (notebook 06, section 4): twice the search instructions
# (the search-only model searched better), and a longer history of each task (the joint baseline reads 10 events)
CANDIDATES.update({
    "small profile + NSIP x2": {**SMALL_RECIPE, "train.task_mix": (("NRIP", 1.0), ("NSIP", 2.0))},
    "small profile + history 5": {**SMALL_RECIPE, "train.history_length": 5},
})


def candidate_profile(name: str, steps: int, eval_every: int, seed: int = 0) -> Profile:
    """The small profile with the paper-style recipe, the candidate's overrides, the sweep's step budget and seed."""
    values = {"seed": seed, "train.max_steps": steps, "train.eval_every": eval_every, **PAPER_STYLE, **CANDIDATES[name]}
    return with_overrides(load_profile("small"), {k: v for k, v in values.items() if k != IDS})


def identifiers_path(name: str, dataset: str) -> Path:
    """The committed identifier file of a candidate's ``identifiers`` entry."""
    return IDS_DIR / f"identifiers_{name}_{dataset}.json"


def committed_identifiers(name: str, prepared, profile: Profile):
    """GenSAR identifiers read from a committed file; every item of the prepared data must have one."""
    from gensar_lib.config import ConfigError
    from gensar_lib.identifiers import from_json

    from gensar_lib.results import dataset_stem

    path = identifiers_path(name, dataset_stem(prepared.dataset.name))
    if not path.exists():
        raise ConfigError(f"{path}: no committed identifiers {name!r} for this dataset")
    table = json.loads(path.read_text())["identifiers"]
    items = [item.id for item in prepared.dataset.items]
    missing = [item for item in items if item not in table]
    if missing:
        raise ConfigError(f"{path}: field 'identifiers' has no entry for item {missing[0]!r} "
                          f"({len(missing)} items missing)")
    return from_json({item: table[item] for item in items}, profile.quantize.codebook_size)


def run_candidate(name: str, spec: str, steps: int, eval_every: int, seed: int = 0) -> dict[str, Any]:
    """Train (or load) one candidate for one seed and score its best checkpoint on the test users."""
    from gensar_lib.data.pipeline import prepare_data
    from gensar_lib.evaluation import evaluate_generative, held_out
    from gensar_lib.rqvae import all_identifiers
    from gensar_lib.t5.stage import train_generative

    profile = candidate_profile(name, steps, eval_every, seed)
    prepared = prepare_data(spec, profile)
    if IDS in CANDIDATES[name]:  # a committed file holds identifiers, not codebook vectors
        ids, vectors = committed_identifiers(CANDIDATES[name][IDS], prepared, profile), None
    else:
        gensar = all_identifiers(prepared, profile, kinds=("gensar",), progress=False)["gensar"]
        ids, vectors = gensar.ids, gensar.vectors
    gen = train_generative(prepared, ids, profile, progress=False, vectors=vectors)
    cases, candidates = held_out(prepared, profile)
    return {"candidate": f"{name}, seed {seed}" if seed else name, "seed": seed, "dataset": prepared.dataset.name,
            "overrides": CANDIDATES[name], "history": gen.history,
            "test": evaluate_generative(gen, cases, candidates, profile), "t5_folder": str(gen.folder)}


def plot(results: list[dict[str, Any]], dataset: str, out: Path, stem: str = "budget_curves") -> Path:
    """One figure: validation score against training minutes, a line per candidate."""
    import matplotlib.pyplot as plt
    import pandas as pd

    from gensar_lib.plots import save_fig, use_style

    use_style()
    rows = [{"candidate": r["candidate"], "minutes": h["train_seconds"] / 60, "step": h["step"],
             "epoch": h["epoch"], "val_score": h["val_score"], "train_loss": h["train_loss"]}
            for r in results for h in r["history"]]
    frame = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(11, 4.5))
    ax.set_prop_cycle(color=plt.cm.tab20.colors)  # 20 colours: a sweep merged with earlier ones has more than 10 lines
    for name, part in frame.groupby("candidate", sort=False):
        ax.plot(part["minutes"], part["val_score"], marker="o", ms=3, label=name)
    ax.set(xlabel="training minutes (validation excluded)", ylabel="validation mean NDCG@5",
           title=f"Budget curves, small profile, {dataset}")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the curves, never over them
    return save_fig(fig, "05_t5_training", f"{stem}_{dataset}", frame, root=out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default=str(OFFICE_DIR) if OFFICE_DIR.exists() else "synthetic")
    p.add_argument("--candidates", default="baseline", help=f"comma-separated, from: {', '.join(CANDIDATES)}")
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--seed", type=int, default=0, help="the profile's seed for every candidate (identifiers, "
                   "model, batches); a line of seed N is named '<candidate>, seed N'")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch threads per job (default: 2 // jobs)")
    p.add_argument("--out", default=str(REPO_ROOT / "figures"))
    p.add_argument("--merge", nargs="*", default=[], help="JSON files of earlier sweeps to draw in the same figure")
    p.add_argument("--label", default=None, help="a name for this sweep in later merges")
    p.add_argument("--name", default="budget_curves", help="file stem of the figure and JSON (<name>_<dataset>)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # one candidate, result JSON on stdout
    args = p.parse_args()
    import torch

    threads = args.threads or max(1, 2 // args.jobs)
    torch.set_num_threads(threads)
    if args.worker:
        print(json.dumps(run_candidate(args.worker, args.dataset, args.steps, args.eval_every, args.seed)))
        return
    names = [n.strip() for n in args.candidates.split(",") if n.strip()]
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        sys.exit(f"error: unknown candidates {unknown}; choose from {list(CANDIDATES)}")
    start, load = time.time(), os.getloadavg()
    results: list[dict[str, Any]] = []
    pending = list(names)
    while pending:
        batch, pending = pending[:args.jobs], pending[args.jobs:]
        procs = [subprocess.Popen([sys.executable, __file__, "--worker", n, "--dataset", args.dataset,
                                   "--steps", str(args.steps), "--eval-every", str(args.eval_every),
                                   "--threads", str(threads), "--seed", str(args.seed)], stdout=subprocess.PIPE, text=True,
                                  env={**os.environ, "OMP_NUM_THREADS": str(threads)})
                 for n in batch]
        for name, proc in zip(batch, procs):
            out, _ = proc.communicate()
            if proc.returncode:
                print(f"candidate {name!r} failed (exit {proc.returncode}); left out", flush=True)
                continue
            results.append(json.loads(out.strip().splitlines()[-1]))
            r = results[-1]
            best = max(r["history"], key=lambda h: h["val_score"])
            test = r["test"]
            print(f"{name:<24} best validation {best['val_score']:.4f} at {best['train_seconds'] / 60:.1f} min "
                  f"(step {best['step']}); test HR@10 sampled rec {test['rec']['sampled']['HR@10']:.3f} "
                  f"search {test['search']['sampled']['HR@10']:.3f}; full rec {test['rec']['full']['HR@10']:.3f} "
                  f"search {test['search']['full']['HR@10']:.3f}", flush=True)
    if not results:
        sys.exit("error: every candidate failed; nothing to plot")
    from gensar_lib.results import dataset_stem

    dataset = dataset_stem(results[0]["dataset"])  # the name notebook 06 reads back (ablation.downstream_path)
    for path in args.merge:  # earlier sweeps drawn in the same figure, their own lines' names prefixed once
        earlier = json.loads(Path(path).read_text())
        prefix = earlier.get("label") or Path(path).stem
        results += [{**r, "merged": True, "candidate": (RENAMED.get(r["candidate"], r["candidate"]) if r.get("merged")
                                                        else f"{prefix}: {RENAMED.get(r['candidate'], r['candidate'])}")}
                    for r in earlier["results"]]
    out = Path(args.out)
    png = plot(results, dataset, out, args.name)
    report = {"label": args.label, "dataset": args.dataset, "seed": args.seed, "steps": args.steps, "eval_every": args.eval_every, "jobs": args.jobs,
              "threads": threads, "load_before": load, "wall_seconds": time.time() - start,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.platform(),
              "cpus": os.cpu_count(), "results": results}
    from gensar_lib.artifacts import code_fingerprint, write_json

    report["code"] = code_fingerprint(REPO_ROOT / "gensar_lib")
    report["profile_key"] = fingerprint(load_profile("small"))  # the profile every candidate starts from
    print(f"wrote {png} and {write_json(out / '05_t5_training' / f'{args.name}_{dataset}.json', report)}")


if __name__ == "__main__":
    main()
