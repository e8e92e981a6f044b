import os
import shutil
import tempfile
from pathlib import Path

import pytest

from gensar_lib.config import REPO_ROOT

_SESSION_CACHE: list[str] = []


def pytest_configure(config):
    """Each test session gets its own artifact cache (``GENSAR_CACHE``), which the notebooks and
    subprocesses it starts inherit: no test can pass on an artifact an older session left."""
    if not _SESSION_CACHE:
        _SESSION_CACHE.append(tempfile.mkdtemp(prefix="gensar-test-cache-"))
        os.environ["GENSAR_CACHE"] = _SESSION_CACHE[0]


def pytest_unconfigure(config):
    if _SESSION_CACHE:
        shutil.rmtree(_SESSION_CACHE.pop(), ignore_errors=True)

OFFICE_DIR = REPO_ROOT.parent / "shared" / "data" / "amazon-office"


@pytest.fixture(scope="session")
def office_dir() -> Path:
    """The real Amazon Office data beside the checkout; CI always has it."""
    if not (OFFICE_DIR / "Office.item.json").exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the Office data at {OFFICE_DIR}")
        pytest.skip(f"Office data not found at {OFFICE_DIR}")
    return OFFICE_DIR


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory):
    from gensar_lib.artifacts import ArtifactCache

    return ArtifactCache(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def tiny_prepared(session_cache):
    from gensar_lib.config import load_profile
    from gensar_lib.data.pipeline import prepare_data

    return prepare_data("synthetic", load_profile("tiny"), session_cache)


@pytest.fixture(scope="session")
def office_prepared(office_dir, session_cache):
    from gensar_lib.config import load_profile
    from gensar_lib.data.pipeline import prepare_data

    return prepare_data(str(office_dir), load_profile("tiny"), session_cache)


@pytest.fixture
def claims_root(request) -> Path:
    """Where the notebooks recorded their claims: ``--claims-from`` or this session's figures folder."""
    from gensar_lib.plots import figures_dir

    chosen = request.config.getoption("--claims-from")
    return Path(chosen) if chosen else figures_dir()


def pytest_addoption(parser):
    parser.addoption("--claims-from", default=None,
                     help="check the notebook claims recorded under this figures folder (test_notebook_claims.py)")


def pytest_collection_modifyitems(config, items):
    """Claim tests run after the notebooks of the session, and only in a session that runs notebooks
    (or that names recorded claims with --claims-from)."""
    config.notebooks_run = {Path(str(i.fspath)).stem for i in items if str(i.fspath).endswith(".ipynb")}
    claims = [i for i in items if i.get_closest_marker("after_notebooks")]
    if not claims:
        return
    runs_notebooks = bool(config.notebooks_run)
    rest = [i for i in items if not i.get_closest_marker("after_notebooks")]
    if runs_notebooks or config.getoption("--claims-from"):
        items[:] = rest + claims
    else:
        config.hook.pytest_deselected(items=claims)
        items[:] = rest
