"""Where the suite computes: one device setting for every stage, and the processes of a launcher.

The setting is ``profile.device`` (``load_profile`` fills it from ``$GENSAR_DEVICE``; default
``auto``): ``auto`` (CUDA when available, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``.
:func:`resolve_device` is the one function that turns it into a ``torch.device``; the semantic
encoder, SASRec, the RQ-VAEs, T5 training, evaluation and the fast decoding engine all use it.
The device is never part of a cache key: CPU and GPU results are equal up to float tolerance,
not bitwise (other kernels, other summation orders, bf16 autocast in T5 training on a GPU).

Under a launcher (``torchrun --nproc_per_node N`` or ``accelerate launch``) the T5 training runs
data-parallel through Accelerate and evaluation decodes a share of the cases in each process
(``docs/scale.md``). Without one, nothing here touches Accelerate.
"""
from __future__ import annotations

import atexit
import os
import platform
import re
from typing import TYPE_CHECKING

import torch

from gensar_lib.config import DEVICE_ENV, ConfigError

if TYPE_CHECKING:
    from accelerate import Accelerator, PartialState

DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_device_setting(value: str) -> None:
    """Raise :class:`ConfigError` naming the setting when ``value`` is not a device setting."""
    if not isinstance(value, str) or DEVICE_PATTERN.fullmatch(value) is None:
        raise ConfigError(f"device = {value!r} (profile.device or ${DEVICE_ENV}) is not a device setting; "
                          "use 'auto', 'cpu', 'cuda' or 'cuda:N'")


def resolve_device(setting: str | None = None) -> torch.device:
    """The ``torch.device`` of a setting (None: ``$GENSAR_DEVICE`` or ``auto``); a clear error when unusable.

    ``auto`` is CUDA when available, else the CPU. ``cuda`` without an index is the GPU of this
    process's local rank under a launcher (``LOCAL_RANK``), else GPU 0.
    """
    value = setting or os.environ.get(DEVICE_ENV) or "auto"
    check_device_setting(value)
    if value == "auto":
        value = "cuda" if torch.cuda.is_available() else "cpu"
    if value == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"device = {value!r} (profile.device or ${DEVICE_ENV}) but CUDA is not available here "
                          f"(torch {torch.__version__}); use 'auto' or 'cpu'")
    index = int(value.split(":")[1]) if ":" in value else int(os.environ.get("LOCAL_RANK", "0"))
    if index >= torch.cuda.device_count():
        raise ConfigError(f"device = {value!r} (profile.device or ${DEVICE_ENV}): this machine has "
                          f"{torch.cuda.device_count()} GPU(s), numbered from 0")
    return torch.device("cuda", index)


def world_size() -> int:
    """How many processes the launcher started (``WORLD_SIZE``; 1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def processes(device: torch.device | None = None) -> PartialState | None:
    """Accelerate's state of the launched processes (gloo on the CPU); None for a single process."""
    if world_size() <= 1:
        return None
    from accelerate import PartialState

    return PartialState(cpu=(device or resolve_device()).type == "cpu")


def end_processes() -> None:
    """Destroy the launcher's process group, when one was started (registered to run at exit): a gloo group
    left to the interpreter's exit can abort a rank after its work is done (``terminate called without an
    active exception``), and the launcher then reports the run as failed."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


atexit.register(end_processes)  # every process that can start a group (through this module) ends it


def is_main_process() -> bool:
    """True in the process that writes shared files: the only one, or rank 0 under a launcher."""
    state = processes()
    return state is None or state.is_main_process


def accelerator(device: torch.device) -> Accelerator | None:
    """An ``Accelerator`` for T5 training on ``device`` (bf16 autocast on a GPU, never on the CPU),
    or None for one process on the CPU, which trains exactly as without Accelerate."""
    if world_size() <= 1 and device.type == "cpu":
        return None
    from accelerate import Accelerator

    return Accelerator(cpu=device.type == "cpu", mixed_precision="bf16" if device.type == "cuda" else "no")


def machine_kind() -> dict[str, str | int]:
    """The kind of CPU (vendor and family, e.g. "AMD EPYC", from ``/proc/cpuinfo`` where there is one) and
    torch's thread count: a seed gives the same model only where both are the same (notebook 06, section 2)."""
    name = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            name = next((line.split(":", 1)[1] for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    words = re.sub(r"\((R|TM|tm|r)\)|\bCPU\b|\bProcessor\b|@.*", " ", name or platform.processor()).split()
    return {"cpu": " ".join(words[:2]) or platform.machine(), "torch_threads": torch.get_num_threads()}
