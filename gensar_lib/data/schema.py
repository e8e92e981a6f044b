"""The one dataset schema every stage consumes; taught in notebook 00_data.

Items carry text; each user has a time-ordered list of events. An event is a
recommendation event (``query is None``: the user interacted with an item
without searching) or a search event (a query and the clicked item).
``time`` orders events; a search event built from a review (the
semi-synthetic protocol) shares its review twin's ``time``, so "strictly
earlier" histories never contain the twin.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple


class DataError(ValueError):
    """Bad input data; the message names the file (or source), field and value."""


class DataWarning(UserWarning):
    """Input data that loads but will not give what the run expects (e.g. no search events)."""


@dataclass(frozen=True)
class Item:
    id: str
    title: str
    description: str = ""
    brand: str = ""
    categories: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """Title and description, the text the encoders and BM25 see."""
        return f"{self.title} {self.description}".strip()


class Event(NamedTuple):
    time: int
    item: int  # index into Dataset.items
    query: str | None = None

    @property
    def task(self) -> str:
        return "rec" if self.query is None else "search"


TASKS = ("rec", "search")


@dataclass
class Dataset:
    """Items, users and their event sequences (sorted by time, stable)."""

    name: str
    items: list[Item]
    users: list[str]
    sequences: list[list[Event]]
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_users(self) -> int:
        return len(self.users)

    def item_index(self) -> dict[str, int]:
        """External item id -> index."""
        return {item.id: i for i, item in enumerate(self.items)}

    def events(self, task: str | None = None):
        """All (user index, event) pairs, optionally of one task."""
        for u, seq in enumerate(self.sequences):
            for ev in seq:
                if task is None or ev.task == task:
                    yield u, ev


def validate(ds: Dataset, min_user_events: int = 3) -> Dataset:
    """Check the schema; raise DataError naming the source, field and value."""
    src = ds.source or ds.name
    if not ds.items:
        raise DataError(f"{src}: empty catalogue (no items)")
    if not ds.users:
        raise DataError(f"{src}: no users")
    if len(ds.users) != len(ds.sequences):
        raise DataError(f"{src}: {len(ds.users)} users but {len(ds.sequences)} sequences")
    ids = [it.id for it in ds.items]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"{src}: duplicate item id {dup!r}")
    for it in ds.items:
        if not isinstance(it.title, str) or not isinstance(it.description, str):
            raise DataError(f"{src}: item {it.id!r} field 'title'/'description' must be text")
    for user, seq in zip(ds.users, ds.sequences):
        n_rec = 0
        last = None
        for ev in seq:
            if not 0 <= ev.item < ds.n_items:
                raise DataError(f"{src}: user {user!r} field 'item' has unknown item index {ev.item!r}")
            if ev.query is not None and not ev.query.strip():
                raise DataError(f"{src}: user {user!r} has a search event with an empty 'query'")
            if last is not None and ev.time < last:
                raise DataError(f"{src}: user {user!r} events are not in time order at time {ev.time}")
            last = ev.time
            n_rec += ev.query is None
        if n_rec < min_user_events:
            raise DataError(
                f"{src}: user {user!r} has {n_rec} recommendation events; "
                f"leave-one-out needs at least {min_user_events} (field 'min_user_events')"
            )
    return ds
