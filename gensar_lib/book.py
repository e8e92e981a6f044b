"""The course book (``make book``): static HTML from the executed notebooks, built by Sphinx with MyST-NB.

Nothing is executed here: each notebook page shows the notebook as ``make run`` left it in
``notebooks/executed/``. :func:`stage` lays out a Sphinx source folder that mirrors the repository, so
that every relative link of a page resolves as it does in the repository:

* ``index.md`` and the other hand-written pages of ``book/`` (whose ``conf.py`` configures Sphinx);
* ``notebooks/NN_name.ipynb``: the executed copy of every instructor notebook, without widget
  outputs (a static page cannot run a widget; the widget's state would load scripts from outside);
* the repository's two documents that pages link to: ``docs/method.md`` and ``data/README.md``;
* three generated pages: ``course.md`` (README.md's "Course map" section, kept in one place),
  ``results.md`` (the committed ablation tables, :func:`gensar_lib.ablation.paper_table`) and
  ``exercises.md`` (every ``### Exercise N.M — title`` heading of the notebooks, linked);
* every other repository file that a page links to (Sphinx copies it into the book as a download).

:func:`build` runs Sphinx on that folder with warnings as errors, so a broken link or a missing
page stops the build, and leaves the HTML in the output folder (``build/book/``).

Usage: ``python scripts/build_book.py [--notebooks notebooks/executed] [--out build/book]``, a thin
wrapper around :func:`main`.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

from gensar_lib.ablation import COMMITTED, from_dict, paper_table
from gensar_lib.config import REPO_ROOT
from gensar_lib.student_copies import notebooks_in

BOOK_DIR = REPO_ROOT / "book"  # conf.py and the hand-written pages
DOCUMENTS = ("docs/method.md", "data/README.md")  # pages of the book at their repository paths
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# "### Exercise 1.2 — title": the heading's whole text (student_copies.EXERCISE_HEADING finds the number)
EXERCISE = re.compile(r"^\s{0,3}#{1,6}\s+(Exercise\s+(\d+)\.(\d+)\b.*?)\s*$", re.MULTILINE)
TITLE = re.compile(r"^\s{0,3}#\s+(.+?)\s*$", re.MULTILINE)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)\s]*)?\)")
TASKS = {"rec": "recommendation", "search": "search"}


class BookError(ValueError):
    """Something the book needs is missing (an executed notebook, a README section)."""


def readme_section(readme: str, title: str) -> str:
    """The body of the ``## title`` section of a README: the lines up to the next heading of level 1 or 2
    (a ``#`` line inside a fenced code block is no heading)."""
    lines = readme.splitlines()
    try:
        start = lines.index(f"## {title}") + 1
    except ValueError:
        raise BookError(f"README.md has no section '## {title}'") from None
    end, fenced = len(lines), False
    for i in range(start, len(lines)):
        fenced ^= lines[i].lstrip().startswith("```")
        if not fenced and re.match(r"#{1,2} ", lines[i]):
            end = i
            break
    return "\n".join(lines[start:end]).strip() + "\n"


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


def _markdown_table(frame) -> str:
    """A pandas frame as a Markdown table (its index first); ``*`` and ``|`` escaped."""
    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("*", "\\*")

    rows = [["method", *map(cell, frame.columns)]]
    rows += [[cell(index), *map(cell, row)] for index, row in zip(frame.index, frame.itertuples(index=False))]
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    return "\n".join(out + ["| " + " | ".join(r) + " |" for r in rows[1:]]) + "\n"


def results_page(paths: list[Path]) -> str:
    """The committed ablation results (``ablation_*.json`` of notebook 06), one section per file: the
    paper-style table of each protocol and task."""
    if not paths:
        raise BookError(f"no committed ablation results (ablation_*.json) in {COMMITTED}")
    lines = ["# Results", "",
             "The identifier ablation of [notebook 06](notebooks/06_identifier_ablation.ipynb) as committed with "
             "the repository (`figures/06_identifier_ablation/ablation_*.json`), rendered by "
             "`gensar_lib.ablation.paper_table`: one row per method, each cell the mean ± standard deviation "
             "over seeds (a method run with one seed shows its single value), `*` marking the best mean of its "
             "column. The sampled and the full-ranking protocols are those of "
             "[notebook 05](notebooks/05_t5_training.ipynb); notebook 06 reads these tables.", ""]
    for path in paths:
        result = from_dict(json.loads(path.read_text()))
        seeds = ", ".join(str(s) for s in sorted({r["seed"] for r in result.runs}))
        lines += [f"## {result.dataset}, profile {result.profile}", "",
                  f"From `{path.relative_to(REPO_ROOT).as_posix()}`; seeds {seeds}.", ""]
        for protocol in ("sampled", "full"):
            table = paper_table(result.runs, protocol)
            for task, label in TASKS.items():
                part = table[task]
                lines += [f"### {label.capitalize()}, {protocol} protocol", "", _markdown_table(part)]
    return "\n".join(lines)


def static_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook without widget outputs and widget state (a copy)."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if WIDGET_MIME not in o.get("data", {})]
    return nb


def _linked_files(src: Path) -> set[Path]:
    """The repository files (relative paths) that the staged pages link to and the stage lacks."""
    wanted = set()
    for page in src.rglob("*"):
        if page.suffix == ".md":
            text = page.read_text(encoding="utf-8")
        elif page.suffix == ".ipynb":
            text = _markdown(nbformat.read(page, as_version=4))
        else:
            continue
        for link in LINK.findall(text):
            if re.match(r"[a-z][a-z0-9+.-]*:", link):  # a URL (https:, mailto:)
                continue
            rel = Path(os.path.relpath(os.path.normpath(page.parent / link), src))
            if rel.parts[0] != ".." and not (src / rel).exists() and (REPO_ROOT / rel).is_file():
                wanted.add(rel)
    return wanted


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
    for page in sorted(BOOK_DIR.glob("*.md")):
        shutil.copy2(page, src / page.name)
    for document in DOCUMENTS:
        (src / document).parent.mkdir(exist_ok=True)
        shutil.copy2(REPO_ROOT / document, src / document)
    notebooks = {}
    for name in names:
        notebooks[name] = static_notebook(nbformat.read(notebooks_dir / name, as_version=4))
        nbformat.write(notebooks[name], src / "notebooks" / name)
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    (src / "course.md").write_text("# Course map\n\n" + readme_section(readme, "Course map"), encoding="utf-8")
    (src / "exercises.md").write_text(exercises_page(exercises(notebooks)), encoding="utf-8")
    (src / "results.md").write_text(results_page(sorted(COMMITTED.glob("ablation_*.json"))), encoding="utf-8")
    for rel in sorted(_linked_files(src)):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, src / rel)
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
