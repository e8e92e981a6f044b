"""Dataset statistics: the table notebook 00_data opens with and ``python -m gensar_lib stats`` prints."""
from __future__ import annotations

import numpy as np

from gensar_lib.data.schema import Dataset
from gensar_lib.data.splits import Split


def dataset_stats(ds: Dataset, split: Split) -> dict[str, float | int | str]:
    """Users, items, events per task, distinct queries, sequence lengths and cases per split part."""
    lengths = np.array([len(seq) for seq in ds.sequences])
    queries = {e.query for _, e in ds.events("search")}
    stats: dict[str, float | int | str] = {
        "dataset": ds.name,
        "users": ds.n_users,
        "items": ds.n_items,
        "recommendation events": sum(1 for _ in ds.events("rec")),
        "search events": sum(1 for _ in ds.events("search")),
        "distinct queries": len(queries),
        "events per user (median)": float(np.median(lengths)),
        "events per user (max)": int(lengths.max()),
        "protocol": split.protocol,
    }
    for part, by_task in split.counts().items():
        for task in ("rec", "search"):
            stats[f"{part} {task} cases"] = by_task.get(task, 0)
    return stats


def format_stats(stats: dict[str, float | int | str]) -> str:
    """Aligned 'name: value' lines."""
    width = max(map(len, stats))
    return "\n".join(
        f"{k:<{width}}  {v:,}" if isinstance(v, int) else f"{k:<{width}}  {v}" for k, v in stats.items()
    )

