"""The notebooks read as a student reads them: every section they cite exists, and no warning is printed.

The claims a notebook's prose relies on are asserted per tier in ``test_notebook_claims.py``; this file
adds what a reader trips on besides: "section 6" where the notebook has no section 6, "`02`, section 4"
where notebook 02 has none, and a warning (``warnings`` or a log record) printed by any cell after the
notebook's ``start()``, which ``gensar_lib.session`` records as ``warnings_printed``. The section checks read
the notebooks' sources (markdown and the code that prints); the warnings check runs after the notebooks,
on each tier's recorded claims (CI: tiny; ``--claims-from figures`` after ``make run``).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from gensar_lib.config import REPO_ROOT
from gensar_lib.plots import CLAIMS

NOTEBOOKS = {p.name[:2]: p for p in sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))}
DOCS = REPO_ROOT / "docs"
HEADING = re.compile(r"^##\s+(\d+)\.", re.M)
NUMBERS = r"(\d+)((?:\s*(?:,|and|or|-|–|to)\s*\d+)*)"
# "section 4", "sections 3 and 4", "Section 6"; what precedes decides which document is cited
CITATION = re.compile(r"\b[Ss]ections?\s+" + NUMBERS)
OTHER_NOTEBOOK = re.compile(r"(?:[Nn]otebooks?\s+`?|`)(\d\d)(?:_[a-z_]+)?`?(?:\.ipynb)?\s*(?:\(|,)\s*$")
DOC_FILE = re.compile(r"`?(docs/[\w.-]+\.md)`?\s*(?:\(|,)\s*$")


def sections(text: str) -> set[int]:
    return {int(n) for n in HEADING.findall(text)}


def notebook_text(path: Path) -> str:
    return "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)


def cited(text: str) -> list[tuple[str | None, int, str]]:
    """(document or None for "this one", section number, the citation) for each citation in ``text``."""
    out = []
    for match in CITATION.finditer(text):
        before = text[max(0, match.start() - 60):match.start()]
        where = OTHER_NOTEBOOK.search(before) or DOC_FILE.search(before)
        numbers = [int(match.group(1))] + [int(n) for n in re.findall(r"\d+", match.group(2))]
        if re.search(r"\d\s*(?:-|–|to)\s*\d", match.group(0)):  # a range: every section in it
            numbers = list(range(numbers[0], numbers[-1] + 1))
        doc = where.group(1) if where else None
        out += [(doc, n, (before[-30:] + match.group(0)).replace("\n", " ")) for n in numbers]
    return out


def target_sections(doc: str | None, own: Path) -> tuple[str, set[int]]:
    if doc is None:
        return own.name, sections(notebook_text(own))
    if doc.startswith("docs/"):
        return doc, sections((REPO_ROOT / doc).read_text())
    return NOTEBOOKS[doc].name, sections(notebook_text(NOTEBOOKS[doc]))


@pytest.mark.parametrize("prefix", sorted(NOTEBOOKS))
def test_every_cited_section_exists(prefix):
    path = NOTEBOOKS[prefix]
    missing = []
    for doc, number, where in cited(notebook_text(path)):
        name, have = target_sections(doc, path)
        if number not in have:
            missing.append(f"{where!r} cites section {number} of {name}, which has sections {sorted(have)}")
    assert not missing, f"{path.name}:\n" + "\n".join(missing)


def test_library_citations_of_notebook_sections_exist():
    """Docstrings name the notebook section that teaches a function: "Notebook 06, section 8"."""
    pattern = re.compile(r"[Nn]otebook\s+(\d\d)(?:_[a-z_]+)?,\s+sections?\s+" + NUMBERS)
    missing = []
    for path in sorted((REPO_ROOT / "gensar_lib").rglob("*.py")):
        for match in pattern.finditer(path.read_text()):
            have = sections(notebook_text(NOTEBOOKS[match.group(1)]))
            numbers = [int(match.group(2))] + [int(n) for n in re.findall(r"\d+", match.group(3))]
            missing += [f"{path.relative_to(REPO_ROOT)}: {match.group(0)!r} (notebook has {sorted(have)})"
                        for n in numbers if n not in have]
    assert not missing, "\n".join(missing)


def test_citation_parser():
    text = ("as in section 2; sections 3 and 4; see `02`, section 6 and notebook 05 (section 1); "
            "`docs/method.md`, section 6; sections 1-3")
    assert [(doc, n) for doc, n, _ in cited(text)] == [
        (None, 2), (None, 3), (None, 4), ("02", 6), ("05", 1), ("docs/method.md", 6), (None, 1), (None, 2), (None, 3)]
    assert cited("see `02`, section 6")[0][2] == "see `02`, section 6"


@pytest.mark.after_notebooks
def test_no_warning_printed(claims_root, request):
    """Every notebook run of this session (all recorded ones with --claims-from) printed no warning."""
    recorded = {p.parent.name: json.loads(p.read_text()) for p in sorted(claims_root.glob(f"*/{CLAIMS}"))}
    ran = set(recorded) if request.config.getoption("--claims-from") else \
        set(recorded) & request.config.notebooks_run
    assert ran, f"{claims_root}: no notebook recorded its claims"
    printed = {name: recorded[name]["values"].get("warnings_printed") for name in sorted(ran)}
    unrecorded = [name for name, texts in printed.items() if texts is None]
    assert not unrecorded, f"{unrecorded}: no warnings_printed recorded (does the notebook call session.start?)"
    assert not any(printed.values()), "\n".join(f"{n}: {t}" for n, texts in printed.items() for t in texts)
