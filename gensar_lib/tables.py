"""Tables of the ablation runs: per-seed values, means and standard deviations, the paper's main table,
differences with their standard errors, the verdict lines and the collision rates (notebook
06_identifier_ablation). Each takes the runs (``AblationResult.runs``) and returns a DataFrame or text.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from gensar_lib.methods import IDENTIFIER_VARIANTS, LABELS

if TYPE_CHECKING:
    from gensar_lib.results import AblationResult


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
        return f"{abs(diff):.3f}; one of the two ran one seed, so there is no standard error: not evidence either way"
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
            lines.append(f"Verdict: on {TASK_NAMES[task]}, {LABELS.get(first, first)} identifiers score highest "
                         f"({s.loc[(first, task), 'mean']:.3f} {metric}, {protocol}), ahead of "
                         f"{LABELS.get(second, second)} by "
                         f"{_standing(d['difference'], d['standard_error'], d['beyond_2se'])}.")
    if "gensar" in {r["method"] for r in runs} and any(r["family"] == "baseline" for r in runs):
        for row in baseline_gap(runs, protocol, metric).itertuples():
            name = LABELS.get(row.best_baseline, row.best_baseline)
            baseline = f"the strongest baseline, {name}, in {metric} ({protocol})"
            if row.beyond_2se is False:  # within two standard errors: level, whichever side the mean is on
                lines.append(f"Verdict: on {TASK_NAMES[row.task]}, GenSAR is level with {baseline}: "
                             f"{'ahead' if row.difference >= 0 else 'behind'} by {abs(row.difference):.3f} ± "
                             f"{row.standard_error:.3f}, within two standard errors.")
                continue
            word = "beats" if row.difference > 0 else "trails" if row.difference < 0 else "equals"
            lines.append(f"Verdict: on {TASK_NAMES[row.task]}, GenSAR {word} {baseline} by "
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


def sources_frame(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """Which seeds of each method were trained now and which were loaded."""
    df = pd.DataFrame([{"method": r["method"], "source": r.get("source", "trained now"), "seed": r["seed"]}
                       for r in runs])
    return (df.groupby(["method", "source"], sort=False)["seed"].agg(lambda s: ", ".join(map(str, sorted(s))))
            .rename("seeds").reset_index())


def reproduction(now: AblationResult, committed: AblationResult) -> pd.DataFrame:
    """For each (method, seed) in both: the largest absolute difference of any metric (0: reproduced), whether
    the two were made on the same kind of CPU with the same torch thread count (None: not recorded), and the
    committed seeds' spread (the largest standard deviation over the metrics; NaN with one seed)."""
    def values(run: dict[str, Any]) -> pd.Series:
        return long_frame([run]).set_index(["task", "protocol", "metric"])["value"]

    old = {(r["method"], r["seed"]): r for r in committed.runs}
    spread = long_frame(committed.runs).groupby(["method", "task", "protocol", "metric"])["value"].std()
    rows = []
    for r in now.runs:
        if (r["method"], r["seed"]) not in old:
            continue
        before = old[(r["method"], r["seed"])]
        known = all(k in before and k in r for k in ("cpu", "torch_threads"))
        rows.append({"method": r["method"], "seed": r["seed"],
                     "max_abs_difference": float((values(r) - values(before)).abs().max()),
                     "same_cpu": before["cpu"] == r["cpu"] if known else None,
                     "same_threads": before["torch_threads"] == r["torch_threads"] if known else None,
                     "seed_sd": float(spread.loc[r["method"]].max())})
    return pd.DataFrame(rows, columns=["method", "seed", "max_abs_difference", "same_cpu", "same_threads", "seed_sd"])


def reproduction_lines(table: pd.DataFrame) -> list[str]:
    """One sentence per row of :func:`reproduction`: reproduced or not, why, and how far apart next to the
    committed seeds' spread (notebook 06, section 2). Names no date, path or machine."""
    lines = []
    for row in table.itertuples():
        who = f"{LABELS.get(row.method, row.method)}, seed {row.seed}"
        if row.same_cpu is None:
            machine = "the committed run does not record its kind of CPU and thread count"
        else:
            machine = ("this machine is " + ("the same kind of CPU" if row.same_cpu else "another kind of CPU")
                       + (" with the same" if row.same_threads else " with another") + " torch thread count")
        if row.max_abs_difference == 0:
            lines.append(f"{who}: reproduced exactly ({machine}).")
            continue
        size = f"the metrics differ by up to {row.max_abs_difference:.3f}"
        if np.isfinite(row.seed_sd):
            size += (f", {'within' if row.max_abs_difference <= row.seed_sd else 'beyond'} the committed seeds' "
                     f"spread (SD up to {row.seed_sd:.3f})")
        why = ("so the code or the library versions differ from the committed run's"
               if row.same_cpu and row.same_threads else "and a seed gives the same model only on the same kind "
               "of CPU with the same thread count")
        lines.append(f"{who}: not reproduced; {machine}, {why}; {size}.")
    return lines
