"""Profiles: named, typed, validated, read from the environment."""
import dataclasses
import re
from dataclasses import replace

import pytest

from gensar_lib.config import (PROFILES, PROMPT_STYLE_NAMES, REPO_ROOT, RULES, ConfigError, dataset_spec, fingerprint,
                               load_profile, parse_override, rule_violations, with_overrides)


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


def test_overrides_replace_nested_fields_and_key_like_the_same_profile_written_out():
    small = load_profile("small")
    values = dict(map(parse_override, ["train.lr=6e-3", "train.max_steps=4400", "train.task_mix=[[\"NRIP\", 1]]",
                                       "data.synthetic.n_users=300", "seed=2", "model.identifier_init=codebook"]))
    got = with_overrides(small, values)
    assert got.train.lr == 6e-3 and got.train.max_steps == 4400 and got.train.task_mix == (("NRIP", 1),)
    assert got.data.synthetic.n_users == 300 and got.seed == 2 and got.model.identifier_init == "codebook"
    written = replace(small, seed=2, train=replace(small.train, lr=6e-3, max_steps=4400, task_mix=(("NRIP", 1),)),
                      model=replace(small.model, identifier_init="codebook"),
                      data=replace(small.data, synthetic=replace(small.data.synthetic, n_users=300)))
    assert got == written and fingerprint(got) == fingerprint(written)
    assert fingerprint(with_overrides(small, {"train.lr": 1})) == fingerprint(with_overrides(small, {"train.lr": 1.0}))
    assert with_overrides(small, {}) == small


@pytest.mark.parametrize("text, message", [
    ("train.lr", "expected section.field=value"),
    ("=3", "expected section.field=value"),
    ("train.nope=1", "no field 'nope' in train"),
    ("nope.lr=1", "'nope' is not a section"),
    ("train=1", "'train' is a section"),
    ("train.lr=fast", "train.lr='fast': expected a value of type float"),
    ("train.batch_size=1.5", "expected a value of type int"),
    ("quantize.codebook_size=1", "impossible config: quantize.codebook_size = 1"),
])
def test_bad_overrides_name_the_key_and_value(text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        with_overrides(load_profile("small"), dict([parse_override(text)]))


def _sections(obj, prefix=""):
    """(dotted prefix, section) of a profile and of every section in it."""
    yield prefix, obj
    for f in dataclasses.fields(obj):
        if dataclasses.is_dataclass(getattr(obj, f.name)):
            yield from _sections(getattr(obj, f.name), f"{prefix}{f.name}.")


def test_every_field_of_every_section_has_a_rule():
    for prefix, section in _sections(load_profile("tiny")):
        fields = {f.name for f in dataclasses.fields(section) if not dataclasses.is_dataclass(getattr(section, f.name))}
        where = f"config.RULES[{type(section).__name__}] ({prefix or 'profile'})"
        assert set(RULES.get(type(section), {})) == fields, where


def test_every_profile_keeps_its_rules_and_the_prompt_styles_are_the_instructions():
    from gensar_lib.instructions import PROMPT_STYLES

    for name in PROFILES:
        assert list(rule_violations(load_profile(name))) == []
    assert PROMPT_STYLE_NAMES == tuple(PROMPT_STYLES)


@pytest.mark.parametrize("text, message", [
    ("train.max_steps=-5", "train.max_steps = -5 in profile 'tiny' (allowed: an integer >= 1, or null)"),
    ("train.max_steps=abc", "train.max_steps = 'abc' in profile 'tiny' (allowed: an integer >= 1, or null)"),
    ("train.max_steps=true", "train.max_steps = True"),
    ("train.lr=NaN", "train.lr = nan in profile 'tiny' (allowed: a finite number > 0.0)"),
    ("train.lr=0", "train.lr = 0.0"),
    ("model.num_layers=0", "model.num_layers = 0"),
    ("eval.max_eval_users=0", "eval.max_eval_users = 0"),
    ("model.pretrained=3", "model.pretrained = 3 in profile 'tiny' (allowed: a non-empty text, or null)"),
    ("eval.ks=[]", "eval.ks = ()"),
    ("ablation.level_splits=[[1, 2, 3]]", "ablation.level_splits = ((1, 2, 3),)"),
])
def test_bad_values_name_the_field_the_value_and_what_is_allowed(text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        with_overrides(load_profile("tiny"), dict([parse_override(text)]))  # max_steps, pretrained: None


def test_config_imports_only_the_floor_below_it():
    """config imports tasks and methods, which import nothing of the library: no cycle to hide."""
    import subprocess
    import sys

    from gensar_lib.config import REPO_ROOT

    code = ("import sys, gensar_lib.config; "
            "print(sorted(m for m in sys.modules if m.startswith('gensar_lib.')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["['gensar_lib.config',", "'gensar_lib.methods',", "'gensar_lib.tasks']"]


def test_the_default_ablation_methods_are_the_declared_ones():
    from gensar_lib.config import AblationConfig
    from gensar_lib.methods import METHODS

    assert AblationConfig().methods == tuple(METHODS)
