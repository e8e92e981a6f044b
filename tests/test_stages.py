"""Declared stages: a change to any module a stage runs gives it a new cache key, and no other change does."""
import dataclasses
import shutil

import pytest

from gensar_lib.config import load_profile
from gensar_lib.stages import KEYLESS, PACKAGE, STAGES, Stage, module_closure


@pytest.fixture(scope="module")
def package_copy(tmp_path_factory):
    root = tmp_path_factory.mktemp("src") / "gensar_lib"
    shutil.copytree(PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _names(paths, root):
    return {str(p.relative_to(root)) for p in paths}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_editing_any_module_a_stage_runs_changes_its_key(name, package_copy):
    stage = STAGES[name]
    files = stage.modules(package_copy)
    assert _names(files, package_copy) == _names(stage.modules(), PACKAGE)
    before = stage.code(package_copy)
    for path in files:
        source = path.read_bytes()
        path.write_bytes(source + b"\n# edited\n")
        try:
            assert stage.code(package_copy) != before, path
        finally:
            path.write_bytes(source)
    outside = sorted((set(package_copy.rglob("*.py")) | set(package_copy.rglob("*.json"))) - set(files))
    for path in outside:  # modules the stage does not run leave its key alone
        source = path.read_bytes()
        path.write_bytes(source + b"\n# edited\n")
        try:
            assert stage.code(package_copy) == before, path
        finally:
            path.write_bytes(source)


def test_the_keys_cover_what_the_hand_written_lists_missed():
    """The T5 key once left out decoding, metrics and the stage module (checkpoint selection runs them), and the
    RQ-VAE key identifiers (its collision rate picks the epoch)."""
    t5 = _names(STAGES["t5"].modules(), PACKAGE)
    assert {"decoding/__init__.py", "decoding/fast.py", "decoding/search.py", "decoding/trie.py", "metrics.py",
            "t5/stage.py", "t5/train.py", "t5/model.py", "instructions.py", "evaluation.py", "rqvae.py"} <= t5
    assert {"identifiers.py", "quantize/__init__.py", "quantize/residual.py", "quantize/models.py",
            "quantize/training.py", "codestats.py", "rqvae.py"} <= _names(STAGES["rqvae"].modules(), PACKAGE)
    assert {"ablation_run.py", "rqvae.py", "t5/stage.py", "evaluation.py"} <= _names(
        STAGES["ablation_run"].modules(), PACKAGE)
    learned = _names(STAGES["learned_baseline"].modules(), PACKAGE)  # validation picks the epoch
    assert {"baselines/neural.py", "baselines/scores.py", "evaluation.py", "metrics.py"} <= learned
    assert not {"ablation.py", "ablation_run.py", "t5/train.py"} & learned
    data = _names(STAGES["data"].modules(), PACKAGE)
    assert {"data/synthetic.py", "data/synthetic_vocabulary.json"} <= data and "t5/model.py" not in data
    for stage in STAGES.values():
        assert not {"config.py", "artifacts.py", "stages.py", "methods.py"} & _names(stage.modules(), PACKAGE)
    assert all(k.startswith("gensar_lib.") for k in KEYLESS)


def _edited_keys(package_copy, relative):
    """Every stage's code key before and after appending a comment to ``relative`` (then restored)."""
    path = package_copy / relative
    before = {name: stage.code(package_copy) for name, stage in STAGES.items()}
    source = path.read_bytes()
    path.write_bytes(source + b"\n# edited\n")
    try:
        return before, {name: stage.code(package_copy) for name, stage in STAGES.items()}
    finally:
        path.write_bytes(source)


@pytest.mark.parametrize("relative", ["decoding/fast.py", "evaluation.py", "t5/train.py", "plots.py"])
def test_decoding_evaluation_and_the_t5_leave_the_rqvae_key_alone(relative, package_copy):
    before, after = _edited_keys(package_copy, relative)
    assert after["rqvae"] == before["rqvae"]
    assert after["semantic_embeddings"] == before["semantic_embeddings"]


@pytest.mark.parametrize("relative", ["plots.py", "results.py", "tables.py", "ablation.py", "structure.py",
                                      "methods.py", "__main__.py"])
def test_figures_tables_results_and_orchestration_leave_every_key_alone(relative, package_copy):
    before, after = _edited_keys(package_copy, relative)
    assert after == before


def test_a_new_rqvae_changes_the_keys_of_the_stages_after_it(package_copy):
    before, after = _edited_keys(package_copy, "rqvae.py")
    changed = {name for name in STAGES if after[name] != before[name]}
    assert changed == {"rqvae", "t5", "ablation_run"}
    before, after = _edited_keys(package_copy, "t5/train.py")
    assert {name for name in STAGES if after[name] != before[name]} == {"t5", "ablation_run"}


def test_closure_follows_late_relative_and_module_imports(tmp_path):
    root = tmp_path / "gensar_lib"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "sub" / "__init__.py").write_text("")
    (root / "a.py").write_text("def f():\n    from gensar_lib import b\n")
    (root / "b.py").write_text("from gensar_lib.sub.c import x\n")
    (root / "sub" / "c.py").write_text("from .d import y\nx = 1\n")
    (root / "sub" / "d.py").write_text("import numpy\ny = 2\n")
    (root / "e.py").write_text("")
    (root / "sub" / "f.py").write_text("")  # in the imported package, but never imported
    assert _names(module_closure(("gensar_lib.a",), root), root) == {
        "__init__.py", "a.py", "b.py", "sub/__init__.py", "sub/c.py", "sub/d.py"}
    with pytest.raises(ValueError, match="stage module 'gensar_lib.nope'"):
        module_closure(("gensar_lib.nope",), root)


def test_a_stage_reads_its_profile_slice():
    profile = load_profile("tiny")
    assert STAGES["t5"].config(profile) == {"model": profile.model, "train": profile.train,
                                            "eval": profile.eval, "seed": profile.seed}
    assert Stage("x", ("train.lr",), (), ()).config(profile) == {"train.lr": profile.train.lr}
    assert set(STAGES) == {"data", "semantic_embeddings", "sasrec", "rqvae", "t5", "ablation_run", "learned_baseline"}
    assert all(c in STAGES for s in STAGES.values() for c in s.consumes)


def test_embedding_stages_key_on_their_declared_slice():
    from gensar_lib.config import EmbeddingConfig
    from gensar_lib.data.schema import Item
    from gensar_lib.embeddings import _semantic_key

    items = [Item(id="1", title="Desk lamp", description="A lamp.")]
    cfg = EmbeddingConfig()
    config, _ = _semantic_key(items, cfg)
    assert config == {"embeddings.encoder": cfg.encoder, "embeddings.max_seq_length": cfg.max_seq_length}
    # a declared field changes the key's config; the batch size (not declared) does not
    assert _semantic_key(items, dataclasses.replace(cfg, max_seq_length=64))[0] != config
    assert _semantic_key(items, dataclasses.replace(cfg, batch_size=8))[0] == config
    profile = load_profile("tiny")
    assert set(STAGES["sasrec"].config(profile)) >= {"embeddings.sasrec_dim", "embeddings.sasrec_epochs", "seed"}
