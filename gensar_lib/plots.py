"""One plotting style, ``save_fig`` (every figure is a PNG with the CSV behind it) and ``record``
(the numbers a notebook's prose claims, which the tests check): all notebooks."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from gensar_lib.artifacts import atomic_path, code_fingerprint, write_json
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
