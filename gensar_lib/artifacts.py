"""Stage artifact cache: outputs keyed by the config and inputs that made them (notebook 00_data).

A stage's artifact is a folder ``<cache>/<stage>/<key>/`` holding its files and
a ``manifest.json``. The key hashes the stage name, its config and the
fingerprints of its inputs, so a changed config or input never reuses a stale
artifact. Folders are built under a temporary name and renamed into place, so
an interrupted build leaves nothing that looks finished.

Nothing in the cache can run code when it is loaded: values are stored as JSON
with their arrays in ``.npz`` (plain numbers, no objects) and their tensors in
``.safetensors`` (:func:`write_tree`). The manifest, written last, records the
size and SHA-256 of every file; an entry whose files differ from it (truncated,
overwritten, missing, or an unlisted file beside them) is reported once as a
:class:`CacheWarning`, moved aside to ``.<key>.broken`` and rebuilt, never trusted.

Every temporary name carries its owner's process id (``.<name>.<pid>.<random>``):
a build removes its temporary on an exception, SIGINT or (in the command line)
SIGTERM, and the next build in the same folder sweeps what a killed owner left.
Published files and folders get the usual permissions (0o666 / 0o777 less the
umask), not the private ones of ``tempfile`` (or of a library's writer).
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import io
import os
import re
import shutil
import signal
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from filelock import FileLock, Timeout

from gensar_lib.config import cache_dir, fingerprint

T = TypeVar("T")
MANIFEST = "manifest.json"
BROKEN = ".broken"  # suffix of an entry moved aside: ``.<name>.broken``
TREE_FILE, ARRAYS_FILE, TENSORS_FILE = "value.json", "arrays.npz", "tensors.safetensors"
TREE_FORMAT = "gensar-tree-1"
WORK_SUFFIX = "_work"  # ``<cache>/<stage>_work/<key>/``: a stage's resumable state until its entry is published
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
    """Give a tempfile-made (0o600 / 0o700) path the mode a plain open or mkdir would give; a folder's
    files and subfolders too (some writers, e.g. safetensors', make their files private)."""
    mask = current_umask()
    os.chmod(path, (0o777 if directory else 0o666) & ~mask)
    if directory:
        for parent, folders, files in os.walk(path):
            for name in folders:
                os.chmod(os.path.join(parent, name), 0o777 & ~mask)
            for name in files:
                os.chmod(os.path.join(parent, name), 0o666 & ~mask)


# ---------------------------------------------------------------- operating-system errors


@contextlib.contextmanager
def os_errors(path: str | Path) -> Iterator[None]:
    """Inside, an OSError that names no file is raised again naming ``path``, and a library's write error
    that hides one (safetensors: ``... (os error 28)``) is raised as that OSError."""
    try:
        yield
    except OSError as err:
        if err.filename is not None:
            raise
        raise OSError(err.errno, err.strerror or str(err), str(path)) from err
    except Exception as err:
        found = re.search(r"os error (\d+)\)?", str(err))
        if found is None:
            raise
        code = int(found[1])
        raise OSError(code, os.strerror(code), str(path)) from err


class _RecordingFile(io.RawIOBase):
    """A binary file that remembers the OSError of a failed write (torch.save turns it into a
    RuntimeError that names neither the path nor the reason)."""

    def __init__(self, fh: Any):
        self.fh, self.error = fh, None

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        try:
            return self.fh.write(data)
        except OSError as err:
            self.error = err
            raise


def torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save(obj, path)``; a failed write raises the OSError behind it (named by the caller's
    :func:`atomic_dir` or cache build)."""
    import torch

    with open(path, "wb") as fh:
        recording = _RecordingFile(fh)
        try:
            torch.save(obj, recording)
        except RuntimeError:
            if recording.error is not None:
                raise recording.error from None
            raise


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
        with os_errors(path):
            yield tmp_path
        _publish_mode(tmp_path, directory=False)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | Path, manifest: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` in two renames.

    If the process dies between the renames, the old folder survives as
    ``.<name>.old`` (look there when ``path`` is missing). With ``manifest``, a
    ``manifest.json`` of the folder's files is written last (:func:`check_folder` reads it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(path.parent, path.name)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path.name), suffix=".tmp", dir=path.parent))
    old = path.parent / f".{path.name}.old"
    try:
        with os_errors(path):
            yield tmp
        if manifest:
            write_manifest(tmp)
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


# ---------------------------------------------------------------- integrity: manifests of file sizes and hashes


class CacheWarning(UserWarning):
    """A damaged cache entry or checkpoint, moved aside and rebuilt (the command line prints it on one line)."""


class DamagedEntry(ValueError):
    """A stored file that is not what was written (its message names the file)."""


def describe(err: BaseException) -> str:
    """``Type: first line`` of an exception's message, without terminal escapes, at most 200 characters."""
    lines = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:200]}" if lines else type(err).__name__


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _files(folder: Path) -> list[str]:
    """Every file under ``folder`` but its manifest, as sorted relative POSIX paths."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.relative_to(folder).as_posix() != MANIFEST)


def write_manifest(folder: str | Path, **fields: Any) -> Path:
    """Write ``folder/manifest.json`` (atomically, last): ``fields`` plus the size and SHA-256 of every file."""
    folder = Path(folder)
    files = {rel: {"size": (folder / rel).stat().st_size, "sha256": file_sha256(folder / rel)}
             for rel in _files(folder)}
    return write_json(folder / MANIFEST, {**fields, "files": files})


def check_folder(folder: str | Path) -> str | None:
    """What is wrong with a folder against its manifest (``<path>: <problem>``), or None when every file
    has its recorded size and SHA-256 and no other file is there."""
    folder = Path(folder)
    manifest = folder / MANIFEST
    try:
        files = json.loads(manifest.read_text())["files"]
        expected = {rel: (int(f["size"]), str(f["sha256"])) for rel, f in files.items()}
    except FileNotFoundError:
        return f"{manifest}: missing"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        return f"{manifest}: unreadable ({describe(err)})"
    for rel, (size, digest) in expected.items():
        path = folder / rel
        try:
            found = path.stat().st_size
        except FileNotFoundError:
            return f"{path}: missing"
        if found != size:
            return f"{path}: {found} bytes, the manifest says {size}"
        if file_sha256(path) != digest:
            return f"{path}: content differs from the manifest (SHA-256)"
    extra = sorted(set(_files(folder)) - set(expected))
    return f"{folder / extra[0]}: not in the manifest" if extra else None


def move_aside(folder: str | Path, problem: str, then: str = "rebuilt") -> Path:
    """Rename a damaged folder to ``.<name>.broken`` beside it (replacing an older one) and warn once,
    naming the folder, the problem and what happens ``then``; the new path."""
    folder = Path(folder)
    aside = folder.parent / f".{folder.name}{BROKEN}"
    shutil.rmtree(aside, ignore_errors=True)
    try:
        os.replace(folder, aside)
    except FileNotFoundError:  # another process (a rank of the same run) moved it first
        return aside
    warnings.warn(f"damaged cache entry {folder}: {problem.removeprefix(f'{folder}: ')}; moved aside to "
                  f"{aside.name} and {then}",
                  CacheWarning, stacklevel=3)
    return aside


def checked_folder(folder: str | Path, then: str = "rebuilt") -> Path | None:
    """``folder`` when its manifest checks out (:func:`check_folder`); a damaged one is moved aside
    with a warning saying what happens ``then``, and a missing one gives None."""
    folder = Path(folder)
    if not folder.exists():
        return None
    problem = check_folder(folder)
    if problem is None:
        return folder
    move_aside(folder, problem, then)
    return None


# ---------------------------------------------------------------- values as JSON, arrays and tensors


def _encode(value: Any, arrays: dict[str, np.ndarray], tensors: dict[str, Any], where: str) -> Any:
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str) or key in ("$array", "$tensor"):
                raise TypeError(f"cannot store {where}: dict key {key!r} (keys are text, not '$array'/'$tensor')")
        return {k: _encode(v, arrays, tensors, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v, arrays, tensors, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise TypeError(f"cannot store {where}: an array of Python objects")
        name = f"a{len(arrays)}"
        arrays[name] = value
        return {"$array": name}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if type(value).__module__ == "torch" and type(value).__name__ in ("Tensor", "Parameter"):
        name = f"t{len(tensors)}"
        tensors[name] = value.detach().cpu().contiguous().clone()
        return {"$tensor": name}
    raise TypeError(f"cannot store {where}: a {type(value).__name__} (convert it to JSON, arrays and tensors)")


def write_tree(folder: str | Path, value: Any) -> None:
    """Store ``value`` (dicts with text keys, lists, text, numbers, None, numpy arrays, torch tensors)
    in ``folder``: ``value.json``, its arrays in ``arrays.npz``, its tensors in ``tensors.safetensors``.
    Tuples come back as lists and numpy scalars as Python numbers."""
    folder = Path(folder)
    arrays: dict[str, np.ndarray] = {}
    tensors: dict[str, Any] = {}
    doc = {"format": TREE_FORMAT, "value": _encode(value, arrays, tensors, "value")}
    with os_errors(folder / TREE_FILE):
        (folder / TREE_FILE).write_text(json.dumps(doc) + "\n")
    if arrays:
        with os_errors(folder / ARRAYS_FILE), open(folder / ARRAYS_FILE, "wb") as fh:
            np.savez(fh, **arrays)
    if tensors:
        from safetensors.torch import save

        with os_errors(folder / TENSORS_FILE):
            (folder / TENSORS_FILE).write_bytes(save(tensors))


def _decode(doc: Any, arrays: dict[str, np.ndarray], tensors: dict[str, Any]) -> Any:
    if isinstance(doc, dict):
        if doc.keys() == {"$array"}:
            return arrays[doc["$array"]]
        if doc.keys() == {"$tensor"}:
            return tensors[doc["$tensor"]]
        return {k: _decode(v, arrays, tensors) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_decode(v, arrays, tensors) for v in doc]
    return doc


def read_tree(folder: str | Path) -> Any:
    """The value :func:`write_tree` stored; :class:`DamagedEntry` naming the file when one cannot be read.
    No file can run code: JSON, numpy archives without object arrays, safetensors."""
    folder = Path(folder)
    path = folder / TREE_FILE
    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict) or doc.get("format") != TREE_FORMAT:
            raise ValueError(f"not a {TREE_FORMAT} document")
        arrays: dict[str, np.ndarray] = {}
        if (folder / ARRAYS_FILE).exists():
            path = folder / ARRAYS_FILE
            with np.load(path) as archive:  # numpy's default refuses object arrays, so nothing runs
                arrays = {name: archive[name] for name in archive.files}
        tensors: dict[str, Any] = {}
        if (folder / TENSORS_FILE).exists():
            from safetensors.torch import load

            path = folder / TENSORS_FILE
            tensors = load(path.read_bytes())
        path = folder / TREE_FILE
        return _decode(doc["value"], arrays, tensors)
    except Exception as err:  # any parser's failure (json, zipfile, numpy, safetensors) means a damaged file
        raise DamagedEntry(f"{path}: cannot be read ({describe(err)})") from None


# ---------------------------------------------------------------- the cache


class ArtifactCache:
    """Folders of stage outputs under ``root`` (default ``$GENSAR_CACHE`` or ``data/cache``)."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else cache_dir()

    def key(self, stage: str, config: Any, inputs: list[str] | tuple[str, ...] = ()) -> str:
        """The artifact key of ``stage`` run with ``config`` on inputs with these fingerprints."""
        return fingerprint(stage, config, list(inputs))

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def work_path(self, stage: str, key: str) -> Path:
        """Where a stage keeps resumable state (checkpoints) until its entry is published."""
        return self.root / f"{stage}{WORK_SUFFIX}" / key

    def lock(self, stage: str, key: str) -> FileLock:
        """The lock one process holds while it builds, moves aside or removes an entry."""
        lock = self.root / ".locks" / stage / f"{key}.lock"  # apart, so a stage folder holds artifacts only
        lock.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(lock))

    def exists(self, stage: str, key: str) -> bool:
        """Whether the entry is published and its files match its manifest (a damaged one is moved aside
        with a warning, and does not exist)."""
        final = self.path(stage, key)
        if not (final / MANIFEST).exists():
            return False
        if check_folder(final) is None:
            return True
        with self.lock(stage, key):  # checked again under the lock: another process may have rebuilt it
            problem = check_folder(final) if (final / MANIFEST).exists() else "gone"
            if problem is None:
                return True
            if problem != "gone":
                move_aside(final, problem)
        return False

    def discard(self, stage: str, key: str, problem: str) -> None:
        """Move an entry aside (with a warning naming ``problem``) so that the next build remakes it."""
        with self.lock(stage, key):
            if self.path(stage, key).exists():
                move_aside(self.path(stage, key), problem)

    def build(
        self,
        stage: str,
        config: Any,
        builder: Callable[[Path], None],
        inputs: list[str] | tuple[str, ...] = (),
    ) -> Path:
        """The artifact folder of this stage/config/inputs; ``builder(folder)`` fills it when missing
        or damaged."""
        key = self.key(stage, config, inputs)
        final = self.path(stage, key)
        if self.exists(stage, key):
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        with self.lock(stage, key):  # one process builds a key; another waits, then reads it
            if (final / MANIFEST).exists() and check_folder(final) is None:
                return final
            sweep_stale(final.parent)  # what killed builds of this stage left
            tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(key), dir=final.parent))
            try:
                with os_errors(final):
                    builder(tmp)
                write_manifest(tmp, stage=stage, key=key, inputs=list(inputs), created=time.time())
                _publish_mode(tmp, directory=True)
                if final.exists():  # its manifest is gone, or it did not match (then it was moved aside)
                    move_aside(final, f"{final / MANIFEST}: missing")
                os.replace(tmp, final)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp)
        return final

    def load(
        self,
        stage: str,
        config: Any,
        builder: Callable[[Path], None],
        reader: Callable[[Path], T],
        inputs: list[str] | tuple[str, ...] = (),
    ) -> T:
        """``reader(folder)`` of the entry :meth:`build` gives. An entry the reader fails on (a file that
        matches the manifest but cannot be read, e.g. one planted with a forged manifest) is moved aside
        with a warning and built again, once; a second failure raises :class:`DamagedEntry`."""
        key = self.key(stage, config, inputs)
        try:
            return _read(self.build(stage, config, builder, inputs), reader)
        except DamagedEntry as err:
            self.discard(stage, key, str(err))
        return _read(self.build(stage, config, builder, inputs), reader)

    def cached(
        self,
        stage: str,
        config: Any,
        make: Callable[[], T],
        inputs: list[str] | tuple[str, ...] = (),
        encode: Callable[[T], Any] = lambda value: value,
        decode: Callable[[Any], T] = lambda tree: tree,
    ) -> T:
        """``make()``'s result, stored under this stage/config/inputs and reused next time; always the
        stored copy, so a first run and a cached one see the same value.

        ``encode`` turns the value into what :func:`write_tree` stores, ``decode`` turns that back.
        """
        return self.load(stage, config, lambda d: write_tree(d, encode(make())),
                         lambda d: decode(read_tree(d)), inputs)


def _read(folder: Path, reader: Callable[[Path], T]) -> T:
    """``reader(folder)``; any failure of it as a :class:`DamagedEntry` naming the folder."""
    try:
        return reader(folder)
    except DamagedEntry:
        raise
    except Exception as err:  # a parser's or a decoder's failure: the stored entry is not what was written
        raise DamagedEntry(f"{folder}: cannot be read ({describe(err)})") from None


# ---------------------------------------------------------------- checking and cleaning a whole cache


def _children(folder: Path) -> list[Path]:
    """The sub-folders of ``folder`` whose names do not start with a dot, sorted."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if folder.is_dir() else []


def cache_entries(root: str | Path) -> list[Path]:
    """Every published entry (``<stage>/<key>``) of a cache and every checkpoint folder of its unfinished
    runs (``<stage>_work/<key>/<part>``)."""
    found = []
    for stage in _children(Path(root)):
        for entry in _children(stage):
            found += _children(entry) if stage.name.endswith(WORK_SUFFIX) else [entry]
    return found


def cache_orphans(root: str | Path) -> list[Path]:
    """What a cache holds that nothing will read: entries moved aside (``.<key>.broken``), temporaries of
    processes that are gone, and the resumable state of runs whose entry is published."""
    root, found = Path(root), []
    for stage in _children(root):
        folders = [stage, *_children(stage)] if stage.name.endswith(WORK_SUFFIX) else [stage]
        for folder in folders:
            for path in sorted(folder.iterdir()):
                match = _TEMP_NAME.match(path.name)
                if path.name.endswith(BROKEN) or (match and not pid_alive(int(match["pid"]))):
                    found.append(path)
        if stage.name.endswith(WORK_SUFFIX):
            published = root / stage.name[:-len(WORK_SUFFIX)]
            found += [work for work in _children(stage) if (published / work.name / MANIFEST).exists()]
    return found


def verify_cache(root: str | Path) -> tuple[int, list[tuple[Path, str]], list[Path]]:
    """``(entries checked, [(damaged entry, problem)], orphans)`` of a cache (``cache verify``)."""
    entries = cache_entries(root)
    damaged = [(entry, problem) for entry in entries if (problem := check_folder(entry)) is not None]
    return len(entries), damaged, cache_orphans(root)


def clean_cache(root: str | Path) -> tuple[list[Path], list[Path]]:
    """Remove the damaged entries and the orphans of a cache (``cache clean``): ``(removed, skipped)``;
    an entry whose stage lock another process holds (a build or a training run) is skipped."""
    cache, removed, skipped = ArtifactCache(root), [], []
    _, damaged, orphans = verify_cache(root)
    for path in [entry for entry, _ in damaged] + orphans:
        relative = path.relative_to(cache.root).parts
        stage, key = relative[0].removesuffix(WORK_SUFFIX), relative[1].lstrip(".").split(".")[0]
        try:
            with cache.lock(stage, key).acquire(timeout=0):
                if path in orphans or check_folder(path) is not None:
                    if path.is_dir():
                        shutil.rmtree(path)
                    else:
                        path.unlink()
                    removed.append(path)
        except Timeout:
            skipped.append(path)
    return removed, skipped
