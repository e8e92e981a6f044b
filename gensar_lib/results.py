"""The ablation's results files (notebook 06_identifier_ablation): :class:`AblationResult` and its
``ablation.json``; the committed results notebook 06 loads, how a multi-seed ablation is extended over
several sessions and combined with what was trained now; the identifiers-downstream comparison of the lab's
budget curves; and the committed results as Markdown tables (``python -m gensar_lib results``; ``--readme``
writes them into README.md between its two results markers).
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from gensar_lib.artifacts import atomic_path, write_json
from gensar_lib.config import REPO_ROOT, ConfigError, Profile, fingerprint
from gensar_lib.methods import LABELS
from gensar_lib.tables import summary_frame, verdict

NOTEBOOK = "06_identifier_ablation"
COMMITTED = REPO_ROOT / "figures" / NOTEBOOK  # the committed multi-seed results notebook 06 loads


@dataclass
class AblationResult:
    """Every run (method x seed), the variants' collision rates and the hyper-parameter grid."""

    dataset: str
    profile: str
    runs: list[dict[str, Any]]
    hparams: list[dict[str, Any]] = field(default_factory=list)
    structure: dict[str, Any] = field(default_factory=dict)  # structure.identifier_structure of the profile seed
    profile_key: str = ""  # config.fingerprint of the profile: committed results name the profile they ran
    provenance: dict[str, Any] = field(default_factory=dict)  # command, date, machine, code (the CLI sets it)

    def as_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "profile": self.profile, "profile_key": self.profile_key,
                "seeds": sorted({r["seed"] for r in self.runs}), "runs": self.runs, "hparams": self.hparams,
                "structure": self.structure, "provenance": self.provenance}


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


def committed_status(dataset: str, profile: Profile, path: Path | None = None) -> tuple[AblationResult | None, str]:
    """The committed results of this dataset and profile, or None when absent or made with other profile values
    (so that no stale number is shown as today's), with a sentence that says which (notebook 06, section 2)."""
    path = path or committed_path(dataset, profile.name)
    if not path.exists():
        return None, (f"no committed ablation results for profile {profile.name!r} on {dataset}: every method is "
                      "trained now")
    result = from_dict(json.loads(path.read_text()))
    if result.profile_key != fingerprint(profile):
        return None, (f"{path.name}: field 'profile_key' = {result.profile_key!r}, but profile {profile.name!r} is "
                      f"now {fingerprint(profile)!r} (its values changed since these results were made): they are "
                      "not loaded, and every method is trained now")
    return result, f"loaded the committed runs of profile {profile.name!r} on {dataset} (the hyper-parameter grid too)"


def load_committed(dataset: str, profile: Profile, path: Path | None = None) -> AblationResult | None:
    """:func:`committed_status`'s results, with a warning when there are none."""
    result, status = committed_status(dataset, profile, path)
    if result is None:
        warnings.warn(status, stacklevel=2)
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
    ``source`` (trained now, or loaded). The hyper-parameter grid and structure are today's when computed,
    else the committed ones."""
    fresh = {(r["method"], r["seed"]) for r in now.runs}
    runs = [{**r, "source": "trained now"} for r in now.runs]
    if committed is None:
        return replace(now, runs=runs)
    runs += [{**r, "source": "loaded"} for r in committed.runs
             if (r["method"], r["seed"]) not in fresh]
    return replace(now, runs=runs, hparams=now.hparams or committed.hparams,
                   structure=now.structure or committed.structure)


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


def write_ablation(out: str | Path, result: AblationResult) -> list[Path]:
    """``ablation.json`` and every figure (PNG + CSV) under ``out/figures``, each written atomically."""
    from gensar_lib.plots import ABLATION_FIGURES, save_fig

    out = Path(out)
    paths = [write_json(out / "ablation.json", result.as_dict())]
    for name, draw in ABLATION_FIGURES.items():
        if name == "hparam_levels_codebook" and not result.hparams:
            continue
        fig, data = draw(result)
        paths.append(save_fig(fig, NOTEBOOK, name, data, root=out / "figures"))
        plt.close(fig)
    return paths


README = REPO_ROOT / "README.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
# (protocol, task, metric) of each column, in order
COLUMNS = tuple((protocol, task, metric) for protocol in ("full", "sampled") for task in ("rec", "search")
                for metric in ("HR@10", "NDCG@10"))
TASK_NAMES = {"rec": "rec.", "search": "search"}


def results_files(folder: Path = COMMITTED) -> list[Path]:
    """The committed ablation results, ``ablation_<dataset>_<profile>.json``, by name."""
    return sorted(folder.glob("ablation_*_*.json"))


def _cell(mean: float, std: float, best: bool) -> str:
    """``mean ± std`` (the mean alone for one seed), 3 decimals; bold when it is the column's best."""
    text = f"{mean:.3f}" if np.isnan(std) else f"{mean:.3f} ± {std:.3f}"
    return f"**{text}**" if best else text


def results_table(report: dict) -> str:
    """A header line naming the dataset, profile and seeds, then one row per method and baseline present
    (named by ``methods.LABELS``, else by its own name) and a column per protocol, task and metric; each
    column's best mean is bold (every method that ties it at 3 decimals too); ``-`` where a method has no score;
    then how GenSAR stands against the strongest baseline of each task (``tables.verdict``)."""
    frames = {protocol: summary_frame(report["runs"], protocol).set_index(["method", "task", "metric"])
              for protocol in ("full", "sampled")}
    present = list(dict.fromkeys(run["method"] for run in report["runs"]))
    methods = [m for m in LABELS if m in present] + [m for m in present if m not in LABELS]
    best = {}
    for protocol, task, metric in COLUMNS:
        frame = frames[protocol]
        means = [round(frame.loc[(m, task, metric), "mean"], 3) for m in methods if (m, task, metric) in frame.index]
        best[protocol, task, metric] = max(means) if means else None
    seeds = sorted({run["seed"] for run in report["runs"]})
    lines = [f"**{report['dataset']}**, profile `{report['profile']}`, seeds {', '.join(map(str, seeds))} "
             "(mean ± standard deviation over seeds where a method ran more than one):", "",
             "| method | seeds | " + " | ".join(f"{TASK_NAMES[t]} {m} {p}" for p, t, m in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for method in methods:
        cells = []
        for protocol, task, metric in COLUMNS:
            frame, key = frames[protocol], (method, task, metric)
            if key not in frame.index:
                cells.append("-")
                continue
            mean, std = frame.loc[key, "mean"], frame.loc[key, "std"]
            cells.append(_cell(mean, std, round(mean, 3) == best[protocol, task, metric]))
        n = len({run["seed"] for run in report["runs"] if run["method"] == method})
        lines.append(f"| {LABELS.get(method, method)} | {n} | " + " | ".join(cells) + " |")
    lines += ["", *(f"- {line.removeprefix('Verdict: ')}" for line in verdict(report["runs"], "full", "HR@10",
                                                                                identifiers=()))]
    return "\n".join(lines) + "\n"


def results_markdown(folder: Path = COMMITTED) -> str:
    """Every committed results file's table, in file-name order, a blank line between them."""
    files = results_files(folder)
    if not files:
        raise ConfigError(f"{folder}: no committed ablation results (ablation_<dataset>_<profile>.json)")
    return "\n".join(results_table(json.loads(path.read_text())) for path in files)


def readme_block(text: str, where: Path = README) -> tuple[int, int]:
    """Start and end offsets of what lies between the results markers of ``text``; a ConfigError unless each
    marker is there once, the begin marker first."""
    counts = (text.count(BEGIN), text.count(END))
    if counts != (1, 1) or text.index(BEGIN) > text.index(END):
        raise ConfigError(f"{where}: needs one {BEGIN!r} line and, after it, one {END!r} line "
                          f"(found {counts[0]} and {counts[1]})")
    return text.index(BEGIN) + len(BEGIN), text.index(END)


def write_readme(tables: str, path: Path = README) -> Path:
    """``path`` with the block between its results markers replaced by ``tables``, written atomically."""
    text = path.read_text(encoding="utf-8")
    start, end = readme_block(text, path)
    with atomic_path(path) as tmp:
        tmp.write_text(text[:start] + "\n" + tables + text[end:], encoding="utf-8")
    return path
