"""The lab has its own room: the product (README, docs, the figures' and data READMEs, the library and the
instructor notebooks' sources) names no issue numbers, UTC times or dates; those belong in lab/ and in the
results JSON."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gensar_lib.config import REPO_ROOT

LAB_MARKS = re.compile(r"(?i:issue \d+)|\bUTC\b|\b\d{4}-\d{2}-\d{2}\b")  # "Issue 7" too; Python's timezone.utc is no time


def product_texts() -> list[Path]:
    """README.md, docs/, figures/README.md, data/README.md, the library (.py and .json), notebooks/*.ipynb."""
    library = [p for p in (REPO_ROOT / "gensar_lib").rglob("*") if p.suffix in (".py", ".json")
               and "__pycache__" not in p.parts]
    docs = [p for p in (REPO_ROOT / "docs").rglob("*") if p.is_file()]
    return sorted([REPO_ROOT / "README.md", REPO_ROOT / "figures" / "README.md", REPO_ROOT / "data" / "README.md"]
                  + docs + library + sorted((REPO_ROOT / "notebooks").glob("*.ipynb")))


def lines_of(path: Path) -> list[tuple[str, str]]:
    """(where, line) pairs: a notebook's cell sources (markdown and code, never outputs), other files' lines."""
    if path.suffix != ".ipynb":
        return [(str(n), line) for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)]
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [(f"cell {c}, line {n}", line) for c, cell in enumerate(cells)
            for n, line in enumerate("".join(cell["source"]).splitlines(), 1)]


def lab_marks(path: Path) -> list[str]:
    """``file:where: mark in line`` for every issue number, UTC or date in ``path``."""
    rel = path.relative_to(REPO_ROOT)
    return [f"{rel}:{where}: {m.group(0)!r} in {line.strip()[:120]!r}"
            for where, line in lines_of(path) for m in LAB_MARKS.finditer(line)]


@pytest.mark.parametrize("path", product_texts(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_no_product_text_names_an_issue_a_time_or_a_date(path):
    found = lab_marks(path)
    assert not found, "lab notes in the product (they belong in lab/LOG.md):\n" + "\n".join(found)


def test_the_scan_covers_the_product_and_finds_what_it_looks_for(tmp_path):
    names = {str(p.relative_to(REPO_ROOT)) for p in product_texts()}
    assert {"README.md", "figures/README.md", "data/README.md", "docs/method.md", "gensar_lib/__main__.py",
            "gensar_lib/baselines/__init__.py", "notebooks/00_data.ipynb"} <= names
    assert not any(n.startswith(("notebooks/executed/", "lab/", "tests/", "figures/0")) for n in names)
    notebook = tmp_path / "nb.ipynb"
    notebook.write_text(json.dumps({"cells": [
        {"cell_type": "markdown", "source": ["clean\n", "see issue 12\n"]},
        {"cell_type": "code", "source": ["x = 1  # 22:10 UTC\n"], "outputs": [{"text": "2026-12-06"}]},
        {"cell_type": "code", "source": ["ran = '2026-12-06'"]}]}))
    assert [where for where, line in lines_of(notebook) if LAB_MARKS.search(line)] == [
        "cell 0, line 2", "cell 1, line 1", "cell 2, line 1"]  # sources only: the output's date is not read
    assert [m.group(0) for m in LAB_MARKS.finditer("Issue 7 at 10:00 UTC on 2026-12-06")] == [
        "Issue 7", "UTC", "2026-12-06"]
    assert not LAB_MARKS.search("torch 2.13.0, 4,400 steps, an issue of tissue, sha 12345678-1234, timezone.utc")
