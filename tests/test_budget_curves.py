"""lab/benchmarks/budget_curves.py: candidates that replace the identifiers with a committed file (issue 11, part 4)."""
import importlib.util
import json

import pytest

from gensar_lib.config import REPO_ROOT, ConfigError, load_profile
from gensar_lib.identifiers import joint_identifiers, to_json

spec = importlib.util.spec_from_file_location("budget_curves", REPO_ROOT / "lab" / "benchmarks" / "budget_curves.py")
budget_curves = importlib.util.module_from_spec(spec)
spec.loader.exec_module(budget_curves)


def _ids(prepared, profile, shift=0):
    import numpy as np

    q, n = profile.quantize, prepared.dataset.n_items
    codes = (np.arange(n)[:, None] * np.arange(1, 7)[None, :] + shift) % q.codebook_size
    return joint_identifiers(codes[:, :2], codes[:, 2:4], codes[:, 4:], q.codebook_size,
                             item_ids=[it.id for it in prepared.dataset.items])


def test_a_committed_identifier_file_is_read_back_for_every_item(tiny_prepared, tmp_path, monkeypatch):
    profile = load_profile("tiny")
    ids = _ids(tiny_prepared, profile)
    table = to_json(ids)
    shuffled = dict(reversed(list(table.items())))  # the file's order does not matter
    monkeypatch.setattr(budget_curves, "IDS_DIR", tmp_path)
    path = budget_curves.identifiers_path("old", "synthetic")
    path.write_text(json.dumps({"provenance": {"commit": "abc"}, "identifiers": shuffled}))
    back = budget_curves.committed_identifiers("old", tiny_prepared, profile)
    assert back.item_ids == ids.item_ids and back.semantic == ids.semantic
    assert back.collaborative == ids.collaborative and set(back.vocabulary) == set(ids.vocabulary)
    first = ids.item_ids[0]
    del shuffled[first]
    path.write_text(json.dumps({"identifiers": shuffled}))
    with pytest.raises(ConfigError, match=f"identifiers.*{first}"):
        budget_curves.committed_identifiers("old", tiny_prepared, profile)
    with pytest.raises(ConfigError, match="no committed identifiers 'other'"):
        budget_curves.committed_identifiers("other", tiny_prepared, profile)


def test_the_identifier_entry_is_no_profile_field():
    name = "small profile + identifiers before the RQ-VAE change"
    assert budget_curves.candidate_profile(name, 3200, 800) == budget_curves.candidate_profile("small profile", 3200, 800)
    assert budget_curves.identifiers_path("before_issue11", "office").parent == REPO_ROOT / "lab" / "benchmarks" / "data"
    assert budget_curves.identifiers_path("before_issue11", "office").exists()
    assert set(budget_curves.RENAMED.values()) <= set(budget_curves.CANDIDATES)


def test_the_small_profile_candidate_is_the_profile_and_the_paper_style_base_keeps_the_papers_optimiser():
    small = load_profile("small")
    steps = small.train.max_steps
    for name in ("small profile", "small profile + warm-up 5% + label smoothing 0.1", "small profile + weight decay 0.1"):
        assert budget_curves.candidate_profile(name, steps, small.train.eval_every) == small, name
    base = budget_curves.candidate_profile("baseline", steps, small.train.eval_every).train
    assert (base.warmup_ratio, base.label_smoothing, base.weight_decay) == (0.01, 0.0, 1e-7)
    assert small.train.weight_decay == 0.1


def test_the_comparison_is_written_where_notebook_06_reads_it(tmp_path, monkeypatch):
    """The writer names the file after the dataset's own name, as ``ablation.downstream_path`` does, even when
    the folder is named otherwise (``amazon-beauty`` holds the dataset ``Beauty``)."""
    import sys

    import torch

    from gensar_lib import ablation

    history = [{"train_seconds": 60.0, "step": 10, "epoch": 0, "val_score": 0.1, "train_loss": 2.0}]
    test = {task: {protocol: {"HR@10": 0.1} for protocol in ("sampled", "full")} for task in ("rec", "search")}
    line = json.dumps({"candidate": "small profile", "dataset": "Beauty", "overrides": {}, "history": history,
                       "test": test})

    popen = budget_curves.subprocess.Popen

    class Worker:  # stands in for the worker process (it prints its result as the last line); other commands run
        returncode = 0

        def __new__(cls, args, **kwargs):
            return super().__new__(cls) if "--worker" in args else popen(args, **kwargs)

        def communicate(self):
            return f"training...\n{line}\n", None

    monkeypatch.setattr(budget_curves.subprocess, "Popen", Worker)
    monkeypatch.setattr(sys, "argv", ["budget_curves.py", "--dataset", str(tmp_path / "amazon-beauty"),
                                      "--candidates", "small profile", "--out", str(tmp_path),
                                      "--name", "identifiers_downstream", "--threads", str(torch.get_num_threads())])
    budget_curves.main()
    written = json.loads((tmp_path / "05_t5_training" / ablation.downstream_path("Beauty").name).read_text())
    assert written["results"][0]["dataset"] == "Beauty"


def test_a_seed_reseeds_the_candidate_and_seed_0_is_the_profile_as_it_is():
    name = "small profile + warm-up 5% + label smoothing 0.1"
    plain = budget_curves.candidate_profile(name, 3200, 800)
    assert budget_curves.candidate_profile(name, 3200, 800, seed=0) == plain
    seeded = budget_curves.candidate_profile(name, 3200, 800, seed=1)
    assert seeded.seed == 1 and plain.seed == load_profile("small").seed == 0
    assert seeded.train == plain.train and plain.train.warmup_ratio == 0.05 and plain.train.label_smoothing == 0.1


def test_every_candidate_builds_a_profile_and_can_be_named_on_the_command_line():
    """``--candidates`` is comma-separated, so no name may hold a comma; every override must be a profile field."""
    for name in budget_curves.CANDIDATES:
        assert "," not in name, name
        budget_curves.candidate_profile(name, 3200, 800)
    steps = budget_curves.candidate_profile("small profile + 5800 steps", 3200, 800).train
    assert (steps.max_steps, steps.eval_every) == (5800, 1450)  # its own budget, whatever --steps says
    mix = budget_curves.candidate_profile("small profile + NRIP x2", 3200, 800).train.task_mix
    assert dict(mix)["NRIP"] == 2 * dict(mix)["NSIP"]
