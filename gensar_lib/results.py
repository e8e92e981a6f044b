"""The committed ablation results as Markdown tables (``python -m gensar_lib results``), one per results file;
``--readme`` writes them into README.md between its two results markers."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gensar_lib.ablation import COMMITTED, LABELS, summary_frame
from gensar_lib.artifacts import atomic_path
from gensar_lib.config import REPO_ROOT, ConfigError

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
    (named by ``ablation.LABELS``, else by its own name) and a column per protocol, task and metric; each
    column's best mean is bold (every method that ties it at 3 decimals too); ``-`` where a method has no score."""
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
