"""Self-checks for the notebook exercises (the classroom layer).

The convention, shared by the notebooks, the student-copy script and ``tests/test_checks.py``:

- An exercise is a markdown cell ``### Exercise N.M — <title>`` (N = the notebook's number, M = 1, 2, ...)
  that states the task, the function's signature and an example.
- It is followed by a code cell tagged ``solution``. The cell is self-contained: it imports what it needs at
  its top and defines one function, whose answer lies between a line ``# BEGIN SOLUTION`` and a line
  ``# END SOLUTION`` (at the body's indentation). The student copy replaces those lines, inclusive, by
  ``raise NotImplementedError("Exercise N.M")``.
- The next code cell is tagged ``check`` and is exactly one call, ``checks.check_<name>(<function>)``. No later
  cell uses the exercise function.

Every ``check_<name>(fn) -> bool`` below runs ``fn`` on several cases (edge cases included), compares with the
library's implementation or a brute-force reference, prints exactly one line and returns whether it passed:

- ``✅ Exercise N.M passed``;
- ``❌ Exercise N.M: <hint>``: the hint points at the likely mistake, never at the expected values;
- ``⏳ Exercise N.M: not done yet — replace the NotImplementedError in the cell above`` when ``fn`` raises
  ``NotImplementedError``.

A check never raises: any other exception of ``fn`` is reported as a failure with its type and message.
``CHECKS`` maps ``"N.M"`` to its check function. The case lists (``*_CASES``) are module constants so that the
tests can verify that no hint ever prints an expected value.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "CHECKS",
    "check_allowed_next",
    "check_category_query",
    "check_collision_rate",
    "check_cosine_neighbours",
    "check_expected_collision_rate",
    "check_hit_rate",
    "check_last_events",
    "check_leave_one_out_test",
    "check_ndcg",
    "check_nsip_prompt",
    "check_pareto_front",
    "check_prefix_group_sizes",
    "check_residual_quantize",
    "check_sinkhorn_plan",
    "check_vq_loss",
]


# ---------------------------------------------------------------------------
# The harness
# ---------------------------------------------------------------------------


class _Fail(Exception):
    """A wrong answer; the message is the hint shown to the student."""


class _Raised(Exception):
    """The student's function raised (anything but NotImplementedError)."""

    def __init__(self, exc: BaseException):
        super().__init__(str(exc))
        self.exc = exc


def _copy(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return list(value)
    return value


def _short(exc: BaseException, limit: int = 160) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _run(number: str, fn: Callable, body: Callable[[Callable], None]) -> bool:
    """Run ``body(student)`` where ``student`` calls ``fn`` on copies of its arguments; print one line."""

    def student(*args, **kwargs):
        try:
            return fn(*(_copy(a) for a in args), **{k: _copy(v) for k, v in kwargs.items()})
        except NotImplementedError:
            raise
        except Exception as exc:  # noqa: BLE001 - every student error becomes a hint
            raise _Raised(exc) from exc

    try:
        body(student)
    except NotImplementedError:
        print(f"⏳ Exercise {number}: not done yet — replace the NotImplementedError in the cell above")
        return False
    except _Fail as fail:
        print(f"❌ Exercise {number}: {fail}")
        return False
    except _Raised as raised:
        print(f"❌ Exercise {number}: your function raised {_short(raised.exc)}")
        return False
    except Exception as exc:  # noqa: BLE001 - an odd return value must not crash the notebook
        print(f"❌ Exercise {number}: could not check what your function returned ({_short(exc)}); "
              "check the type and shape of the return value")
        return False
    print(f"✅ Exercise {number} passed")
    return True


def _as_float(value: Any, what: str = "a number") -> float:
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise _Fail(f"return {what} (a float), not {type(value).__name__}") from exc
    return out


def _close(a: float, b: float, tol: float = 1e-9) -> bool:
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)


def _int_array(value: Any, what: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise _Fail(f"return {what} as a numpy array of integers")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise _Fail(f"return {what} as integers (indices), not fractional numbers")
        arr = arr.astype(np.int64)
    return arr


def _numeric(student, cases, call, expected, variants, edges, fallback: str, what: str) -> None:
    """Run a numeric exercise on every case; on a mismatch, name the mistake that explains all wrong cases.

    ``variants``: (hint, fn(case) -> the value a known mistake gives, or None); the first one that matches
    the student's value on every wrong case gives the hint. ``edges``: (hint, predicate(case, value)) tried
    next, on the wrong cases (``value`` is None when the function raised there). Exceptions raised on a case
    that an edge hint covers become that hint; any other is reported as raised.
    """
    values, raised = [], []
    for case in cases:
        try:
            values.append(_as_float(call(student, case), what))
            raised.append(None)
        except _Raised as exc:
            values.append(None)
            raised.append(exc)
    wrong = [i for i, (case, value) in enumerate(zip(cases, values))
             if value is None or not _close(value, expected(case))]
    if not wrong:
        return
    uncovered = [i for i in wrong if raised[i] is not None and not any(edge(cases[i], None) for _, edge in edges)]
    if uncovered:
        raise raised[uncovered[0]]
    answered = [i for i in wrong if values[i] is not None]
    if answered and len(answered) == len(wrong):
        for hint, variant in variants:
            guesses = [variant(cases[i]) for i in wrong]
            if all(g is not None and _close(values[i], float(g)) for i, g in zip(wrong, guesses)):
                raise _Fail(hint)
    for hint, predicate in edges:
        for i in wrong:
            if predicate(cases[i], values[i]):
                note = f" (yours raised {type(raised[i].exc).__name__})" if raised[i] is not None else ""
                raise _Fail(hint + note)
    first_raised = next((raised[i] for i in wrong if raised[i] is not None), None)
    if first_raised is not None:
        raise first_raised
    raise _Fail(fallback)


# ---------------------------------------------------------------------------
# Notebook 00: data
# ---------------------------------------------------------------------------


CATEGORY_PATH_CASES: list[tuple[str, ...]] = [
    ("Cell Phones & Accessories", "Cases"),
    ("Office Products", "Office & School Supplies", "Paper"),  # "office" again at the second level
    ("Toys & Games", "Games & Puzzles", "Jigsaw Puzzles"),  # repeats, and a term that comes back later
    ("Office & School Supplies", "Writing & Correction", "Pens & Refills", "Gel Ink Pens"),
    ("Clothing, Shoes & Jewelry", "Women's", "Shoes", "Boots"),  # a possessive, a comma
    ("Garden", "Hand Tools", "Pruning Shears"),  # "shears" stays as it is
    ("Electronics",),  # one level: no query
    (),
    ("All", "Other"),  # two levels of stop words only: no term left
]


def _query_variants(path: tuple[str, ...]) -> dict[str, Any]:
    """What known mistakes return for ``path``."""
    from gensar_lib.data.queries import text_terms

    terms = [t for level in path for t in text_terms(level)]
    per_level = [t for level in path for t in dict.fromkeys(text_terms(level))]
    plain = [w for level in path for w in level.lower().split()]
    return {"all terms": " ".join(terms), "per level": " ".join(per_level), "plain": " ".join(dict.fromkeys(plain))}


def check_category_query(fn: Callable) -> bool:
    """Exercise 0.1: ``fn(path)`` -> the Ai et al. query of a category path, or None (``query_from_categories``)."""

    def body(student):
        from gensar_lib.data.queries import query_from_categories

        for path in CATEGORY_PATH_CASES:
            expected, got = query_from_categories(path), student(list(path))
            if got == expected:
                continue
            if expected is None:
                if len(path) < 2:
                    raise _Fail("a path with fewer than two levels has no query: return None")
                if got == "":
                    raise _Fail("when no term is left (only stop words), return None, not an empty string")
                raise _Fail("when no term is left (only stop words), return None")
            if got is None:
                raise _Fail("a path of two or more levels with terms left has a query: return it, not None")
            if not isinstance(got, str):
                raise _Fail(f"return the query as one string (terms joined by single spaces), "
                            f"not {type(got).__name__}")
            variants = _query_variants(path)
            if got in (variants["all terms"], variants["per level"]):
                raise _Fail("a term already used (at a higher level or earlier in the same level) is dropped")
            if sorted(got.split()) == sorted(expected.split()):
                raise _Fail("the right terms in the wrong order: keep each term where it first appears, "
                            "from the top level down")
            if got == variants["plain"] or got.split() != [w for w in got.split() if w.isalnum()]:
                raise _Fail("build the terms of each level with text_terms: it lower-cases, drops stop words and "
                            "punctuation such as '&', and makes nouns singular")
            raise _Fail("the query is the text_terms of every level, top level first, each term once, joined by "
                        "single spaces")

    return _run("0.1", fn, body)


def _split_events() -> list[tuple[list, str]]:
    from gensar_lib.data.schema import Event

    # (time, item, query): a search event built from a review shares the review's time and item and is
    # listed right after it (the review twin)
    twins = [Event(0, 3), Event(1, 5, "pen"), Event(2, 7), Event(2, 7, "paper"), Event(3, 1),
             Event(4, 2, "pen"), Event(5, 4), Event(5, 4, "ink"), Event(6, 8), Event(7, 6),
             Event(7, 6, "tape")]
    plain = [Event(0, 1), Event(1, 2, "a"), Event(2, 3), Event(3, 4, "b"), Event(4, 5), Event(5, 6)]
    last_twin = [Event(0, 1, "x"), Event(1, 2), Event(2, 3, "y"), Event(3, 4), Event(3, 4, "z"), Event(4, 9)]
    return [(twins, "search"), (twins, "rec"), (plain, "rec"), (plain, "search"), (last_twin, "search"),
            (last_twin, "rec"), ([Event(0, 1), Event(1, 2), Event(2, 3)], "rec"), ([], "rec")]


SPLIT_CASES = _split_events()


def check_leave_one_out_test(fn: Callable) -> bool:
    """Exercise 0.2: ``fn(events, task)`` -> (test target, strict history) of one user's task, or None
    (``leave_one_out``)."""

    def body(student):
        from gensar_lib.data.schema import Dataset, Item
        from gensar_lib.data.splits import leave_one_out

        for events, task in SPLIT_CASES:
            ds = Dataset("check", [Item(str(i), f"item {i}") for i in range(10)], ["u"], [list(events)])
            case = next((c for c in leave_one_out(ds, "strict").test if c.task == task), None)
            got = student(list(events), task)
            if case is None:
                if got is not None:
                    raise _Fail("with fewer than 3 events of the task, all of them are training targets: "
                                "return None")
                continue
            if got is None:
                raise _Fail("this user has at least 3 events of the task: return its test case, not None")
            if not isinstance(got, tuple | list) or len(got) != 2:
                raise _Fail("return a pair (target, history)")
            target, history = got
            of_task = [e for e in events if e.task == task]
            if tuple(target) != tuple(case.target):
                if getattr(target, "task", task) != task or tuple(target) not in {tuple(e) for e in of_task}:
                    raise _Fail("the target is an event of the asked task")
                if len(of_task) >= 2 and tuple(target) == tuple(of_task[-2]):
                    raise _Fail("the second last event of the task is the validation target; the test target "
                                "is the last")
                raise _Fail("the test target is the user's last event of the task")
            history = [tuple(e) for e in history]
            if history == [tuple(e) for e in case.history]:
                continue
            listed = [tuple(e) for e in events[:events.index(case.target)]]
            if history == listed:
                raise _Fail("that is every event listed before the target (the official pipeline): it holds "
                            "the target's review twin; keep only events strictly earlier in time")
            if history == [tuple(e) for e in case.history if e.task == task]:
                raise _Fail("the history holds the earlier events of both tasks, not only of the target's task")
            if sorted(history) == sorted(tuple(e) for e in case.history):
                raise _Fail("keep the history in the order of the events (time order)")
            if any(e[0] >= case.target.time for e in history if len(e)):
                raise _Fail("an event at the target's time (or later) is not earlier: keep only strictly "
                            "earlier times")
            raise _Fail("the history is every event, of either task, with a time strictly earlier than the "
                        "target's")

    return _run("0.2", fn, body)


# ---------------------------------------------------------------------------
# Notebook 01: embeddings
# ---------------------------------------------------------------------------


def _neighbour_cases() -> list[tuple[np.ndarray, int, int]]:
    rng = np.random.default_rng(11)
    x = rng.normal(size=(30, 8))
    x *= rng.uniform(0.2, 5.0, size=(30, 1))  # unequal lengths: a dot product ranks differently from cosine
    y = rng.normal(size=(12, 3)) * rng.uniform(0.1, 10.0, size=(12, 1))
    return [(x, 0, 5), (x, 17, 1), (x, 29, 10), (y, 4, 11), (y, 11, 3)]


NEIGHBOUR_CASES = _neighbour_cases()


def check_cosine_neighbours(fn: Callable) -> bool:
    """Exercise 1.1: ``fn(embeddings, item, k)`` -> the k most cosine-similar other items, best first."""

    def body(student):
        from gensar_lib.embeddings import nearest_neighbours

        for emb, item, k in NEIGHBOUR_CASES:
            expected = nearest_neighbours(emb, k)[item]
            got = _int_array(student(emb, item, k), "the neighbours").ravel()
            if len(got) != k:
                raise _Fail("return exactly k item indices (a 1-D array of length k)")
            if np.array_equal(got, expected):
                continue
            if item in got:
                raise _Fail("an item is not its own neighbour: leave the item itself out")
            dots = emb @ emb[item]
            dots[item] = -np.inf
            if set(got) == set(np.argsort(-dots)[:k]) and set(got) != set(expected):
                raise _Fail("that ranks by the dot product; cosine similarity divides by both vectors' lengths")
            if set(got) == set(expected):
                raise _Fail("the right items, in the wrong order: the most similar neighbour comes first")
            raise _Fail("some of these are not among the k most cosine-similar items")

    return _run("1.1", fn, body)


HIT_RATE_CASES: list[tuple[list[int], int]] = [
    ([0, 3, 9, 10, -1, 2], 10),
    ([0, 3, 9, 10, -1, 2], 3),
    ([0, 3, 9, 10, -1, 2, 1, 7], 1),
    ([5, 4, 4, 0, -1, -1, 12], 5),
    ([-1, -1, -1], 5),
    ([], 10),
]


def check_hit_rate(fn: Callable) -> bool:
    """Exercise 1.2: ``fn(ranks, k)`` -> the share of cases with 0 <= rank < k (rank -1: not found)."""

    def body(student):
        from gensar_lib.metrics import hit_rate

        def arr(case):
            return np.array(case[0], dtype=np.int64)

        def share(mask):
            return float(mask.mean()) if len(mask) else None

        _numeric(
            student, HIT_RATE_CASES, lambda s, c: s(arr(c), c[1]), lambda c: hit_rate(arr(c), c[1]),
            variants=[
                ("a rank of -1 means the target was not found: it is never a hit", lambda c: share(arr(c) < c[1])),
                ("ranks are 0-based: the top k are the ranks 0 to k - 1",
                 lambda c: share((arr(c) >= 0) & (arr(c) <= c[1]))),
                ("return the share of cases (between 0 and 1), not the number of hits",
                 lambda c: float(((arr(c) >= 0) & (arr(c) < c[1])).sum())),
            ],
            edges=[("with no cases (an empty array) return 0.0", lambda c, v: not c[0]),
                   ("the result is nan or infinite; a hit rate is a share of cases between 0 and 1",
                    lambda c, v: v is not None and not math.isfinite(v))],
            fallback="the hit rate is the share of cases whose target is among the top k",
            what="the hit rate",
        )

    return _run("1.2", fn, body)


# ---------------------------------------------------------------------------
# Notebook 02: residual quantisation
# ---------------------------------------------------------------------------


def _rq_reference(x: np.ndarray, codebooks: list[np.ndarray], use_input: bool = False, dot: bool = False):
    residual = np.asarray(x, np.float64).copy()
    codes = []
    for cb in codebooks:
        source = np.asarray(x, np.float64) if use_input else residual
        if dot:
            c = (source @ cb.T).argmax(1)
        else:
            c = ((source[:, None, :] - cb[None, :, :]) ** 2).sum(-1).argmin(1)
        codes.append(c)
        residual = residual - cb[c]
    return np.stack(codes, 1), residual


def _rq_cases() -> list[tuple[np.ndarray, list[np.ndarray]]]:
    rng = np.random.default_rng(22)
    x = rng.normal(size=(25, 4))
    books = [rng.normal(size=(6, 4)), 0.5 * rng.normal(size=(6, 4)), 0.25 * rng.normal(size=(5, 4))]
    y = rng.normal(size=(9, 2)) + 3.0
    return [
        (x, books),
        (x, books[:1]),  # one level
        (y, [rng.normal(size=(1, 2)), rng.normal(size=(4, 2))]),  # a codebook of one code
    ]


RQ_CASES = _rq_cases()


def check_residual_quantize(fn: Callable) -> bool:
    """Exercise 2.1: ``fn(x, codebooks)`` -> (codes [N, L], final residual [N, D])."""

    def body(student):
        for x, books in RQ_CASES:
            exp_codes, exp_res = _rq_reference(x, books)
            out = student(x, [b.copy() for b in books])
            if not isinstance(out, tuple | list) or len(out) != 2:
                raise _Fail("return a pair (codes, residual)")
            codes, residual = _int_array(out[0], "the codes"), np.asarray(out[1], dtype=np.float64)
            if codes.shape != exp_codes.shape:
                if codes.shape == exp_codes.T.shape:
                    raise _Fail("codes should have one row per item and one column per level")
                raise _Fail("codes should have shape [number of items, number of codebooks]")
            if not np.array_equal(codes, exp_codes):
                if np.array_equal(codes[:, 0], exp_codes[:, 0]):
                    if np.array_equal(codes, _rq_reference(x, books, use_input=True)[0]):
                        raise _Fail("each level must quantise the residual left by the levels above, not the input")
                    raise _Fail("level 1 is right; a later level is not the nearest code of the current residual")
                if np.array_equal(codes[:, 0], _rq_reference(x, books, dot=True)[0][:, 0]):
                    raise _Fail("pick the nearest code by Euclidean distance, not the largest dot product")
                raise _Fail("level 1's codes are not the nearest codes (squared distance) of the input")
            if residual.shape != exp_res.shape:
                raise _Fail("the residual should have the input's shape [number of items, dimension]")
            if not np.allclose(residual, exp_res, atol=1e-6):
                if np.allclose(residual, x - books[-1][codes[:, -1]], atol=1e-6):
                    raise _Fail("the residual must subtract the chosen code vectors of every level, not only the last")
                raise _Fail("the codes are right but the residual is not: input minus the sum of the chosen "
                            "code vectors")

    return _run("2.1", fn, body)


def _sinkhorn_cases() -> list[tuple[np.ndarray, float, int]]:
    rng = np.random.default_rng(33)
    return [
        (rng.uniform(size=(12, 4)), 0.1, 50),
        (rng.uniform(size=(8, 8)), 0.05, 20),
        (rng.uniform(size=(3, 5)), 0.2, 10),  # fewer items than codes
        (rng.uniform(size=(10, 3)), 0.1, 1),  # a single iteration: the order of the steps matters
    ]


SINKHORN_CASES = _sinkhorn_cases()


def check_sinkhorn_plan(fn: Callable) -> bool:
    """Exercise 2.2: ``fn(distances, epsilon, iters)`` -> the balanced plan Q [B, K] (columns sum to B/K)."""

    def body(student):
        from gensar_lib.quantize import sinkhorn

        for d, eps, iters in SINKHORN_CASES:
            b, k = d.shape
            expected = sinkhorn(d, eps, iters, normalise=False).numpy()
            got = np.asarray(student(d, eps, iters), dtype=np.float64)
            if got.shape != (b, k):
                raise _Fail("return a plan of shape [number of items, number of codes]")
            if not np.all(np.isfinite(got)):
                raise _Fail("the plan holds inf or nan; with these distances exp(-d / epsilon) stays finite")
            if np.allclose(got, expected, rtol=1e-6, atol=1e-10):
                continue
            cols, rows = got.sum(0), got.sum(1)
            if (got * d).sum() > (expected * d).sum() + 1e-9 and np.corrcoef(got.ravel(), d.ravel())[0, 1] > 0:
                raise _Fail("a small distance must get a large weight: start from exp(-distance / epsilon)")
            if np.allclose(cols, 1.0) and b != k:
                raise _Fail("columns should carry B / K each (the items' mass spread evenly over the codes), not 1")
            if not np.allclose(cols, b / k):
                if np.allclose(rows, 1.0):
                    raise _Fail("end every iteration with the column step, so that columns sum to B / K")
                raise _Fail("after the last step every column should sum to B / K")
            raise _Fail("columns balance, but the plan differs: run exactly iters rounds, rows first, then columns")

    return _run("2.2", fn, body)


# ---------------------------------------------------------------------------
# Notebook 03: identifiers
# ---------------------------------------------------------------------------


def _collision_cases() -> list[np.ndarray]:
    rng = np.random.default_rng(44)
    return [
        np.array([[1, 2], [1, 2], [1, 3], [4, 5]]),
        np.array([[1, 23], [12, 3], [5, 5]]),  # joined as strings, these two rows would look equal
        np.array([[0, 0, 1], [0, 0, 1], [0, 0, 1], [2, 0, 1], [0, 2, 1]]),  # a group of three
        np.array([[7, 1], [7, 2], [7, 3], [8, 1]]),  # the first column alone collides, the IDs do not
        np.array([[3, 3, 3]]),  # a single item
        np.array([[2, 2]] * 4),  # everybody the same
        rng.integers(0, 4, size=(200, 3)),
    ]


COLLISION_CASES = _collision_cases()


def _collision_variants(codes: np.ndarray) -> dict[str, float]:
    rows = [tuple(r) for r in codes.tolist()]
    counts: dict[tuple, int] = {}
    for r in rows:
        counts[r] = counts.get(r, 0) + 1
    n = len(rows)
    groups = [c for c in counts.values() if c > 1]
    first = len(set(codes[:, 0].tolist()))
    joined = len({"".join(map(str, r)) for r in rows})
    return {
        "groups": len(groups) / n,
        "members": sum(groups) / n,
        "first": (n - first) / n,
        "joined": (n - joined) / n,
    }


def check_collision_rate(fn: Callable) -> bool:
    """Exercise 3.1: ``fn(codes [N, L])`` -> (N - number of distinct rows) / N."""

    def body(student):
        from gensar_lib.identifiers import collision_rate

        _numeric(
            student, COLLISION_CASES, lambda s, c: s(c), collision_rate,
            variants=[
                ("an identifier is the whole row (every level), not its first code",
                 lambda c: _collision_variants(c)["first"]),
                ("compare rows as tuples: joining codes into one string makes different IDs look equal",
                 lambda c: _collision_variants(c)["joined"]),
                ("the first item of a group keeps its ID; only the others collide (N minus the number of "
                 "distinct IDs)", lambda c: _collision_variants(c)["members"]),
                ("count colliding items, not the number of groups of items that share an ID",
                 lambda c: _collision_variants(c)["groups"]),
                ("return the share of items (divide by the number of items)",
                 lambda c: len(c) - len({tuple(r) for r in c.tolist()})),
            ],
            edges=[("a single item cannot collide", lambda c, v: len(c) == 1)],
            fallback="the rate is the number of items minus the number of distinct IDs, over the number of items",
            what="the collision rate",
        )

    return _run("3.1", fn, body)


def _prefix_cases() -> list[tuple[np.ndarray, int]]:
    rng = np.random.default_rng(55)
    small = np.array([[1, 2, 3], [1, 2, 4], [1, 3, 3], [2, 2, 3], [1, 2, 3], [2, 5, 5], [9, 0, 0]])
    big = rng.integers(0, 3, size=(60, 4))
    return [(small, 1), (small, 2), (small, 3), (big, 2), (big, 1), (big, 4)]


PREFIX_CASES = _prefix_cases()


def check_prefix_group_sizes(fn: Callable) -> bool:
    """Exercise 3.2: ``fn(codes, depth)`` -> sizes of the groups of items sharing their first ``depth`` codes."""

    def body(student):
        from gensar_lib.identifiers import items_per_prefix

        for codes, depth in PREFIX_CASES:
            expected = items_per_prefix(codes, depth=depth).tolist()
            got = _int_array(student(codes, depth), "the group sizes").ravel().tolist()
            if got == expected:
                continue
            if sorted(got) == sorted(expected):
                raise _Fail("the right sizes in the wrong order: largest first")
            if sorted(got) == sorted(s for s in expected if s > 1):
                raise _Fail("keep the prefixes that only one item has too: the sizes add up to the number of items")
            if depth < codes.shape[1]:
                column = items_per_prefix(codes[:, depth], depth=None).tolist()
                if sorted(got) == sorted(column):
                    raise _Fail("a prefix is the first depth codes together, not the code at position depth")
            if depth > 1 and sorted(got) == sorted(items_per_prefix(codes, depth=depth - 1).tolist()):
                raise _Fail("that groups by one code too few: a prefix of depth d holds the codes 0 to d - 1")
            if sum(got) != len(codes):
                raise _Fail("the sizes must add up to the number of items (every item has one prefix)")
            raise _Fail("group items whose first depth codes are all equal, and return each group's size")

    return _run("3.2", fn, body)


def _vq_cases() -> list[tuple[np.ndarray, np.ndarray, float]]:
    rng = np.random.default_rng(55)

    def case(n, k, d, beta, scale=1.0):
        return (rng.normal(size=(n, d)).astype(np.float32), (scale * rng.normal(size=(k, d))).astype(np.float32),
                beta)

    return [
        case(20, 6, 4, 0.25),
        case(12, 8, 5, 0.5),
        case(15, 4, 2, 1.0),  # beta 1: both terms weigh the same
        case(9, 1, 3, 0.25),  # a codebook of one code
        case(1, 5, 3, 0.25, scale=3.0),  # a single item
    ]


VQ_CASES = _vq_cases()


def check_vq_loss(fn: Callable) -> bool:
    """Exercise 3.3: ``fn(residual [N, d], codebook [K, d], beta)`` -> one level's VQ loss (a 0-d tensor) whose
    gradients are those of ``VQLevel``: the codebook term moves only the codes, the commitment term only the
    residual."""

    def body(student):
        import torch

        from gensar_lib.quantize import VQLevel

        def nearest(x, book, dot=False):
            d = x @ book.T if dot else -((x[:, None, :] - book[None]) ** 2).sum(-1)
            return book[d.argmax(1)]

        for res, book, beta in VQ_CASES:
            level = VQLevel(len(book), book.shape[1], beta=beta, ema_decay=0.0)
            with torch.no_grad():
                level.codebook.copy_(torch.from_numpy(book))
            r_ref = torch.tensor(res, requires_grad=True)
            _, _, ref = level(r_ref)
            ref.backward()
            ref_r, ref_c = r_ref.grad.numpy(), level.codebook.grad.numpy()

            r, c = torch.tensor(res, requires_grad=True), torch.tensor(book, requires_grad=True)
            out = student(r, c, beta)
            if not isinstance(out, torch.Tensor):
                raise _Fail("return the loss as a torch tensor computed from residual and codebook (not a float "
                            "or an array), so that backward() can run on it")
            if out.numel() != 1:
                raise _Fail("return one number (a 0-d tensor): average each term over items and dimensions")
            value = float(out.detach())
            if not math.isclose(value, ref.item(), rel_tol=1e-5, abs_tol=1e-7):
                sq = (res - nearest(res, book)) ** 2
                mean, n = float(sq.mean()), sq.shape[1]
                guesses = [
                    ("average over every entry (items x dimensions), as F.mse_loss does, not only over the items",
                     (1 + beta) * mean * n),
                    ("average the squared differences, do not sum them", (1 + beta) * float(sq.sum())),
                    ("add both terms: the codebook term plus beta times the commitment term", mean),
                    ("add both terms: the codebook term plus beta times the commitment term", beta * mean),
                    ("weight the commitment term by beta", 2 * mean),
                    ("pick each residual's nearest code (the smallest squared distance), not the largest dot "
                     "product", (1 + beta) * float(((res - nearest(res, book, dot=True)) ** 2).mean())),
                ]
                for hint, guess in guesses:
                    if math.isclose(value, guess, rel_tol=1e-5, abs_tol=1e-7):
                        raise _Fail(hint)
                raise _Fail("the value is off: with e the nearest code vector of each residual, the loss is "
                            "mean((sg(r) - e)^2) + beta * mean((r - sg(e))^2)")
            if not out.requires_grad:
                raise _Fail("the loss carries no gradient: in each term detach one side only, not both")
            try:
                out.backward()
            except RuntimeError as exc:
                raise _Fail(f"backward() failed on your loss ({_short(exc, 80)})") from exc
            got_r = np.zeros_like(res) if r.grad is None else r.grad.numpy()
            got_c = np.zeros_like(book) if c.grad is None else c.grad.numpy()

            def same(a, b):
                return np.allclose(a, b, rtol=1e-4, atol=1e-7)

            if same(got_r, ref_r) and same(got_c, ref_c):
                continue
            if beta != 1.0 and same(got_r, ref_r / beta) and same(got_c, beta * ref_c):
                raise _Fail("beta weights the commitment term (the one that moves the residual), not the codebook "
                            "term")
            if not same(got_r, ref_r):
                if same(got_r, (1 + beta) / beta * ref_r):
                    raise _Fail("the codebook term must not move the residual: detach the residual in it")
                if not np.any(got_r) and np.any(ref_r):
                    raise _Fail("the commitment term must move the residual: detach only the code vectors in it")
            if not same(got_c, ref_c):
                if same(got_c, (1 + beta) * ref_c):
                    raise _Fail("the commitment term must not move the codebook: detach the code vectors in it")
                if not np.any(got_c) and np.any(ref_c):
                    raise _Fail("the codebook term must move the chosen codes: detach only the residual in it")
            raise _Fail("the value is right, the gradients are not: in each term, detach the side that the term "
                        "must not move")

    return _run("3.3", fn, body)


# ---------------------------------------------------------------------------
# Notebook 04: instructions
# ---------------------------------------------------------------------------


NSIP_CASES: list[tuple[str, str]] = [
    ("<rec_item><shared_a_1><shared_b_2><collab_a_3><collab_b_4>; <src_query> usb cable "
     "<src_item><shared_a_1><shared_b_7><semantic_a_0><semantic_b_5>", "usb cable"),
    ("none", "stainless kettle"),
    ("<rec_item><shared_a_9><shared_b_9><collab_a_9><collab_b_9>", 'tripod "compact"'),
]


def check_nsip_prompt(fn: Callable) -> bool:
    """Exercise 4.1: ``fn(history, query)`` -> an NSIP prompt in new wording holding the history and the query."""

    def body(student):
        from gensar_lib.instructions import TEMPLATES

        for history, query in NSIP_CASES:
            got = student(history, query)
            if not isinstance(got, str):
                raise _Fail("return the prompt as a string")
            if "{history}" in got or "{query}" in got:
                raise _Fail("fill the placeholders in: render the template with str.format (or an f-string)")
            if history not in got:
                raise _Fail("the prompt must contain the rendered history exactly as given")
            if query not in got:
                raise _Fail("the prompt must contain the query exactly as given")
            rest = got.replace(history, " ").replace(query, " ")
            if len(re.findall(r"[A-Za-z]+", rest)) < 3:
                raise _Fail("add instruction words around the history and the query, so the model knows the task")
            if got in {t.format(history=history, query=query) for t in TEMPLATES["NSIP"]}:
                raise _Fail("that is one of the library's NSIP templates: write a template of your own")
            if student(history, query) != got:
                raise _Fail("the prompt changes from call to call: render one fixed template")

    return _run("4.1", fn, body)


def _events():
    from gensar_lib.data.schema import Event

    # (time, item, query): times are unique; tasks interleave
    pattern = [None, "usb cable", None, None, "kettle", "usb hub", None, "tripod", None, None, "kettle", None]
    return [Event(t, (3 * t) % 7, q) for t, q in enumerate(pattern, start=1)]


def _last_events_cases():
    events = _events()
    rec_only = [e for e in events if e.query is None]
    return [(events, 2), (events, 1), (events, 3), (events, 0), (events, 10), (rec_only, 2), ([], 3)]


def _fake_ids(n_items: int = 7):
    from gensar_lib.identifiers import ItemIdentifiers

    sem = tuple((f"<shared_a_{i}>", f"<semantic_a_{i}>") for i in range(n_items))
    col = tuple((f"<shared_a_{i}>", f"<collab_a_{i}>") for i in range(n_items))
    vocab = tuple(sorted({t for ident in sem + col for t in ident}))
    return ItemIdentifiers(tuple(str(i) for i in range(n_items)), sem, col, vocab, n_items)


def check_last_events(fn: Callable) -> bool:
    """Exercise 4.2: ``fn(history, length)`` -> the events ``render_history(history, ids, length)`` writes."""

    def body(student):
        from gensar_lib.instructions import render_events, render_history

        ids = _fake_ids()
        for history, length in _last_events_cases():
            expected_text = render_history(history, ids, length)
            got = student(list(history), length)
            try:
                got = list(got)
                got_text = render_events(got, ids)
            except Exception as exc:  # noqa: BLE001
                raise _Fail(f"return a list of the history's events ({_short(exc, 80)})") from exc
            if got_text == expected_text:
                continue
            if length == 0 and got:
                raise _Fail("with length 0 no event is kept (careful: lst[-0:] is the whole list)")
            if any(e not in history for e in got):
                raise _Fail("return events taken from the history, unchanged")
            kept = [e for e in history if e in got]
            if len(got) == len(kept) and sorted(got, key=lambda e: e.time) == kept and got != kept:
                raise _Fail("merge the kept events in time order (earliest first)")
            if length and got == list(history)[-2 * length:]:
                raise _Fail("keep the last length events of each task separately, not of the whole history")
            rec = sum(e.query is None for e in got)
            if rec > length or len(got) - rec > length:
                raise _Fail("keep at most length recommendation events and at most length search events")
            raise _Fail("keep the most recent length events of each task (recommendation: query is None) and "
                        "merge them in time order")

    return _run("4.2", fn, body)


# ---------------------------------------------------------------------------
# Notebook 05: decoding and metrics
# ---------------------------------------------------------------------------


def _trie_cases() -> list[tuple[np.ndarray, list[int]]]:
    small = np.array([[5, 7, 1], [5, 8, 2], [6, 7, 1], [5, 7, 3], [9, 9, 9], [5, 8, 2]])
    rng = np.random.default_rng(66)
    big = rng.integers(100, 104, size=(40, 4))
    return [
        (small, []), (small, [5]), (small, [5, 7]), (small, [6]), (small, [5, 8]),
        (small, [7]),  # no identifier starts with it
        (small, [5, 7, 1]),  # a complete identifier
        (big, []), (big, big[3, :1].tolist()), (big, big[5, :2].tolist()), (big, big[8, :3].tolist()),
        (big, big[0].tolist()),
    ]


TRIE_CASES = _trie_cases()


def check_allowed_next(fn: Callable) -> bool:
    """Exercise 5.1: ``fn(codes, prefix)`` -> sorted tokens that may follow ``prefix`` (the trie's answer)."""

    def body(student):
        from gensar_lib.decoding import ItemTrie

        for codes, prefix in TRIE_CASES:
            try:
                expected = ItemTrie(codes).allowed_next_tokens(prefix)
            except KeyError:
                expected = []
            complete, unknown = len(prefix) == codes.shape[1], not expected and len(prefix) < codes.shape[1]
            try:
                out = student(codes, list(prefix))
            except _Raised as raised:
                if complete:
                    raise _Fail(f"a complete identifier has no next token: return an empty list "
                                f"(yours raised {type(raised.exc).__name__})") from raised
                if unknown:
                    raise _Fail(f"when no identifier starts with the prefix, return an empty list "
                                f"(yours raised {type(raised.exc).__name__})") from raised
                raise
            got = [int(t) for t in np.asarray(out).ravel().tolist()]
            if got == expected:
                continue
            if complete:
                raise _Fail("a complete identifier has no next token: return an empty list")
            if unknown:
                raise _Fail("when no identifier starts with the prefix, return an empty list")
            if len(set(got)) != len(got):
                raise _Fail("list each allowed token once")
            if sorted(got) == expected:
                raise _Fail("return the allowed tokens in ascending order")
            if prefix:
                last = codes[codes[:, len(prefix) - 1] == prefix[-1], len(prefix)]
                if sorted(set(got)) == sorted(set(last.tolist())) and sorted(set(got)) != expected:
                    raise _Fail("an identifier must match the whole prefix, not only its last token")
            raise _Fail("take the identifiers that start with the whole prefix and collect the token at the "
                        "next position")

    return _run("5.1", fn, body)


NDCG_CASES: list[tuple[list[int], int]] = [
    ([0, 1, 2, 5, -1, 9, 10], 10),
    ([0, 1, 2, 5, -1, 9, 10], 5),
    ([0, 1, 2, 5, -1, 9, 10], 1),
    ([3, 3, 7, 0, 4], 4),
    ([-1, -1], 10),
    ([], 5),
]


def check_ndcg(fn: Callable) -> bool:
    """Exercise 5.2: ``fn(ranks, k)`` -> mean of 1 / log2(rank + 2) over cases, 0 outside the top k."""

    def body(student):
        from gensar_lib.metrics import ndcg

        def arr(case):
            return np.array(case[0], dtype=np.int64)

        def gains(case, log=np.log2, inclusive=False, reduce="mean"):
            r, k = arr(case), case[1]
            if not len(r):
                return None
            hit = (r >= 0) & ((r <= k) if inclusive else (r < k))
            g = np.where(hit, 1.0 / log(np.maximum(r, 0) + 2.0), 0.0)
            return float(g.sum() if reduce == "sum" else g.mean())

        _numeric(
            student, NDCG_CASES, lambda s, c: s(arr(c), c[1]), lambda c: ndcg(arr(c), c[1]),
            variants=[
                ("use the logarithm to base 2", lambda c: gains(c, log=np.log)),
                ("use the logarithm to base 2", lambda c: gains(c, log=np.log10)),
                ("ranks are 0-based: only the ranks 0 to k - 1 are in the top k", lambda c: gains(c, inclusive=True)),
                ("return the mean over cases, not the sum", lambda c: gains(c, reduce="sum")),
            ],
            edges=[("with no cases (an empty array) return 0.0", lambda c, v: not c[0]),
                   ("the result is not finite: rank 0 is the best position (careful with log2(1) = 0), and a rank "
                    "of -1 means not found", lambda c, v: v is not None and not math.isfinite(v))],
            fallback="a case with rank r in the top k contributes 1 / log2(r + 2), any other case 0; a rank of -1 "
                     "means not found",
            what="the NDCG",
        )

    return _run("5.2", fn, body)


# ---------------------------------------------------------------------------
# Notebook 06: the identifier ablation
# ---------------------------------------------------------------------------


def _pareto_reference(points: dict[str, tuple[float, float]]) -> set[str]:
    def dominates(a, b) -> bool:
        return a[0] >= b[0] and a[1] >= b[1] and (a[0] > b[0] or a[1] > b[1])

    return {n for n, p in points.items() if not any(dominates(q, p) for m, q in points.items() if m != n)}


def _pareto_cases() -> list[dict[str, tuple[float, float]]]:
    rng = np.random.default_rng(77)
    spread = {f"m{i}": (float(a), float(b)) for i, (a, b) in enumerate(np.round(rng.uniform(size=(15, 2)), 1))}
    return [
        {"a": (1.0, 1.0), "b": (2.0, 2.0), "c": (0.0, 3.0)},
        {"a": (1.0, 2.0), "b": (1.0, 3.0)},  # equal on one coordinate, better on the other
        {"a": (1.0, 1.0), "b": (1.0, 1.0)},  # identical points do not dominate each other
        {"x": (0.5, 0.5)},
        spread,
        {},
    ]


PARETO_CASES = _pareto_cases()


def check_pareto_front(fn: Callable) -> bool:
    """Exercise 6.1: ``fn(points)`` -> the names of the methods no other method dominates."""

    def body(student):
        for points in PARETO_CASES:
            expected = _pareto_reference(points)
            out = student(dict(points))
            try:
                got = set(out)
            except TypeError as exc:
                raise _Fail("return a set of method names") from exc
            if got == expected:
                continue
            if not got <= set(points):
                raise _Fail("return names of the methods (the dictionary's keys)")
            if len(points) == 2 and len(set(points.values())) == 1:
                raise _Fail("two identical points do not dominate each other: dominating needs > on at least "
                            "one coordinate")
            if set(points) - expected and got == set(points) - expected:
                raise _Fail("return the methods that are NOT dominated")
            if got > expected:
                raise _Fail("a point that is at least as good on both coordinates and better on one dominates, "
                            "even when equal on the other")
            raise _Fail("some methods on your front are dominated, or some undominated ones are missing")

    return _run("6.1", fn, body)


EXPECTED_COLLISION_CASES: list[tuple[int, int]] = [(1, 10), (2, 2), (5, 1), (1000, 4096), (300, 65536),
                                                   (2420, 256 ** 2), (50, 7)]


def check_expected_collision_rate(fn: Callable) -> bool:
    """Exercise 6.2: ``fn(n_items, n_ids)`` -> expected share of items whose ID another item also draws."""

    def body(student):
        from gensar_lib.codestats import chance_collision_rate, chance_shared_share

        def birthday(c):
            n, m = c
            return 1.0 - math.prod((m - i) / m for i in range(min(n, m + 1)))

        _numeric(
            student, EXPECTED_COLLISION_CASES, lambda s, c: s(*c), lambda c: chance_shared_share(*c),
            variants=[
                ("that is the chance that any two items collide; the question is the share of items whose own "
                 "ID another item also draws", birthday),
                ("an item shares its ID with one of the other items: it cannot collide with itself",
                 lambda c: 1.0 - (1.0 - 1.0 / c[1]) ** c[0]),
                ("that is the expected (N - distinct IDs) / N; here every item of a shared ID counts",
                 lambda c: chance_collision_rate(*c)),
                ("chances do not add up over the other items: work with the chance that none of them draws the "
                 "item's ID", lambda c: (c[0] - 1) / c[1]),
                ("chances do not add up over the other items: work with the chance that none of them draws the "
                 "item's ID", lambda c: min(1.0, (c[0] - 1) / c[1])),
            ],
            edges=[("a single item cannot collide with anybody", lambda c, v: c[0] == 1),
                   ("with a single ID every item collides, as soon as there are two items", lambda c, v: c[1] == 1)],
            fallback="think of one item: it collides unless every other item draws a different ID",
            what="the expected rate",
        )

    return _run("6.2", fn, body)


CHECKS: dict[str, Callable[[Callable], bool]] = {
    "0.1": check_category_query,
    "0.2": check_leave_one_out_test,
    "1.1": check_cosine_neighbours,
    "1.2": check_hit_rate,
    "2.1": check_residual_quantize,
    "2.2": check_sinkhorn_plan,
    "3.1": check_collision_rate,
    "3.2": check_prefix_group_sizes,
    "3.3": check_vq_loss,
    "4.1": check_nsip_prompt,
    "4.2": check_last_events,
    "5.1": check_allowed_next,
    "5.2": check_ndcg,
    "6.1": check_pareto_front,
    "6.2": check_expected_collision_rate,
}
