"""Notebook 05's results figure (``plots.generative_result_bars``): each protocol's random line spans only
its own bars."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd

from gensar_lib import plots


def test_each_random_line_spans_only_its_protocols_bars():
    table = pd.DataFrame([{"task": t, "protocol": p, "HR@10": 0.3, "NDCG@10": 0.2}
                          for t in ("rec", "search") for p in ("sampled", "full")])
    fig = plots.generative_result_bars(table, {"sampled": 0.10, "full": 0.05})
    ax = fig.axes[0]
    spans = {}  # random value -> the x ranges its lines cover
    for collection in ax.collections:
        for segment in collection.get_segments():
            (x0, y0), (x1, y1) = segment
            assert y0 == y1
            spans.setdefault(round(float(y0), 6), []).append((float(x0), float(x1)))
    settings = {i: p for i, p in enumerate(table["protocol"])}  # bar group i sits at x = i
    assert set(spans) == {0.10, 0.05}
    for value, protocol in ((0.10, "sampled"), (0.05, "full")):
        groups = sorted(i for i, p in settings.items() if p == protocol)
        assert sorted(round((x0 + x1) / 2) for x0, x1 in spans[value]) == groups
        assert all(x1 - x0 < 1 for x0, x1 in spans[value])  # no line reaches into the next setting
    labels = ax.get_legend_handles_labels()[1]
    assert "random HR@10 (sampled: 0.1)" in labels and "random HR@10 (full: 0.05)" in labels
    plt.close(fig)
