"""Leave-one-out splits per user and per task, with leak-free histories (notebook 00_data).

For each user and each task (recommendation, search) the last event is the test
target, the second last the validation target, the rest are training targets.
A task with fewer than 3 events for a user keeps all of them for training.

Two history protocols:

- ``strict`` (default): a case's history is every event with ``time`` strictly
  earlier than the target's. A search event built from a review shares the
  review's time, so its review twin never enters its history. Training cases
  that are the twin of a held-out target of the other task are dropped, so the
  model is never trained on "this history -> this item" for an item it is later
  tested on with the same history.
- ``official``: the official GenSAR pipeline's behaviour (see
  ``docs/method.md`` section 5): the history is every event
  listed before the target, so a search target's own review twin sits in its
  history, and twins of held-out targets stay in training.
"""
from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field

from gensar_lib.data.schema import TASKS, DataError, Dataset, Event

PARTS = ("train", "valid", "test")


@dataclass(frozen=True)
class Case:
    """One prediction: a user's target event and the events the model may see."""

    user: int
    target: Event
    history: tuple[Event, ...]

    @property
    def task(self) -> str:
        return self.target.task


@dataclass
class Split:
    protocol: str
    train: list[Case] = field(default_factory=list)
    valid: list[Case] = field(default_factory=list)
    test: list[Case] = field(default_factory=list)

    def part(self, name: str) -> list[Case]:
        if name not in PARTS:
            raise ValueError(f"unknown split part {name!r}; choose one of {PARTS}")
        return getattr(self, name)

    def cases(self, part: str, task: str) -> list[Case]:
        """The cases of one part and task, in user order."""
        return [c for c in self.part(part) if c.task == task]

    def counts(self) -> dict[str, dict[str, int]]:
        """Cases per part and task."""
        return {p: dict(Counter(c.task for c in self.part(p))) for p in PARTS}


def history(
    seq: list[Event], position: int, protocol: str = "strict", times: list[int] | None = None
) -> tuple[Event, ...]:
    """The events a model may see when predicting ``seq[position]`` (``times``: the seq's times)."""
    if protocol == "official":
        return tuple(seq[:position])
    if protocol == "strict":
        times = times if times is not None else [e.time for e in seq]
        return tuple(seq[: bisect.bisect_left(times, seq[position].time)])
    raise DataError(f"unknown protocol {protocol!r} (field 'protocol'); use 'strict' or 'official'")


def leave_one_out(ds: Dataset, protocol: str = "strict") -> Split:
    """Split every user's events per task into train / valid / test cases."""
    split = Split(protocol=protocol)
    for u, seq in enumerate(ds.sequences):
        held: dict[int, str] = {}
        for task in TASKS:
            positions = [i for i, e in enumerate(seq) if e.task == task]
            if len(positions) >= 3:
                held[positions[-1]] = "test"
                held[positions[-2]] = "valid"
        twins = {(seq[i].time, seq[i].item) for i in held}
        times = [e.time for e in seq]
        for i, ev in enumerate(seq):
            part = held.get(i, "train")
            if part == "train" and protocol == "strict" and (ev.time, ev.item) in twins:
                continue
            split.part(part).append(Case(u, ev, history(seq, i, protocol, times)))
    return split


def leaked_cases(cases: list[Case]) -> int:
    """How many cases have their own target item at the same time in their history (a twin leak)."""
    return sum(
        any(h.time == c.target.time and h.item == c.target.item for h in c.history) for c in cases
    )
