"""Dataset statistics: the table notebook 00_data opens with and ``python -m gensar_lib stats`` prints, and
what the search protocol lets a model memorise (notebook 06_identifier_ablation)."""
from __future__ import annotations

from collections import Counter

import numpy as np

from gensar_lib.data.queries import query_key
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



def search_protocol(ds: Dataset, split: Split) -> dict[str, float]:
    """How far remembering queries goes on a dataset's search protocol (notebook 06_identifier_ablation, section 5).

    From the training search events: distinct queries (``queries.query_key``), distinct targets per query,
    the entropy in bits of the target given the query and of the target alone (and of a uniform guess over
    the items); from the test search cases: the share whose query was asked in training, and the share whose
    target was already a training target of that query.
    """
    per_query: dict[str, Counter] = {}
    for case in split.train:
        if case.task == "search":
            per_query.setdefault(query_key(case.target.query), Counter())[case.target.item] += 1
    targets = sum(per_query.values(), Counter())
    total = sum(targets.values())
    test = [c for c in split.test if c.task == "search"]
    asked = [per_query.get(query_key(c.target.query)) for c in test]
    return {
        "training_queries": len(per_query),
        "items_per_query": float(np.mean([len(c) for c in per_query.values()])) if per_query else 0.0,
        "test_queries_seen": float(np.mean([a is not None for a in asked])) if test else 0.0,
        "test_targets_seen_with_query": float(np.mean([a is not None and c.target.item in a
                                                       for a, c in zip(asked, test)])) if test else 0.0,
        "entropy_given_query_bits": sum(sum(c.values()) / total * entropy_bits(c) for c in per_query.values())
        if total else 0.0,
        "entropy_bits": entropy_bits(targets),
        "uniform_entropy_bits": float(np.log2(ds.n_items)),
    }


def entropy_bits(counts: Counter) -> float:
    """The entropy, in bits, of the distribution that ``counts`` gives (0 for no counts)."""
    p = np.array([v for v in counts.values() if v > 0], dtype=np.float64)
    if not len(p):
        return 0.0
    p /= p.sum()
    return float(-(p * np.log2(p)).sum())


def describe_search_protocol(stats: dict[str, float]) -> list[str]:
    """Sentences that read :func:`search_protocol`'s numbers, each printed from them (notebook 06, section 5)."""
    removed = 1 - stats["entropy_given_query_bits"] / stats["entropy_bits"] if stats["entropy_bits"] else 0.0
    return [
        f"{stats['training_queries']:.0f} distinct queries in the training search events; a query leads to "
        f"{stats['items_per_query']:.1f} distinct items on average.",
        f"{stats['test_queries_seen']:.0%} of the test search cases ask a query already asked in training, and for "
        f"{stats['test_targets_seen_with_query']:.0%} the target was already a training target of that very query.",
        f"Knowing the query leaves {stats['entropy_given_query_bits']:.2f} bits of uncertainty about the target, "
        f"against {stats['entropy_bits']:.2f} bits without it ({stats['uniform_entropy_bits']:.2f} for a uniform "
        f"guess over the items): the query alone removes {removed:.0%} of it.",
    ]
