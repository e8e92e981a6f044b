"""``start()``: the opening of every notebook (00 to 06, the cell after the parameters).

It sets the plotting style, loads the profile, prepares (or reads from the cache) the dataset with its
split and candidate lists, and prints what was loaded. The returned :class:`Session` also records the
notebook's claims and saves its figures under the notebook's name, and records every warning printed
after it (``warnings_printed``), which a test requires to be none.
"""
from __future__ import annotations

import logging
import warnings
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
    _record_warnings(session)
    ds = session.data.dataset
    print(f"profile={session.profile.name} dataset={ds.name} ({ds.source}): {ds.n_items} items, "
          f"{ds.n_users} users, {len(session.data.split.train)} training cases")
    return session


_SHOWN = {"showwarning": warnings.showwarning}  # Python's own, wrapped once per process


class _Printed(logging.Handler):
    """Keeps the text of every warning shown (``warnings`` or a log record of level WARNING and above)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.texts: list[str] = []
        self.session: Session | None = None

    def add(self, text: str) -> None:
        self.texts.append(text)
        if self.session is not None:
            self.session.record(warnings_printed=self.texts)

    def emit(self, record: logging.LogRecord) -> None:
        self.add(f"{record.levelname} {record.name}: {record.getMessage()}")
        if not _handled_elsewhere(record.name) and logging.lastResort is not None:
            logging.lastResort.handle(record)  # still printed, as it was before this handler was added


def _handled_elsewhere(name: str) -> bool:
    """Whether a handler other than the recorder takes records of logger ``name`` (following propagation);
    without one, logging would print them to stderr through its last resort, which the recorder must keep."""
    logger: logging.Logger | None = logging.getLogger(name)
    while logger is not None:
        if any(h is not _PRINTED for h in logger.handlers):
            return True
        if not logger.propagate:
            return False
        logger = logger.parent
    return False


_PRINTED = _Printed()


def _record_warnings(session: Session) -> None:
    """From now on, record in ``session``'s claims every warning the kernel prints (none yet)."""
    _PRINTED.texts, _PRINTED.session = [], session
    session.record(warnings_printed=[])
    if _PRINTED not in logging.getLogger().handlers:
        logging.getLogger().addHandler(_PRINTED)

        def show(message, category, filename, lineno, file=None, line=None):
            _PRINTED.add(f"{category.__name__}: {message} ({filename}:{lineno})")
            _SHOWN["showwarning"](message, category, filename, lineno, file, line)

        warnings.showwarning = show
