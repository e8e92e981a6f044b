"""One plotting style, ``save_fig`` (every figure is a PNG with the CSV behind it), ``record`` (the
numbers a notebook's prose claims, which the tests check): all notebooks. Then the notebooks' figures,
one function per figure, named after what it draws and the notebook section that shows it."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from gensar_lib.artifacts import atomic_path, code_fingerprint, write_json
from gensar_lib.config import REPO_ROOT
from gensar_lib.methods import IDENTIFIER_VARIANTS, LABELS, METHODS, SINGLE_ID
from gensar_lib.tables import collision_frame, summary_frame

if TYPE_CHECKING:
    from gensar_lib.results import AblationResult

FIGURES_ENV = "GENSAR_FIGURES"


def use_style() -> None:
    """The suite's single plotting style."""
    sns.set_theme(style="whitegrid", context="notebook", palette="colorblind")
    plt.rcParams.update({"figure.figsize": (7, 4), "figure.dpi": 100, "savefig.bbox": "tight"})


def figures_dir() -> Path:
    """``$GENSAR_FIGURES`` (tests point it elsewhere) or the repository's ``figures/``."""
    return Path(os.environ.get(FIGURES_ENV) or REPO_ROOT / "figures")


def save_fig(fig: plt.Figure, notebook: str, name: str, data: pd.DataFrame, root: Path | None = None) -> Path:
    """Write ``figures/<notebook>/<name>.png`` (or under ``root``) and the ``.csv`` of ``data`` beside it."""
    folder = (root or figures_dir()) / notebook
    png = folder / f"{name}.png"
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    with atomic_path(folder / f"{name}.csv") as tmp:
        data.to_csv(tmp, index=False)
    return png


CLAIMS = "claims.json"


def record(notebook: str, profile: str, dataset: str, **values: Any) -> Path:
    """Add ``values`` (numbers or booleans the notebook's text relies on) to
    ``figures/<notebook>/claims.json``, with the profile, dataset and code they came from;
    ``tests/test_notebook_claims.py`` asserts them per profile and dataset."""
    path = figures_dir() / notebook / CLAIMS
    old = json.loads(path.read_text()) if path.exists() else {}
    code = code_fingerprint(Path(__file__).parent)
    same_run = (old.get("profile"), old.get("dataset"), old.get("code")) == (profile, dataset, code)
    merged = {**(old.get("values", {}) if same_run else {}), **{k: _plain(v) for k, v in values.items()}}
    return write_json(path, {"profile": profile, "dataset": dataset, "code": code, "values": merged})


def _plain(value: Any) -> Any:
    """A JSON value: numpy scalars become Python numbers and booleans."""
    return value.item() if hasattr(value, "item") else value


# The figures of the notebooks, one function per figure, named after what it draws and documented
# with the section that shows it. Each takes what the notebook computed and returns the figure; the
# notebook saves it with the frame behind it (``save_fig``).

# -- notebook 00 ---------------------------------------------------------------------------------

def lengths_and_popularity(lengths: pd.Series, counts: np.ndarray) -> plt.Figure:
    """Notebook 00, section 2: users per sequence length, and interactions per item rank (log-log)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    axes[0].bar(lengths.index, lengths.values, width=1.0)
    axes[0].set(xlabel="events per user", ylabel="users", title="Sequence length")
    axes[1].loglog(np.arange(1, len(counts) + 1), np.clip(counts, 0.8, None))
    axes[1].set(xlabel="item rank", ylabel="interactions", title="Item popularity (log-log)")
    return fig


# -- notebook 01 ---------------------------------------------------------------------------------

def sasrec_loss_curve(losses: pd.DataFrame, n_items: int, dataset: str) -> plt.Figure:
    """Notebook 01, section 2: SASRec's training loss per epoch (columns ``epoch``, ``loss``) against
    the uniform guess ln(n_items)."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.plot(losses.epoch, losses.loss, marker="o", markersize=3, label="training loss")
    ax.axhline(np.log(n_items), color="grey", linestyle="--", label="uniform guess, ln(n_items)")
    ax.set(xlabel="epoch", ylabel="cross-entropy (nats)", title=f"SASRec training loss ({dataset})")
    ax.legend(loc="upper right")
    return fig


def neighbour_precision_bars(table: pd.DataFrame, k: int, dataset: str) -> plt.Figure:
    """Notebook 01, section 5: neighbour precision@k per label (columns) and embedding (rows)."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    table.T.plot.bar(ax=ax, rot=0, width=0.75, color=["C0", "C1", "0.6"])
    for container in ax.containers:
        ax.bar_label(container, fmt="%.2f", fontsize=8, padding=2)
    ax.set(xlabel="", ylabel=f"share of the top-{k} neighbours", ylim=(0, 1.08),
           title=f"Neighbour precision@{k} ({dataset})")
    ax.legend(title="", loc="upper right")
    return fig


def embedding_pca(points: pd.DataFrame, explained: dict[str, np.ndarray], order: list[str], title: str) -> plt.Figure:
    """Notebook 01, section 6: each embedding's first two principal components (``points``: columns
    ``embedding``, ``pc1``, ``pc2``, ``colour``, ``cold``), coloured in ``order``, cold items as crosses."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    palette = dict(zip(order, plt.get_cmap("tab10").colors))
    for ax, (name, frame) in zip(axes, points.groupby("embedding", sort=False)):
        for value in order:
            part = frame[frame.colour == value]
            ax.scatter(part.pc1, part.pc2, s=8, alpha=0.6, color=palette[value], label=value, linewidths=0)
        cold = frame[frame.cold]
        ax.scatter(cold.pc1, cold.pc2, s=30, marker="x", color="black", linewidths=0.8,
                   label="never a rec. training target")
        ev = explained[name]
        ax.set(xlabel=f"PC1 ({ev[0]:.0%} of variance)", ylabel=f"PC2 ({ev[1]:.0%})", title=f"{name} embedding")
    axes[1].legend(loc="center left", bbox_to_anchor=(1.01, 0.5), markerscale=2, frameon=False)
    fig.suptitle(title)
    return fig


# -- notebook 02 ---------------------------------------------------------------------------------

def residual_by_level(plotted: pd.DataFrame, n_items: int, k: int) -> plt.Figure:
    """Notebook 02, section 1: mean residual norm and distinct code tuples after each level of residual
    k-means (``plotted``: columns ``embedding``, ``level``, ``mean residual norm``, ``distinct code tuples``)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, part in plotted.groupby("embedding"):
        axes[0].plot(part["level"], part["mean residual norm"], marker="o", label=name)
        axes[1].plot(part["level"], part["distinct code tuples"], marker="o", label=name)
    axes[1].axhline(n_items, color="grey", ls="--", lw=1)
    axes[1].text(0.05, n_items * 0.7, f"{n_items} items", color="grey")
    axes[0].set(xlabel="levels used", ylabel="mean residual norm", title="What is left after each level",
                ylim=(0, None))
    axes[1].set(xlabel="levels used", ylabel="distinct code tuples (log)", yscale="log",
                title=f"Items told apart (K = {k})")
    for ax in axes:
        ax.set_xticks(range(int(plotted["level"].max()) + 1))
    axes[0].legend()
    return fig


def rqvae_training_curves(curves: pd.DataFrame, history: dict, n_items: int) -> plt.Figure:
    """Notebook 02, section 3: the joint RQ-VAE's losses, collision rates and code usage per epoch, the
    kept epoch dotted (``curves``: one row per epoch; ``history``: ``train_rqvae``'s history)."""
    best = history["selected_epoch"]
    epochs = curves["epoch"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    for col, style in [("training loss", "-"), ("training reconstruction", "-"), ("training VQ loss", "-"),
                       ("reconstruction (all items, argmin)", "--")]:
        ax.plot(epochs, curves[col], ls=style, label=col, **({"color": "black"} if style == "--" else {}))
    ax.set(xlabel="epoch", ylabel="loss (log)", yscale="log", title="Loss")
    ax.legend(fontsize=8)
    ax = axes[1]
    labels = {"shared": "shared prefix (2 codes)", "semantic": "semantic ID", "collaborative": "collaborative ID"}
    for name, v in history["collision_rate"].items():
        ax.plot(epochs, np.maximum(v, 1 / n_items / 2), label=labels.get(name, name))
    ax.set(xlabel="epoch", ylabel="collision rate (log)", yscale="log",
           title=f"Collisions (argmin codes); kept: epoch {best}")
    ax.legend(fontsize=8, loc="center right")
    ax = axes[2]
    for name, v in history["code_usage"].items():
        ax.plot(epochs, v, label=name, ls="-" if name.startswith("shared") else "--")
    ax.set(xlabel="epoch", ylabel="codes used / K", ylim=(0, 1.05), title="Code usage per level")
    ax.legend(fontsize=8, ncol=2, loc="lower right")
    for ax in axes:
        ax.axvline(best, color="black", ls=":", lw=1.2)
    return fig


def official_vs_suite_training(histories: dict[str, dict]) -> tuple[plt.Figure, pd.DataFrame]:
    """Notebook 02, section 3 ("before and after"): VQ loss, reconstruction, collisions and checkpoint
    score per epoch of each named training history, kept epochs dotted; the figure and its data."""
    fig, axes = plt.subplots(1, 4, figsize=(18, 3.8))
    for (name, hist), color in zip(histories.items(), ["C3", "C0"]):
        coll = hist["collision_rate"]
        series = [hist["vq_loss"], hist["eval_recon_loss"],
                  (np.array(coll["semantic"]) + np.array(coll["collaborative"])) / 2, hist["score"]]
        for ax, y in zip(axes, series):
            ax.plot(hist["epochs"], y, color=color, label=name)
            ax.axvline(hist["selected_epoch"], color=color, ls=":", lw=1.2)
    axes[0].set(xlabel="epoch", ylabel="training VQ loss (log)", yscale="log", title="VQ loss")
    axes[1].set(xlabel="epoch", ylabel="MSE (log)", yscale="log", title="Reconstruction (all items, argmin)")
    axes[2].set(xlabel="epoch", ylabel="collision rate", title="Collisions (mean of the two IDs)")
    axes[3].set(xlabel="epoch", ylabel="score (lower is better)", title="Checkpoint score")
    axes[0].legend(fontsize=8)
    data = pd.concat([pd.DataFrame({"run": name, "epoch": hist["epochs"], "vq_loss": hist["vq_loss"],
                                    "eval_recon_loss": hist["eval_recon_loss"], "score": hist["score"]})
                      for name, hist in histories.items()])
    return fig, data


def collision_sweep(sweep: pd.DataFrame, k: int) -> plt.Figure:
    """Notebook 02, section 4: collision rate over codebook sizes, one line per number of levels and one
    panel per embedding (``sweep``: columns ``embedding``, ``codebook size``, ``levels``, ``collision rate``);
    the profile's ``k`` dotted."""
    sizes = sorted(sweep["codebook size"].unique())
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for ax, (name, part) in zip(axes, sweep.groupby("embedding", sort=False)):
        for levels, line in part.groupby("levels"):
            ax.plot(line["codebook size"], line["collision rate"], marker="o", label=f"{levels} level(s)")
        ax.axvline(k, color="grey", ls=":", lw=1)
        ax.set_xscale("log", base=2)
        ax.set(xlabel="codebook size K (log scale)", title=f"Residual k-means on the {name} embedding")
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.minorticks_off()
    axes[0].set(ylabel="collision rate", ylim=(0, 1.02))
    axes[1].legend()
    return fig


def codebook_init_comparison(init_cmp: pd.DataFrame) -> plt.Figure:
    """Notebook 02, section 5: collisions, usage of the first shared codebook and reconstruction per epoch,
    k-means against random codebook initialisation (``init_cmp``: one row per ``init`` and ``epoch``)."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for (label, part), color in zip(init_cmp.groupby("init", sort=False), ["C0", "C3"]):
        axes[0].plot(part["epoch"], part["collisions: semantic"], color=color, label=f"{label}, semantic ID")
        axes[0].plot(part["epoch"], part["collisions: collaborative"], color=color, ls="--",
                     label=f"{label}, collaborative ID")
        axes[1].plot(part["epoch"], part["usage: shared_a"], color=color, label=label)
        axes[2].plot(part["epoch"], part["reconstruction"], color=color, label=label)
    axes[0].set(xlabel="epoch", ylabel="collision rate", title="Collisions")
    axes[1].set(xlabel="epoch", ylabel="codes used / K", ylim=(0, 1.05), title="Usage of the first shared codebook")
    axes[2].set(xlabel="epoch", ylabel="MSE", title="Reconstruction (all items)")
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    return fig


def items_per_code(hist_df: pd.DataFrame, n_items: int, k: int) -> plt.Figure:
    """Notebook 02, section 6: items per code, most used first, per last level and assignment method
    (``hist_df``: columns ``level``, ``assignment``, ``rank``, ``items``), against perfect balance N / K."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for ax, (level, part) in zip(axes, hist_df.groupby("level", sort=False)):
        for method, line in part.groupby("assignment", sort=False):
            ax.step(line["rank"], line["items"], where="mid", label=method)
        ax.axhline(n_items / k, color="grey", ls=":", lw=1)
        ax.set(xlabel="code (most used first)", title=f"Items per code, level {level}")
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    axes[0].set(ylabel="items")
    axes[0].text(k * 0.55, n_items / k * 1.05, "N / K (perfect balance)", color="grey", fontsize=9)
    axes[1].legend()
    return fig


# -- notebook 03 ---------------------------------------------------------------------------------

def collision_rate_bars(long: pd.DataFrame, order: list[str], title: str) -> plt.Figure:
    """Notebook 03, section 2 (the paper's Fig. 5): collision rate per identifier type (in ``order``) and
    handling (``long``: columns ``identifier``, ``handling``, ``collision rate``)."""
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.27
    x = np.arange(len(order))
    for j, (handling, part) in enumerate(long.groupby("handling", sort=False)):
        rates = part.set_index("identifier").loc[order, "collision rate"]
        bars = ax.bar(x + (j - 1) * width, 100 * rates.values, width, label=handling)
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    ax.set_xticks(x, [o.replace("GenSAR ", "GenSAR\n") for o in order])
    ax.set(ylabel="collision rate (%)", title=title)
    ax.legend()
    return fig


def shared_prefix_groups(size_hist: pd.Series, by_depth: pd.DataFrame, shared_levels: int, n_items: int
                         ) -> plt.Figure:
    """Notebook 03, section 4: how many shared prefixes hold how many items (``size_hist``), and the
    collision rate of each ID's first tokens (``by_depth``), the shared levels shaded."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    axes[0].bar(size_hist.index, size_hist.values, width=0.9)
    axes[0].set(xlabel="items sharing a shared prefix", ylabel="prefixes (log)", yscale="log",
                title=f"{int(size_hist.sum())} shared prefixes for {n_items} items")
    for col, marker in [("semantic ID prefix", "o"), ("collaborative ID prefix", "s")]:
        axes[1].plot(by_depth["tokens"], 100 * by_depth[col], marker=marker, label=col)
    axes[1].axvspan(0.5, shared_levels + 0.5, color="grey", alpha=0.15, lw=0)
    axes[1].text(1, 50, "shared", color="dimgrey")
    axes[1].set(xlabel="first tokens of the ID", ylabel="collision rate (%)", xticks=by_depth["tokens"],
                title="Collisions of ID prefixes (after handling)")
    axes[1].legend()
    return fig


def structure_by_level(lines: pd.DataFrame, shared_levels: int) -> plt.Figure:
    """Notebook 03, section 5: each identifier's AMI with each label, level by level (``lines``: columns
    ``label``, ``identifier``, ``level``, ``AMI``, ``floor``; floors, residual k-means, dashed grey)."""
    labels = list(dict.fromkeys(lines["label"]))
    fig, axes = plt.subplots(1, len(labels), figsize=(6.5 * len(labels), 4.2), squeeze=False)
    for ax, label in zip(axes[0], labels):
        for (ident, floor), line in lines[lines["label"] == label].groupby(["identifier", "floor"], sort=False):
            ax.plot(line["level"], line["AMI"], marker="" if floor else "o", ls="--" if floor else "-",
                    lw=1 if floor else 1.8, color="grey" if floor else None, alpha=0.8 if floor else 1.0,
                    label=ident)
        ax.axvspan(0.5, shared_levels + 0.5, color="grey", alpha=0.1, lw=0)
        ax.set(xlabel="level of the identifier (shaded: GenSAR's shared levels)", ylabel=f"AMI with the {label}",
               xticks=range(1, int(lines["level"].max()) + 1), title=f"What each level carries: {label}")
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


# -- notebook 04 ---------------------------------------------------------------------------------

def prompt_length_histogram(lengths: pd.DataFrame) -> plt.Figure:
    """Notebook 04, section 4: prompt lengths in tokens per task family (columns ``task``, ``source tokens``)."""
    fig, ax = plt.subplots(figsize=(8, 4))
    for task, group in lengths.groupby("task"):
        ax.hist(group["source tokens"], bins=30, alpha=0.6, label=task)
    ax.set(xlabel="source length (tokens)", ylabel="instances", title="Prompt length per task family")
    ax.legend()
    return fig


# -- notebook 05 ---------------------------------------------------------------------------------

def t5_training_curves(history: pd.DataFrame) -> plt.Figure:
    """Notebook 05, section 2: training loss and validation score over training minutes (``history``:
    columns ``minutes``, ``train_loss``, ``val_score``, ``step``), the best validation dashed."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    axes[0].plot(history["minutes"], history["train_loss"], marker="o")
    axes[0].set(xlabel="training minutes", ylabel="training loss", title="Training loss (response tokens)")
    axes[1].plot(history["minutes"], history["val_score"], marker="o", color="C1")
    best = history.loc[history["val_score"].idxmax()]
    axes[1].axvline(best["minutes"], color="grey", ls="--", label=f"best: step {int(best['step'])}")
    axes[1].set(xlabel="training minutes", ylabel="mean NDCG@5", title="Validation (both tasks)")
    axes[1].legend()
    return fig


def generative_result_bars(table: pd.DataFrame, random_hr10: dict[str, float]) -> plt.Figure:
    """Notebook 05, section 4: HR@10 and NDCG@10 per task and protocol (``table``: columns ``task``,
    ``protocol``, ``HR@10``, ``NDCG@10``), with each protocol's random HR@10 (``random_hr10``: protocol ->
    value, e.g. 10 / candidates for the sampled protocol, 10 / items for full ranking) drawn over its own bars only."""
    fig, ax = plt.subplots(figsize=(9, 3.6))
    bars = table.assign(setting=table["task"] + " / " + table["protocol"]).set_index("setting")[["HR@10", "NDCG@10"]]
    bars.plot.bar(ax=ax, rot=0)
    for n, protocol in enumerate(dict.fromkeys(table["protocol"])):
        at = [i for i, p in enumerate(table["protocol"]) if p == protocol]
        value = random_hr10[protocol]
        for j, i in enumerate(at):  # one short line over this setting's pair of bars
            ax.hlines(value, i - 0.35, i + 0.35, color=f"C{n + 2}", ls=":", lw=2, zorder=3,
                      label=f"random HR@10 ({protocol}: {value:.3g})" if j == 0 else None)
    ax.set(ylabel="score", title="Test results of the generative model")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the axes: it hides no bar
    return fig


# ---------------------------------------------------------------------------
# Notebook 06: the ablation (each returns the figure and the data behind it)
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
    key.axis("off")
    key.legend(*ax.get_legend_handles_labels(), loc="lower left")  # beside the axes: it hides no point
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
               color=[METHODS[m].colour for m in order])
        ax.set_xticks(range(len(order)), [LABELS[m] for m in order], rotation=35, ha="right", fontsize=8)
        ax.set(title=f"{'recommendation' if task == 'rec' else 'search'}", ylabel=f"{metric} ({protocol})")
    fig.suptitle("Identifier variants on both tasks (paper Fig. 4)")
    return fig, data


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


# notebook 06's figures of an AblationResult, by file name (results.write_ablation writes them)
ABLATION_FIGURES: dict[str, Callable[[AblationResult], tuple[plt.Figure, pd.DataFrame]]] = {
    "fig1_tradeoff": lambda r: plot_tradeoff(r.runs),
    "fig4_identifier_variants": lambda r: plot_variants(r.runs),
    "fig5_collision_rates": lambda r: plot_collisions(collision_frame(r.runs)),
    "hparam_levels_codebook": lambda r: plot_hparams(r.hparams),
}
