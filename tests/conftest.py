import os
from pathlib import Path

import pytest

from gensar_lib.config import REPO_ROOT

OFFICE_DIR = REPO_ROOT.parent / "shared" / "data" / "amazon-office"


@pytest.fixture(scope="session")
def office_dir() -> Path:
    """The real Amazon Office data beside the checkout; CI always has it."""
    if not (OFFICE_DIR / "Office.item.json").exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the Office data at {OFFICE_DIR}")
        pytest.skip(f"Office data not found at {OFFICE_DIR}")
    return OFFICE_DIR
