"""Fig. 5 of the ablation (gensar_lib.plots.plot_collisions, read as ablation.plot_collisions in notebook 06): one bar pair per identifier."""
import matplotlib
import pandas as pd

from gensar_lib import ablation
from gensar_lib.methods import IDENTIFIER_VARIANTS, SINGLE_ID

matplotlib.use("Agg")


def test_single_id_methods_are_shown_once_and_two_id_methods_twice():
    rows = [{"method": m, "identifier": i, "before": 0.02, "after": 0.01}
            for m in IDENTIFIER_VARIANTS for i in ("semantic", "collaborative")]
    fig, data = ablation.plot_collisions(pd.DataFrame(rows))
    labels = list(dict.fromkeys(data.label))
    assert len(labels) == len(SINGLE_ID) + 2 * (len(IDENTIFIER_VARIANTS) - len(SINGLE_ID))
    for m in SINGLE_ID:
        assert ablation.LABELS[m] in labels
    assert f"{ablation.LABELS['gensar']}\nsemantic ID" in labels
    assert f"{ablation.LABELS['gensar']}\ncollaborative ID" in labels
    assert len(fig.axes[0].patches) == 2 * len(labels)  # before and after for each identifier


def test_methods_are_declared_once_and_agree_with_the_rqvae_types():
    from gensar_lib.baselines import BASELINES
    from gensar_lib.methods import LABELS, METHODS
    from gensar_lib.rqvae import KINDS, SingleKind

    single_rqvae = {name for name, kind in KINDS.items() if isinstance(kind, SingleKind)}
    assert set(SINGLE_ID) == single_rqvae | {"random"}
    assert set(KINDS) <= set(IDENTIFIER_VARIANTS)
    assert set(BASELINES) <= set(LABELS) and set(METHODS) <= set(LABELS)
    assert len({m.colour for m in METHODS.values()}) == len(METHODS)
