"""Checkpoints of a training run: ``best`` (the model to keep) and ``last`` (everything a resumed run needs,
written atomically and refused when another run wrote it; notebook 05_t5_training)."""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from gensar_lib.artifacts import atomic_dir, check_folder, move_aside, torch_save
from gensar_lib.config import ConfigError, TrainConfig, as_dict
from gensar_lib.t5.batches import pairs_fingerprint
from gensar_lib.t5.model import count_parameters
from gensar_lib.t5.tokenizer import Tokenizer, quiet_transformers, tokenizer_fingerprint

BEST, LAST = "best", "last"
STATE_FILE = "training_state.pt"
SUMMARY_FILE = "trainer_state.json"


@dataclass
class Progress:
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

    quiet_transformers()
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


def run_signature(cfg: TrainConfig, seed: int, pairs: Sequence[tuple[str, str]], model: Any,
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


def save_last(out_dir: Path, model: Any, optimizer: Any, scheduler: Any, progress: Progress,
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


def load_last(out_dir: Path, model: Any, optimizer: Any, scheduler: Any,
               signature: dict) -> Progress | None:
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
    return Progress(**state["progress"])
