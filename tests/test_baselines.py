"""Non-generative baselines (popularity, SASRec, BM25, dense) under GenSAR's protocol and metrics."""
import dataclasses

import numpy as np
import pytest

from gensar_lib.baselines import (
    BASELINES,
    baseline_scores,
    evaluate_baseline,
    evaluate_baselines,
    popularity_scores,
)
from gensar_lib.config import load_profile
from gensar_lib.embeddings import cached_semantic_embeddings, load_encoder
from gensar_lib.evaluation import PROTOCOLS, evaluate_scores, subset
from gensar_lib.metrics import summarize

TINY = load_profile("tiny")
TASKS = ("rec", "search")
METRIC_KEYS = set(summarize(np.zeros(1, dtype=np.int64)))


@pytest.fixture(scope="module")
def tiny_test(tiny_prepared):
    """At most 100 test users of the tiny synthetic world (the tiny profile's evaluation subset)."""
    return subset(tiny_prepared.split.test, tiny_prepared.candidates["test"], 100, TINY.seed)


@pytest.fixture(scope="module")
def tiny_results(tiny_prepared, tiny_test, session_cache):
    cases, candidates = tiny_test
    return evaluate_baselines(tiny_prepared, TINY, cases, candidates, session_cache)


def task_rows(prepared, part, task, limit=None):
    """The cases of one task in a part and their candidate rows."""
    cases = prepared.split.part(part)
    rows = [i for i, c in enumerate(cases) if c.task == task][:limit]
    return [cases[i] for i in rows], prepared.candidates[part][rows]


# ------------------------------------------------------------------ shape and sanity


def test_results_have_the_generative_metrics_shape(tiny_results):
    assert tuple(tiny_results) == BASELINES
    for name, metrics in tiny_results.items():
        assert set(metrics) == set(TASKS), name
        for task in TASKS:
            assert set(metrics[task]) == set(PROTOCOLS), (name, task)
            for protocol in PROTOCOLS:
                summary = metrics[task][protocol]
                assert set(summary) == METRIC_KEYS
                assert all(isinstance(v, float) for v in summary.values())


def test_metrics_in_unit_interval_and_monotone_in_k(tiny_results):
    for name, metrics in tiny_results.items():
        for task in TASKS:
            for protocol in PROTOCOLS:
                m = metrics[task][protocol]
                assert all(0.0 <= v <= 1.0 for v in m.values()), (name, task, protocol, m)
                assert m["HR@1"] <= m["HR@5"] <= m["HR@10"], (name, task, protocol, m)
                assert m["NDCG@5"] <= m["NDCG@10"] and m["NDCG@5"] <= m["HR@5"] and m["NDCG@10"] <= m["HR@10"]
                # sampled ranks among 100 candidates can only be better than ranks among all items
                if protocol == "full":
                    assert m["HR@10"] <= metrics[task]["sampled"]["HR@10"] + 1e-12


def test_evaluate_baseline_matches_evaluate_scores_per_task(tiny_prepared, tiny_test, tiny_results):
    cases, candidates = tiny_test
    for task in TASKS:
        rows = [i for i, c in enumerate(cases) if c.task == task]
        task_cases = [cases[i] for i in rows]
        direct = evaluate_scores(popularity_scores(tiny_prepared.dataset, tiny_prepared.split, task_cases),
                                 task_cases, candidates[rows])
        assert tiny_results["popularity"][task] == direct


def test_score_matrices_cover_every_case_and_item(tiny_prepared, tiny_test, session_cache):
    cases = tiny_test[0][:20]
    for name in BASELINES:
        scores = baseline_scores(name, tiny_prepared, TINY, cases, session_cache)
        assert scores.shape == (len(cases), tiny_prepared.dataset.n_items), name
        assert np.isfinite(scores).all(), name


def test_popularity_rows_are_identical_within_a_task(tiny_prepared, tiny_test, session_cache):
    cases = tiny_test[0]
    scores = baseline_scores("popularity", tiny_prepared, TINY, cases, session_cache)
    by_task = {t: scores[[c.task == t for c in cases]] for t in TASKS}
    for task, rows in by_task.items():
        assert len(rows) > 1 and (rows == rows[0]).all(), task
    assert not np.array_equal(by_task["rec"][0], by_task["search"][0])  # each task counts its own targets


def test_empty_history_gives_zero_rows_and_the_positive_last(tiny_prepared, session_cache):
    cases, candidates = task_rows(tiny_prepared, "test", "rec", limit=3)
    empty = [dataclasses.replace(c, history=()) for c in cases]
    for name in ("sasrec", "bm25", "dense"):
        scores = baseline_scores(name, tiny_prepared, TINY, empty, session_cache)
        assert not scores.any(), name
        metrics = evaluate_baseline(name, tiny_prepared, TINY, empty, candidates, session_cache)
        assert metrics["rec"]["full"]["HR@10"] == 0.0 and metrics["rec"]["sampled"]["HR@10"] == 0.0
        # a task without cases reports zeros, as evaluate_generative does
        assert all(v == 0.0 for p in PROTOCOLS for v in metrics["search"][p].values())


def test_sasrec_ignores_the_search_query(tiny_prepared, session_cache):
    cases, _ = task_rows(tiny_prepared, "test", "search", limit=5)
    other = [dataclasses.replace(c, target=c.target._replace(query="completely different words")) for c in cases]
    np.testing.assert_array_equal(baseline_scores("sasrec", tiny_prepared, TINY, cases, session_cache),
                                  baseline_scores("sasrec", tiny_prepared, TINY, other, session_cache))


def test_unknown_baseline_names_the_value_and_the_choices(tiny_prepared, tiny_test, session_cache):
    cases, candidates = tiny_test
    pattern = r"unknown baseline 'bm52'.*popularity.*sasrec.*bm25.*dense"
    with pytest.raises(ValueError, match=pattern):
        evaluate_baseline("bm52", tiny_prepared, TINY, cases, candidates, session_cache)
    with pytest.raises(ValueError, match=pattern):
        baseline_scores("bm52", tiny_prepared, TINY, cases, session_cache)
    with pytest.raises(ValueError, match=pattern):  # checked before any baseline runs
        evaluate_baselines(tiny_prepared, TINY, cases, candidates, session_cache, names=("popularity", "bm52"))


# ------------------------------------------------------------------ the baselines do what they claim


def test_dense_scores_are_cosines_computed_by_hand(tiny_prepared, tiny_test, session_cache):
    cases = [c for c in tiny_test[0] if c.task == "search"][:3] + [c for c in tiny_test[0] if c.task == "rec"][:3]
    scores = baseline_scores("dense", tiny_prepared, TINY, cases, session_cache)
    cfg = TINY.embeddings
    encoder = load_encoder(cfg.encoder)
    encoder.max_seq_length = cfg.max_seq_length
    items = tiny_prepared.dataset.items
    some = [0, 5, 17, 42, len(items) - 1]

    def cosine(a, b):
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

    item_vecs = encoder.encode([items[i].text for i in some], convert_to_numpy=True)
    for row, case in enumerate(cases):
        text = case.target.query if case.task == "search" else items[case.history[-1].item].text
        query = encoder.encode([text], convert_to_numpy=True)[0]
        for col, i in enumerate(some):
            assert scores[row, i] == pytest.approx(cosine(query, item_vecs[col]), abs=1e-4), (row, i)
    # a rec case's last history item is its own best match
    table = cached_semantic_embeddings(tiny_prepared.dataset, cfg, session_cache, progress=False)
    for row, case in enumerate(cases[3:], start=3):
        assert scores[row, case.history[-1].item] == pytest.approx(float(scores[row].max()), abs=1e-5)
        np.testing.assert_allclose(scores[row], table @ table[case.history[-1].item], atol=1e-5)


def test_dense_search_beats_random_on_synthetic(tiny_prepared, tiny_results):
    search = tiny_results["dense"]["search"]
    n_items = tiny_prepared.dataset.n_items
    assert search["sampled"]["HR@10"] > 3 * 0.10  # random: 10 of 100 candidates
    assert search["full"]["HR@10"] > 3 * 10 / n_items  # random: 10 of all items


def test_sasrec_rec_beats_popularity_rec_on_synthetic(tiny_results):
    for protocol in PROTOCOLS:
        sasrec, pop = tiny_results["sasrec"]["rec"][protocol], tiny_results["popularity"]["rec"][protocol]
        assert sasrec["HR@10"] > pop["HR@10"] + 0.05, protocol
        assert sasrec["NDCG@10"] > pop["NDCG@10"], protocol


def test_bm25_search_beats_popularity_search_on_office(office_prepared, session_cache):
    cases, candidates = task_rows(office_prepared, "test", "search", limit=1500)
    full = {name: evaluate_baseline(name, office_prepared, TINY, cases, candidates, session_cache)["search"]["full"]
            for name in ("bm25", "popularity")}
    # queries are built from the items' categories, which the item text shares
    assert full["bm25"]["HR@10"] > full["popularity"]["HR@10"] + 0.1
    assert full["bm25"]["NDCG@10"] > full["popularity"]["NDCG@10"] + 0.05
