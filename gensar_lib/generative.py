"""Tokenizer, T5 model and the instruction-tuning loop; taught in notebook 05_t5_training.

GenSAR (paper section 3.3, summary in ``docs/method.md``
sections 3-4) trains ONE T5 model to answer instruction prompts for search and
recommendation by *generating* item identifiers. This module holds the pieces
that turn ``(source, target)`` text pairs into a trained model:

* :func:`train_tokenizer` -- a Unigram tokenizer trained on the corpus, with
  T5's special tokens (``<pad>``, ``</s>``, ``<unk>`` at ids 0, 1, 2), then the
  behaviour tokens (``<rec_item>``, ``<src_item>``, ``<src_query>``) and every
  identifier token (``<shared_a_3>``, ...) added so that each is ONE token.
  :func:`load_pretrained_tokenizer` does the same on top of t5-small's own
  tokenizer for users who have it locally.
* :func:`build_model` -- a fresh T5 from :class:`~gensar_lib.config.ModelConfig`,
  or pretrained weights (a name in the local Hugging Face cache, or a folder)
  with embeddings resized for the added tokens. Never downloads.
* :func:`encode_pairs` / :func:`collate` -- token ids per pair, and padded
  batches whose labels are the response only (source tokens never carry loss).
* :func:`train` -- AdamW, cosine schedule with warm-up, validation after every
  epoch, the best checkpoint in ``out_dir/best`` and a resumable one in
  ``out_dir/last``; an interrupted run resumed with ``resume=True`` ends with
  the same weights as an uninterrupted one (deterministic on CPU per seed).
* :func:`load_best` -- the best model and its tokenizer.

Departures from the paper, stated once here and again in notebook 05:

* The CPU profiles (``tiny``, ``small``) train a small T5 FROM SCRATCH
  (``small``: d_model 128, 2 encoder + 2 decoder layers, ~1.7M parameters)
  with a tokenizer trained on our own instruction corpus, instead of
  fine-tuning pretrained t5-small (61M parameters, ~7 examples/s on this CPU).
  The ``paper`` profile sets ``ModelConfig.pretrained = "t5-small"``; it needs
  the model in the local cache or a folder, because nothing here downloads.
* Far fewer epochs and a smaller batch than the paper (200 epochs; the
  official script uses 64 x 16 accumulation x 8 GPUs); lr 1e-3, cosine
  schedule with 1% warm-up, weight decay 1e-7 and gradient clipping at 1.0
  follow the official script.
* Sources longer than ``TrainConfig.max_source_length`` lose their OLDEST
  tokens (left truncation), so the current query and the question survive.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from gensar_lib.artifacts import atomic_dir, check_folder, move_aside, torch_save
from gensar_lib.config import ConfigError, ModelConfig, TrainConfig, as_dict
from gensar_lib.devices import accelerator, resolve_device
from gensar_lib.identifiers import DEDUP, parse_token
from gensar_lib.tasks import BEHAVIOUR_TOKENS, task_side

if TYPE_CHECKING:
    from gensar_lib.identifiers import ItemIdentifiers

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
T5_SPECIALS: tuple[str, ...] = (PAD, EOS, UNK)  # ids 0, 1, 2 as in T5
IDENTIFIER_PATTERN = re.compile(r"<(?:shared|semantic|collab)_[a-z]_\d+>|<dedup_\d+>")
LABEL_IGNORE = -100  # label value that cross-entropy skips (padding)
BEST, LAST = "best", "last"
STATE_FILE = "training_state.pt"
SUMMARY_FILE = "trainer_state.json"
TIMING_KEYS = ("seconds", "train_seconds", "samples_per_s")  # history entries that vary run to run
# A fixed printable alphabet, so digits and punctuation never become <unk>.
INITIAL_ALPHABET = [chr(c) for c in range(33, 127)]

Tokenizer = Any  # a transformers fast tokenizer (PreTrainedTokenizerFast / TokenizersBackend)


def _quiet_transformers() -> None:
    """Silence the "Loading weights" bar transformers 5 prints on every load."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


# --------------------------------------------------------------------------- tokenizer


def behaviour_and_identifier_tokens(identifier_tokens: Iterable[str]) -> list[str]:
    """The behaviour tokens followed by ``identifier_tokens`` in their order, without repeats."""
    return list(dict.fromkeys([*BEHAVIOUR_TOKENS, *identifier_tokens]))


def _strip_tokens(texts: Iterable[str], tokens: Sequence[str]) -> Iterator[str]:
    """``texts`` with every added token replaced by a space (they must not shape the Unigram vocabulary)."""
    by_length = sorted(set(tokens) | set(BEHAVIOUR_TOKENS), key=len, reverse=True)
    pattern = re.compile("|".join(map(re.escape, by_length)) + "|" + IDENTIFIER_PATTERN.pattern)
    for text in texts:
        yield pattern.sub(" ", text)


def _unigram_backend(texts: Iterable[str], vocab_size: int) -> Any:
    """A ``tokenizers.Tokenizer``: NFKC, Metaspace words, Unigram pieces, ``</s>`` appended.

    The pieces come from ``tokenizers``' Unigram trainer, whose piece order and
    scores vary from process to process (Rust hash-map order; up to about 0.008
    in score here). :func:`_canonical_scores` then fixes the order and re-scores
    the pieces deterministically, so one corpus gives one byte-identical
    ``tokenizer.json`` in every process (notebook 05).
    """
    from tokenizers import Regex, Tokenizer as RawTokenizer
    from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

    texts = list(texts)
    raw = RawTokenizer(models.Unigram())
    raw.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(r"\s+"), " ")])
    raw.pre_tokenizer = pre_tokenizers.Metaspace()
    raw.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=list(T5_SPECIALS),
        unk_token=UNK,
        initial_alphabet=INITIAL_ALPHABET,
        show_progress=False,
    )
    raw.train_from_iterator(texts, trainer)
    _canonical_scores(raw, texts, sorted(p for p in raw.get_vocab() if p not in T5_SPECIALS))
    eos_id = raw.token_to_id(EOS)
    raw.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}", special_tokens=[(EOS, eos_id)]
    )
    return raw


def _canonical_scores(raw: Any, texts: list[str], pieces: list[str], rounds: int = 2) -> None:
    """Give ``raw`` a Unigram model of the specials then ``pieces`` (sorted), scored by hard EM.

    Starting from equal scores (fewest pieces per word), each round segments the
    corpus with the current scores and sets every piece's score to its
    add-one-smoothed log relative frequency. Integer counts in a fixed order make
    the result the same in every process.
    """
    from tokenizers import models

    specials = [(t, 0.0) for t in T5_SPECIALS]
    raw.model = models.Unigram(specials + [(p, -1.0) for p in pieces], unk_id=2)
    for _ in range(rounds):
        ids = [i for enc in raw.encode_batch(texts, add_special_tokens=False) for i in enc.ids]
        counts = np.bincount(np.asarray(ids, dtype=np.int64), minlength=len(specials) + len(pieces))
        counts = counts[len(specials):]
        log_total = math.log(int(counts.sum()) + len(pieces))
        scores = [round(math.log(int(c) + 1) - log_total, 6) for c in counts]
        raw.model = models.Unigram(specials + list(zip(pieces, scores)), unk_id=2)


def add_special_tokens(tokenizer: Tokenizer, special_tokens: Sequence[str]) -> Tokenizer:
    """Add behaviour + identifier tokens so each encodes to one id, with or without spaces around it.

    ``lstrip=True`` lets a token swallow the space before it, so
    ``"<rec_item> <shared_a_3>"`` and ``"<rec_item><shared_a_3>"`` give the same
    ids; they are ordinary (not "special") tokens, so ``decode(...,
    skip_special_tokens=True)`` keeps them.
    """
    from tokenizers import AddedToken

    tokens = behaviour_and_identifier_tokens(special_tokens)
    tokenizer.add_tokens(
        [AddedToken(t, lstrip=True, rstrip=False, normalized=False, single_word=False) for t in tokens]
    )
    check_single_tokens(tokenizer, tokens)
    return tokenizer


def check_single_tokens(tokenizer: Tokenizer, tokens: Sequence[str]) -> None:
    """Raise ``ValueError`` if any token of ``tokens`` does not encode to exactly one id."""
    joined = "".join(tokens)
    ids = tokenizer(joined, add_special_tokens=False)["input_ids"]
    if len(ids) != len(tokens) or UNK in tokenizer.convert_ids_to_tokens(ids):
        bad = [t for t in tokens if len(tokenizer(t, add_special_tokens=False)["input_ids"]) != 1]
        raise ValueError(f"these tokens are not single tokens of the tokenizer: {bad[:10]}")


def train_tokenizer(texts: Iterable[str], vocab_size: int, special_tokens: Sequence[str]) -> Tokenizer:
    """A corpus-trained Unigram tokenizer with T5's specials at 0/1/2 and ``special_tokens`` added.

    ``texts`` are sources and targets of the instruction data; identifier and
    behaviour tokens inside them are removed before training, then every
    behaviour token and every token of ``special_tokens`` (the identifier
    tokens) is added as one token on top of ``vocab_size``. Departure: the
    paper reuses t5-small's SentencePiece vocabulary (:func:`load_pretrained_tokenizer`).
    """
    from transformers import PreTrainedTokenizerFast

    raw = _unigram_backend(_strip_tokens(texts, special_tokens), vocab_size)
    ids = [raw.token_to_id(t) for t in T5_SPECIALS]
    if ids != [0, 1, 2]:
        raise RuntimeError(f"T5 specials got ids {ids}, expected [0, 1, 2]")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, pad_token=PAD, eos_token=EOS, unk_token=UNK, model_max_length=1024
    )
    return add_special_tokens(tokenizer, special_tokens)


def _unavailable(name: str, what: str) -> ConfigError:
    return ConfigError(
        f"pretrained {what} {name!r} is not available offline: it is neither a local folder nor in "
        "the Hugging Face cache, and this suite never downloads. On a machine with internet run "
        f"`python -c \"from transformers import AutoTokenizer, T5ForConditionalGeneration as T; "
        f"T.from_pretrained('{name}').save_pretrained('models/{name}'); "
        f"AutoTokenizer.from_pretrained('{name}').save_pretrained('models/{name}')\"`, copy the folder "
        f"here and set ModelConfig(pretrained='models/{name}'), or use pretrained=None to train a "
        "small T5 from scratch (the tiny and small profiles)."
    )


def load_pretrained_tokenizer(name_or_path: str, special_tokens: Sequence[str]) -> Tokenizer:
    """t5-small's tokenizer (cache name or local folder) with behaviour + identifier tokens added.

    Raises :class:`~gensar_lib.config.ConfigError` naming the model when it is
    not available offline.
    """
    from transformers import AutoTokenizer

    _quiet_transformers()
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, local_files_only=True)
    except (OSError, ValueError) as err:
        raise _unavailable(name_or_path, "tokenizer") from err
    return add_special_tokens(tokenizer, special_tokens)


# --------------------------------------------------------------------------- model


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Run a block with torch's global RNG seeded, restoring the caller's RNG state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def t5_config(cfg: ModelConfig, vocab_size: int) -> Any:
    """A ``T5Config`` for a fresh model: T5 v1 (ReLU, tied embeddings), pad 0, eos 1, decoder start 0."""
    from transformers import T5Config

    return T5Config(
        vocab_size=vocab_size,
        d_model=cfg.d_model,
        d_ff=cfg.d_ff,
        d_kv=cfg.d_kv,
        num_layers=cfg.num_layers,
        num_decoder_layers=cfg.num_layers,
        num_heads=cfg.num_heads,
        dropout_rate=cfg.dropout_rate,
        feed_forward_proj="relu",
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )


def build_model(cfg: ModelConfig, tokenizer: Tokenizer, seed: int = 0) -> Any:
    """A ``T5ForConditionalGeneration``: fresh from ``cfg`` or pretrained from ``cfg.pretrained``.

    Fresh (``cfg.pretrained is None``): vocabulary = ``len(tokenizer)``,
    weights drawn with ``seed`` (the caller's global RNG is left untouched).
    Pretrained: a Hugging Face cache name or a folder, loaded with
    ``local_files_only=True``; embeddings grow to ``len(tokenizer)`` when the
    tokenizer has more tokens than the model. A model that cannot be had
    offline raises :class:`~gensar_lib.config.ConfigError` naming it.
    """
    from transformers import T5ForConditionalGeneration

    _quiet_transformers()
    with _seeded(seed):
        if cfg.pretrained is None:
            return T5ForConditionalGeneration(t5_config(cfg, len(tokenizer)))
        try:
            model = T5ForConditionalGeneration.from_pretrained(
                cfg.pretrained, local_files_only=True, dropout_rate=cfg.dropout_rate
            )
        except (OSError, ValueError) as err:
            raise _unavailable(cfg.pretrained, "model") from err
        if len(tokenizer) > model.get_input_embeddings().num_embeddings:
            model.resize_token_embeddings(len(tokenizer))
    return model


def check_vectors(ids: ItemIdentifiers, vectors: Mapping[str, np.ndarray] | None) -> None:
    """Every identifier token the items use, de-duplication tokens aside, has a codebook vector (for
    ``model.identifier_init = "codebook"``); else a :class:`~gensar_lib.config.ConfigError` naming one."""
    if vectors is None:
        raise ConfigError("model.identifier_init = 'codebook' needs the RQ-VAE's codebook vectors "
                          "(train_generative(..., vectors=Identifiers.vectors)); none were given")
    missing = sorted(t for t in ids.tokens_used() if t not in vectors and parse_token(t)[0] != DEDUP)
    if missing:
        raise ConfigError(f"model.identifier_init = 'codebook': no codebook vector for identifier token "
                          f"{missing[0]!r} ({len(missing)} tokens without one)")


def vectors_fingerprint(vectors: Mapping[str, np.ndarray]) -> str:
    """A hash of token vectors, in token order (keys the T5 stage when they initialise it)."""
    digest = hashlib.sha256()
    for token in sorted(vectors):
        digest.update(token.encode())
        digest.update(np.ascontiguousarray(vectors[token], dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]


@torch.no_grad()
def init_identifier_embeddings(model: Any, tokenizer: Tokenizer, vectors: Mapping[str, np.ndarray],
                               seed: int = 0) -> list[str]:
    """Set the embedding of every identifier token in ``vectors`` from its RQ-VAE codebook vector
    (``model.identifier_init = "codebook"``, a budget-curve candidate; notebook 05). Returns the tokens set.

    Departure: the paper fine-tunes t5-small and gives the new identifier tokens fresh embeddings. Here the
    codebook vectors of each token kind (one latent space: ``shared``, ``semantic``, ...) go through one
    seeded Gaussian projection to ``d_model`` (which keeps their distances up to a common factor), each
    level is centred and scaled so that its rows' mean norm equals that of the model's other embedding rows.
    So codes that lie close in the RQ-VAE start close in the T5 (its output layer is tied to them). Tokens
    without a vector (de-duplication tokens, any other token) keep T5's initialisation.
    """
    weight = model.get_input_embeddings().weight
    rows = {t: tokenizer.convert_tokens_to_ids(t) for t in vectors}
    rows = {t: r for t, r in rows.items() if r is not None and r != tokenizer.unk_token_id}
    others = torch.ones(weight.shape[0], dtype=torch.bool)
    others[list(rows.values())] = False
    norm = weight[others].norm(dim=1).mean()
    levels: dict[tuple[str, int | None], list[str]] = {}
    for token in sorted(rows):
        levels.setdefault(parse_token(token)[:2], []).append(token)  # "<shared_a_12>" -> ("shared", 0)
    generator = torch.Generator().manual_seed(seed)
    projections: dict[str, torch.Tensor] = {}
    for level in sorted(levels):
        kind = level[0]
        block = torch.as_tensor(np.stack([vectors[t] for t in levels[level]]), dtype=torch.float32)
        if kind not in projections:
            projections[kind] = torch.randn(block.shape[1], weight.shape[1], generator=generator)
        mapped = (block - block.mean(dim=0)) @ projections[kind]
        mapped = mapped * (norm / mapped.norm(dim=1).mean().clamp_min(1e-12))
        weight[[rows[t] for t in levels[level]]] = mapped.to(weight.dtype)
    return sorted(rows)


def count_parameters(model: torch.nn.Module) -> int:
    """Distinct trainable parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters() if p.requires_grad}.values())


# --------------------------------------------------------------------------- data


@dataclass
class EncodedPairs:
    """Token ids per pair: ``sources[i]`` and ``targets[i]`` both end with ``</s>``."""

    sources: list[list[int]]
    targets: list[list[int]]

    def __len__(self) -> int:
        return len(self.sources)


def _truncate_left(ids: list[int], max_length: int) -> list[int]:
    """The last ``max_length`` ids (the final ``</s>`` survives; the oldest history goes)."""
    return ids if len(ids) <= max_length else ids[-max_length:]


def _truncate_right(ids: list[int], max_length: int, eos_id: int) -> list[int]:
    """The first ``max_length - 1`` ids plus ``</s>``."""
    return ids if len(ids) <= max_length else ids[: max_length - 1] + [eos_id]


def encode_pairs(
    tokenizer: Tokenizer,
    pairs: Sequence[tuple[str, str]],
    max_source_length: int = 256,
    max_target_length: int = 64,
) -> EncodedPairs:
    """Encode sources (left-truncated) and targets (right-truncated), each ending with ``</s>``."""
    if not pairs:
        return EncodedPairs([], [])
    sources, targets = zip(*pairs)
    src = tokenizer(list(sources))["input_ids"]
    tgt = tokenizer(list(targets))["input_ids"]
    eos = tokenizer.eos_token_id
    return EncodedPairs(
        [_truncate_left(s, max_source_length) for s in src],
        [_truncate_right(t, max_target_length, eos) for t in tgt],
    )


def encode_sources(tokenizer: Tokenizer, sources: Sequence[str], max_source_length: int) -> dict[str, torch.Tensor]:
    """Prompts as one batch padded to its longest row (``input_ids``, ``attention_mask``), each cut as a
    training source is (:func:`encode_pairs`: the oldest tokens go, the question and ``</s>`` stay)."""
    ids = [_truncate_left(s, max_source_length) for s in tokenizer(list(sources))["input_ids"]]
    return {"input_ids": _pad(ids, tokenizer.pad_token_id), "attention_mask": (_pad(ids, -1) != -1).long()}


def _pad(rows: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def collate(
    sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], pad_id: int = 0
) -> dict[str, torch.Tensor]:
    """One batch, padded to its own longest row: ``input_ids``, ``attention_mask``, ``labels``.

    ``labels`` are the target ids only, padding set to -100, so the loss is on
    the response alone; the model shifts them right (decoder start = pad) to
    build its decoder inputs.
    """
    input_ids = _pad(sources, pad_id)
    return {
        "input_ids": input_ids,
        "attention_mask": (_pad(sources, -1) != -1).long(),
        "labels": _pad(targets, LABEL_IGNORE),
    }


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled example order of ``epoch`` (0-based): a function of (seed, epoch) only."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator)


def epoch_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int,
                  window: int = 0) -> list[np.ndarray]:
    """The batches (row indices) of one epoch over ALL examples: a function of (seed, epoch) only.

    Every example appears exactly once per epoch, in a fresh seeded order. With
    ``window > 0`` the order is cut into windows of ``window`` batches, each
    window is sorted by source length (so a batch pads to nearly its own length
    instead of the longest prompt of a random batch), and the batches are then
    shuffled again, so lengths do not drift through the epoch (notebook 05).
    """
    order = epoch_order(len(lengths), seed, epoch).numpy()
    if window > 0:
        lengths = np.asarray(lengths)
        span = window * batch_size
        order = np.concatenate([
            chunk[np.argsort(lengths[chunk], kind="stable")]
            for chunk in (order[i:i + span] for i in range(0, len(order), span))
        ])
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if window > 0:
        batches = [batches[i] for i in np.random.default_rng([seed, epoch]).permutation(len(batches))]
    return batches


def total_steps(cfg: TrainConfig, n_examples: int) -> int:
    """Optimiser steps of a run: ``cfg.max_steps`` when set (the CPU profiles' budget), else whole epochs."""
    return cfg.max_steps if cfg.max_steps else cfg.epochs * math.ceil(n_examples / cfg.batch_size)


def pairs_fingerprint(pairs: Sequence[tuple[str, str]]) -> str:
    """A hash of the training pairs, so a checkpoint never resumes on other data."""
    digest = hashlib.sha256()
    for source, target in pairs:
        digest.update(source.encode())
        digest.update(b"\x00")
        digest.update(target.encode())
        digest.update(b"\x01")
    return digest.hexdigest()[:16]


# --------------------------------------------------------------------------- checkpoints


def _existing_dir(path: Path) -> Path | None:
    """``path`` if present, else the ``.old`` copy an interrupted :func:`atomic_dir` left, else None."""
    old = path.parent / f".{path.name}.old"
    return path if path.exists() else old if old.exists() else None


def save_model(model: Any, tokenizer: Tokenizer, folder: Path, info: dict[str, Any]) -> None:
    """``save_pretrained`` of model and tokenizer into ``folder`` plus ``info`` as JSON."""
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / SUMMARY_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")


def load_best(out_dir: str | Path) -> tuple[Any, Tokenizer]:
    """The best checkpoint of a :func:`train` run: ``(model in eval mode, tokenizer)``."""
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    _quiet_transformers()
    folder = _existing_dir(Path(out_dir) / BEST)
    if folder is None:
        raise FileNotFoundError(f"no best checkpoint under {out_dir}; run train() first")
    model = T5ForConditionalGeneration.from_pretrained(folder, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return model.eval(), tokenizer


def _rng_state() -> dict[str, Any]:
    """The random states as tensors and plain values (loadable with ``weights_only=True``)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "gauss": float(gauss)}}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))


# --------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    """What :func:`train` did.

    ``history`` has one dict per validation round (every ``cfg.eval_every``
    steps, else every epoch): ``round`` (1-based), ``step``, ``epoch`` (epochs
    of data seen, ``step / steps_per_epoch``), ``examples``, ``train_loss``
    (mean batch loss of the round), ``val_score`` (None without a validate
    callback), ``lr``, ``best``, and the timing fields ``seconds`` (the
    round), ``train_seconds`` (cumulative) and ``samples_per_s`` (training
    only, without validation; these differ between runs, see
    :data:`TIMING_KEYS`). ``step_losses`` has the loss of every step.
    """

    out_dir: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    best_score: float | None = None
    best_epoch: float | None = None
    best_step: int | None = None
    steps: int = 0
    finished: bool = False
    resumed_from_step: int | None = None

    @property
    def best_dir(self) -> Path:
        return self.out_dir / BEST

    @property
    def last_dir(self) -> Path:
        return self.out_dir / LAST


@dataclass
class _Progress:
    """Everything besides weights/optimizer/scheduler that a resumed run needs."""

    step: int = 0  # optimiser steps taken in total
    round: int = 0  # validation rounds finished
    round_loss_sum: float = 0.0
    round_batches: int = 0
    round_samples: int = 0
    round_seconds: float = 0.0
    train_seconds: float = 0.0
    examples: int = 0
    best_score: float | None = None
    best_epoch: float | None = None
    best_step: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)


def tokenizer_fingerprint(tokenizer: Tokenizer) -> str:
    """A hash of the tokenizer's full definition (pieces, scores, added tokens)."""
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()[:16]


def _run_signature(cfg: TrainConfig, seed: int, pairs: Sequence[tuple[str, str]], model: Any,
                   tokenizer: Tokenizer, processes: int = 1) -> dict:
    """What shapes the batches and the updates; a checkpoint resumes only under the same signature
    (``processes``, the data-parallel ranks, only when more than one: their float sums differ)."""
    return ({"processes": processes} if processes > 1 else {}) | {
        "train_config": as_dict(cfg),
        "seed": seed,
        "n_pairs": len(pairs),
        "pairs": pairs_fingerprint(pairs),
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "parameters": count_parameters(model),
        "threads": torch.get_num_threads(),  # float rounding, hence the weights, depend on it
    }


def _make_optimizer(model: Any, cfg: TrainConfig, steps: int) -> tuple[Any, Any]:
    from transformers import get_cosine_schedule_with_warmup

    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = math.ceil(cfg.warmup_ratio * steps)
    return optimizer, get_cosine_schedule_with_warmup(optimizer, warmup, steps)


def _save_last(out_dir: Path, model: Any, optimizer: Any, scheduler: Any, progress: _Progress,
               signature: dict) -> None:
    """Write ``out_dir/last`` atomically: weights, optimiser, scheduler, RNG states, progress."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": _rng_state(),
        "progress": progress.__dict__,
        "signature": signature,
    }
    with atomic_dir(out_dir / LAST, manifest=True) as tmp:
        torch_save(state, tmp / STATE_FILE)
        summary = {k: v for k, v in progress.__dict__.items() if k != "step_losses"}
        (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")


def _load_last(out_dir: Path, model: Any, optimizer: Any, scheduler: Any,
               signature: dict) -> _Progress | None:
    """Restore ``out_dir/last`` into model/optimizer/scheduler/RNG; None when there is none, or when
    ``last`` or ``best`` differs from its manifest or cannot be read (moved aside with a warning: the
    run starts over). The state is read with ``weights_only=True``: only tensors and plain values."""
    folder = _existing_dir(out_dir / LAST)
    if folder is None or not (folder / STATE_FILE).exists():
        return None
    for part in (folder, _existing_dir(out_dir / BEST)):
        problem = None if part is None else check_folder(part)
        if problem is not None:
            move_aside(part, problem, then="training starts over")
            return None
    try:
        state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as err:  # weights_only refuses every object but tensors and plain values
        move_aside(folder, f"{folder / STATE_FILE}: cannot be read as tensors and plain values "
                           f"({type(err).__name__})", then="training starts over")
        return None
    if state["signature"] != signature:
        diff = sorted(k for k in signature if state["signature"].get(k) != signature[k])
        raise ConfigError(
            f"{folder} was written by a different run ({', '.join(diff)} differ); "
            "pass resume=False to start over, or use another out_dir"
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"])
    return _Progress(**state["progress"])


def response_loss(model: Any, batch: dict[str, torch.Tensor], label_smoothing: float = 0.0,
                  reduction: str = "mean") -> torch.Tensor:
    """Mean (or ``"sum"``) cross-entropy of the response tokens (labels -100 skipped); the model's own
    loss when not smoothed."""
    logits = model(**batch).logits
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(),
                                             ignore_index=LABEL_IGNORE, label_smoothing=label_smoothing,
                                             reduction=reduction)


@torch.no_grad()
def position_nll(model: Any, batch: dict[str, torch.Tensor]) -> list[float]:
    """Mean cross-entropy (nats) at each response position, over the rows that have one (notebook 05).

    Position 0 is the behaviour token, then the identifier's codes, then ``</s>``. A first
    code near ``log(codebook size)`` means the model has learned the identifiers' grammar
    but not yet to read the prompt.
    """
    labels = batch["labels"]
    logits = model(**batch).logits
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=LABEL_IGNORE,
                                            reduction="none")
    kept = labels != LABEL_IGNORE
    return [float(nll[kept[:, j], j].mean()) for j in range(labels.shape[1])]


def _train_step(model: Any, batch: dict[str, torch.Tensor], optimizer: Any, scheduler: Any,
                grad_clip: float, label_smoothing: float = 0.0) -> float:
    """One optimiser step on one batch; the mean cross-entropy of its response tokens."""
    loss = response_loss(model, batch, label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    scheduler.step()
    return float(loss.detach())


def _shard_step(model: Any, data: EncodedPairs, rows: np.ndarray, optimizer: Any, scheduler: Any, cfg: TrainConfig,
                acc: Any) -> float:
    """One data-parallel optimiser step on one batch (:func:`train` under Accelerate); the batch's mean loss.

    Every process holds the whole batch ``rows`` and computes on its shard ``rows[rank::N]`` (a
    process whose shard is empty takes one row at weight 0, so that it still joins the gradient
    all-reduce). Each shard's loss is its token sum over the batch's token count, times N: the
    averaged gradient is then that of the whole batch's mean loss, as in one process.
    """
    rank, n = acc.process_index, acc.num_processes
    mine, weight = rows[rank::n], 1.0
    if len(mine) == 0:
        mine, weight = rows[:1], 0.0
    tokens = sum(len(data.targets[i]) for i in rows)
    batch = {k: v.to(acc.device) for k, v in collate([data.sources[i] for i in mine],
                                                      [data.targets[i] for i in mine]).items()}
    total = response_loss(model, batch, cfg.label_smoothing, reduction="sum") * weight
    optimizer.zero_grad(set_to_none=True)
    acc.backward(total * (n / tokens))
    if cfg.grad_clip > 0:
        acc.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    scheduler.step()
    return float(acc.reduce(total.detach(), "sum")) / tokens


def _validate(model: Any, validate: Callable[[Any], float] | None) -> float | None:
    if validate is None:
        return None
    model.eval()
    with torch.no_grad():
        score = float(validate(model))
    model.train()
    return score


def _is_better(score: float | None, best: float | None) -> bool:
    """Strictly better (ties keep the earlier round); without validation every round is 'best'."""
    return score is None or best is None or score > best


def _finish_round(progress: _Progress, score: float | None, lr: float, better: bool,
                  steps_per_epoch: int) -> dict[str, Any]:
    """Close the round in ``progress``: append its history entry and reset the per-round sums."""
    seconds = progress.round_seconds
    progress.round += 1
    entry = {
        "round": progress.round,
        "step": progress.step,
        "epoch": round(progress.step / steps_per_epoch, 4),
        "examples": progress.examples,
        "train_loss": progress.round_loss_sum / max(progress.round_batches, 1),
        "val_score": score,
        "lr": lr,
        "best": better,
        "seconds": seconds,
        "train_seconds": progress.train_seconds,
        "samples_per_s": progress.round_samples / seconds if seconds > 0 else float("nan"),
    }
    progress.history.append(entry)
    if better:
        progress.best_score, progress.best_epoch, progress.best_step = score, entry["epoch"], progress.step
    progress.round_batches = progress.round_samples = 0
    progress.round_loss_sum = progress.round_seconds = 0.0
    return entry


def _round_line(entry: dict[str, Any], steps: int) -> str:
    score = "-" if entry["val_score"] is None else f"{entry['val_score']:.4f}"
    return (f"step {entry['step']}/{steps} (epoch {entry['epoch']:.2f}): train loss {entry['train_loss']:.4f}, "
            f"validation {score}{' (best)' if entry['best'] else ''}, {entry['samples_per_s']:.0f} samples/s, "
            f"{entry['train_seconds'] / 60:.1f} min of training")


def _result(out_dir: Path, progress: _Progress, steps: int, resumed_from: int | None) -> TrainResult:
    return TrainResult(
        out_dir=out_dir,
        history=list(progress.history),
        step_losses=list(progress.step_losses),
        best_score=progress.best_score,
        best_epoch=progress.best_epoch,
        best_step=progress.best_step,
        steps=progress.step,
        finished=progress.step >= steps,
        resumed_from_step=resumed_from,
    )


def train(
    model: Any,
    tokenizer: Tokenizer,
    train_pairs: Sequence[tuple[str, str]],
    cfg: TrainConfig,
    out_dir: str | Path,
    validate: Callable[[Any], float] | None = None,
    seed: int = 0,
    progress: bool = True,
    resume: bool = True,
    stop_after_steps: int | None = None,
    device: str | None = None,
) -> TrainResult:
    """Instruction-tune ``model`` on ``(source, target)`` pairs (notebook 05_t5_training).

    AdamW (``cfg.lr``, ``cfg.weight_decay``), cosine schedule with
    ``cfg.warmup_ratio`` linear warm-up, gradient clipping ``cfg.grad_clip``,
    cross-entropy on the target tokens only. Every epoch draws ALL pairs in a
    fresh order of ``(seed, epoch)`` (:func:`epoch_batches`, length-bucketed
    with ``cfg.length_window``); the run lasts ``cfg.max_steps`` optimiser
    steps when set (the CPU profiles' budget), else ``cfg.epochs`` epochs.

    Every ``cfg.eval_every`` steps (0: every epoch) and at the end,
    ``validate(model)`` (the caller's mean NDCG@5 over search and
    recommendation; model in eval mode, no gradients) decides whether
    ``out_dir/best`` (``save_pretrained`` + tokenizer) is replaced (strictly
    higher score; without ``validate`` the latest round is kept). Then
    ``out_dir/last`` receives weights, optimiser, scheduler, RNG states and
    history, written atomically; also every ``cfg.checkpoint_every`` steps
    when that is > 0.

    ``resume=True`` continues from ``out_dir/last`` (refusing one written for
    other data, tokenizer, config, seed or thread count), says so, and ends
    with the same weights and history as an uninterrupted run;
    ``resume=False`` deletes ``last`` and ``best`` first.
    ``stop_after_steps`` stops early after that many steps in total (the
    schedule still spans the whole run), e.g. to train in sessions.

    Results are bit-identical for one seed and one ``torch.get_num_threads()``;
    another thread count changes float rounding.

    ``device`` is a setting of :func:`~gensar_lib.devices.resolve_device` (None:
    ``$GENSAR_DEVICE`` or ``auto``). One process on the CPU trains as described,
    without Accelerate. On a GPU, or under a launcher (``torchrun``,
    ``accelerate launch``), an ``Accelerator`` (bf16 autocast on a GPU) prepares
    model and optimiser: every process builds the same batches and computes its
    shard of each (:func:`_shard_step`; ``cfg.batch_size`` is the batch of all
    processes together), gradients are averaged, and only the main process
    writes ``best`` and ``last``; ``validate`` runs in every process (evaluation
    shards its cases). ``docs/scale.md``.
    """
    acc = accelerator(resolve_device(device))
    main = acc is None or acc.is_main_process
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = encode_pairs(tokenizer, train_pairs, cfg.max_source_length, cfg.max_target_length)
    if len(data) == 0:
        raise ValueError("train() needs at least one (source, target) pair")
    steps_per_epoch = math.ceil(len(data) / cfg.batch_size)
    steps = total_steps(cfg, len(data))
    eval_every = cfg.eval_every or steps_per_epoch
    optimizer, scheduler = _make_optimizer(model, cfg, steps)
    signature = _run_signature(cfg, seed, train_pairs, model, tokenizer, 1 if acc is None else acc.num_processes)
    state = _load_last(out_dir, model, optimizer, scheduler, signature) if resume else None
    resumed_from = state.step if state is not None else None
    plain = model  # what is saved and validated; ``model`` is Accelerate's wrapper when there is one
    if acc is not None:
        acc.wait_for_everyone()  # every process has read ``last`` before the main one may delete it
        model, optimizer = acc.prepare(model, optimizer)
        if progress and main:
            tqdm.write(f"training with {acc.num_processes} process(es) ({acc.distributed_type.value}) on "
                       f"{acc.device}, mixed precision {acc.mixed_precision}: each computes its share of every "
                       f"batch of {cfg.batch_size}")
    if state is None:
        if main:
            for name in (LAST, BEST):
                for folder in (out_dir / name, out_dir / f".{name}.old"):
                    shutil.rmtree(folder, ignore_errors=True)
        torch.manual_seed(seed)  # dropout masks
        state = _Progress()
    elif progress and main and state.step < steps:
        epoch, batch = divmod(state.step, steps_per_epoch)
        tqdm.write(f"resuming {out_dir} from step {state.step}/{steps} (epoch {epoch + 1}, batch {batch + 1}, "
                   f"{state.round} validation rounds done)")
    stop = steps if stop_after_steps is None else min(steps, stop_after_steps)
    lengths = [len(s) for s in data.sources]

    def checkpoint() -> None:
        if main:
            _save_last(out_dir, plain, optimizer, scheduler, state, signature)

    model.train()
    while state.step < stop:
        round_end = min((state.step // eval_every + 1) * eval_every, steps)
        _run_steps(model, data, lengths, optimizer, scheduler, state, cfg, seed, steps_per_epoch,
                   min(round_end, stop), checkpoint, progress and main, acc)
        if state.step < round_end:  # stopped early mid-round: keep the state, no validation
            checkpoint()
            break
        score = _validate(plain, validate)
        better = _is_better(score, state.best_score)
        entry = _finish_round(state, score, scheduler.get_last_lr()[0], better, steps_per_epoch)
        if progress and main:
            tqdm.write(_round_line(entry, steps))
        if better and main:
            with atomic_dir(out_dir / BEST, manifest=True) as tmp:
                save_model(plain, tokenizer, tmp, {k: entry[k] for k in ("round", "step", "epoch", "val_score")})
        checkpoint()
    model.eval()
    if acc is not None:
        acc.wait_for_everyone()  # ``best`` and ``last`` are written when any process returns
    return _result(out_dir, state, steps, resumed_from)


def _run_steps(model: Any, data: EncodedPairs, lengths: list[int], optimizer: Any, scheduler: Any,
               state: _Progress, cfg: TrainConfig, seed: int, steps_per_epoch: int, until: int,
               checkpoint: Callable[[], None], show: bool, acc: Any = None) -> None:
    """Train from ``state.step`` up to step ``until``, updating ``state`` (data-parallel with ``acc``)."""
    epoch, plan = -1, []
    bar = tqdm(total=until, initial=state.step, disable=not show, leave=False, desc="training", unit="step")
    with bar:
        while state.step < until:
            if state.step // steps_per_epoch != epoch:
                epoch = state.step // steps_per_epoch
                plan = epoch_batches(lengths, cfg.batch_size, seed, epoch, cfg.length_window)
            start = time.perf_counter()
            rows = plan[state.step % steps_per_epoch]
            if acc is None:
                batch = collate([data.sources[i] for i in rows], [data.targets[i] for i in rows])
                loss = _train_step(model, batch, optimizer, scheduler, cfg.grad_clip, cfg.label_smoothing)
            else:
                loss = _shard_step(model, data, rows, optimizer, scheduler, cfg, acc)
            seconds = time.perf_counter() - start
            state.round_seconds += seconds
            state.train_seconds += seconds
            state.step_losses.append(loss)
            state.step += 1
            state.examples += len(rows)
            state.round_batches += 1
            state.round_samples += len(rows)
            state.round_loss_sum += loss
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", samples_s=f"{state.round_samples / state.round_seconds:.0f}")
            if cfg.checkpoint_every > 0 and state.step % cfg.checkpoint_every == 0 and state.step < until:
                checkpoint()


@dataclass
class GenerativeModel:
    """A trained T5 with its tokenizer, the identifiers it generates, its training curves and the cache
    folder it was loaded from (notebook 05)."""

    model: object
    tokenizer: object
    ids: ItemIdentifiers
    history: list[dict]
    folder: Path | None = None

    def codes(self, task: str) -> np.ndarray:
        """Token ids of every item's identifier for a task: collaborative for rec, semantic for search."""
        return np.array([self.tokenizer.convert_tokens_to_ids(list(t)) for t in self.ids.for_task(task)],
                        dtype=np.int64)

    def behaviour_token(self, task: str) -> int:
        """The token id of a task's behaviour token (``<rec>`` or ``<search>``)."""
        return self.tokenizer.convert_tokens_to_ids(task_side(task).token)
