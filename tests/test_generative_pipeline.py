"""The whole generative pipeline on the tiny synthetic world: it learns both tasks, far above random."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from gensar_lib.artifacts import ArtifactCache
from gensar_lib.config import load_profile
from gensar_lib.data.pipeline import prepare_data
from gensar_lib.pipeline import all_identifiers, evaluate_generative, train_generative

# The session's cache (conftest), shared with the notebooks, so a test session trains the tiny T5 once.
CACHE = ArtifactCache()
RANDOM_SAMPLED_NDCG10 = float(np.sum(1 / np.log2(np.arange(10) + 2)) / 100)  # target uniform among 100


@pytest.fixture(scope="module")
def trained():
    profile = load_profile("tiny")
    prepared = prepare_data("synthetic", profile, CACHE)
    ids = all_identifiers(prepared, profile, kinds=("gensar",), cache=CACHE, progress=False)["gensar"].ids
    return profile, prepared, train_generative(prepared, ids, profile, CACHE, progress=False)


def test_tiny_model_beats_random_on_both_tasks(trained):
    profile, prepared, gen = trained
    metrics = evaluate_generative(gen, prepared.split.test, prepared.candidates["test"], profile)
    random_full_hr10 = 10 / prepared.dataset.n_items
    for task in ("rec", "search"):
        assert metrics[task]["sampled"]["HR@10"] >= 0.15, metrics[task]  # random: 0.10
        assert metrics[task]["sampled"]["NDCG@10"] >= 1.5 * RANDOM_SAMPLED_NDCG10, metrics[task]
        assert metrics[task]["full"]["HR@10"] >= 2.5 * random_full_hr10, metrics[task]


def test_training_history_and_best_checkpoint(trained):
    _, _, gen = trained
    scores = [h["val_score"] for h in gen.history]
    assert len(gen.history) == load_profile("tiny").train.epochs
    assert gen.history[-1]["train_loss"] < 0.5 * gen.history[0]["train_loss"]
    assert max(scores) > scores[0]
    assert all(h["samples_per_s"] > 0 for h in gen.history)


def test_train_command_writes_metrics(trained, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "gensar_lib", "train", "--profile", "tiny", "--out", str(tmp_path)],
        capture_output=True, text=True, env={**os.environ, "GENSAR_CACHE": str(CACHE.root)},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads((tmp_path / "metrics.json").read_text())
    for task in ("rec", "search"):
        for protocol in ("sampled", "full"):
            row = report["metrics"][task][protocol]
            assert set(row) == {"HR@1", "HR@5", "HR@10", "NDCG@5", "NDCG@10"}
            assert all(0.0 <= v <= 1.0 for v in row.values())
            assert row["HR@1"] <= row["HR@5"] <= row["HR@10"]
    assert load_profile("tiny").eval.max_eval_users < report["test_cases"] <= 2 * load_profile("tiny").eval.max_eval_users
    assert np.isfinite(report["training"][-1]["train_loss"])
