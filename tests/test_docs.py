"""The product stands on its own: no file of the library, notebooks, READMEs or docs points outside the
repository; docs/method.md links every module that states a departure from the paper, its links resolve, and
the library's references to its sections name sections that exist."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from gensar_lib.config import REPO_ROOT

METHOD = REPO_ROOT / "docs" / "method.md"
FORBIDDEN = ("shared/reference", "../shared")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def product_files() -> list[Path]:
    """The library's files, the instructor notebooks, the two READMEs and everything under docs/."""
    library = [p for p in (REPO_ROOT / "gensar_lib").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    docs = [p for p in (REPO_ROOT / "docs").rglob("*") if p.is_file()]
    return sorted(library + docs + sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
                  + [REPO_ROOT / "README.md", REPO_ROOT / "data" / "README.md"])


@pytest.mark.parametrize("path", product_files(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_no_product_file_points_outside_the_repository(path):
    text = path.read_text(encoding="utf-8", errors="replace")
    found = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) for bad in FORBIDDEN if bad in line]
    assert not found, f"{path.relative_to(REPO_ROOT)} points outside the repository: {found}"


def test_the_scan_covers_the_product():
    names = {str(p.relative_to(REPO_ROOT)) for p in product_files()}
    assert {"README.md", "data/README.md", "docs/method.md", "gensar_lib/__main__.py",
            "notebooks/00_data.ipynb"} <= names
    assert not any(n.startswith(("notebooks/executed/", "tests/")) for n in names)


def test_method_links_resolve():
    links = LINK.findall(METHOD.read_text())
    assert links, "docs/method.md has no links"
    missing = [link for link in links if not link.startswith("http") and not (METHOD.parent / link).exists()]
    assert not missing, f"docs/method.md links to missing files: {missing}"


def test_method_links_every_module_that_states_a_departure():
    linked = {(METHOD.parent / link).resolve() for link in LINK.findall(METHOD.read_text())}
    stating = {p.resolve() for p in (REPO_ROOT / "gensar_lib").rglob("*.py")
               if re.search(r"\b[Dd]epartures?\b", p.read_text())}
    assert stating, "no module states a departure: the search is broken"
    unlinked = sorted(str(p.relative_to(REPO_ROOT)) for p in stating - linked)
    assert not unlinked, f"departures stated in {unlinked} are not linked from docs/method.md section 6"


def test_library_references_to_method_sections_exist():
    sections = {int(n) for n in re.findall(r"^## (\d+)\. ", METHOD.read_text(), flags=re.M)}
    cited = [(str(path.relative_to(REPO_ROOT)), range(int(first), int(last or first) + 1))
             for path in (REPO_ROOT / "gensar_lib").rglob("*.py")
             for first, last in re.findall(r"docs/method\.md``,?\s+sections?\s+(\d+)(?:-(\d+))?", path.read_text())]
    assert len({where for where, _ in cited}) >= 4, cited  # quantize, generative, splits, instructions, ...
    for where, numbers in cited:
        assert set(numbers) <= sections, f"{where} cites docs/method.md section(s) {list(numbers)}; it has {sections}"
