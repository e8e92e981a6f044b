"""Stage artifact cache: outputs keyed by the config and inputs that made them (notebook 00_data).

A stage's artifact is a folder ``<cache>/<stage>/<key>/`` holding its files and
a ``manifest.json``. The key hashes the stage name, its config and the
fingerprints of its inputs, so a changed config or input never reuses a stale
artifact. Folders are built under a temporary name and renamed into place, so
an interrupted build leaves nothing that looks finished.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock

from gensar_lib.config import cache_dir, fingerprint

T = TypeVar("T")
MANIFEST = "manifest.json"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_json(path: str | Path, obj: Any) -> Path:
    """Write JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    return Path(path)


def write_pickle(path: str | Path, obj: Any) -> Path:
    """Pickle atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
    return Path(path)


def read_pickle(path: str | Path) -> Any:
    with open(path, "rb") as fh:
        return pickle.load(fh)


def code_fingerprint(*folders: str | Path) -> str:
    """A hash of the Python sources under ``folders`` (or of the given files), so changed code never
    reuses old artifacts."""
    digest = hashlib.sha256()
    for folder in folders:
        folder = Path(folder)
        for path in [folder] if folder.is_file() else sorted(folder.rglob("*.py")):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class ArtifactCache:
    """Folders of stage outputs under ``root`` (default ``$GENSAR_CACHE`` or ``data/cache``)."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else cache_dir()

    def key(self, stage: str, config: Any, inputs: list[str] | tuple[str, ...] = ()) -> str:
        """The artifact key of ``stage`` run with ``config`` on inputs with these fingerprints."""
        return fingerprint(stage, config, list(inputs))

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def exists(self, stage: str, key: str) -> bool:
        return (self.path(stage, key) / MANIFEST).exists()

    def build(
        self,
        stage: str,
        config: Any,
        builder: Callable[[Path], None],
        inputs: list[str] | tuple[str, ...] = (),
    ) -> Path:
        """The artifact folder of this stage/config/inputs; ``builder(folder)`` fills it when missing."""
        key = self.key(stage, config, inputs)
        final = self.path(stage, key)
        if self.exists(stage, key):
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        lock = self.root / ".locks" / stage / f"{key}.lock"  # apart, so a stage folder holds artifacts only
        lock.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(lock)):  # one process builds a key; another waits, then reads it
            if self.exists(stage, key):
                return final
            tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
            try:
                builder(tmp)
                manifest = {"stage": stage, "key": key, "inputs": list(inputs), "created": time.time()}
                write_json(tmp / MANIFEST, manifest)
                if final.exists():  # a half-built folder from an older crash
                    shutil.rmtree(final)
                os.replace(tmp, final)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp)
        return final

    def cached(
        self,
        stage: str,
        config: Any,
        make: Callable[[], T],
        inputs: list[str] | tuple[str, ...] = (),
    ) -> T:
        """``make()``'s result, pickled under this stage/config/inputs and reused next time."""
        folder = self.build(
            stage, config, lambda d: write_pickle(d / "value.pkl", make()), inputs
        )
        return read_pickle(folder / "value.pkl")
