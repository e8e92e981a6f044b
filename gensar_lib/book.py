"""The course book (``make book``): static HTML from the executed notebooks, built by Sphinx with MyST-NB.

Nothing is executed here: each notebook page shows the notebook as ``make run`` left it in
``notebooks/executed/``. :func:`stage` lays out a Sphinx source folder that mirrors the repository, so
that every relative link of a page resolves as it does in the repository:

* ``index.md``, the landing page: README.md's opening and its sections "The two commands" and "First
  steps", then ``book/index.md`` (what the book is, its contents; ``book/conf.py`` configures Sphinx);
* ``course.md`` and ``results.md``: README.md's sections "Course map" and "Results" (the committed
  ablation tables, which ``python -m gensar_lib results --readme`` writes there), so that each text
  lives in one place;
* ``notebooks/NN_name.ipynb``: the executed copy of every instructor notebook, without widget
  outputs (a static page cannot run a widget; the widget's state would load scripts from outside);
* the repository's two documents that pages link to: ``docs/method.md`` and ``data/README.md``;
* ``exercises.md``, generated: every ``### Exercise N.M — title`` heading of the notebooks, linked;
* every other repository file that a page links to, which Sphinx copies into the book as a download
  (a link to a Markdown file or notebook that is no page, lab/LOG.md for one, becomes a ``path:`` link).

:func:`build` runs Sphinx on that folder with warnings as errors, so a broken link or a missing
page stops the build, and leaves the HTML in the output folder (``build/book/``).

Usage: ``python scripts/build_book.py [--notebooks notebooks/executed] [--out build/book]``, a thin
wrapper around :func:`main`.
"""
from __future__ import annotations

import argparse
import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

from gensar_lib.config import REPO_ROOT
from gensar_lib.student_copies import notebooks_in

BOOK_DIR = REPO_ROOT / "book"  # conf.py and index.md
# README.md's sections on the landing page, and the pages that are one README section each
LANDING_SECTIONS = ("The two commands", "First steps")
README_PAGES = {"course.md": "Course map", "results.md": "Results"}
DOCUMENTS = ("docs/method.md", "data/README.md")  # pages of the book at their repository paths
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# "### Exercise 1.2 — title": the heading's whole text (student_copies.EXERCISE_HEADING finds the number)
EXERCISE = re.compile(r"^\s{0,3}#{1,6}\s+(Exercise\s+(\d+)\.(\d+)\b.*?)\s*$", re.MULTILINE)
TITLE = re.compile(r"^\s{0,3}#\s+(.+?)\s*$", re.MULTILINE)
LINK = re.compile(r"\]\(((?![a-z][a-z0-9+.-]*:)[^)#\s]+)(?:#[^)\s]*)?\)")  # a local link (no URL)


class BookError(ValueError):
    """Something the book needs is missing (an executed notebook, a README section)."""


def _headings(lines: list[str]) -> list[int]:
    """Indices of the level-1 and level-2 headings among Markdown ``lines`` (not ``#`` lines in code blocks)."""
    found, fenced = [], False
    for i, line in enumerate(lines):
        fenced ^= line.lstrip().startswith("```")
        if not fenced and re.match(r"#{1,2} ", line):
            found.append(i)
    return found


def readme_opening(readme: str) -> str:
    """What README.md says before its first ``##`` section: its title and introduction."""
    lines = readme.splitlines()
    end = next((i for i in _headings(lines) if lines[i].startswith("## ")), len(lines))
    return "\n".join(lines[:end]).strip() + "\n"


def readme_section(readme: str, title: str) -> str:
    """The body of the ``## title`` section of a README: the lines up to the next heading of level 1 or 2
    (a ``#`` line inside a fenced code block is no heading)."""
    lines = readme.splitlines()
    try:
        start = lines.index(f"## {title}") + 1
    except ValueError:
        raise BookError(f"README.md has no section '## {title}'") from None
    end = next((i for i in _headings(lines) if i >= start), len(lines))
    return "\n".join(lines[start:end]).strip() + "\n"


def landing_page(readme: str) -> str:
    """README.md's opening and landing sections, then ``book/index.md``."""
    parts = [readme_opening(readme)] + [f"## {t}\n\n{readme_section(readme, t)}" for t in LANDING_SECTIONS]
    return "\n".join(parts + [(BOOK_DIR / "index.md").read_text(encoding="utf-8")])


def _markdown(nb: nbformat.NotebookNode) -> str:
    return "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def notebook_title(nb: nbformat.NotebookNode, name: str) -> str:
    found = TITLE.search(_markdown(nb))
    if not found:
        raise BookError(f"{name}: no level-1 heading (the page title)")
    return found.group(1)


def exercises(notebooks: dict[str, nbformat.NotebookNode]) -> list[dict[str, str]]:
    """Every exercise heading of the notebooks (``name`` -> notebook, in that order), with the notebook,
    its title and the anchor MyST gives the heading (``myst_heading_slug_func = "github"`` in book/conf.py)."""
    from myst_parser.slugs import github_slugify

    found = []
    for name, nb in notebooks.items():
        for match in EXERCISE.finditer(_markdown(nb)):
            found.append({"notebook": name, "notebook_title": notebook_title(nb, name),
                          "heading": match.group(1), "anchor": github_slugify(match.group(1)),
                          "number": f"{match.group(2)}.{match.group(3)}"})
    return found


def exercises_page(found: list[dict[str, str]]) -> str:
    lines = ["# Exercises", "",
             "Every exercise of the notebooks, in order, generated from their `### Exercise N.M — title` headings. "
             "Each asks for a small function; the cell below it checks your answer (✅, ❌ with a hint, or ⏳ "
             "while the function still raises `NotImplementedError`). `make student` writes copies of the "
             "notebooks with the answers removed, to work in.", ""]
    notebook = None
    for ex in found:
        if ex["notebook"] != notebook:
            notebook = ex["notebook"]
            lines += ["", f"## {ex['notebook_title']}", ""]
        lines.append(f"- [{ex['heading']}](notebooks/{ex['notebook']}#{ex['anchor']})")
    return "\n".join(lines) + "\n"


def static_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook without widget outputs and widget state (a copy)."""
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if WIDGET_MIME not in o.get("data", {})]
    return nb


def _outside_links(text: str, page: Path, src: Path, pages: set[Path]) -> tuple[str, set[Path]]:
    """``text`` (of the staged ``page``) with its links to repository Markdown files and notebooks that are
    no page of the book made ``path:`` links (Sphinx copies the file, where it would look for a page), and the
    repository files (paths relative to the root) that its links name and ``src`` lacks."""
    wanted = set()

    def visit(match: re.Match) -> str:
        link = match.group(1)
        rel = Path(os.path.relpath(os.path.normpath(page.parent / link), src))
        if rel.parts[0] == ".." or src / rel in pages or not (REPO_ROOT / rel).is_file():
            return match.group(0)
        if not (src / rel).exists():
            wanted.add(rel)
        return match.group(0).replace(f"]({link}", f"](path:{link}", 1) if rel.suffix in (".md", ".ipynb") \
            else match.group(0)

    return LINK.sub(visit, text), wanted


def _link_outside_pages(src: Path) -> None:
    """Stage every repository file that a staged page links to and that is no page (MyST-NB makes such a link
    a download); pages are the Markdown files and notebooks of ``src`` when this runs."""
    pages = {p for p in src.rglob("*") if p.suffix in (".md", ".ipynb")}
    wanted = set()
    for page in sorted(pages):
        if page.suffix == ".md":
            text, found = _outside_links(page.read_text(encoding="utf-8"), page, src, pages)
            page.write_text(text, encoding="utf-8")
        else:
            nb = nbformat.read(page, as_version=4)
            found = set()
            for cell in nb.cells:
                if cell.cell_type == "markdown":
                    cell.source, in_cell = _outside_links(cell.source, page, src, pages)
                    found |= in_cell
            nbformat.write(nb, page)
        wanted |= found
    for rel in sorted(wanted):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, src / rel)


def stage(notebooks_dir: str | Path, src: str | Path) -> list[str]:
    """Lay out the Sphinx source folder ``src`` (replaced as a whole); the staged notebooks' names."""
    notebooks_dir, src = Path(notebooks_dir), Path(src)
    names = [p.name for p in notebooks_in(REPO_ROOT / "notebooks")]
    missing = [n for n in names if not (notebooks_dir / n).is_file()]
    if missing:
        raise BookError(f"no executed copy of {', '.join(missing)} in {notebooks_dir} (run `make run` first)")
    if src.exists():
        shutil.rmtree(src)
    (src / "notebooks").mkdir(parents=True)
    for document in DOCUMENTS:
        (src / document).parent.mkdir(exist_ok=True)
        shutil.copy2(REPO_ROOT / document, src / document)
    notebooks = {}
    for name in names:
        notebooks[name] = static_notebook(nbformat.read(notebooks_dir / name, as_version=4))
        nbformat.write(notebooks[name], src / "notebooks" / name)
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    (src / "index.md").write_text(landing_page(readme), encoding="utf-8")
    for page, title in README_PAGES.items():
        (src / page).write_text(f"# {title}\n\n{readme_section(readme, title)}", encoding="utf-8")
    (src / "exercises.md").write_text(exercises_page(exercises(notebooks)), encoding="utf-8")
    _link_outside_pages(src)
    return names


def build(notebooks_dir: str | Path = "notebooks/executed", out: str | Path = "build/book") -> Path:
    """Stage the sources beside ``out`` (``<out>-src/``), run Sphinx (warnings are errors) and replace
    ``out`` with the HTML; the path of the landing page."""
    out = Path(out).resolve()
    work = out.with_name(out.name + "-src")
    stage(notebooks_dir, work / "src")
    html = work / "html"  # MyST-NB writes output images beside it, into work/jupyter_execute
    if html.exists():
        shutil.rmtree(html)
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-W", "--keep-going", "-c", str(BOOK_DIR),
           "-d", str(work / "doctrees"), str(work / "src"), str(html)]
    if subprocess.run(cmd).returncode:
        raise BookError(f"Sphinx failed (its warnings are above); sources in {work / 'src'}")
    if out.exists():
        shutil.rmtree(out)
    shutil.move(html, out)
    return out / "index.html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notebooks", default="notebooks/executed",
                        help="folder of executed notebooks (default: notebooks/executed, as make run writes them)")
    parser.add_argument("--out", default="build/book", help="output folder, replaced as a whole (default: build/book)")
    args = parser.parse_args(argv)
    try:
        index = build(args.notebooks, args.out)
    except BookError as err:
        print(f"build_book: error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {index}")
    return 0
