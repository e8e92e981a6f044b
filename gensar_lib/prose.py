"""Sentences printed from measured values, in whichever direction the numbers go (every notebook).

A notebook never types "A is higher than B" about a number it measured: it prints
``prose.compare("A", a, "B", b)``, which says "higher", "lower" or "level with" from the values, and
``prose.holds(...)`` for a statement that the run either bears out or not. ``prose.trend`` sizes how a
sequence of values moves. Each returns the sentence; the notebook prints it.
"""
from __future__ import annotations

import math
from collections.abc import Sequence


def _fmt(value: float, digits: int) -> str:
    """``value`` with about ``digits`` significant figures, never in exponent form."""
    value = float(value)
    if value.is_integer():
        return str(int(value))
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if decimals else text


def compare(subject: str, value: float, other: str, other_value: float, *, verb: str = "is",
            more: str = "higher than", less: str = "lower than", level: str = "level with",
            tolerance: float = 0.0, digits: int = 3) -> str:
    """"<subject> <verb> <more|less|level> <other> (value against other_value)." The two values count as
    level when they differ by at most ``tolerance``.

    >>> compare("the shared levels", 0.61, "the specific ones", 0.98, verb="use", more="more codes than",
    ...         less="fewer codes than")
    'the shared levels use fewer codes than the specific ones (0.61 against 0.98).'
    """
    if abs(value - other_value) <= tolerance:
        word = level
    else:
        word = more if value > other_value else less
    words = " ".join(w for w in (subject, verb, word, other) if w)
    return f"{words} ({_fmt(value, digits)} against {_fmt(other_value, digits)})."


def holds(statement: str, condition: bool, *, because: str = "") -> str:
    """"'<statement>' holds here" or "does NOT hold here", with what decided it.

    >>> holds("semantic IDs help search more", False, because="semantic-only wins rec by more")
    "'semantic IDs help search more' does NOT hold here: semantic-only wins rec by more."
    """
    verdict = "holds" if condition else "does NOT hold"
    return f"'{statement}' {verdict} here" + (f": {because}." if because else ".")


def trend(name: str, values: Sequence[float], *, step: str = "step", plural: bool = False, digits: int = 3) -> str:
    """How ``values`` move, sized: "<name> grows from a to b (x times; the largest step: step k, ×f)".

    Each step's factor is its value over the one before; "grows" or "falls" is said only where every step
    goes that way, otherwise "moves".

    >>> trend("distinct code tuples", [64, 583, 1070, 1076], step="level", plural=True)
    'distinct code tuples grow from 64 to 1076 over 4 levels (x16.8 in all; the largest step is level 2, x9.11).'
    """
    values = [float(v) for v in values]
    if len(values) < 2:
        raise ValueError(f"trend needs at least two values, got {values}")
    pairs = list(zip(values, values[1:]))
    if all(b > a for a, b in pairs):
        word = "grows"
    elif all(b < a for a, b in pairs):
        word = "falls"
    else:
        word = "moves"
    if plural:
        word = word[:-1]
    first, last = values[0], values[-1]
    text = f"{name} {word} from {_fmt(first, digits)} to {_fmt(last, digits)} over {len(values)} {step}s"
    if all(v > 0 for v in values):
        factors = [b / a for a, b in pairs]
        k = max(range(len(factors)), key=lambda i: abs(factors[i] - 1) if factors[i] >= 1
                else abs(1 / factors[i] - 1))
        text += (f" (x{_fmt(last / first, digits)} in all; the largest step is {step} {k + 2}, "
                 f"x{_fmt(factors[k], digits)})")
    return text + "."
