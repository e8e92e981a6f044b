"""Profiles (tiny | small | paper) as typed, frozen dataclasses; taught in notebook 00_data.

A profile fixes every hyper-parameter of every stage, so one name reproduces a
whole run. ``load_profile()`` reads ``GENSAR_PROFILE`` and ``dataset_spec()``
reads ``GENSAR_DATASET``; notebooks call both in their ``parameters`` cell.
``GENSAR_DEVICE`` sets ``Profile.device`` (:mod:`gensar_lib.devices`), which no cache key contains.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from gensar_lib.methods import METHOD_NAMES
from gensar_lib.tasks import TASK_FAMILIES

PROFILE_ENV = "GENSAR_PROFILE"
DATASET_ENV = "GENSAR_DATASET"
CACHE_ENV = "GENSAR_CACHE"
DEVICE_ENV = "GENSAR_DEVICE"
DEFAULT_PROFILE = "small"
DEFAULT_DATASET = "synthetic"
REPO_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """An impossible or unknown configuration value."""


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and behaviour knobs of the synthetic world (notebook 00_data).

    ``collab_strength`` is the probability that a recommendation follows the
    hidden bundle transitions rather than text similarity or popularity; 0
    makes the collaborative signal carry nothing beyond text and popularity.
    """

    n_users: int = 1200
    items_per_leaf: int = 24
    n_leaves: int = 48
    mean_length: float = 16.0
    min_length: int = 8
    search_share: float = 0.35
    collab_strength: float = 0.7
    bundle_length: int = 4
    items_per_bundle_step: int = 3
    noise: float = 0.05
    leaves_per_user: int = 3  # semantic taste: leaves from one or two departments
    bundles_per_user: int = 2  # collaborative taste
    popularity_exponent: float = 0.8  # Zipf exponent of item popularity
    seed: int = 0


@dataclass(frozen=True)
class DataConfig:
    """How a dataset becomes cases: semi-synthetic search, split protocol, candidates."""

    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    search_fraction: float = 1.0  # share of eligible reviews that also yield a search event
    min_user_events: int = 3  # recommendation events a user needs for leave-one-out
    protocol: Literal["strict", "official"] = "strict"
    n_negatives: int = 99
    seed: int = 0


@dataclass(frozen=True)
class EmbeddingConfig:
    """Semantic encoder and the SASRec stand-in for UniSAR (notebook 01_embeddings)."""

    encoder: str = "all-MiniLM-L6-v2"  # paper: BAAI/bge-base-en-v1.5
    max_seq_length: int = 128
    batch_size: int = 64
    sasrec_dim: int = 64
    sasrec_blocks: int = 2
    sasrec_epochs: int = 30
    sasrec_max_len: int = 50
    sasrec_lr: float = 1e-3
    sasrec_batch_size: int = 128


@dataclass(frozen=True)
class QuantizeConfig:
    """The joint RQ-VAE (notebooks 02 and 03); paper values in the paper profile."""

    shared_levels: int = 2
    specific_levels: int = 2
    codebook_size: int = 64
    shared_dim: int = 64
    specific_dim: int = 32
    hidden_dims: tuple[int, ...] = (256, 128)
    epochs: int = 100
    batch_size: int = 1024
    lr: float = 1e-3
    beta: float = 0.25
    sinkhorn_epsilon: float = 0.003
    collision_rounds: int = 20


# Field metadata: the field enters no key while it holds its default, so that adding an option whose default
# is the old behaviour keeps every cache key and committed ``profile_key`` (config.fingerprint).
KEYLESS_DEFAULT = {"keyless_default": True}
IDENTIFIER_INITS = ("random", "codebook")  # ModelConfig.identifier_init


@dataclass(frozen=True)
class ModelConfig:
    """The T5 backbone; ``pretrained`` loads weights (name or folder), else a fresh T5Config."""

    pretrained: str | None = None  # paper: "t5-small"
    d_model: int = 128
    d_ff: int = 512
    num_layers: int = 2
    num_heads: int = 4
    d_kv: int = 32
    vocab_size: int = 2000  # trained tokenizer size, identifier tokens come on top
    dropout_rate: float = 0.1  # T5 default; the same seed gives the same masks on CPU
    # identifier-token embeddings: "random" (T5's initialisation) or "codebook" (from the RQ-VAE's codebook
    # vectors: t5.model.init_identifier_embeddings, a departure); a budget-curve candidate, in no profile
    identifier_init: str = field(default="random", metadata=KEYLESS_DEFAULT)


@dataclass(frozen=True)
class TrainConfig:
    """Instruction tuning of the T5 model (notebook 05_t5_training)."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 3e-3
    warmup_ratio: float = 0.01
    history_length: int = 5
    max_steps: int | None = None  # the run's budget in optimiser steps (CPU profiles); None: ``epochs`` epochs
    eval_every: int = 0  # steps between validations; 0: every epoch
    length_window: int = 50  # batches per length-sorted window (0: plain shuffled batches)
    weight_decay: float = 1e-7  # official run script
    grad_clip: float = 1.0  # max gradient norm (Hugging Face Trainer default)
    label_smoothing: float = 0.0  # on the response tokens' cross-entropy
    max_source_length: int = 256  # longer prompts lose their oldest tokens
    max_target_length: int = 64
    checkpoint_every: int = 0  # steps between mid-epoch resumable checkpoints; 0: epoch ends only
    # (family, weight) pairs of the training mix (instructions.TaskMix); None: TaskMix(), the paper's families
    task_mix: tuple[tuple[str, float], ...] | None = None
    prompts: str = "paraphrases"  # instruction templates: "paraphrases" (the paper's kind) or "compact"


@dataclass(frozen=True)
class EvalConfig:
    """Constrained beam search and metrics (notebook 05_t5_training)."""

    beam_size: int = 20
    ks: tuple[int, ...] = (1, 5, 10)
    max_eval_users: int | None = None


@dataclass(frozen=True)
class AblationConfig:
    """The identifier ablation and baselines (notebook 06_identifier_ablation).

    ``headline`` methods are trained once per seed; the other methods for the first
    ``other_seeds`` seeds only (CPU budget). ``epochs`` / ``max_steps`` override the
    training config for every ablation run when set (``None``: as notebook 05).
    ``codebook_sizes`` x ``level_splits`` (shared, specific) is the hyper-parameter grid
    of the identifier figure.
    """

    methods: tuple[str, ...] = METHOD_NAMES
    headline: tuple[str, ...] = ("gensar", "semantic", "collaborative")
    other_seeds: int = 1
    epochs: int | None = None
    max_steps: int | None = None
    codebook_sizes: tuple[int, ...] = (8, 16, 32, 64)
    level_splits: tuple[tuple[int, int], ...] = ((1, 3), (2, 2), (3, 1))


@dataclass(frozen=True)
class BaselineConfig:
    """The learned baselines, a personalised search model and a joint model (notebook 06_identifier_ablation;
    ``baselines.neural``): a small transformer over the last ``history_length`` events, trained for at most
    ``epochs`` epochs and at most ``case_budget`` training cases in all (whole epochs; None: no budget),
    stopped after ``patience`` epochs without a better validation score. The budget keeps the joint model,
    which reads both tasks' cases every epoch, within the minutes of the personalised one on Amazon Office."""

    dim: int = 64
    layers: int = 2
    heads: int = 2
    history_length: int = 10
    dropout: float = 0.0
    epochs: int = 15
    case_budget: int | None = 800_000
    patience: int = 4
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.01


@dataclass(frozen=True)
class Profile:
    """One named set of hyper-parameters for every stage."""

    name: str
    data: DataConfig = field(default_factory=DataConfig)
    embeddings: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    ablation: AblationConfig = field(default_factory=AblationConfig)
    baselines: BaselineConfig = field(default_factory=BaselineConfig, metadata=KEYLESS_DEFAULT)
    seed: int = 0
    # where every stage computes: auto | cpu | cuda | cuda:N (gensar_lib.devices.resolve_device); in no cache key
    device: str = "auto"


def _tiny() -> Profile:
    return Profile(
        name="tiny",
        data=DataConfig(
            synthetic=SyntheticConfig(n_users=500, items_per_leaf=9, n_leaves=16, mean_length=12.0)
        ),
        embeddings=EmbeddingConfig(max_seq_length=64, sasrec_dim=32, sasrec_blocks=1, sasrec_epochs=10,
                                   sasrec_lr=5e-3, sasrec_batch_size=32),
        quantize=QuantizeConfig(codebook_size=16, hidden_dims=(128,), epochs=30),
        model=ModelConfig(d_model=64, d_ff=256, num_layers=2, num_heads=2, d_kv=32, vocab_size=800,
                          dropout_rate=0.0),
        train=TrainConfig(epochs=15, batch_size=32, lr=3e-3, history_length=3),
        eval=EvalConfig(beam_size=10, max_eval_users=100),
        ablation=AblationConfig(epochs=8),  # eight T5 runs in CI: about half of notebook 05's budget each
        baselines=BaselineConfig(dim=32, layers=1, history_length=5, epochs=8),
    )


SMALL_STEPS = 4400  # about 6-10 min of training on Office with 2 threads of a 2-core laptop-class CPU (lab/LOG.md)


def _small() -> Profile:
    """The classroom profile: a T5 trained from scratch for a budget of optimiser steps over all instructions.

    Its departures from the paper's recipe, each chosen by budget curves (``lab/benchmarks/budget_curves.py``,
    ``lab/benchmarks/first_code.py``; the runs are in lab/LOG.md):

    - compact prompts (``instructions.COMPACT_TEMPLATES``) over the last 2 events of each task: the first
      identifier code leaves its plateau at a uniform guess sooner, and a step is about 3x cheaper;
    - only the NRIP and NSIP families: with the full mix the first code left the plateau later, per step
      and per second;
    - no dropout and no gradient clipping: the paper's clipping at 1.0 suits fine-tuning a pretrained
      t5-small, not this model trained from scratch;
    - an RQ-VAE latent twice the paper's width (shared 128 = 64 + 64, specific 64; the paper: 64 = 32 + 32,
      specific 32): at the paper's width GenSAR's semantic ID fell below residual k-means on the
      concatenated embedding at two seeds of three;
    - a warm-up over 5% of the steps (the official script: 1%) and label smoothing 0.1 (the paper: none):
      together, over 4,400 steps, the highest budget curve on Office;
    - AdamW weight decay 0.1 (the official script: 1e-7): the only lever measured that lifts the synthetic
      recommendation score over 0.5 (two seeds), and higher on Office at the same step.
    """
    return Profile(
        name="small",
        # 1,152-2,420 items: batches of 256 give 5-10 codebook updates per epoch, not 1-3
        quantize=QuantizeConfig(batch_size=256, shared_dim=128, specific_dim=64),
        model=ModelConfig(dropout_rate=0.0),
        train=TrainConfig(max_steps=SMALL_STEPS, eval_every=SMALL_STEPS // 4, grad_clip=0.0, history_length=2,
                          warmup_ratio=0.05, label_smoothing=0.1, weight_decay=0.1, prompts="compact",
                          task_mix=(("NRIP", 1.0), ("NSIP", 1.0))),
        eval=EvalConfig(max_eval_users=500),
    )


def _paper() -> Profile:
    return Profile(
        name="paper",
        data=DataConfig(synthetic=SyntheticConfig(n_users=5000, items_per_leaf=40, n_leaves=48)),
        embeddings=EmbeddingConfig(
            encoder="BAAI/bge-base-en-v1.5", max_seq_length=256, sasrec_epochs=200
        ),
        quantize=QuantizeConfig(
            codebook_size=256, hidden_dims=(512, 256, 128), epochs=500, batch_size=1024
        ),
        model=ModelConfig(pretrained="t5-small"),
        train=TrainConfig(epochs=200, batch_size=256, lr=1e-3),
        eval=EvalConfig(beam_size=30),
    )


PROFILES = {"tiny": _tiny, "small": _small, "paper": _paper}


def load_profile(name: str | None = None, **overrides: Any) -> Profile:
    """The named profile (default: ``$GENSAR_PROFILE`` or ``small``), with top-level overrides;
    ``device`` comes from ``$GENSAR_DEVICE`` unless overridden."""
    name = name or os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE
    if name not in PROFILES:
        raise ConfigError(
            f"unknown profile {name!r} (from {PROFILE_ENV} or the --profile argument); "
            f"choose one of {sorted(PROFILES)}"
        )
    if os.environ.get(DEVICE_ENV):
        overrides = {"device": os.environ[DEVICE_ENV], **overrides}
    profile = replace(PROFILES[name](), **overrides)
    check_profile(profile)
    return profile


def _tuples(value: Any) -> Any:
    """JSON lists as the tuples a frozen profile holds (``[["NRIP", 1.0]]`` -> ``(("NRIP", 1.0),)``)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.lr=6e-3"`` -> ``("train.lr", 0.006)``: the value is read as JSON, else kept as text."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected section.field=value, e.g. train.lr=6e-3")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), _tuples(value)


def with_overrides(profile: Profile, values: dict[str, Any]) -> Profile:
    """The profile with ``{"section.field": value}`` replaced (``data.synthetic.n_users`` and ``seed`` too), checked;
    the command line's ``--set`` and ``lab/benchmarks/budget_curves.py``'s candidates use it."""
    for key, value in values.items():
        *path, name = key.split(".")
        objs = [profile]
        for part in path:
            parent = objs[-1]
            if not (dataclasses.is_dataclass(parent) and part in {f.name for f in dataclasses.fields(parent)}
                    and dataclasses.is_dataclass(getattr(parent, part))):
                raise ConfigError(f"--set {key}: {part!r} is not a section of profile {profile.name!r}")
            objs.append(getattr(parent, part))
        if name not in {f.name for f in dataclasses.fields(objs[-1])}:
            raise ConfigError(f"--set {key}: no field {name!r} in {'.'.join(path) or 'the profile'} "
                              f"(a key is section.field, e.g. train.lr)")
        current = getattr(objs[-1], name)
        if dataclasses.is_dataclass(current):
            raise ConfigError(f"--set {key}: {name!r} is a section; set one of its fields, e.g. {name}."
                              f"{dataclasses.fields(current)[0].name}")
        if isinstance(current, float) and type(value) is int:
            value = float(value)  # "train.lr=1" means 1.0, and keys the same
        elif current is not None and value is not None and type(current) is not type(value):
            raise ConfigError(f"--set {key}={value!r}: expected a value of type {type(current).__name__}, like {current!r} "
                              f"in profile {profile.name!r}")
        new = replace(objs[-1], **{name: value})
        for parent, part in zip(reversed(objs[:-1]), reversed(path)):
            new = replace(parent, **{part: new})
        profile = new
    check_profile(profile)
    return profile


def dataset_spec(spec: str | None = None) -> str:
    """``synthetic`` or a dataset folder (default: ``$GENSAR_DATASET`` or ``synthetic``).

    A relative folder that is not found from the working directory (a notebook
    runs in ``notebooks/``) is taken relative to the repository root.
    """
    spec = spec or os.environ.get(DATASET_ENV) or DEFAULT_DATASET
    if spec != DEFAULT_DATASET and not Path(spec).expanduser().exists() and (REPO_ROOT / spec).exists():
        return str(REPO_ROOT / spec)
    return spec


# ---------------------------------------------------------------- what every profile field may hold


@dataclass(frozen=True)
class Rule:
    """What one profile field may hold: ``test(value)`` holds for exactly the values ``allowed`` describes."""

    allowed: str
    test: Callable[[Any], bool]


def _bounds(low: float | None, high: float | None, above: float | None = None) -> tuple[str, Callable[[Any], bool]]:
    parts = ([f">= {low}"] if low is not None else []) + ([f"> {above}"] if above is not None else []) \
        + ([f"<= {high}"] if high is not None else [])
    return (" " + " and ".join(parts) if parts else ""), lambda v: (
        (low is None or v >= low) and (above is None or v > above) and (high is None or v <= high))


def integer(low: int | None = None, high: int | None = None) -> Rule:
    """An int (not a bool) within ``[low, high]``."""
    text, within = _bounds(low, high)
    return Rule(f"an integer{text}", lambda v: type(v) is int and within(v))


def real(low: float | None = None, high: float | None = None, above: float | None = None,
         below: float | None = None) -> Rule:
    """A finite number (an int is accepted) within ``[low, high]``, above ``above`` and below ``below``."""
    text, within = _bounds(low, high, above)
    text += f"{' and' if text else ''} < {below}" if below is not None else ""
    return Rule(f"a finite number{text}", lambda v: type(v) in (int, float) and math.isfinite(v) and within(v)
                and (below is None or v < below))


def one_of(*choices: Any) -> Rule:
    return Rule(f"one of {', '.join(map(repr, choices))}", lambda v: type(v) in {type(c) for c in choices}
                and v in choices)


def text() -> Rule:
    """A non-empty string."""
    return Rule("a non-empty text", lambda v: isinstance(v, str) and bool(v.strip()))


def optional(rule: Rule) -> Rule:
    """``rule``, or None (``null`` on the command line)."""
    return Rule(f"{rule.allowed}, or null", lambda v: v is None or rule.test(v))


def tuple_of(rule: Rule, min_len: int = 1) -> Rule:
    """A tuple (a JSON list) of at least ``min_len`` values, each allowed by ``rule``."""
    return Rule(f"a list of at least {min_len} of: {rule.allowed}",
                lambda v: isinstance(v, tuple) and len(v) >= min_len and all(rule.test(x) for x in v))


def pair(first: Rule, second: Rule) -> Rule:
    """A 2-tuple (a JSON list of two) of a ``first`` and a ``second``."""
    return Rule(f"[{first.allowed}, {second.allowed}]",
                lambda v: isinstance(v, tuple) and len(v) == 2 and first.test(v[0]) and second.test(v[1]))


PROMPT_STYLE_NAMES = ("paraphrases", "compact")  # instructions.PROMPT_STYLES (a test keeps them equal)
COUNT, SHARE = integer(1), real(0.0, 1.0)

# One rule per field of every section; a section's nested sections are checked with their own rules. Checked
# together by check_profile; a field without a rule is an error (tests/test_config.py finds it).
RULES: dict[type, dict[str, Rule]] = {
    SyntheticConfig: {
        "n_users": COUNT, "items_per_leaf": COUNT, "n_leaves": integer(2, 64),  # 64: the vocabulary's leaves
        "mean_length": real(3.0), "min_length": integer(3), "search_share": real(0.0, below=1.0),
        "collab_strength": SHARE, "bundle_length": integer(2), "items_per_bundle_step": COUNT, "noise": SHARE,
        "leaves_per_user": COUNT, "bundles_per_user": COUNT, "popularity_exponent": real(0.0), "seed": integer(0),
    },
    DataConfig: {"search_fraction": SHARE, "min_user_events": integer(3), "protocol": one_of("strict", "official"),
                 "n_negatives": COUNT, "seed": integer(0)},
    EmbeddingConfig: {"encoder": text(), "max_seq_length": COUNT, "batch_size": COUNT, "sasrec_dim": COUNT,
                      "sasrec_blocks": COUNT, "sasrec_epochs": COUNT, "sasrec_max_len": COUNT,
                      "sasrec_lr": real(above=0.0), "sasrec_batch_size": COUNT},
    QuantizeConfig: {"shared_levels": COUNT, "specific_levels": COUNT, "codebook_size": integer(2),
                     "shared_dim": COUNT, "specific_dim": COUNT, "hidden_dims": tuple_of(COUNT, 0), "epochs": COUNT,
                     "batch_size": COUNT, "lr": real(above=0.0), "beta": real(0.0),
                     "sinkhorn_epsilon": real(above=0.0), "collision_rounds": integer(0)},
    ModelConfig: {"pretrained": optional(text()), "d_model": COUNT, "d_ff": COUNT, "num_layers": COUNT,
                  "num_heads": COUNT, "d_kv": COUNT, "vocab_size": COUNT, "dropout_rate": real(0.0, below=1.0),
                  "identifier_init": one_of(*IDENTIFIER_INITS)},
    TrainConfig: {"epochs": COUNT, "batch_size": COUNT, "lr": real(above=0.0), "warmup_ratio": SHARE,
                  "history_length": COUNT, "max_steps": optional(COUNT), "eval_every": integer(0),
                  "length_window": integer(0), "weight_decay": real(0.0), "grad_clip": real(0.0),
                  "label_smoothing": real(0.0, below=1.0), "max_source_length": COUNT, "max_target_length": COUNT,
                  "checkpoint_every": integer(0), "task_mix": optional(tuple_of(pair(text(), real(0.0)))),
                  "prompts": one_of(*PROMPT_STYLE_NAMES)},
    EvalConfig: {"beam_size": COUNT, "ks": tuple_of(COUNT), "max_eval_users": optional(COUNT)},
    AblationConfig: {"methods": tuple_of(text()), "headline": tuple_of(text(), 0), "other_seeds": COUNT,
                     "epochs": optional(COUNT), "max_steps": optional(COUNT), "codebook_sizes": tuple_of(integer(2)),
                     "level_splits": tuple_of(pair(COUNT, COUNT))},
    BaselineConfig: {"dim": COUNT, "layers": COUNT, "heads": COUNT, "history_length": COUNT,
                     "dropout": real(0.0, below=1.0), "epochs": COUNT, "case_budget": optional(COUNT),
                     "patience": COUNT, "batch_size": COUNT, "lr": real(above=0.0), "weight_decay": real(0.0)},
    Profile: {"name": text(), "seed": integer(0), "device": text()},
}


def rule_violations(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any, Rule]]:
    """``(dotted field, value, rule)`` of every field of ``obj`` and its sections that its rule refuses;
    a LookupError for a section or field that :data:`RULES` lacks."""
    rules = RULES.get(type(obj))
    if rules is None:
        raise LookupError(f"config.RULES has no rules for section {prefix.rstrip('.') or 'profile'} "
                          f"({type(obj).__name__})")
    for f in dataclasses.fields(obj):
        value, name = getattr(obj, f.name), prefix + f.name
        if dataclasses.is_dataclass(value):
            yield from rule_violations(value, name + ".")
        elif f.name not in rules:
            raise LookupError(f"config.RULES has no rule for field {name}")
        elif not rules[f.name].test(value):
            yield name, value, rules[f.name]


def check_profile(profile: Profile) -> None:
    """Reject impossible values with a message naming the field, the value and what is allowed: each field
    against its rule (:data:`RULES`), then the relations between fields."""
    bad = [f"{name} = {value!r} in profile {profile.name!r} (allowed: {rule.allowed})"
           for name, value, rule in rule_violations(profile)]
    if bad:
        raise ConfigError(f"impossible config: {'; '.join(bad)}")
    s = profile.data.synthetic
    checks = [
        ("data.synthetic.mean_length", s.mean_length, s.mean_length >= s.min_length, "at least min_length"),
        ("data.synthetic.bundle_length", s.bundle_length, s.bundle_length <= s.n_leaves, "at most n_leaves"),
        ("data.synthetic.items_per_bundle_step", s.items_per_bundle_step,
         s.items_per_bundle_step <= s.items_per_leaf, "at most items_per_leaf"),
        ("baselines.heads", profile.baselines.heads, profile.baselines.dim % profile.baselines.heads == 0,
         "a divisor of baselines.dim"),
    ]
    from gensar_lib.devices import check_device_setting  # late: devices imports this module

    check_device_setting(profile.device)
    if profile.train.task_mix is not None:
        weights = profile.train.task_mix
        checks.append(("train.task_mix", weights, all(f in TASK_FAMILIES for f, _ in weights)
                       and len({f for f, _ in weights}) == len(weights) and any(w > 0 for _, w in weights),
                       f"distinct families of {', '.join(TASK_FAMILIES)}, some weight > 0"))
    for name, value, ok, allowed in checks:
        if not ok:
            raise ConfigError(f"impossible config: {name} = {value!r} in profile {profile.name!r} (allowed: {allowed})")


def as_dict(obj: Any) -> Any:
    """A JSON-ready view of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(obj), sort_keys=True))


def _default(f: dataclasses.Field) -> Any:
    """A dataclass field's default value (made by its factory where it has one)."""
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _key_view(obj: Any) -> Any:
    """``dataclasses.asdict`` without the :data:`KEYLESS_DEFAULT` fields that hold their default."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _key_view(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not (f.metadata.get("keyless_default") and getattr(obj, f.name) == _default(f))}
    if isinstance(obj, (list, tuple)):
        return [_key_view(v) for v in obj]
    return obj


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Profile):  # where it runs changes no result beyond float tolerance: in no key
        return {k: v for k, v in _key_view(obj).items() if k != "device"}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _key_view(obj)
    raise TypeError(f"cannot fingerprint a {type(obj).__name__}")


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-able parts (configs, file hashes); keys artifacts."""
    blob = json.dumps(list(parts), sort_keys=True, default=_jsonable)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_dir() -> Path:
    """Where stage artifacts live: ``$GENSAR_CACHE`` or ``data/cache`` in the repository."""
    return Path(os.environ.get(CACHE_ENV) or REPO_ROOT / "data" / "cache")
