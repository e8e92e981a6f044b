"""The T5 model: built fresh or loaded, identifier embeddings from the codebooks, the response loss, and
:class:`GenerativeModel`, a trained T5 with what it generates (notebook 05_t5_training).

:func:`build_model` makes a fresh T5 from :class:`~gensar_lib.config.ModelConfig`, or loads pretrained
weights (a name in the local Hugging Face cache, or a folder) with embeddings resized for the added
tokens. Nothing here downloads.
"""
from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from gensar_lib.config import ConfigError, ModelConfig
from gensar_lib.identifiers import DEDUP, parse_token
from gensar_lib.t5.batches import LABEL_IGNORE
from gensar_lib.t5.tokenizer import Tokenizer, offline_error, quiet_transformers
from gensar_lib.tasks import task_side

if TYPE_CHECKING:
    from gensar_lib.identifiers import ItemIdentifiers


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

    quiet_transformers()
    with _seeded(seed):
        if cfg.pretrained is None:
            return T5ForConditionalGeneration(t5_config(cfg, len(tokenizer)))
        try:
            model = T5ForConditionalGeneration.from_pretrained(
                cfg.pretrained, local_files_only=True, dropout_rate=cfg.dropout_rate
            )
        except (OSError, ValueError) as err:
            raise offline_error(cfg.pretrained, "model") from err
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
        """The token id of a task's behaviour token (``<rec_item>`` or ``<src_item>``)."""
        return self.tokenizer.convert_tokens_to_ids(task_side(task).token)
