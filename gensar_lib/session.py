"""``start()``: the opening of every notebook (00 to 06, the cell after the parameters).

It sets the plotting style, loads the profile, prepares (or reads from the cache) the dataset with its
split and candidate lists, and prints what was loaded. The returned :class:`Session` also records the
notebook's claims and saves its figures under the notebook's name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from gensar_lib import plots
from gensar_lib.config import Profile, load_profile
from gensar_lib.data.pipeline import PreparedData, prepare_data


@dataclass(frozen=True)
class Session:
    """What a notebook works with: its name, the profile and the prepared data."""

    notebook: str
    profile: Profile
    data: PreparedData

    def record(self, **values: Any) -> None:
        """:func:`gensar_lib.plots.record` for this notebook, profile and dataset (the claims tests)."""
        plots.record(self.notebook, self.profile.name, self.data.dataset.name, **values)

    def save_fig(self, fig: plt.Figure, name: str, data: pd.DataFrame) -> None:
        """:func:`gensar_lib.plots.save_fig` into this notebook's folder of figures (the cell shows the
        figure when it ends)."""
        plots.save_fig(fig, self.notebook, name, data)


def start(notebook: str, profile: str, dataset: str) -> Session:
    """Set the plotting style, load ``profile`` and prepare ``dataset`` (``synthetic`` or a folder);
    print the profile, the dataset and its size."""
    plots.use_style()
    loaded = load_profile(profile)
    session = Session(notebook, loaded, prepare_data(dataset, loaded))
    ds = session.data.dataset
    print(f"profile={session.profile.name} dataset={ds.name} ({ds.source}): {ds.n_items} items, "
          f"{ds.n_users} users, {len(session.data.split.train)} training cases")
    return session
