"""Fig. 5 of the ablation (gensar_lib.ablation.plot_collisions): one bar pair per identifier."""
import matplotlib
import pandas as pd

from gensar_lib import ablation

matplotlib.use("Agg")


def test_single_id_methods_are_shown_once_and_two_id_methods_twice():
    rows = [{"method": m, "identifier": i, "before": 0.02, "after": 0.01}
            for m in ablation.IDENTIFIER_VARIANTS for i in ("semantic", "collaborative")]
    fig, data = ablation.plot_collisions(pd.DataFrame(rows))
    labels = list(dict.fromkeys(data.label))
    assert len(labels) == len(ablation.SINGLE_ID) + 2 * (len(ablation.IDENTIFIER_VARIANTS) - len(ablation.SINGLE_ID))
    for m in ablation.SINGLE_ID:
        assert ablation.LABELS[m] in labels
    assert f"{ablation.LABELS['gensar']}\nsemantic ID" in labels
    assert f"{ablation.LABELS['gensar']}\ncollaborative ID" in labels
    assert len(fig.axes[0].patches) == 2 * len(labels)  # before and after for each identifier
