"""Download public datasets with pinned SHA-256 sums (notebook 00_data).

``python -m gensar_lib fetch office`` downloads the Amazon Office Products
5-core data in the LC-Rec layout (``Office.inter.json``, ``Office.item.json``)
from the public repository ``yuyq18/APAO`` (folder ``data/Office/``, Apache-2.0),
at a pinned commit. The pinned SHA-256 sums, not the address, are what make
this safe: a file is kept only if its sum matches, so a changed, truncated or
substituted download is never used.

Each file is streamed to a temporary file beside its destination, counted and
hashed, and renamed into place only when its size and sum are right; anything
else raises ``FetchError`` naming the file, the expected and the actual value,
and leaves nothing behind. A destination that already holds the right bytes is
not downloaded again. ``GENSAR_FETCH_BASE_URL`` (or ``base_url``) replaces the
folder address, e.g. for a mirror.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from gensar_lib.artifacts import atomic_path
from gensar_lib.config import REPO_ROOT, ConfigError
from gensar_lib.data.schema import DataError

BASE_URL_ENV = "GENSAR_FETCH_BASE_URL"
APAO_COMMIT = "e7ddb764fea0af49f0f60196d0e0b9a0cef58ce2"  # yuyq18/APAO "Datasets (Office, Grocery, Beauty & Yelp)"
CHUNK = 1 << 16
TIMEOUT_S = 60.0
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class FetchError(DataError):
    """A download that failed or does not match its pinned size or SHA-256 sum."""


@dataclass(frozen=True)
class Remote:
    """One file to download: its name in the output folder, address, SHA-256 and size (None: unknown)."""

    name: str
    url: str
    sha256: str
    size: int | None = None


@dataclass(frozen=True)
class PinnedDataset:
    """A dataset whose files and sums are pinned here: the default folder address, files and default folder."""

    base_url: str
    files: tuple[tuple[str, str, int], ...]  # (name, sha256, size in bytes)
    folder: str  # the default output folder, under data/


DATASETS = {
    "office": PinnedDataset(
        base_url=f"https://raw.githubusercontent.com/yuyq18/APAO/{APAO_COMMIT}/data/Office",
        files=(("Office.inter.json", "10f983c76de3d2443ae68bf50bc6231962ab493f4d08c7e716e2f183ae70d698", 799_708),
               ("Office.item.json", "df013666416847d0f3468f08d9f68877faf251f71b51247050e98da5b705b5c7", 2_417_410)),
        folder="amazon-office",
    ),
}


@dataclass(frozen=True)
class Fetched:
    """A file in place with the right sum; ``downloaded`` is False when it was there already."""

    path: Path
    downloaded: bool


def check_sha256(value: str, what: str = "--sha256") -> str:
    """``value`` as a lower-case hex SHA-256 (64 digits); ConfigError naming ``what`` otherwise."""
    digest = value.strip().lower()
    if not _SHA256.match(digest):
        raise ConfigError(f"{what} {value!r} is not a SHA-256 sum (64 hexadecimal digits)")
    return digest


def check_url(url: str, what: str = "--url") -> str:
    """The file name an http(s) ``url`` ends with; ConfigError naming ``what`` otherwise."""
    parts = urllib.parse.urlparse(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{what} {url!r} is not an http:// or https:// address")
    name = Path(urllib.parse.unquote(parts.path)).name
    if name in ("", ".", ".."):
        raise ConfigError(f"{what} {url!r} names no file (its path must end with a file name)")
    return name


def default_folder(dataset: str) -> Path:
    """Where ``fetch <dataset>`` writes without ``--out``: ``data/<folder>`` in the repository (git ignores it)."""
    return REPO_ROOT / "data" / pinned(dataset).folder


def pinned(dataset: str) -> PinnedDataset:
    """The pinned files of ``dataset``; ConfigError listing the known names otherwise."""
    if dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {dataset!r} to fetch; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[dataset]


def remotes(dataset: str, base_url: str | None = None) -> list[Remote]:
    """The files of ``dataset`` at ``base_url`` (default: ``$GENSAR_FETCH_BASE_URL``, else the pinned address)."""
    spec = pinned(dataset)
    base = (base_url or os.environ.get(BASE_URL_ENV) or spec.base_url).rstrip("/")
    return [Remote(name, f"{base}/{urllib.parse.quote(name)}", sha, size) for name, sha, size in spec.files]


def file_sha256(path: str | Path) -> str:
    """The hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_file(remote: Remote, folder: str | Path, progress: bool | None = True) -> Fetched:
    """``remote`` in ``folder`` with its pinned sum: kept if already there, else downloaded and verified.

    ``progress``: a tqdm bar on stderr (None: only on a terminal). Raises
    FetchError (nothing left behind) when the download fails, stops early or
    has the wrong size or sum.
    """
    path = Path(folder) / remote.name
    if path.is_file() and file_sha256(path) == remote.sha256:
        return Fetched(path, downloaded=False)
    with atomic_path(path) as tmp:
        actual, received = _download(remote, tmp, progress)
        if actual != remote.sha256:
            size = "" if remote.size is None else f"; {received:,} bytes, expected {remote.size:,}"
            raise FetchError(f"{remote.name} from {remote.url}: sha256 {actual} does not match the expected "
                             f"{remote.sha256}{size}; the download was discarded")
    return Fetched(path, downloaded=True)


def _download(remote: Remote, tmp: Path, progress: bool | None) -> tuple[str, int]:
    """Stream ``remote.url`` into ``tmp``: its SHA-256 and byte count; FetchError if it fails or stops early."""
    digest, received = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(remote.url, timeout=TIMEOUT_S) as response, open(tmp, "wb") as out:
            length = response.headers.get("Content-Length")
            announced = int(length) if length and length.isdigit() else None
            with tqdm(total=announced or remote.size, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=remote.name, disable=None if progress is None else not progress) as bar:
                while chunk := response.read(CHUNK):
                    received += len(chunk)
                    if remote.size is not None and received > remote.size:
                        raise FetchError(f"{remote.name} from {remote.url}: more than the expected "
                                         f"{remote.size:,} bytes; the download was discarded")
                    digest.update(chunk)
                    out.write(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as err:
        raise FetchError(f"{remote.name}: {remote.url} answered HTTP {err.code} {err.reason}") from None
    except urllib.error.URLError as err:
        raise FetchError(f"{remote.name}: cannot reach {remote.url} ({err.reason})") from None
    except (TimeoutError, ConnectionError, http.client.HTTPException) as err:
        raise FetchError(f"{remote.name}: the download from {remote.url} was interrupted after "
                         f"{received:,} bytes ({err}); the download was discarded") from None
    if announced is not None and received != announced:
        raise FetchError(f"{remote.name}: the download from {remote.url} was interrupted: received "
                         f"{received:,} of {announced:,} bytes; the download was discarded")
    return digest.hexdigest(), received


def fetch_dataset(dataset: str, folder: str | Path | None = None, base_url: str | None = None,
                  progress: bool | None = True) -> list[Fetched]:
    """Every pinned file of ``dataset`` in ``folder`` (default: ``default_folder``), verified."""
    folder = default_folder(dataset) if folder is None else Path(folder)
    return [fetch_file(remote, folder, progress) for remote in remotes(dataset, base_url)]
