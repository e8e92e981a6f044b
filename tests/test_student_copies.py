"""gensar_lib.student_copies and scripts/make_student_copies.py: the student copies of the notebooks (``make student``).

Unit tests run the transformation on small synthetic notebooks; the end-to-end tests generate the
student copies of the real notebooks, then execute those with exercises (profile tiny, the test
session's cache, so the cached stages of the instructor notebooks are reused) and require every check
cell to report "not done yet" without any cell failing.
"""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from gensar_lib import student_copies as msc
from gensar_lib.config import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "make_student_copies.py"
NOTEBOOKS = REPO_ROOT / "notebooks"
EXERCISE_NOTEBOOKS = ["00", "01", "02", "03", "04", "05"]  # each must hold at least two exercises
NOTEBOOK_TIMEOUT_S = 900


# ----------------------------------------------------------------------------- helpers

def md(source):
    return nbformat.v4.new_markdown_cell(source)


def code(source, tags=(), outputs=None, execution_count=None):
    cell = nbformat.v4.new_code_cell(source)
    if tags:
        cell.metadata["tags"] = list(tags)
    if outputs is not None:
        cell.outputs = outputs
        cell.execution_count = execution_count
    return cell


def notebook(*cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.cells = list(cells)
    return nb


SOLUTION_1 = '''import numpy as np


def add_one(x):
    """x + 1, elementwise."""
    x = np.asarray(x)
    # BEGIN SOLUTION
    y = x + 1
    return y
    # END SOLUTION'''

SOLUTION_2 = '''def first_even(values):
    for v in values:
        if v % 2 == 0:
            # BEGIN SOLUTION
            return v
            # END SOLUTION
    return None'''


def good_notebook():
    stream = nbformat.v4.new_output("stream", name="stdout", text="hello\n")
    return notebook(
        md("# 01 · Title"),
        code('import os\nPROFILE = os.environ.get("GENSAR_PROFILE", "small")', tags=["parameters"],
             outputs=[stream], execution_count=1),
        md("## Exercises\n### Exercise 1.1 — add one\nWrite `add_one`."),
        code(SOLUTION_1, tags=["solution"]),
        code("checks.check_add_one(add_one)", tags=["check"], outputs=[stream], execution_count=3),
        md("Some text between.\n\n### Exercise 1.2 — the first even number"),
        md("More explanation of 1.2."),
        code(SOLUTION_2, tags=["solution", "other"]),
        code("checks.check_first_even(first_even)", tags=["check"]),
    )


def write(folder: Path, name: str, nb) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    nbformat.write(nb, path)
    return path


# ----------------------------------------------------------------------------- transformation

def test_markers_replaced_at_their_indentation():
    student = msc.student_notebook(good_notebook(), "01_x.ipynb")
    ex1, ex2 = student.cells[4], student.cells[8]
    assert ex1.source == (
        'import numpy as np\n\n\ndef add_one(x):\n    """x + 1, elementwise."""\n    x = np.asarray(x)\n'
        '    raise NotImplementedError("Exercise 1.1")'
    )
    assert ex2.source == (
        "def first_even(values):\n    for v in values:\n        if v % 2 == 0:\n"
        '            raise NotImplementedError("Exercise 1.2")\n    return None'
    )
    for cell in (ex1, ex2):
        assert "SOLUTION" not in cell.source
        ast.parse(cell.source)


def test_exercise_functions_raise_not_implemented():
    student = msc.student_notebook(good_notebook(), "01_x.ipynb")
    for cell, name, arg, number in ((student.cells[4], "add_one", [1], "1.1"),
                                    (student.cells[8], "first_even", [1, 2], "1.2")):
        namespace = {}
        exec(cell.source, namespace)  # noqa: S102 - our own synthetic cell
        with pytest.raises(NotImplementedError, match=f"Exercise {number}"):
            namespace[name](arg)


def test_tags_outputs_and_other_cells():
    original = good_notebook()
    student = msc.student_notebook(original, "01_x.ipynb")
    assert len(student.cells) == len(original.cells) + 1
    assert student.cells[4].metadata["tags"] == ["exercise"]
    assert student.cells[8].metadata["tags"] == ["exercise", "other"]
    assert student.cells[5].metadata["tags"] == ["check"]
    assert student.cells[2].metadata["tags"] == ["parameters"]
    for cell in student.cells:
        assert "solution" not in cell.metadata.get("tags", [])
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    # non-solution cells are unchanged, and the instructor notebook is not modified
    for before, after in zip(original.cells, student.cells[1:]):
        if "solution" not in before.metadata.get("tags", []):
            assert before.source == after.source and before.cell_type == after.cell_type
    assert original.cells[1].outputs and "solution" in original.cells[3].metadata["tags"]
    assert "BEGIN SOLUTION" in original.cells[3].source


def test_note_at_the_top():
    student = msc.student_notebook(good_notebook(), "01_x.ipynb", source_name="notebooks/01_x.ipynb")
    note = student.cells[0]
    assert note.cell_type == "markdown"
    assert "Student copy" in note.source and "`notebooks/01_x.ipynb`" in note.source
    assert "Do not edit" in note.source and "generated" in note.source
    nbformat.validate(student)


@pytest.mark.parametrize(
    "solution, message",
    [
        ("def f():\n    # BEGIN SOLUTION\n    return 1\n", "lacks the line '# END SOLUTION'"),
        ("def f():\n    return 1\n    # END SOLUTION\n", "lacks the line '# BEGIN SOLUTION'"),
        ("def f():\n    return 1\n", "'# BEGIN SOLUTION' and '# END SOLUTION'"),
        ("def f():\n    # END SOLUTION\n    return 1\n    # BEGIN SOLUTION\n", "comes before"),
        ("def f():\n    # BEGIN SOLUTION\n    x = 1\n    # END SOLUTION\n    # BEGIN SOLUTION\n"
         "    return x\n    # END SOLUTION\n", "exactly one of each"),
    ],
)
def test_malformed_solution_cells_name_notebook_and_cell(solution, message):
    nb = notebook(md("# 02 · T"), md("### Exercise 2.1 — f"), code(solution, tags=["solution"]))
    with pytest.raises(msc.StudentCopyError, match=re.escape(message)) as err:
        msc.student_notebook(nb, "02_bad.ipynb")
    assert "02_bad.ipynb, cell 2" in str(err.value)


def test_solution_without_heading_fails():
    nb = notebook(md("# 02 · T"), md("## 1. A section"), code(SOLUTION_1, tags=["solution"]))
    with pytest.raises(msc.StudentCopyError, match="without an exercise heading") as err:
        msc.student_notebook(nb, "02_bad.ipynb")
    assert "02_bad.ipynb, cell 2" in str(err.value)


def test_two_solutions_under_one_heading_fail():
    nb = notebook(md("### Exercise 2.1 — f"), code(SOLUTION_1, tags=["solution"]),
                  code(SOLUTION_2, tags=["solution"]))
    with pytest.raises(msc.StudentCopyError, match="without its own exercise heading") as err:
        msc.student_notebook(nb, "02_bad.ipynb")
    assert "02_bad.ipynb, cell 2" in str(err.value)


def test_markers_outside_a_solution_cell_fail():
    nb = notebook(md("### Exercise 2.1 — f"), code(SOLUTION_1))  # tag forgotten: the answer would leak
    with pytest.raises(msc.StudentCopyError, match="not tagged 'solution'") as err:
        msc.student_notebook(nb, "02_bad.ipynb")
    assert "02_bad.ipynb, cell 1" in str(err.value)


# ----------------------------------------------------------------------------- folders and command line

def test_folder_only_numbered_notebooks_and_deterministic(tmp_path):
    src = tmp_path / "notebooks"
    write(src, "01_x.ipynb", good_notebook())
    write(src, "00_intro.ipynb", notebook(md("# 00 · Intro"), code("1 + 1")))
    write(src, "scratch.ipynb", notebook(md("scratch")))
    (src / "README.md").write_text("not copied\n")
    write(src / "executed", "01_x.ipynb", good_notebook())
    out = tmp_path / "student"
    written = msc.make_student_copies(src, out)
    assert sorted(p.name for p in out.iterdir()) == ["00_intro.ipynb", "01_x.ipynb"]
    assert [p.name for p in written] == ["00_intro.ipynb", "01_x.ipynb"]
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    msc.make_student_copies(src, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first  # regenerating changes nothing
    nb = nbformat.read(out / "01_x.ipynb", as_version=4)
    nbformat.validate(nb)
    assert 'raise NotImplementedError("Exercise 1.1")' in nb.cells[4].source


def test_output_folder_replaced_as_a_whole(tmp_path):
    src = tmp_path / "notebooks"
    write(src, "01_x.ipynb", good_notebook())
    out = tmp_path / "student"
    write(out, "09_removed_since.ipynb", notebook(md("stale")))
    msc.make_student_copies(src, out)
    assert sorted(p.name for p in out.iterdir()) == ["01_x.ipynb"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notebooks", "student"]  # no temporary folders left


def test_failed_run_leaves_previous_copies_untouched(tmp_path):
    src = tmp_path / "notebooks"
    write(src, "01_x.ipynb", good_notebook())
    out = tmp_path / "student"
    msc.make_student_copies(src, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    write(src, "02_bad.ipynb", notebook(md("### Exercise 2.1 — f"), code("def f():\n    # BEGIN SOLUTION\n",
                                                                          tags=["solution"])))
    with pytest.raises(msc.StudentCopyError, match="02_bad.ipynb, cell 1"):
        msc.make_student_copies(src, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notebooks", "student"]


def test_refuses_to_replace_the_sources_or_foreign_files(tmp_path):
    src = tmp_path / "notebooks"
    write(src, "01_x.ipynb", good_notebook())
    for out in (src, tmp_path):
        with pytest.raises(msc.StudentCopyError, match="overlaps"):
            msc.make_student_copies(src, out)
    out = tmp_path / "student"
    out.mkdir()
    (out / "my_notes.txt").write_text("mine\n")
    with pytest.raises(msc.StudentCopyError, match="my_notes.txt"):
        msc.make_student_copies(src, out)
    assert (out / "my_notes.txt").exists() and (src / "01_x.ipynb").exists()


def test_command_line(tmp_path):
    src = tmp_path / "notebooks"
    write(src, "01_x.ipynb", good_notebook())
    run = subprocess.run([sys.executable, str(SCRIPT), "--src", str(src), "--out", str(tmp_path / "s")],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "s" / "01_x.ipynb").exists() and "01_x.ipynb" in run.stdout
    write(src, "02_bad.ipynb", notebook(md("# 02 · T"), code(SOLUTION_2, tags=["solution"])))
    run = subprocess.run([sys.executable, str(SCRIPT), "--src", str(src), "--out", str(tmp_path / "s")],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 1
    assert "02_bad.ipynb, cell 1" in run.stderr and "exercise heading" in run.stderr
    assert "Traceback" not in run.stderr


# ----------------------------------------------------------------------------- the real notebooks

def _solution_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code" and "solution" in c.metadata.get("tags", [])]


def _real(prefix: str) -> Path:
    found = sorted(NOTEBOOKS.glob(f"{prefix}_*.ipynb"))
    assert len(found) == 1, f"expected one notebooks/{prefix}_*.ipynb, found {found}"
    return found[0]


@pytest.fixture(scope="module")
def real_student_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("real") / "student"
    msc.make_student_copies(NOTEBOOKS, out)
    return out


@pytest.mark.parametrize("prefix", EXERCISE_NOTEBOOKS)
def test_real_notebook_has_exercises(prefix):
    nb = nbformat.read(_real(prefix), as_version=4)
    n = len(_solution_cells(nb))
    assert n >= 2, f"{_real(prefix).name} has {n} exercise solution cells; notebooks 00-05 need at least 2"


def test_real_student_copies(real_student_dir):
    names = sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    assert sorted(p.name for p in real_student_dir.iterdir()) == names
    for name in names:
        instructor = nbformat.read(NOTEBOOKS / name, as_version=4)
        student = nbformat.read(real_student_dir / name, as_version=4)
        nbformat.validate(student)
        assert len(student.cells) == len(instructor.cells) + 1
        for i, (before, after) in enumerate(zip(instructor.cells, student.cells[1:])):
            where = f"{name}, cell {i}"
            if "solution" not in before.metadata.get("tags", []):
                assert after.source == before.source, where
                continue
            assert "exercise" in after.metadata["tags"], where
            assert "SOLUTION" not in after.source, where
            raises = re.findall(r'raise NotImplementedError\("Exercise (\d+\.\d+)"\)', after.source)
            assert len(raises) == 1, where
            assert raises[0].split(".")[0] == str(int(name[:2])), f"{where}: exercise {raises[0]} numbered " \
                f"for another notebook"
            tree = ast.parse(after.source)
            in_functions = [n for f in tree.body if isinstance(f, ast.FunctionDef) for n in ast.walk(f)
                            if isinstance(n, ast.Raise)]
            assert any("NotImplementedError" in ast.unparse(n) for n in in_functions), \
                f"{where}: the answer must sit inside the exercise's function, so the cell itself runs"


def _notebooks_to_execute() -> list[str]:
    """00-05 (which must have exercises) and any other notebook that has some."""
    names = {_real(p).name for p in EXERCISE_NOTEBOOKS if list(NOTEBOOKS.glob(f"{p}_*.ipynb"))}
    for path in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"):
        if _solution_cells(nbformat.read(path, as_version=4)):
            names.add(path.name)
    return sorted(names)


def execute_student_copy(path: Path, figures: Path) -> list[tuple[str, str]]:
    """Execute the student copy ``path`` in its folder (profile tiny, the session's cache, this environment).

    Raises nbclient's CellExecutionError, naming the cell, if any cell fails; returns for every
    ``check`` cell its source and the text it printed or returned.
    """
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    env = {"GENSAR_PROFILE": "tiny", "GENSAR_DATASET": "synthetic", "GENSAR_FIGURES": str(figures)}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        # "python3" runs sys.executable (jupyter_client swaps a bare "python" for it): this environment.
        client = NotebookClient(nb, timeout=NOTEBOOK_TIMEOUT_S, kernel_name="python3", allow_errors=False,
                                resources={"metadata": {"path": str(path.parent)}})
        client.execute()
    out = []
    for cell in nb.cells:
        if cell.cell_type != "code" or "check" not in cell.metadata.get("tags", []):
            continue
        text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
        text += "".join(str(o.get("data", {}).get("text/plain", "")) for o in cell.outputs
                        if o.output_type in ("execute_result", "display_data"))
        out.append((cell.source, text))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", _notebooks_to_execute())
def test_student_copy_runs_and_reports_not_done(name, real_student_dir, tmp_path):
    """Run the student copy top to bottom: no cell fails and every check says "not done yet"."""
    path = real_student_dir / name
    nb = nbformat.read(path, as_version=4)
    n_exercises = sum("exercise" in c.metadata.get("tags", []) for c in nb.cells)
    assert n_exercises >= 1, f"{name} has no exercises"
    checks = execute_student_copy(path, tmp_path / "figures")  # figures/ stays untouched
    assert len(checks) == n_exercises, f"{name}: {n_exercises} exercises but {len(checks)} check cells"
    for source, text in checks:
        assert "⏳ Exercise" in text, f"{name}: check cell {source!r} printed {text!r}"
        assert "✅" not in text, f"{name}: check cell {source!r} passed an unsolved exercise: {text!r}"
