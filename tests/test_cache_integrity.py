"""The cache runs no code from its files, finds damaged ones (reported once, moved aside, rebuilt) and can be
verified and cleaned from the command line."""
import json
import os
import pickle
import warnings

import numpy as np
import pytest
import torch

from gensar_lib.__main__ import main
from gensar_lib.artifacts import MANIFEST, ArtifactCache, CacheWarning, write_manifest
from gensar_lib.config import load_profile
from gensar_lib.data.pipeline import prepare_data


class Payload:
    """Unpickling it creates the file ``path``: the proof that a loader ran code from data."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def value():
    return {"name": "x", "arrays": [np.arange(5), np.eye(2, dtype=np.float32)], "state": {"w": torch.ones(3)},
            "n": 1.5, "none": None}


def same(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    return type(a) is type(b) and a == b


class Counted:
    """A stage that counts its builds."""

    def __init__(self, root):
        self.cache, self.calls = ArtifactCache(root), 0

    def make(self):
        self.calls += 1
        return value()

    def get(self):
        return self.cache.cached("stage", {"a": 1}, self.make)

    @property
    def folder(self):
        return self.cache.path("stage", self.cache.key("stage", {"a": 1}))


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _zero(path):  # in place, keeping the size
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.seek(size // 4)
        fh.write(b"\0" * (size // 2))


DAMAGE = {"truncated": _truncate, "zeroed": _zero, "deleted": os.unlink}


def _rebuilt_once_after(stage: Counted, damaged_name: str) -> str:
    """The next read warns once naming the entry and the file, rebuilds, and gives the same value."""
    with pytest.warns(CacheWarning) as record:
        again = stage.get()
    messages = [str(w.message) for w in record if issubclass(w.category, CacheWarning)]
    assert len(messages) == 1 and str(stage.folder) in messages[0] and damaged_name in messages[0], messages
    assert stage.calls == 2 and same(again, value())
    assert (stage.folder.parent / f".{stage.folder.name}.broken").is_dir()  # moved aside, for a look
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # trusted again: no warning, no rebuild
        assert same(stage.get(), value()) and stage.calls == 2
    return messages[0]


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("name", ["value.json", "arrays.npz", "tensors.safetensors", MANIFEST])
def test_a_damaged_file_is_reported_once_moved_aside_and_rebuilt(tmp_path, name, damage):
    stage = Counted(tmp_path)
    assert same(stage.get(), value()) and stage.calls == 1
    DAMAGE[damage](stage.folder / name)
    _rebuilt_once_after(stage, name)


def test_an_unlisted_file_is_reported_and_never_read(tmp_path):
    stage = Counted(tmp_path)
    stage.get()
    (stage.folder / "value.pkl").write_bytes(pickle.dumps(Payload(tmp_path / "ran")))
    assert "not in the manifest" in _rebuilt_once_after(stage, "value.pkl")
    assert not (tmp_path / "ran").exists()


def _plant(path, sentinel):
    """Replace ``path`` with a file whose loading would run code (create ``sentinel``) in that file's format."""
    if path.suffix in (".npz", ".npy"):
        objects = np.array([Payload(sentinel)], dtype=object)
        if path.suffix == ".npz":
            with open(path, "wb") as fh:
                np.savez(fh, a0=objects)
        else:
            with open(path, "wb") as fh:
                np.save(fh, objects)
    elif path.suffix == ".pt":
        torch.save({"state": Payload(sentinel)}, path)
    else:  # JSON and safetensors cannot hold code: a pickle in their place must simply fail to parse
        path.write_bytes(pickle.dumps(Payload(sentinel)))


@pytest.mark.parametrize("forged", [False, True], ids=["manifest-kept", "manifest-forged"])
@pytest.mark.parametrize("name", ["value.json", "arrays.npz", "tensors.safetensors"])
def test_a_payload_in_a_cached_value_runs_nothing(tmp_path, name, forged):
    stage = Counted(tmp_path / "cache")
    stage.get()
    _plant(stage.folder / name, tmp_path / "ran")
    if forged:  # the manifest rewritten to match: the loader itself must refuse
        manifest = json.loads((stage.folder / MANIFEST).read_text())
        write_manifest(stage.folder, **{k: v for k, v in manifest.items() if k != "files"})
    _rebuilt_once_after(stage, name)
    assert not (tmp_path / "ran").exists()


def _npy_reader(folder):
    return np.load(folder / "x.npy")  # as embeddings.cached_semantic_embeddings reads


def _pt_reader(folder):
    return torch.load(folder / "x.pt", map_location="cpu", weights_only=True)["state"]  # as cached_sasrec reads


@pytest.mark.parametrize("forged", [False, True], ids=["manifest-kept", "manifest-forged"])
@pytest.mark.parametrize("name, write, read", [
    ("x.npy", lambda f: np.save(f / "x.npy", np.arange(4)), _npy_reader),
    ("x.pt", lambda f: torch.save({"state": torch.arange(4)}, f / "x.pt"), _pt_reader),
])
def test_a_payload_in_a_built_entry_runs_nothing(tmp_path, name, write, read, forged):
    cache, builds = ArtifactCache(tmp_path / "cache"), []

    def build(folder):
        builds.append(1)
        write(folder)

    first = cache.load("built", {}, build, read)
    folder = cache.path("built", cache.key("built", {}))
    _plant(folder / name, tmp_path / "ran")
    if forged:
        manifest = json.loads((folder / MANIFEST).read_text())
        write_manifest(folder, **{k: v for k, v in manifest.items() if k != "files"})
    with pytest.warns(CacheWarning, match="cannot be read" if forged else name):  # the loader refused it
        again = cache.load("built", {}, build, read)
    assert not (tmp_path / "ran").exists()
    assert len(builds) == 2 and np.array_equal(np.asarray(again), np.asarray(first))


def test_prepared_data_round_trips_through_the_cache(tmp_path):
    profile = load_profile("tiny")
    made = prepare_data("synthetic", profile, ArtifactCache(tmp_path / "a"))  # stored, then read back
    again = prepare_data("synthetic", profile, ArtifactCache(tmp_path / "a"))  # read from the cache
    assert sorted(p.name for p in next((tmp_path / "a" / "data").iterdir()).iterdir()) == [
        "arrays.npz", MANIFEST, "value.json"]
    for prepared in (made, again):
        assert prepared.world.dataset is prepared.dataset
        assert all(c.history == tuple(prepared.dataset.sequences[c.user][:len(c.history)])
                   for c in prepared.split.test)
    assert made.dataset.items == again.dataset.items and made.dataset.sequences == again.dataset.sequences
    assert made.dataset.meta == again.dataset.meta and made.key == again.key
    assert all(getattr(made.split, p) == getattr(again.split, p) for p in ("train", "valid", "test"))
    assert made.candidates.keys() == again.candidates.keys()
    assert all(np.array_equal(made.candidates[k], again.candidates[k]) for k in made.candidates)
    w, v = made.world, again.world
    assert w.leaves == v.leaves and w.bundles == v.bundles and w.item_attributes == v.item_attributes
    assert w.config == v.config and list(w._relevant) == list(v._relevant)
    assert all(np.array_equal(w.next_items[i], v.next_items[i]) for i in range(w.n_items))
    assert np.array_equal(w.matching_items("red"), v.matching_items("red"))


def test_cache_verify_and_clean(tmp_path, capsys):
    root = tmp_path / "cache"
    good, bad = Counted(root), ArtifactCache(root)
    good.get()
    bad.cached("other", {}, value)
    damaged = bad.path("other", bad.key("other", {}))
    _zero(damaged / "arrays.npz")
    orphans = [root / "stage" / ".0123abcd.broken", root / "stage" / ".0123abcd.999999999.abcdefgh"]
    for path in orphans:
        path.mkdir()
    finished_work = root / "stage_work" / good.folder.name / "last"  # a published run's leftover state
    finished_work.mkdir(parents=True)
    assert main(["cache", "verify", "--cache", str(root)]) == 1
    out = capsys.readouterr().out
    assert f"damaged {damaged / 'arrays.npz'}: content differs" in out
    for path in [*orphans, finished_work.parent]:
        assert f"orphan {path}\n" in out
    assert out.strip().endswith("orphaned (python -m gensar_lib cache clean removes them)")
    assert main(["cache", "clean", "--cache", str(root)]) == 0
    assert not damaged.exists() and not any(p.exists() for p in orphans) and not finished_work.exists()
    assert main(["cache", "verify", "--cache", str(root)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"{root}: 1 entries checked, 0 damaged, 0 orphaned"
