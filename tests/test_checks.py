"""The exercise self-checks (``gensar_lib.checks``) and the exercise convention of the notebooks.

For every check: the instructor notebook's reference solution passes, plausible wrong answers fail, a stub
that raises NotImplementedError prints the "not done yet" line, and no hint prints an expected value.
"""
from __future__ import annotations

import json
import math
import re

import nbformat
import numpy as np
import pytest

from gensar_lib import checks
from gensar_lib.config import REPO_ROOT
from gensar_lib.student_copies import BEGIN_MARKER as BEGIN
from gensar_lib.student_copies import END_MARKER as END
from gensar_lib.student_copies import student_notebook

NOTEBOOKS = REPO_ROOT / "notebooks"
EXERCISE_NOTEBOOKS = ["00_data", "01_embeddings", "02_residual_quantization", "03_identifiers", "04_instructions",
                      "05_t5_training", "06_identifier_ablation"]
HEADING = re.compile(r"^### Exercise (\d+)\.(\d+) — \S", re.MULTILINE)
CHECK_CALL = re.compile(r"^checks\.(check_\w+)\((\w+)\)$")


# ---------------------------------------------------------------------------
# Reading the exercises out of the notebooks
# ---------------------------------------------------------------------------


def _source(cell) -> str:
    src = cell["source"]
    return "".join(src) if isinstance(src, list) else src


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def notebook_exercises(name: str) -> list[dict]:
    """Every exercise of a notebook: number, heading position, solution source, function and check names."""
    cells = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())["cells"]
    found = []
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "code" or "solution" not in _tags(cell):
            continue
        heading = next((HEADING.search(_source(c)) for c in reversed(cells[:i]) if c["cell_type"] == "markdown"
                        and HEADING.search(_source(c))), None)
        nxt = next((j for j in range(i + 1, len(cells)) if cells[j]["cell_type"] == "code"), None)
        check = CHECK_CALL.match(_source(cells[nxt]).strip()) if nxt is not None else None
        found.append({
            "notebook": name, "index": i, "cells": cells, "source": _source(cell),
            "number": f"{heading.group(1)}.{heading.group(2)}" if heading else None,
            "check_index": nxt, "check_tags": _tags(cells[nxt]) if nxt is not None else [],
            "check": check.group(1) if check else None, "function": check.group(2) if check else None,
        })
    return found


def _all_exercises() -> list[dict]:
    return [ex for name in EXERCISE_NOTEBOOKS for ex in notebook_exercises(name)]


def _define(source: str, function: str):
    namespace: dict = {}
    exec(compile(source, f"<exercise {function}>", "exec"), namespace)  # noqa: S102 - our own notebook cells
    return namespace[function]


def reference(number: str):
    """The reference solution of an exercise: the solution cell of its notebook."""
    check_name = checks.CHECKS[number].__name__
    for ex in _all_exercises():
        if ex["check"] == check_name:
            return _define(ex["source"], ex["function"])
    raise AssertionError(f"no solution cell calls checks.{check_name}")


# ---------------------------------------------------------------------------
# Plausible wrong answers, per exercise
# ---------------------------------------------------------------------------


def _query_terms(path):
    from gensar_lib.data.queries import text_terms

    return [t for level in path for t in text_terms(level)]


def _query_all_terms(path):
    return " ".join(_query_terms(path)) or None if len(path) >= 2 else None


def _query_sorted(path):
    return " ".join(sorted(set(_query_terms(path)))) or None if len(path) >= 2 else None


def _query_one_level(path):
    return " ".join(dict.fromkeys(_query_terms(path))) or None


def _query_split_words(path):
    return " ".join(dict.fromkeys(w for level in path for w in level.lower().split())) or None if len(path) >= 2 else None


def _query_empty_string(path):
    return " ".join(dict.fromkeys(_query_terms(path))) if len(path) >= 2 else None


def _test_case(events, task, history, at=-1, least=3):
    of_task = [e for e in events if e.task == task]
    if len(of_task) < least:
        return None
    target = of_task[at]
    return target, history(events, target, task)


def _test_case_listed_before(events, task):
    return _test_case(events, task, lambda ev, t, _: ev[:ev.index(t)])


def _test_case_same_task(events, task):
    return _test_case(events, task, lambda ev, t, k: [e for e in ev if e.time < t.time and e.task == k])


def _test_case_up_to_target_time(events, task):
    return _test_case(events, task, lambda ev, t, _: [e for e in ev if e.time <= t.time and e != t])


def _test_case_always(events, task):
    return _test_case(events, task, lambda ev, t, _: [e for e in ev if e.time < t.time], least=1)


def _test_case_second_last(events, task):
    return _test_case(events, task, lambda ev, t, _: [e for e in ev if e.time < t.time], at=-2)


def _nn_with_self(emb, item, k):
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    return np.argsort(-(unit @ unit[item]))[:k]


def _nn_dot(emb, item, k):
    sim = emb @ emb[item]
    sim[item] = -np.inf
    return np.argsort(-sim)[:k]


def _nn_worst_first(emb, item, k):
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sim = unit @ unit[item]
    sim[item] = -np.inf
    return np.argsort(-sim)[:k][::-1]


def _hit_rate_nan_when_empty(ranks, k):
    ranks = np.asarray(ranks)
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(((ranks >= 0) & (ranks < k)).sum() / len(ranks))


def _rq_input_every_level(x, books):
    codes, residual = [], np.array(x, float)
    for cb in books:
        c = ((np.asarray(x)[:, None] - cb[None]) ** 2).sum(-1).argmin(1)
        codes.append(c)
        residual = residual - cb[c]
    return np.stack(codes, 1), residual


def _rq_dot(x, books):
    codes, residual = [], np.array(x, float)
    for cb in books:
        c = (residual @ cb.T).argmax(1)
        codes.append(c)
        residual = residual - cb[c]
    return np.stack(codes, 1), residual


def _rq_transposed(x, books):
    codes, residual = [], np.array(x, float)
    for cb in books:
        c = ((residual[:, None] - cb[None]) ** 2).sum(-1).argmin(1)
        codes.append(c)
        residual = residual - cb[c]
    return np.stack(codes, 0), residual


def _sinkhorn_columns_to_one(d, eps, iters=50):
    q = np.exp(-d / eps)
    for _ in range(iters):
        q = q / q.sum(1, keepdims=True)
        q = q / q.sum(0, keepdims=True)
    return q


def _sinkhorn_wrong_sign(d, eps, iters=50):
    b, k = d.shape
    q = np.exp(d / eps)
    for _ in range(iters):
        q = q / q.sum(1, keepdims=True)
        q = q / q.sum(0, keepdims=True) * (b / k)
    return q


def _sinkhorn_rows_last(d, eps, iters=50):
    b, k = d.shape
    q = np.exp(-d / eps)
    for _ in range(iters):
        q = q / q.sum(0, keepdims=True) * (b / k)
        q = q / q.sum(1, keepdims=True)
    return q


def _collisions_groups(codes):
    rows = [tuple(r) for r in np.asarray(codes).tolist()]
    return sum(rows.count(r) > 1 for r in set(rows)) / len(rows)


def _collisions_members(codes):
    rows = [tuple(r) for r in np.asarray(codes).tolist()]
    return sum(rows.count(r) > 1 for r in rows) / len(rows)


def _collisions_joined(codes):
    rows = ["".join(map(str, r)) for r in np.asarray(codes).tolist()]
    return (len(rows) - len(set(rows))) / len(rows)


def _prefix_only_shared(codes, depth):
    from collections import Counter

    sizes = Counter(tuple(r[:depth]) for r in np.asarray(codes).tolist()).values()
    return np.array(sorted((s for s in sizes if s > 1), reverse=True))


def _prefix_unsorted(codes, depth):
    from collections import Counter

    return np.array(sorted(Counter(tuple(r[:depth]) for r in np.asarray(codes).tolist()).values()))


def _prefix_column(codes, depth):
    from collections import Counter

    return np.array(sorted(Counter(np.asarray(codes)[:, min(depth, codes.shape[1] - 1)].tolist()).values(),
                           reverse=True))


def _vq_terms(residual, codebook, dot=False):
    import torch

    scores = residual @ codebook.T if dot else -torch.cdist(residual, codebook)
    return codebook[scores.argmax(1)]


def _vq_no_stop_gradient(residual, codebook, beta):
    e = _vq_terms(residual, codebook)
    return (1 + beta) * ((residual - e) ** 2).mean()


def _vq_beta_on_codebook_term(residual, codebook, beta):
    e = _vq_terms(residual, codebook)
    return beta * ((residual.detach() - e) ** 2).mean() + ((residual - e.detach()) ** 2).mean()


def _vq_sum_over_dimensions(residual, codebook, beta):
    e = _vq_terms(residual, codebook)
    return ((residual.detach() - e) ** 2).sum(1).mean() + beta * ((residual - e.detach()) ** 2).sum(1).mean()


def _vq_dot(residual, codebook, beta):
    e = _vq_terms(residual, codebook, dot=True)
    return ((residual.detach() - e) ** 2).mean() + beta * ((residual - e.detach()) ** 2).mean()


def _vq_float(residual, codebook, beta):
    e = _vq_terms(residual, codebook)
    return (((residual.detach() - e) ** 2).mean() + beta * ((residual - e.detach()) ** 2).mean()).item()


def _prompt_library_template(history, query):
    from gensar_lib.instructions import TEMPLATES

    return TEMPLATES["NSIP"][1].format(history=history, query=query)


def _prompt_no_query(history, query):
    return f"History: {history}. What will the user click next?"


def _prompt_unformatted(history, query):
    return "Recent activity: {history}. The user searches for {query}. Which item?"


def _events_minus_zero(history, length):
    rec = [e for e in history if e.query is None][-length:]
    search = [e for e in history if e.query is not None][-length:]
    return sorted(rec + search, key=lambda e: e.time)


def _events_overall(history, length):
    return list(history)[-2 * length:] if length else []


def _events_unmerged(history, length):
    if not length:
        return []
    return [e for e in history if e.query is None][-length:] + [e for e in history if e.query is not None][-length:]


def _allowed_last_token(codes, prefix):
    if not prefix:
        return sorted(set(codes[:, 0].tolist()))
    if len(prefix) >= codes.shape[1]:
        return []
    return sorted(set(codes[codes[:, len(prefix) - 1] == prefix[-1], len(prefix)].tolist()))


def _allowed_duplicates(codes, prefix):
    if len(prefix) >= codes.shape[1]:
        return []
    rows = codes[(codes[:, :len(prefix)] == np.asarray(prefix, dtype=int)).all(1)]
    return sorted(rows[:, len(prefix)].tolist())


def _allowed_crashes_when_complete(codes, prefix):
    rows = codes[(codes[:, :len(prefix)] == np.asarray(prefix, dtype=int)).all(1)]
    return sorted(set(rows[:, len(prefix)].tolist()))


def _ndcg_natural_log(ranks, k):
    ranks = np.asarray(ranks)
    if not len(ranks):
        return 0.0
    hit = (ranks >= 0) & (ranks < k)
    return float(np.where(hit, 1 / np.log(np.maximum(ranks, 0) + 2.0), 0).mean())


def _ndcg_sum(ranks, k):
    ranks = np.asarray(ranks)
    hit = (ranks >= 0) & (ranks < k)
    return float(np.where(hit, 1 / np.log2(np.maximum(ranks, 0) + 2.0), 0).sum())


def _ndcg_inclusive(ranks, k):
    ranks = np.asarray(ranks)
    if not len(ranks):
        return 0.0
    hit = (ranks >= 0) & (ranks <= k)
    return float(np.where(hit, 1 / np.log2(np.maximum(ranks, 0) + 2.0), 0).mean())


def _pareto_strict(points):
    return {n for n, p in points.items()
            if not any(q[0] > p[0] and q[1] > p[1] for m, q in points.items() if m != n)}


def _pareto_dominated(points):
    def dom(a, b):
        return a[0] >= b[0] and a[1] >= b[1] and a != b

    return {n for n, p in points.items() if any(dom(q, p) for m, q in points.items() if m != n)}


def _pareto_weak(points):
    return {n for n, p in points.items()
            if not any(q[0] >= p[0] and q[1] >= p[1] for m, q in points.items() if m != n)}


WRONG = {  # number -> [(a plausible wrong answer, a fragment of the hint it must get)]
    "0.1": [(_query_all_terms, "already used"), (_query_sorted, "wrong order"), (_query_one_level, "fewer than two"),
            (_query_split_words, "text_terms"), (_query_empty_string, "empty string")],
    "0.2": [(_test_case_listed_before, "official pipeline"), (_test_case_same_task, "both tasks"),
            (_test_case_up_to_target_time, "strictly earlier"), (_test_case_always, "fewer than 3"),
            (_test_case_second_last, "validation target")],
    "1.1": [(_nn_with_self, "its own neighbour"), (_nn_dot, "dot product"), (_nn_worst_first, "wrong order")],
    "1.2": [(lambda r, k: float((np.asarray(r) < k).mean()) if len(r) else 0.0, "-1"),
            (lambda r, k: float(((np.asarray(r) >= 0) & (np.asarray(r) <= k)).mean()) if len(r) else 0.0,
             "0-based"),
            (_hit_rate_nan_when_empty, "no cases")],
    "2.1": [(_rq_input_every_level, "residual left by the levels above"), (_rq_dot, "Euclidean"),
            (_rq_transposed, "one row per item")],
    "2.2": [(_sinkhorn_columns_to_one, "B / K"), (_sinkhorn_wrong_sign, "small distance"),
            (_sinkhorn_rows_last, "column step")],
    "3.1": [(_collisions_groups, "not the number of groups"), (_collisions_members, "first item of a group"),
            (_collisions_joined, "tuples"),
            (lambda c: (len(c) - len(np.unique(np.asarray(c)[:, 0]))) / len(c), "whole row")],
    "3.2": [(_prefix_only_shared, "only one item"), (_prefix_unsorted, "largest first"),
            (_prefix_column, "first depth codes together")],
    "3.3": [(_vq_no_stop_gradient, "detach the residual"), (_vq_beta_on_codebook_term, "beta weights"),
            (_vq_sum_over_dimensions, "every entry"), (_vq_dot, "nearest code"), (_vq_float, "torch tensor")],
    "4.1": [(_prompt_library_template, "your own"), (_prompt_no_query, "query"),
            (_prompt_unformatted, "placeholders"), (lambda h, q: f"{h} {q}", "instruction words")],
    "4.2": [(_events_minus_zero, "length 0"), (_events_overall, "each task"), (_events_unmerged, "time order")],
    "5.1": [(_allowed_last_token, "whole prefix"), (_allowed_duplicates, "once"),
            (_allowed_crashes_when_complete, "complete identifier")],
    "5.2": [(_ndcg_natural_log, "base 2"), (_ndcg_sum, "mean"), (_ndcg_inclusive, "0-based")],
    "6.1": [(_pareto_strict, "equal on the other"), (_pareto_dominated, "NOT dominated"),
            (_pareto_weak, "identical points")],
    "6.2": [(lambda n, m: 1 - (1 - 1 / m) ** n, "itself"),
            (lambda n, m: 1 - math.prod((m - i) / m for i in range(min(n, m + 1))), "any two items"),
            (lambda n, m: (n - 1) / m, "do not add up")],
}

# For checks that return numbers: the check's cases, and how to compute the reference's value for one case.
NUMERIC = {
    "1.2": (checks.HIT_RATE_CASES, lambda fn, case: fn(np.array(case[0], dtype=np.int64), case[1])),
    "3.1": (checks.COLLISION_CASES, lambda fn, case: fn(case)),
    "5.2": (checks.NDCG_CASES, lambda fn, case: fn(np.array(case[0], dtype=np.int64), case[1])),
    "6.2": (checks.EXPECTED_COLLISION_CASES, lambda fn, case: fn(*case)),
}


# ---------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------


def test_registry_covers_every_exercise():
    assert sorted(checks.CHECKS) == ["0.1", "0.2", "1.1", "1.2", "2.1", "2.2", "3.1", "3.2", "3.3", "4.1", "4.2", "5.1", "5.2",
                                     "6.1", "6.2"]
    assert set(WRONG) == set(checks.CHECKS)
    for number, fn in checks.CHECKS.items():
        assert fn.__name__.startswith("check_")
        assert f"Exercise {number}" in (fn.__doc__ or ""), fn.__name__


@pytest.mark.parametrize("number", sorted(checks.CHECKS))
def test_reference_solution_passes(number, capsys):
    assert checks.CHECKS[number](reference(number)) is True
    assert capsys.readouterr().out.strip() == f"✅ Exercise {number} passed"


@pytest.mark.parametrize("number", sorted(checks.CHECKS))
def test_wrong_answers_fail_with_a_hint(number, capsys):
    for wrong, fragment in WRONG[number]:
        assert checks.CHECKS[number](wrong) is False, (number, wrong)
        out = capsys.readouterr().out.strip()
        assert out.startswith(f"❌ Exercise {number}: ") and "\n" not in out, out
        assert fragment in out, (number, fragment, out)


@pytest.mark.parametrize("number", sorted(checks.CHECKS))
def test_stub_is_not_done_yet(number, capsys):
    def stub(*args, **kwargs):
        raise NotImplementedError(f"Exercise {number}")

    assert checks.CHECKS[number](stub) is False
    assert capsys.readouterr().out.strip() == (
        f"⏳ Exercise {number}: not done yet — replace the NotImplementedError in the cell above")


@pytest.mark.parametrize("number", sorted(checks.CHECKS))
def test_other_errors_are_reported_not_raised(number, capsys):
    def broken(*args, **kwargs):
        raise ValueError("something odd")

    assert checks.CHECKS[number](broken) is False
    assert capsys.readouterr().out.strip() == (
        f"❌ Exercise {number}: your function raised ValueError: something odd")
    assert checks.CHECKS[number](lambda *a, **k: object()) is False  # a nonsense return value
    assert capsys.readouterr().out.startswith(f"❌ Exercise {number}: ")


def _value_strings(value: float) -> set[str]:
    value = float(value)
    if value in (0.0, 1.0):
        return set()  # too short to tell apart from the rest of a sentence
    return {repr(value), str(value), f"{value:.2f}", f"{value:.3f}", f"{value:.4f}", f"{value:.2%}",
            f"{value:.1%}"}


@pytest.mark.parametrize("number", sorted(NUMERIC))
def test_hints_never_show_expected_values(number, capsys):
    cases, apply = NUMERIC[number]
    ref = reference(number)
    expected = set().union(*(_value_strings(apply(ref, case)) for case in cases))
    assert expected
    for wrong, _ in WRONG[number]:
        checks.CHECKS[number](wrong)
        out = capsys.readouterr().out
        leaked = sorted(s for s in expected if s in out.split(":", 1)[1])
        assert not leaked, (number, out, leaked)


def test_query_hints_never_show_expected_queries(capsys):
    """Exercise 0.1: no hint prints the query (or a term of it) that the check expected."""
    from gensar_lib.data.queries import query_from_categories

    terms = {t for path in checks.CATEGORY_PATH_CASES for t in (query_from_categories(path) or "").split()}
    for wrong, _ in WRONG["0.1"]:
        checks.check_category_query(wrong)
        hint = capsys.readouterr().out.split(":", 1)[1]
        shown = sorted(t for t in terms if re.search(rf"\b{t}\b", hint))
        assert not shown, (hint, shown)


def test_array_hints_never_show_expected_values(capsys):
    """Non-numeric checks: the hints carry no item indices, codes or names of the expected answer."""
    for number in set(checks.CHECKS) - set(NUMERIC):
        for wrong, _ in WRONG[number]:
            checks.CHECKS[number](wrong)
            hint = capsys.readouterr().out.split(":", 1)[1]
            assert not re.search(r"\[\s*-?\d+\s*[,\]]", hint), (number, hint)  # no printed arrays or lists
            assert not re.search(r"'m\d+'|\{'", hint), (number, hint)  # no method names or sets


# ---------------------------------------------------------------------------
# The notebooks follow the convention
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", EXERCISE_NOTEBOOKS)
def test_notebook_exercises_follow_the_convention(name):
    exercises = notebook_exercises(name)
    assert len(exercises) >= 2, f"{name}: at least two exercises"
    notebook_number = int(name[:2])
    numbers = [ex["number"] for ex in exercises]
    assert numbers == [f"{notebook_number}.{m}" for m in range(1, len(exercises) + 1)], (name, numbers)
    for ex in exercises:
        where = f"{name} exercise {ex['number']}"
        source, cells = ex["source"], ex["cells"]
        assert ex["check"] and ex["function"], f"{where}: the next code cell must be one checks.check_<name>(fn) call"
        assert "check" in ex["check_tags"], f"{where}: the check cell must be tagged 'check'"
        assert checks.CHECKS[ex["number"]].__name__ == ex["check"], f"{where}: calls {ex['check']}"
        lines = [line.strip() for line in source.splitlines()]
        assert lines.count(BEGIN) == 1 and lines.count(END) == 1, f"{where}: one BEGIN and one END marker"
        begin = next(line for line in source.splitlines() if line.strip() == BEGIN)
        end = next(line for line in source.splitlines() if line.strip() == END)
        assert begin.index("#") == end.index("#") > 0, f"{where}: markers at the body's indentation"
        assert f"def {ex['function']}(" in source, f"{where}: the cell defines the checked function"
        assert len(re.findall(r"^def ", source, re.MULTILINE)) == 1, f"{where}: one top-level function"
        body = source[source.index(BEGIN):source.index(END)].splitlines()[1:]
        assert 1 <= len([b for b in body if b.strip() and not b.strip().startswith("#")]) <= 15, where
        # the markdown heading right before the solution cell belongs to this exercise
        previous = cells[ex["index"] - 1]
        assert previous["cell_type"] == "markdown" and f"### Exercise {ex['number']} — " in _source(previous), where
        # the solution cell is self-contained: it runs in a fresh namespace and defines the function
        assert callable(_define(source, ex["function"])), where
        # no later cell uses the exercise function
        for later in cells[ex["check_index"] + 1:]:
            if later["cell_type"] == "code":
                assert not re.search(rf"\b{ex['function']}\b", _source(later)), f"{where}: used after its check"


@pytest.mark.parametrize("name", EXERCISE_NOTEBOOKS)
def test_student_copy_prints_not_done_yet(name, capsys):
    """In the generated student copy, each exercise cell defines a stub and its check cell says "not done yet"."""
    exercises = notebook_exercises(name)
    assert exercises, f"{name}: no exercises"
    copy = student_notebook(nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4), name)
    for ex in exercises:
        exercise, check_cell = copy.cells[ex["index"] + 1], copy.cells[ex["check_index"] + 1]  # + the note cell
        assert "exercise" in _tags(exercise) and BEGIN not in exercise.source, (name, ex["number"])
        check_name, function = CHECK_CALL.match(check_cell.source.strip()).groups()
        assert getattr(checks, check_name)(_define(exercise.source, function)) is False
        assert capsys.readouterr().out.strip() == (
            f"⏳ Exercise {ex['number']}: not done yet — replace the NotImplementedError in the cell above")


@pytest.mark.parametrize("name", EXERCISE_NOTEBOOKS)
def test_notebooks_import_checks_and_frame_the_lesson(name):
    cells = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())["cells"]
    first = _source(cells[0])
    for needed in ("**You will learn**", "**Prerequisites:**", "**Runtime**", "| `tiny` (CI) |", "| `paper` |"):
        assert needed in first, (name, needed)
    footer = _source(cells[-1])
    assert cells[-1]["cell_type"] == "markdown" and "## Summary" in footer and "## What to try next" in footer, name
    assert footer.index("## Summary") < footer.index("## What to try next"), name
    code = "\n".join(_source(c) for c in cells if c["cell_type"] == "code")
    assert re.search(r"^from gensar_lib import (\w+, )*checks\b", code, re.MULTILINE), name
    assert not re.search(r"^checks\s*=", code, re.MULTILINE), f"{name}: a variable shadows the checks module"
    for cell in cells:
        if cell["cell_type"] == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None, f"{name}: committed with outputs"
