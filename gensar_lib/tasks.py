"""The two tasks and the instruction families, declared once below every other module (notebook 04_instructions).

A recommendation is answered with an item's collaborative ID after ``<rec_item>``, a search with its
semantic ID after ``<src_item>`` (``docs/method.md`` section 3); :func:`task_side` is the one place that
says so. This module imports nothing from the library, so that ``config`` may check a profile's task mix
against :data:`TASK_FAMILIES` without importing the instruction builder.
"""
from __future__ import annotations

from dataclasses import dataclass

REC_TOKEN, SRC_TOKEN, QUERY_TOKEN = "<rec_item>", "<src_item>", "<src_query>"
BEHAVIOUR_TOKENS = (REC_TOKEN, SRC_TOKEN, QUERY_TOKEN)
TASK_FAMILIES = ("NRIP", "NSIP", "NSQP", "ITEM2ID", "ID2ITEM", "QUERY2ID")


@dataclass(frozen=True)
class TaskSide:
    """What a task generates: which of an item's two IDs (``ItemIdentifiers`` field), after which behaviour token."""

    ids: str
    token: str


SIDES: dict[str, TaskSide] = {"rec": TaskSide("collaborative", REC_TOKEN), "search": TaskSide("semantic", SRC_TOKEN)}


def task_side(task: str) -> TaskSide:
    """The ID and behaviour token of a task (``rec`` or ``search``); ValueError names an unknown task."""
    if task not in SIDES:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(SIDES)}")
    return SIDES[task]
