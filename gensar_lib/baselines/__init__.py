"""Non-generative baselines for both tasks, under GenSAR's protocol (notebook 06_identifier_ablation).

Every baseline scores EVERY item for EVERY case of BOTH tasks, so each is a point on Fig. 1 (search
against recommendation) and a row of the main table, with the same cases, candidate lists and
metrics as the generative models (``evaluation.evaluate_scorer``: HR@1/5/10 and NDCG@5/10, sampled
and full ranking; ties count against the target, so a row of zeros puts it last).

- counting and text (:mod:`~gensar_lib.baselines.scores`): ``popularity``, ``query-popularity`` (the
  search floor), ``sasrec``, ``bm25``, ``dense``;
- fusions (:mod:`~gensar_lib.baselines.fusion`), weights chosen on validation cases:
  ``query-popularity+sasrec`` and ``bm25+sasrec``;
- learned from the training events (:mod:`~gensar_lib.baselines.neural`): ``personal-search`` (a
  personalised search model in the spirit of TEM) and ``joint`` (a joint search-and-recommendation
  model in the spirit of UniSAR and JSR).

*Departure from the paper*: the paper's tables compare GenSAR with many published models
(sequential recommenders, personalised search models QEM/TEM/CoPPS, joint models
JSR/SESRec/UnifiedSSR/UniSAR, dense and generative retrievers). This suite keeps one small
representative of each family that can be trained on a laptop CPU in minutes; each module states
how its models depart from the published ones.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gensar_lib.artifacts import ArtifactCache
from gensar_lib.baselines.fusion import Scorer, choose_weights, fusion
from gensar_lib.baselines.neural import cached_learned
from gensar_lib.baselines.scores import (
    bm25_baseline,
    dense_baseline,
    popularity_baseline,
    popularity_scores,
    query_popularity_baseline,
    query_popularity_scores,
    sasrec_baseline,
)
from gensar_lib.config import Profile
from gensar_lib.data.pipeline import PreparedData
from gensar_lib.data.splits import Case
from gensar_lib.evaluation import Metrics, evaluate_scorer


def learned(name: str) -> Scorer:
    """The scorer of the cached learned baseline ``name`` (:mod:`~gensar_lib.baselines.neural`)."""
    def score(prepared: PreparedData, profile: Profile, cases: Sequence[Case],
              cache: ArtifactCache | None = None) -> np.ndarray:
        return cached_learned(name, prepared, profile, cache).scores(list(cases))

    score.__name__ = name
    return score


SCORERS: dict[str, Scorer] = {
    "popularity": popularity_baseline,
    "query-popularity": query_popularity_baseline,
    "sasrec": sasrec_baseline,
    "bm25": bm25_baseline,
    "dense": dense_baseline,
    "query-popularity+sasrec": fusion(query_popularity_baseline, sasrec_baseline),
    "bm25+sasrec": fusion(bm25_baseline, sasrec_baseline),
    "personal-search": learned("personal-search"),
    "joint": learned("joint"),
}
BASELINES: tuple[str, ...] = tuple(SCORERS)
FUSIONS = ("query-popularity+sasrec", "bm25+sasrec")
LEARNED = ("personal-search", "joint")


def check_name(name: str) -> str:
    """``name`` if it is a known baseline, else a ValueError naming the value and the choices."""
    if name not in SCORERS:
        raise ValueError(f"unknown baseline {name!r}; choose one of {BASELINES}")
    return name


def baseline_scores(
    name: str, prepared: PreparedData, profile: Profile, cases: Sequence[Case], cache: ArtifactCache | None = None
) -> np.ndarray:
    """The score matrix [n_cases, n_items] of baseline ``name`` (one of ``BASELINES``)."""
    return SCORERS[check_name(name)](prepared, profile, list(cases), cache)


def baseline_details(name: str, prepared: PreparedData, profile: Profile, cache: ArtifactCache | None = None
                     ) -> dict[str, Any]:
    """What validation chose for a baseline: a fusion's weight per task, a learned model's epochs and
    training seconds; ``{}`` for the others."""
    if name in FUSIONS:
        first, second = SCORERS[name.split("+")[0]], SCORERS[name.split("+")[1]]
        return {"weights": choose_weights(first, second, prepared, profile, cache)}
    if name in LEARNED:
        return cached_learned(name, prepared, profile, cache).log
    return {}


def evaluate_baseline(
    name: str,
    prepared: PreparedData,
    profile: Profile,
    cases: Sequence[Case],
    candidates: np.ndarray,
    cache: ArtifactCache | None = None,
) -> Metrics:
    """``{task: {protocol: summary}}`` of a baseline, as ``evaluation.evaluate_generative`` returns it."""
    check_name(name)
    cache = cache or ArtifactCache()
    return evaluate_scorer(lambda task_cases: baseline_scores(name, prepared, profile, task_cases, cache),
                           cases, candidates)


def evaluate_baselines(
    prepared: PreparedData,
    profile: Profile,
    cases: Sequence[Case],
    candidates: np.ndarray,
    cache: ArtifactCache | None = None,
    names: Sequence[str] = BASELINES,
) -> dict[str, Metrics]:
    """``{name: evaluate_baseline(name, ...)}`` for each of ``names`` (all by default)."""
    for name in names:
        check_name(name)
    return {name: evaluate_baseline(name, prepared, profile, cases, candidates, cache) for name in names}


__all__ = ["BASELINES", "FUSIONS", "LEARNED", "SCORERS", "baseline_details", "baseline_scores", "check_name",
           "evaluate_baseline", "evaluate_baselines", "popularity_scores", "query_popularity_scores"]
