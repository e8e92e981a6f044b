"""The course book (``make book``, gensar_lib.book): Sphinx builds it from executed notebooks, and every
internal link (``href``) and image (``src``) of its HTML resolves to a file of the build (with its anchor,
when the link names one), while nothing it loads comes from outside.

The book is built twice:

* always, from the committed notebooks, each given a figure, a line of text and a progress-bar widget as
  its outputs: a cheap stand-in for executed copies;
* in a session that runs every notebook (``make test``, CI), from the outputs nbval recorded while it ran
  them, so no notebook runs a second time; this test runs after the notebooks (``after_notebooks``) and
  leaves the book in ``build/test-book/``.
"""
from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest

from gensar_lib import book
from gensar_lib.config import REPO_ROOT
from gensar_lib.results import results_files
from gensar_lib.student_copies import notebooks_in

NOTEBOOKS = REPO_ROOT / "notebooks"
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


class _Refs(HTMLParser):
    """The ``href`` and ``src`` values and the ``id`` attributes of one HTML page."""

    def __init__(self):
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)
            if name in ("href", "src") and value is not None:
                self.refs.append((tag, name, value))


def _parse(path: Path) -> _Refs:
    parser = _Refs()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def broken_references(root: Path) -> list[str]:
    """Every internal ``href``/``src`` of the HTML under ``root`` that names no file of the build (or no
    ``id`` of the page it names), and every ``src`` or ``<link href>`` (styles, scripts) loaded from outside."""
    # the pages; the theme also copies the templates of its macros into _static/, which are no pages
    pages = {p.resolve(): _parse(p) for p in root.rglob("*.html") if "_static" not in p.relative_to(root).parts}
    broken = []
    for page, refs in pages.items():
        for tag, attr, value in refs.refs:
            where = f"{page.relative_to(root.resolve())}: <{tag} {attr}={value!r}>"
            if SCHEME.match(value):
                if (attr == "src" or tag == "link") and not value.startswith("data:"):
                    broken.append(f"{where} loads from outside the book")
                continue
            parts = urlsplit(value)
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file() or root.resolve() not in target.parents:
                broken.append(f"{where}: no file {target}")
            elif parts.fragment and target in pages and unquote(parts.fragment) not in pages[target].ids:
                broken.append(f"{where}: no id {parts.fragment!r} in {target.name}")
    return broken


def images_of(page: Path) -> list[str]:
    return [value for tag, attr, value in _parse(page).refs if tag == "img" and attr == "src"]


# ----------------------------------------------------------------------------- the book's parts

def test_readme_section_is_the_text_up_to_the_next_section():
    map_ = "the map\n\n```bash\n# a comment, no heading\n```\n\n### table\n\nrows\n"
    readme = f"# T\n\nintro\n\n## Course map\n\n{map_}\n## Next\n\nother\n"
    assert book.readme_section(readme, "Course map") == map_
    with pytest.raises(book.BookError, match="no section '## Missing'"):
        book.readme_section(readme, "Missing")


def test_readme_opening_is_the_title_and_introduction():
    readme = "# T\n\nintro\n\n```bash\n## a comment, no heading\n```\n\n## First\n\nbody\n"
    assert book.readme_opening(readme) == "# T\n\nintro\n\n```bash\n## a comment, no heading\n```\n"


def test_the_readme_has_the_sections_the_book_takes():
    readme = (REPO_ROOT / "README.md").read_text()
    for title in (*book.LANDING_SECTIONS, *book.README_PAGES.values()):
        assert book.readme_section(readme, title).strip(), title
    assert book.landing_page(readme).startswith("# ")


def test_exercises_are_found_in_order_with_their_anchors():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# 07 · A title"),
        nbformat.v4.new_markdown_cell("### Exercise 7.1 — The trie's next tokens\n\ntext"),
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_markdown_cell("text\n\n### Exercise 7.2 — NDCG@k from ranks"),
    ])
    found = book.exercises({"07_x.ipynb": nb})
    assert [(e["number"], e["heading"], e["anchor"]) for e in found] == [
        ("7.1", "Exercise 7.1 — The trie's next tokens", "exercise-71--the-tries-next-tokens"),
        ("7.2", "Exercise 7.2 — NDCG@k from ranks", "exercise-72--ndcgk-from-ranks")]
    page = book.exercises_page(found)
    assert "## 07 · A title" in page
    assert "- [Exercise 7.2 — NDCG@k from ranks](notebooks/07_x.ipynb#exercise-72--ndcgk-from-ranks)" in page


def test_links_to_repository_files_that_are_no_page_become_downloads(tmp_path):
    src = tmp_path / "src"
    page, staged = src / "docs" / "page.md", src / "course.md"
    text = ("[a](../course.md) [b](../README.md#x) [c](../gensar_lib/config.py) [d](https://x.org/a.md) "
            "[e](../missing.md)")
    out, wanted = book._outside_links(text, page, src, {page, staged})
    assert out == ("[a](../course.md) [b](path:../README.md#x) [c](../gensar_lib/config.py) "
                   "[d](https://x.org/a.md) [e](../missing.md)")  # a missing file stays a link Sphinx warns about
    assert wanted == {Path("README.md"), Path("gensar_lib/config.py")}


def test_a_missing_executed_notebook_stops_the_stage(tmp_path):
    with pytest.raises(book.BookError, match="no executed copy of 00_data.ipynb.*make run"):
        book.stage(tmp_path / "executed", tmp_path / "src")


# ----------------------------------------------------------------------------- the built book

def _png() -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1], [0, 1])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _stand_in_executed(folder: Path) -> None:
    """The committed notebooks, each with outputs on its first code cell: a figure, a line, a widget."""
    folder.mkdir(parents=True)
    png = _png()
    for path in notebooks_in(NOTEBOOKS):
        nb = nbformat.read(path, as_version=4)
        cell = next(c for c in nb.cells if c.cell_type == "code")
        cell.execution_count = 1
        cell.outputs = [
            nbformat.v4.new_output("stream", name="stdout", text=f"ran {path.stem}\n"),
            nbformat.v4.new_output("display_data", data={"image/png": png, "text/plain": "<Figure>"}),
            nbformat.v4.new_output("display_data", data={
                book.WIDGET_MIME: {"model_id": "0", "version_major": 2, "version_minor": 0},
                "text/plain": "progress:   0%|          | 0/3"}),
        ]
        nbformat.write(nb, folder / path.name)


@pytest.fixture(scope="module")
def stand_in_book(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("book")
    _stand_in_executed(root / "executed")
    index = book.build(root / "executed", root / "html")
    assert index == (root / "html" / "index.html").resolve()
    return index.parent


def test_the_book_has_every_page(stand_in_book):
    for name in ("index", "course", "docs/method", "data/README", "results", "exercises",
                 *(f"notebooks/{p.stem}" for p in notebooks_in(NOTEBOOKS))):
        assert (stand_in_book / f"{name}.html").is_file(), f"no page {name}"


def test_every_link_and_image_of_the_book_resolves(stand_in_book):
    assert not broken_references(stand_in_book), "\n".join(broken_references(stand_in_book))


def test_notebook_pages_show_outputs_but_no_widget(stand_in_book):
    for path in notebooks_in(NOTEBOOKS):
        html = (stand_in_book / "notebooks" / f"{path.stem}.html").read_text()
        assert f"ran {path.stem}" in html
        assert images_of(stand_in_book / "notebooks" / f"{path.stem}.html"), f"{path.stem}: no figure"
        assert "progress:" not in html and "widget-view" not in html


def test_the_exercises_page_links_every_exercise(stand_in_book):
    expected = book.exercises({p.name: nbformat.read(p, as_version=4) for p in notebooks_in(NOTEBOOKS)})
    assert len(expected) >= 12
    links = [v for tag, attr, v in _parse(stand_in_book / "exercises.html").refs
             if tag == "a" and attr == "href" and v.startswith("notebooks/") and "#" in v]
    assert len(links) == len(expected)  # and each resolves, anchor included (the test above)


def test_the_results_page_shows_the_committed_tables(stand_in_book):
    html = (stand_in_book / "results.html").read_text()
    assert html.count("<table") == len(results_files())  # README's results block: one table per file
    assert "GenSAR (shared + specific)" in html


# ----------------------------------------------------------------------------- from this session's notebooks

def _session_notebooks(session, folder: Path) -> list[str]:
    """The notebooks nbval ran in this session, with the outputs it recorded (``IPyNbCell.test_outputs``),
    written to ``folder``; their names."""
    from nbval.plugin import IPyNbCell

    executed: dict[Path, nbformat.NotebookNode] = {}
    for item in session.items:
        if not isinstance(item, IPyNbCell):
            continue
        source = item.parent.nb
        nb = executed.setdefault(Path(str(item.fspath)), nbformat.from_dict(source))
        index = next(i for i, c in enumerate(source.cells) if c is item.cell)
        nb.cells[index] = nbformat.from_dict(dict(source.cells[index], outputs=getattr(item, "test_outputs", [])))
    folder.mkdir(parents=True, exist_ok=True)
    for path, nb in executed.items():
        outputs = sum(len(c.get("outputs", [])) for c in nb.cells)
        assert outputs, f"nbval recorded no outputs of {path.name} (IPyNbCell.test_outputs)"
        nbformat.write(nb, folder / path.name)
    return sorted(p.name for p in executed)


@pytest.mark.after_notebooks
def test_the_book_of_this_session_s_notebooks(request, tmp_path):
    wanted = {p.stem for p in notebooks_in(NOTEBOOKS)}
    if not wanted <= request.config.notebooks_run:
        pytest.skip("this session does not run every notebook")
    executed = tmp_path / "executed"
    assert _session_notebooks(request.session, executed) == sorted(f"{stem}.ipynb" for stem in wanted)
    root = book.build(executed, REPO_ROOT / "build" / "test-book").parent
    assert not broken_references(root), "\n".join(broken_references(root))
    for path in sorted(executed.glob("*.ipynb")):
        figures = sum("image/png" in o.get("data", {}) for c in nbformat.read(path, as_version=4).cells
                      for o in c.get("outputs", []))
        shown = len(images_of(root / "notebooks" / f"{path.stem}.html"))
        assert shown >= figures > 0, f"{path.stem}: {figures} figures in its outputs, {shown} images on its page"
