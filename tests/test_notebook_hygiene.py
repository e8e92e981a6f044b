"""House rules of the notebooks, checked on the files themselves (nothing is executed).

Policy:

* **Committed without outputs.** The instructor notebooks ``notebooks/NN_name.ipynb`` are the single
  source and are committed with no outputs and no execution counts (``make run`` writes executed
  copies to ``notebooks/executed/``, which is not committed; ``make student`` derives the student
  copies). Any other notebook in the repository must either be clean too or have been executed top
  to bottom in one kernel (execution counts 1, 2, 3, ... over its code cells).
* Every notebook has a ``parameters``-tagged first code cell that reads ``GENSAR_PROFILE``, and its next
  code cell opens the notebook with ``gensar_lib.session.start`` (style, profile, data).
* One plotting style: a notebook that draws sets the style first (``start()`` or
  ``gensar_lib.plots.use_style()``) and writes figures only through ``save_fig`` (PNG + the CSV behind it).
* Pure plumbing is labelled: a cell that builds a widget front end starts with ``# plumbing:``.
* Every notebook opens with a markdown header (``# NN · title``, what you will learn, prerequisites,
  runtime) and closes with a markdown footer (a summary and what to try next).
* Files are named ``NN_name.ipynb`` with consecutive numbers from 00, and use the ``python3`` kernel.
* Exercises: every ``solution`` cell is followed by its ``check`` cell.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import nbformat
import pytest

from gensar_lib.config import REPO_ROOT

NOTEBOOKS = REPO_ROOT / "notebooks"
NAME = re.compile(r"^(\d\d)_[a-z0-9]+(?:_[a-z0-9]+)*\.ipynb$")
# folders that hold generated or third-party notebooks, never committed ones
NOT_COMMITTED = {".venv", "build", "executed", "student", ".ipynb_checkpoints", "node_modules", ".git"}


def _notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def _read(path: Path):
    return nbformat.read(path, as_version=4)


def _code(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _without_comments(source: str) -> str:
    """``source`` without its comment lines (a commented-out ``savefig`` is no violation)."""
    return "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("#"))


@pytest.fixture(scope="module", params=[p.name for p in _notebooks()])
def nb_path(request) -> Path:
    return NOTEBOOKS / request.param


def test_there_are_notebooks():
    assert _notebooks(), f"no notebooks in {NOTEBOOKS}"


# (a) ---------------------------------------------------------------- outputs and execution counts

def _dirty_cells(nb) -> list[int]:
    return [i for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]


def test_committed_without_outputs(nb_path):
    dirty = _dirty_cells(_read(nb_path))
    assert not dirty, (
        f"{nb_path.name}: cells {dirty} have outputs or execution counts; notebooks are committed "
        f"without outputs (Kernel > Restart and clear outputs, or jupyter nbconvert --clear-output --inplace)"
    )


def test_every_cell_has_an_id(nb_path):
    """nbformat 4.5 cell ids (nbformat warns today and will refuse a notebook without them)."""
    cells = json.loads(nb_path.read_text())["cells"]  # raw: nbformat.read fills in missing ids
    missing = [i for i, c in enumerate(cells) if not c.get("id")]
    assert not missing, f"{nb_path.name}: cells {missing} have no id; run nbformat.validator.normalize on it"
    ids = [c["id"] for c in cells]
    assert len(set(ids)) == len(ids), f"{nb_path.name}: duplicate cell ids"


def _other_committed_notebooks(root: Path = REPO_ROOT) -> list[Path]:
    """Every notebook under ``root`` outside its ``notebooks/`` folder and the folders of generated ones."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [d for d in subfolders if d not in NOT_COMMITTED and not (
            Path(folder) == root and d == "data")]  # data/: datasets and the stage cache
        if Path(folder) != root / NOTEBOOKS.name:
            found += [Path(folder) / f for f in files if f.endswith(".ipynb")]
    return sorted(found)


def _order_problem(nb) -> str | None:
    """Why a notebook that is neither clean nor executed top to bottom breaks the rule (None: it does not)."""
    if not _dirty_cells(nb):
        return None
    counts = [c.get("execution_count") for c in _code(nb)]
    if counts == list(range(1, len(counts) + 1)):
        return None
    return f"execution counts {counts}; clear the outputs or run it top to bottom"


def _order_problems(root: Path = REPO_ROOT) -> list[str]:
    """``path: problem`` for every other notebook under ``root`` that breaks the rule."""
    return [f"{path.relative_to(root).as_posix()}: {problem}" for path in _other_committed_notebooks(root)
            if (problem := _order_problem(_read(path))) is not None]


def test_the_order_rule_tells_the_cases_apart(tmp_path):
    """A tree with every case: only the notebooks outside notebooks/ and the generated folders are judged, and
    only those neither clean nor executed top to bottom are reported."""
    cell = nbformat.v4.new_code_cell
    shuffled = [cell("1", execution_count=2), cell("2", execution_count=1)]
    tree = {
        "docs/clean.ipynb": [cell("1"), cell("2")],
        "docs/deep/in_order.ipynb": [cell("1", execution_count=1), cell("2", execution_count=2)],
        "docs/shuffled.ipynb": shuffled,
        "benchmarks/partial.ipynb": [cell("1", execution_count=1), cell("2")],
        "top.ipynb": shuffled,
        # not judged here: the instructor notebooks (committed clean, tested above) and generated copies
        "notebooks/00_x.ipynb": shuffled,
        "notebooks/executed/00_x.ipynb": shuffled,
        "student/00_x.ipynb": shuffled,
        "data/cache/x.ipynb": shuffled,
        "docs/.ipynb_checkpoints/shuffled-checkpoint.ipynb": shuffled,
    }
    for name, cells in tree.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nbformat.v4.new_notebook(cells=cells), tmp_path / name)
    assert _order_problems(tmp_path) == [
        "benchmarks/partial.ipynb: execution counts [1, None]; clear the outputs or run it top to bottom",
        "docs/shuffled.ipynb: execution counts [2, 1]; clear the outputs or run it top to bottom",
        "top.ipynb: execution counts [2, 1]; clear the outputs or run it top to bottom",
    ]


def test_other_notebooks_clean_or_executed_in_order():
    """No notebook outside notebooks/ is committed today; one that is added must pass the rule above."""
    assert _order_problems() == []


# (b) ---------------------------------------------------------------- parameters cell

def test_parameters_cell_reads_profile(nb_path):
    nb = _read(nb_path)
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in _tags(c)]
    assert len(tagged) == 1, f"{nb_path.name}: {len(tagged)} cells tagged 'parameters'; want exactly one"
    cell = nb.cells[tagged[0]]
    assert cell.cell_type == "code" and cell is _code(nb)[0], \
        f"{nb_path.name}: the 'parameters' cell must be the first code cell"
    assert re.search(r"os\.environ(\.get\(|\[)\s*[\"']GENSAR_PROFILE[\"']", cell.source), \
        f"{nb_path.name}: the 'parameters' cell must read GENSAR_PROFILE from the environment"


def test_setup_cell_calls_start(nb_path):
    """One opening for every notebook: the cell after the parameters calls ``start(<its name>, PROFILE,
    DATASET)``."""
    code = _code(_read(nb_path))
    assert len(code) > 1 and re.search(
        rf"^\w+ = start\(\s*[\"']{nb_path.stem}[\"'],\s*PROFILE,\s*DATASET\)", code[1].source, re.MULTILINE), \
        f"{nb_path.name}: the cell after the parameters must call start('{nb_path.stem}', PROFILE, DATASET)"


# (c) ---------------------------------------------------------------- one plotting style

DRAWS = re.compile(r"\bplt\.(subplots|figure|plot|imshow)\(|\bsave_fig\(")
SETS_STYLE = re.compile(r"^(use_style\(\)|\w+ = start\()", re.MULTILINE)


def test_one_plotting_style(nb_path):
    nb = _read(nb_path)
    # cell index -> code without comment lines (markdown cells count as empty code)
    sources = [_without_comments(c.source) if c.cell_type == "code" else "" for c in nb.cells]
    name = nb_path.name
    for i, source in enumerate(sources):
        assert not re.search(r"\.savefig\(", source), \
            f"{name}: cell {i} calls savefig directly; save figures with save_fig"
        assert not re.search(r"\b(plt\.style\.use|sns\.set_theme|sns\.set|sns\.set_style|mpl\.rcParams\.update)\(",
                             source), f"{name}: cell {i} changes the plotting style; use_style() sets it"
    drawing = [i for i, s in enumerate(sources) if DRAWS.search(s)]
    imports = any(re.search(r"^\s*(import matplotlib|from matplotlib)", s, re.MULTILINE) for s in sources)
    if not drawing and not imports:
        return
    style_cell = next((i for i, s in enumerate(sources) if SETS_STYLE.search(s)), None)
    assert style_cell is not None, f"{name}: draws figures but never calls start() or use_style()"
    assert not drawing or style_cell <= drawing[0], f"{name}: draws before setting the style"
    if any(re.search(r"\bplt\.(subplots|figure|plot|imshow)\(", s) for s in sources):
        assert any(re.search(r"\bsave_fig\(", s) for s in sources), \
            f"{name}: draws figures but never saves one with save_fig"


def test_the_style_rule_tells_the_cases_apart():
    assert SETS_STYLE.search("session = start(\"00_data\", PROFILE, DATASET)") and SETS_STYLE.search("use_style()")
    assert not SETS_STYLE.search("restart()") and not SETS_STYLE.search("print(start)")
    assert DRAWS.search("session.save_fig(fig, 'x', frame)") and not DRAWS.search("plots.record(a=1)")


def test_plumbing_cells_are_labelled(nb_path):
    """A widget front end shows, it teaches nothing: its cell says so on its first line."""
    for i, cell in enumerate(_read(nb_path).cells):
        if cell.cell_type == "code" and re.search(r"^\s*import ipywidgets", cell.source, re.MULTILINE):
            assert cell.source.startswith("# plumbing:"), \
                f"{nb_path.name}: cell {i} builds a widget front end; label it with a first line '# plumbing: ...'"


# (d) ---------------------------------------------------------------- header and footer

def test_header(nb_path):
    nb = _read(nb_path)
    first = nb.cells[0]
    number = nb_path.name[:2]
    assert first.cell_type == "markdown", f"{nb_path.name}: the first cell must be the markdown header"
    assert re.match(rf"# {number} · \S", first.source), \
        f"{nb_path.name}: the header must start with the title '# {number} · ...'"
    text = first.source
    assert "You will learn" in text or re.search(r"learning", text, re.IGNORECASE), \
        f"{nb_path.name}: the header must say what you will learn"
    assert "Prerequisites" in text, f"{nb_path.name}: the header must list the prerequisites"
    assert "Runtime" in text, f"{nb_path.name}: the header must give the runtime"


def test_footer(nb_path):
    nb = _read(nb_path)
    last = nb.cells[-1]
    assert last.cell_type == "markdown", f"{nb_path.name}: the last cell must be the markdown footer"
    assert "Summary" in last.source, f"{nb_path.name}: the last cell must hold the Summary"
    assert "What to try next" in last.source, f"{nb_path.name}: the last cell must say 'What to try next'"


# (e) ---------------------------------------------------------------- names and numbering

def test_names_and_consecutive_numbers():
    names = [p.name for p in _notebooks()]
    bad = [n for n in names if not NAME.match(n)]
    assert not bad, f"notebooks not named NN_name.ipynb (lower case, digits, underscores): {bad}"
    numbers = [int(n[:2]) for n in names]
    assert numbers == list(range(len(numbers))), f"notebook numbers must run 00, 01, ... without gaps: {names}"


# (f) ---------------------------------------------------------------- kernel

def test_kernel_is_python3(nb_path):
    spec = _read(nb_path).metadata.get("kernelspec", {})
    assert spec.get("name") == "python3", f"{nb_path.name}: kernelspec {spec}; want name 'python3'"
    assert spec.get("language", "python") == "python"


# (g) ---------------------------------------------------------------- exercises

def test_each_solution_has_its_check(nb_path):
    nb = _read(nb_path)
    cells = nb.cells
    for i, cell in enumerate(cells):
        if "solution" not in _tags(cell):
            continue
        following = next((c for c in cells[i + 1:] if c.cell_type == "code"), None)
        assert following is not None and "check" in _tags(following), \
            f"{nb_path.name}, cell {i}: a solution cell must be followed by a code cell tagged 'check'"
        assert re.search(r"\bchecks\.check_\w+\(", following.source), \
            f"{nb_path.name}, cell {i}: its check cell must call checks.check_<name>(...)"
