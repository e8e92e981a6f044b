"""The instruction-tuning loop, top to bottom (notebook 05_t5_training).

:func:`train`: AdamW, cosine schedule with warm-up, validation every round, the best checkpoint in
``out_dir/best`` and a resumable one in ``out_dir/last``; an interrupted run resumed with ``resume=True``
ends with the same weights as an uninterrupted one (deterministic on CPU per seed). Under a launcher every
process computes its share of each batch (:mod:`gensar_lib.t5.parallel`). How this recipe differs from the
paper's is stated in :mod:`gensar_lib.t5`.
"""
from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from gensar_lib.artifacts import atomic_dir
from gensar_lib.config import TrainConfig
from gensar_lib.devices import accelerator, resolve_device
from gensar_lib.t5.batches import EncodedPairs, collate, encode_pairs, epoch_batches, total_steps
from gensar_lib.t5.checkpoints import BEST, LAST, Progress, load_last, run_signature, save_last, save_model
from gensar_lib.t5.model import response_loss
from gensar_lib.t5.parallel import shard_step
from gensar_lib.t5.tokenizer import Tokenizer

TIMING_KEYS = ("seconds", "train_seconds", "samples_per_s")  # history entries that vary run to run


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
    shard of each (:func:`shard_step`; ``cfg.batch_size`` is the batch of all
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
    signature = run_signature(cfg, seed, train_pairs, model, tokenizer, 1 if acc is None else acc.num_processes)
    state = load_last(out_dir, model, optimizer, scheduler, signature) if resume else None
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
        state = Progress()
    elif progress and main and state.step < steps:
        epoch, batch = divmod(state.step, steps_per_epoch)
        tqdm.write(f"resuming {out_dir} from step {state.step}/{steps} (epoch {epoch + 1}, batch {batch + 1}, "
                   f"{state.round} validation rounds done)")
    stop = steps if stop_after_steps is None else min(steps, stop_after_steps)
    lengths = [len(s) for s in data.sources]

    def checkpoint() -> None:
        if main:
            save_last(out_dir, plain, optimizer, scheduler, state, signature)

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
               state: Progress, cfg: TrainConfig, seed: int, steps_per_epoch: int, until: int,
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
                loss = shard_step(model, data, rows, optimizer, scheduler, cfg, acc)
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


def _make_optimizer(model: Any, cfg: TrainConfig, steps: int) -> tuple[Any, Any]:
    from transformers import get_cosine_schedule_with_warmup

    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = math.ceil(cfg.warmup_ratio * steps)
    return optimizer, get_cosine_schedule_with_warmup(optimizer, warmup, steps)


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


def _finish_round(progress: Progress, score: float | None, lr: float, better: bool,
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


def _result(out_dir: Path, progress: Progress, steps: int, resumed_from: int | None) -> TrainResult:
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
