"""The whole generative pipeline on the tiny synthetic world: it learns both tasks, far above random."""
import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from gensar_lib.artifacts import ArtifactCache
from gensar_lib.config import load_profile
from gensar_lib.data.pipeline import prepare_data
from gensar_lib.__main__ import main
from gensar_lib.evaluation import evaluate_generative, held_out, prompt_for, rank_cases, recommend, search
from gensar_lib.metrics import MISSING
from gensar_lib.rqvae import all_identifiers
from gensar_lib.t5.stage import train_generative

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


def test_one_seeded_rule_draws_the_evaluation_users(trained):
    """Every method and model seed is scored on the same users: the draw follows profile.data.seed only."""
    profile, prepared, _ = trained
    cases, candidates = held_out(prepared, profile)
    again, cands_again = held_out(prepared, replace(profile, seed=profile.seed + 7))
    assert [(c.user, c.task) for c in cases] == [(c.user, c.task) for c in again]
    assert np.array_equal(candidates, cands_again)
    assert len({c.user for c in cases}) == profile.eval.max_eval_users
    assert len(held_out(prepared, profile, max_users=None)[0]) == len(prepared.split.test)
    valid, _ = held_out(prepared, profile, "valid", max_users=10)
    assert len({c.user for c in valid}) == 10 and all(c in prepared.split.valid for c in valid)


def test_recommend_and_search_agree_with_the_evaluated_ranking(trained):
    profile, prepared, gen = trained
    cases, _ = held_out(prepared, profile)
    for task in ("rec", "search"):
        case = next(c for c in cases if c.task == task)
        top = (recommend(gen, case.history, profile, k=5) if task == "rec"
               else search(gen, case.history, case.target.query, profile, k=5))
        assert len(top) == len(set(top)) == 5
        rank = rank_cases(gen, [case], None, profile)[0]
        if case.target.item in top:
            assert rank == top.index(case.target.item), task
        else:
            assert rank == MISSING or rank >= 5, task


def test_predict_command_prints_the_top_items(trained, capsys):
    profile, prepared, gen = trained
    ds = prepared.dataset
    user = 3
    assert main(["predict", "--profile", "tiny", "--user", ds.users[user], "--k", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    expected = recommend(gen, ds.sequences[user], profile, k=3)
    assert [line.split()[1] for line in lines[1:]] == [ds.items[i].id for i in expected]
    assert main(["predict", "--profile", "tiny", "--user", ds.users[user], "--query", "red mug", "--k", "2"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3
    assert main(["predict", "--profile", "tiny", "--user", "nobody"]) == 2
    assert "--user 'nobody': no such user in dataset 'synthetic'" in capsys.readouterr().err
    assert main(["predict", "--profile", "tiny", "--user", ds.users[user], "--k", "0"]) == 2
    long = " ".join(["red mug"] * 1250)  # 9,999 characters: the prompt loses its first tokens, as in training
    prompt = prompt_for(gen, ds.sequences[user], profile, long)
    assert prompt.truncated and prompt.kept == profile.train.max_source_length
    assert main(["predict", "--profile", "tiny", "--user", ds.users[user], "--query", long, "--k", "2"]) == 0
    out = capsys.readouterr().out
    assert f"its first {prompt.tokens - prompt.kept} were cut to fit train.max_source_length = 256, as in training" \
        in out
    assert [line.split()[1] for line in out.strip().splitlines()[-2:]] == [
        ds.items[i].id for i in search(gen, ds.sequences[user], long, profile, k=2)]


def test_zeroed_t5_weights_are_reported_and_retrained_to_the_same_metrics(trained, tmp_path, capsys, monkeypatch):
    """A copy of the session's cache whose T5 weights are zeroed in place (the size kept): the next ``train``
    warns naming the file, trains again, and reports the metrics of the undamaged cache."""
    import shutil

    assert main(["train", "--profile", "tiny", "--out", str(tmp_path / "good")]) == 0
    copy = tmp_path / "cache"
    shutil.copytree(CACHE.root, copy, ignore=shutil.ignore_patterns(".locks", "ablation_run"))
    _, _, gen = trained
    weights = copy / "t5" / gen.folder.name / "best" / "model.safetensors"
    size = weights.stat().st_size
    with open(weights, "r+b") as fh:
        fh.seek(size // 3)
        fh.write(bytes(min(200 * 1024, size // 3)))
    capsys.readouterr()
    monkeypatch.setenv("GENSAR_CACHE", str(copy))
    assert main(["train", "--profile", "tiny", "--out", str(tmp_path / "again")]) == 0
    warnings_ = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: damaged")]
    assert len(warnings_) == 1 and str(weights) in warnings_[0], warnings_
    good, again = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("good", "again"))
    assert again == good
