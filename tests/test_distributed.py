"""Two CPU processes (gloo) through Accelerate: data-parallel T5 training, sharded evaluation, resume
after a kill (gensar_lib.devices, t5.train, evaluation.decode; docs/scale.md). Each test launches
``torchrun --nproc_per_node 2`` on tests/distributed_run.py."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gensar_lib.config import REPO_ROOT

WORKER = Path(__file__).with_name("distributed_run.py")
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "GENSAR_CACHE": str(cache), "GENSAR_DEVICE": "cpu"}


def _run(args: list[str], cache: Path, launcher: list[str] = TORCHRUN) -> subprocess.CompletedProcess:
    done = subprocess.run([*launcher, str(WORKER), *args], cwd=REPO_ROOT, env=_env(cache), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc)."""
    children = [int(c) for task in Path(f"/proc/{pid}/task").iterdir()
                for c in (task / "children").read_text().split()]
    return children + [d for c in children for d in _descendants(c)]


def _status(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except FileNotFoundError:
        return "zombie"  # gone


def _train_args(out: Path) -> list[str]:
    return ["train", "--dataset", "synthetic", "--profile", "tiny", "--out", str(out)]


@pytest.mark.slow
def test_two_processes_keep_identical_weights_equal_to_one_process(tmp_path):
    """Two steps (9 rows split 5 + 4, then 1 row: one process has an empty shard) leave the same
    weights in both processes, and the losses and weights of one process on the whole batches."""
    _run(["steps", str(tmp_path / "two")], tmp_path / "cache")
    _run(["steps", str(tmp_path / "one")], tmp_path / "cache", launcher=[sys.executable])
    r0, r1 = (torch.load(tmp_path / "two" / f"rank{r}.pt") for r in (0, 1))
    one = torch.load(tmp_path / "one" / "rank0.pt")
    assert r0["weights"].keys() == r1["weights"].keys() == one["weights"].keys()
    assert all(torch.equal(r0["weights"][k], r1["weights"][k]) for k in r0["weights"])
    assert r0["losses"] == r1["losses"]
    assert r0["losses"] == pytest.approx(one["losses"], rel=1e-5)
    moved = [k for k in one["weights"] if not torch.equal(one["weights"][k], r0["weights"][k])]
    assert all(torch.allclose(r0["weights"][k], one["weights"][k], atol=1e-5) for k in one["weights"]), moved
    assert (tmp_path / "two" / "run" / "last" / "training_state.pt").exists()


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory):
    """The command line's train under torchrun (2 ranks, 60 steps) and, on the same cache, in one
    process, which finds the T5 stage cached and only evaluates the same checkpoint."""
    root = tmp_path_factory.mktemp("cli")
    two = _run(["cli", "0", *_train_args(root / "two")], root / "cache")
    one = _run(["cli", "0", *_train_args(root / "one")], root / "cache", launcher=[sys.executable])
    return root, two, one


@pytest.mark.slow
def test_two_rank_cli_run_writes_metrics_equal_to_one_process_evaluation(two_rank_run):
    root, two, one = two_rank_run
    assert "training with 2 process(es) (MULTI_CPU)" in two.stdout
    assert "ran with 2 rank(s) on cpu (MULTI_CPU, backend gloo)" in two.stdout
    assert two.stdout.count("wrote ") == 2  # metrics.json and run.json, by the main process only
    assert "ran with 1 rank(s) on cpu" in one.stdout
    a, b = (json.loads((root / name / "metrics.json").read_text()) for name in ("two", "one"))
    assert a["test_cases"] == b["test_cases"] > 128  # each task has several batches of 64 to share
    assert a["metrics"] == b["metrics"]
    assert [h["step"] for h in a["training"]] == [30, 60]
    assert json.loads((root / "two" / "run.json").read_text())["ranks"] == 2


@pytest.mark.slow
def test_two_rank_ablation_writes_once_and_scores_as_the_train_command(two_rank_run):
    """The ablation under torchrun (GenSAR, whose T5 the train command cached): both ranks evaluate,
    the main one alone writes, and GenSAR's metrics equal the train command's metrics.json."""
    root, _, _ = two_rank_run
    done = _run(["cli", "0", "ablation", "--dataset", "synthetic", "--profile", "tiny", "--methods", "gensar",
                 "--out", str(root / "ablation")], root / "cache")
    wrote = [line for line in done.stdout.splitlines() if line.startswith("wrote ")]
    assert any(line.endswith("ablation.json") for line in wrote) and len(wrote) == len(set(wrote))
    runs = json.loads((root / "ablation" / "ablation.json").read_text())["runs"]
    gensar = [r for r in runs if r["method"] == "gensar"]
    assert len(gensar) == 1
    assert gensar[0]["metrics"] == json.loads((root / "two" / "metrics.json").read_text())["metrics"]


@pytest.mark.slow
def test_sigkill_of_a_two_rank_run_then_restart_resumes(two_rank_run, tmp_path):
    """A SIGKILL of the launcher and both ranks after a mid-run checkpoint; the restart resumes from it
    and ends with the uninterrupted run's metrics."""
    root, _, _ = two_rank_run
    cache = tmp_path / "cache"
    shutil.copytree(root / "cache", cache, ignore=lambda d, names: [n for n in names if n.startswith("t5")])
    args = [*TORCHRUN, str(WORKER), "cli", "5", *_train_args(tmp_path / "out")]
    proc = subprocess.Popen(args, cwd=REPO_ROOT, env=_env(cache), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    state = cache / "t5_work"
    while not any(state.glob("*/last/training_state.pt")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    ranks = _descendants(proc.pid)  # torchrun starts each rank in a session of its own
    assert len(ranks) >= 2
    for pid in [proc.pid, *ranks]:
        os.kill(pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    while any(Path(f"/proc/{pid}").exists() and "zombie" not in _status(pid) for pid in ranks):
        time.sleep(0.1)
    assert not (tmp_path / "out" / "metrics.json").exists()
    resumed = _run(["cli", "5", *_train_args(tmp_path / "out")], cache)
    assert "from step " in resumed.stdout, resumed.stdout[-2000:] + resumed.stderr[-4000:]
    step = int(resumed.stdout.split("from step ")[1].split("/")[0])
    assert 5 <= step < 60 and step % 5 == 0
    a, b = (json.loads((folder / "metrics.json").read_text()) for folder in (root / "two", tmp_path / "out"))
    assert a["metrics"] == b["metrics"]
