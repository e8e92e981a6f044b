"""Artifact cache: keyed by config and inputs, atomic, never stale, swept after kills, umask modes."""
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from gensar_lib.artifacts import (
    ArtifactCache,
    atomic_dir,
    atomic_path,
    check_out_dir,
    code_fingerprint,
    sweep_stale,
    write_json,
)
from gensar_lib.config import DataConfig, SyntheticConfig


def test_same_config_reuses_changed_config_rebuilds(tmp_path):
    cache = ArtifactCache(tmp_path)
    calls = []

    def make():
        calls.append(1)
        return {"n": len(calls)}

    a = cache.cached("stage", DataConfig(), make, ["input-1"])
    b = cache.cached("stage", DataConfig(), make, ["input-1"])
    c = cache.cached("stage", DataConfig(synthetic=SyntheticConfig(seed=1)), make, ["input-1"])
    d = cache.cached("stage", DataConfig(), make, ["input-2"])
    assert a == b == {"n": 1}
    assert c == {"n": 2} and d == {"n": 3}


def test_failed_build_leaves_nothing_behind(tmp_path):
    cache = ArtifactCache(tmp_path)

    def broken(folder):
        (folder / "half.bin").write_bytes(b"x")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        cache.build("stage", {"a": 1}, broken)
    key = cache.key("stage", {"a": 1})
    assert not cache.exists("stage", key)
    assert list((tmp_path / "stage").iterdir()) == []
    folder = cache.build("stage", {"a": 1}, lambda d: (d / "ok.txt").write_text("ok"))
    assert (folder / "ok.txt").read_text() == "ok" and (folder / "manifest.json").exists()


def test_atomic_path_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"v": 1})
    with pytest.raises(ValueError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise ValueError("boom")
    assert target.read_text().strip().startswith("{") and '"v": 1' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_code_fingerprint_changes_with_source(tmp_path):
    (tmp_path / "m.py").write_text("x = 1\n")
    before = code_fingerprint(tmp_path)
    (tmp_path / "m.py").write_text("x = 2\n")
    assert code_fingerprint(tmp_path) != before


def test_code_fingerprint_of_single_files(tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("x = 1\n")
    b.write_text("y = 2\n")
    before = code_fingerprint(a)
    assert before != code_fingerprint(b)  # a file is hashed, not treated as an empty folder
    a.write_text("x = 2\n")
    assert code_fingerprint(a) != before


def test_concurrent_builds_of_one_key_run_the_builder_once(tmp_path):
    import threading

    cache, calls = ArtifactCache(tmp_path), []

    def builder(folder):
        calls.append(1)
        time.sleep(0.3)  # long enough for the other thread to arrive while this one builds
        (folder / "v.txt").write_text("done")

    threads = [threading.Thread(target=cache.build, args=("stage", {"a": 1}, builder)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert (cache.path("stage", cache.key("stage", {"a": 1})) / "v.txt").read_text() == "done"


# ---------------------------------------------------------------- temporaries: pid names, sweep, signals

# A child that starts building the "data" stage through the command line, then hangs in the builder.
# It restores Python's SIGINT handler first: a child of a shell's background job (`cmd &`) inherits SIGINT
# ignored, and Python then keeps it ignored.
_HANGING_BUILD = textwrap.dedent("""
    import pathlib, signal, sys, time
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import gensar_lib.data.pipeline as data_pipeline

    def hang(*args, **kwargs):
        pathlib.Path(sys.argv[1]).write_text("building")
        time.sleep(300)

    data_pipeline._prepare = hang
    from gensar_lib.__main__ import main
    sys.exit(main(["stats", "--profile", "tiny"]))
""")


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _temporaries(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) if folder.exists() else []


def _start_hanging_build(tmp_path):
    """A CLI child inside ArtifactCache.build of stage 'data'; returns it and the data stage folder."""
    script, marker, cache = tmp_path / "hang.py", tmp_path / "started", tmp_path / "cache"
    script.write_text(_HANGING_BUILD)
    child = subprocess.Popen([sys.executable, str(script), str(marker)], stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "GENSAR_CACHE": str(cache), "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not marker.exists():
        if child.poll() is not None or time.monotonic() > deadline:
            child.kill()
            pytest.fail(f"the child never started building: {child.communicate()[1]}")
        time.sleep(0.1)
    stage = cache / "data"
    [name] = _temporaries(stage)
    assert name.split(".")[2] == str(child.pid)  # ".<key>.<pid>.<random>"
    return child, stage


def test_sigkill_leaves_the_temporary_and_the_next_build_of_the_stage_sweeps_it(tmp_path):
    child, stage = _start_hanging_build(tmp_path)
    child.send_signal(signal.SIGKILL)
    child.communicate()
    [left] = _temporaries(stage)
    assert str(child.pid) in left  # nothing could clean up after SIGKILL
    ArtifactCache(tmp_path / "cache").build("data", {"other": 1}, lambda d: (d / "x").write_text("x"))
    assert _temporaries(stage) == []


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 128 + 15), (signal.SIGINT, 128 + 2)])
def test_sigterm_and_sigint_remove_the_temporary_at_once(tmp_path, sig, code):
    child, stage = _start_hanging_build(tmp_path)
    child.send_signal(sig)
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == code, stderr
    assert "Traceback" not in stderr
    assert _temporaries(stage) == []


def test_sweep_removes_only_entries_of_dead_owners(tmp_path):
    dead, live = _dead_pid(), os.getppid()
    names = [f".k1.{dead}.abcdefgh", f".k2.{live}.abcdefgh", f".k3.{os.getpid()}.abcdefgh",
             f".out.json.{dead}.abcd_123.tmp", ".k4.old", "finishedkey"]
    for name in names:
        (tmp_path / name).mkdir() if not name.endswith(".tmp") else (tmp_path / name).write_text("x")
    assert sweep_stale(tmp_path, "other.json") == []  # a name given: only its temporaries
    removed = sweep_stale(tmp_path)
    assert sorted(p.name for p in removed) == sorted([names[0], names[3]])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[1:3] + names[4:])


def test_atomic_path_names_carry_the_pid_and_stale_ones_are_swept(tmp_path):
    stale, other = tmp_path / f".out.json.{_dead_pid()}.abcdefgh.tmp", tmp_path / f".b.json.{_dead_pid()}.abcdefgh.tmp"
    stale.write_text("half")
    other.write_text("half")
    with atomic_path(tmp_path / "out.json") as tmp:
        assert tmp.name.startswith(f".out.json.{os.getpid()}.")
        tmp.write_text("{}")
    assert not stale.exists() and other.exists()  # only temporaries of the file being written


def test_atomic_dir_replaces_the_folder_and_keeps_it_on_error(tmp_path):
    target = tmp_path / "last"
    stale = tmp_path / f".last.{_dead_pid()}.abcdefgh.tmp"
    stale.mkdir()
    with atomic_dir(target) as tmp:
        assert tmp.name.startswith(f".last.{os.getpid()}.") and tmp.parent == tmp_path
        (tmp / "v.txt").write_text("1")
    assert not stale.exists()
    with atomic_dir(target) as tmp:
        (tmp / "v.txt").write_text("2")
    assert (target / "v.txt").read_text() == "2"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "v.txt").write_text("half")
            raise RuntimeError("interrupted")
    assert (target / "v.txt").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]  # no temporary, no .last.old


def test_atomic_dir_old_copy_survives_between_the_renames(tmp_path, monkeypatch):
    target = tmp_path / "best"
    with atomic_dir(target) as tmp:
        (tmp / "v.txt").write_text("1")
    real_replace, calls = os.replace, []

    def dies_on_second(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process "dies" between the two renames
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(target) as tmp:
            (tmp / "v.txt").write_text("2")
    monkeypatch.undo()
    assert not target.exists() and (tmp_path / ".best.old" / "v.txt").read_text() == "1"


def test_check_out_dir_creates_and_leaves_nothing(tmp_path):
    out = check_out_dir(tmp_path / "a" / "b")
    assert out.is_dir() and list(out.iterdir()) == []


# ---------------------------------------------------------------- permissions follow the umask


@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_written_files_and_folders_follow_the_umask(tmp_path, umask):
    import numpy as np
    import torch
    from safetensors.torch import save_file  # the writer of the T5's model.safetensors, which makes files 0o600

    file_mode, dir_mode = 0o666 & ~umask, 0o777 & ~umask
    assert _mode(write_json(tmp_path / "a.json", {"a": 1})) == file_mode
    with atomic_dir(tmp_path / "folder") as tmp:
        (tmp / "f.txt").write_text("x")
        (tmp / "sub").mkdir(mode=0o700)
        save_file({"w": torch.zeros(3)}, tmp / "sub" / "model.safetensors")
    assert _mode(tmp_path / "folder") == dir_mode and _mode(tmp_path / "folder" / "f.txt") == file_mode
    assert _mode(tmp_path / "folder" / "sub") == dir_mode
    assert _mode(tmp_path / "folder" / "sub" / "model.safetensors") == file_mode
    cache = ArtifactCache(tmp_path / "cache")
    folder = cache.build("stage", {"u": umask}, lambda d: save_file({"w": torch.zeros(2)}, d / "model.safetensors"))
    assert _mode(folder) == dir_mode
    assert _mode(folder / "manifest.json") == file_mode and _mode(folder / "model.safetensors") == file_mode
    value = cache.cached("cached", {"u": umask}, lambda: {"a": np.arange(3), "t": torch.ones(2)})
    assert value["a"].tolist() == [0, 1, 2] and value["t"].tolist() == [1.0, 1.0]
    entry = cache.path("cached", cache.key("cached", {"u": umask}))
    assert {p.name: _mode(p) for p in entry.iterdir()} == {
        name: file_mode for name in ("value.json", "arrays.npz", "tensors.safetensors", "manifest.json")}
