"""One plotting style and ``save_fig``: every figure is a PNG with the CSV behind it (all notebooks)."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from gensar_lib.artifacts import atomic_path
from gensar_lib.config import REPO_ROOT

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
