"""Stage artifact cache: outputs keyed by the config and inputs that made them (notebook 00_data).

A stage's artifact is a folder ``<cache>/<stage>/<key>/`` holding its files and
a ``manifest.json``. The key hashes the stage name, its config and the
fingerprints of its inputs, so a changed config or input never reuses a stale
artifact. Folders are built under a temporary name and renamed into place, so
an interrupted build leaves nothing that looks finished.

Every temporary name carries its owner's process id (``.<name>.<pid>.<random>``):
a build removes its temporary on an exception, SIGINT or (in the command line)
SIGTERM, and the next build in the same folder sweeps what a killed owner left.
Published files and folders get the usual permissions (0o666 / 0o777 less the
umask), not the private ones of ``tempfile``.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import pickle
import re
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock

from gensar_lib.config import cache_dir, fingerprint

T = TypeVar("T")
MANIFEST = "manifest.json"
# ".<name>.<pid>.<8 tempfile characters>" plus ".tmp" for atomic_path / atomic_dir
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[a-z0-9_]{8}(?:\.tmp)?$")
_UMASK_LOCK = threading.Lock()


# ---------------------------------------------------------------- temporary names and their sweep


def _temp_prefix(name: str) -> str:
    return f".{name}.{os.getpid()}."


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (one we may not signal counts as alive)."""
    if pid <= 0:
        return True  # never a real owner: leave such an entry alone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: someone else's live process
        return True
    return True


def sweep_stale(folder: str | Path, name: str | None = None) -> list[Path]:
    """Remove the temporary entries in ``folder`` whose owner process is gone; the removed paths.

    With ``name``, only the temporaries of that final name (``.<name>.<pid>.*``).
    Entries of this process and of live processes are kept.
    """
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if not match or (name is not None and match["name"] != name):
            continue
        pid = int(match["pid"])
        if pid == os.getpid() or pid_alive(pid):
            continue
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


# ---------------------------------------------------------------- permissions


def current_umask() -> int:
    """The process umask, read without leaving it changed (from /proc where it can)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:  # os.umask can only be read by setting it; 0o077 is the safe value meanwhile
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def _publish_mode(path: Path, directory: bool) -> None:
    """Give a tempfile-made (0o600 / 0o700) path the mode a plain open or mkdir would give."""
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())


# ---------------------------------------------------------------- atomic writes


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path.name), suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _publish_mode(tmp_path, directory=False)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` in two renames.

    If the process dies between the renames, the old folder survives as
    ``.<name>.old`` (look there when ``path`` is missing).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(path.parent, path.name)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path.name), suffix=".tmp", dir=path.parent))
    old = path.parent / f".{path.name}.old"
    try:
        yield tmp
        _publish_mode(tmp, directory=True)
        if old.exists():
            shutil.rmtree(old)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


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


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """While inside, SIGTERM raises ``SystemExit(143)`` so ``finally`` blocks remove temporaries.

    A second SIGTERM during that cleanup is ignored (SIGKILL still ends the
    process). Does nothing outside the main thread or when SIGTERM already has
    a handler; the previous handler is restored on leaving.
    """
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def check_out_dir(path: str | Path) -> Path:
    """``path`` as a writable folder, created if missing; an OSError naming it otherwise.

    Writability is tested by creating and removing a file in it, so the answer
    holds for root, read-only mounts and network folders alike.
    """
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "exists and is not a folder", str(path))
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, f"cannot create the folder: {parent} is a file", str(path))
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OSError(err.errno, f"cannot create the folder ({err.strerror})", str(path)) from None
    try:
        fd, probe = tempfile.mkstemp(prefix=_temp_prefix("write-test"), dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OSError(err.errno, f"folder is not writable ({err.strerror})", str(path)) from None
    return path


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
            sweep_stale(final.parent)  # what killed builds of this stage left
            tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(key), dir=final.parent))
            try:
                builder(tmp)
                manifest = {"stage": stage, "key": key, "inputs": list(inputs), "created": time.time()}
                write_json(tmp / MANIFEST, manifest)
                _publish_mode(tmp, directory=True)
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
