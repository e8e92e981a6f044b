"""Artifact cache: keyed by config and inputs, atomic, never stale."""
import time

import pytest

from gensar_lib.artifacts import ArtifactCache, atomic_path, code_fingerprint, write_json
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
