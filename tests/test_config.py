"""Profiles: named, typed, validated, read from the environment."""
from dataclasses import replace

import pytest

from gensar_lib.config import REPO_ROOT, ConfigError, dataset_spec, fingerprint, load_profile


def test_paper_profile_has_the_papers_hyper_parameters():
    p = load_profile("paper")
    q = p.quantize
    assert (q.shared_levels, q.specific_levels, q.codebook_size, q.epochs) == (2, 2, 256, 500)
    assert (q.shared_dim, q.specific_dim, q.beta) == (64, 32, 0.25)
    assert p.model.pretrained == "t5-small" and p.eval.beam_size == 30 and p.data.n_negatives == 99


def test_profile_and_dataset_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("GENSAR_PROFILE", "tiny")
    monkeypatch.setenv("GENSAR_DATASET", "/some/folder")
    assert load_profile().name == "tiny"
    assert dataset_spec() == "/some/folder"
    monkeypatch.delenv("GENSAR_PROFILE")
    monkeypatch.delenv("GENSAR_DATASET")
    assert load_profile().name == "small" and dataset_spec() == "synthetic"


def test_unknown_profile_and_impossible_values_are_named():
    with pytest.raises(ConfigError, match="unknown profile 'huge'"):
        load_profile("huge")
    tiny = load_profile("tiny")
    bad = tiny.data.__class__(search_fraction=1.5)
    with pytest.raises(ConfigError, match=r"data.search_fraction = 1.5"):
        load_profile("tiny", data=bad)


@pytest.mark.parametrize("mix", [(), (("NOPE", 1.0),), (("NRIP", -1.0),), (("NRIP", 1.0), ("NRIP", 2.0)),
                                 (("NRIP", 0.0),)])
def test_impossible_task_mix_is_named(mix):
    tiny = load_profile("tiny")
    with pytest.raises(ConfigError, match=r"train.task_mix = .* in profile 'tiny'"):
        load_profile("tiny", train=replace(tiny.train, task_mix=mix))
    assert load_profile("tiny", train=replace(tiny.train, task_mix=(("NSIP", 0.5),))).train.task_mix == (("NSIP", 0.5),)


def test_unknown_prompt_style_is_named():
    tiny = load_profile("tiny")
    with pytest.raises(ConfigError, match=r"train.prompts = 'fancy' in profile 'tiny'"):
        load_profile("tiny", train=replace(tiny.train, prompts="fancy"))


def test_fingerprints_differ_between_profiles():
    assert len({fingerprint(load_profile(n)) for n in ("tiny", "small", "paper")}) == 3
    assert fingerprint(load_profile("tiny")) == fingerprint(load_profile("tiny"))


def test_relative_dataset_folder_resolves_from_the_repository_root(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert dataset_spec("gensar_lib") == str(REPO_ROOT / "gensar_lib")
    assert dataset_spec("no/such/folder") == "no/such/folder"
