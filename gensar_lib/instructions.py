"""Instruction data: search and recommendation as text-to-identifier generation (notebook 04_instructions).

Task families (``docs/method.md`` section 3; declared in :mod:`gensar_lib.tasks`):

- ``NRIP``, next recommendation item prediction: history -> ``<rec_item>`` + collaborative ID;
- ``NSIP``, next search item prediction: history + query -> ``<src_item>`` + semantic ID;
- ``NSQP``, next search query prediction: history -> ``<src_query>`` + the query;
- alignment between identifiers and language: item text -> ID (semantic and collaborative IDs
  alternate), ID -> item title, and query -> semantic ID. The paper's pseudo-queries come from a
  doc2query model; here the item's category-path query (``query_from_categories``) plays that role.

A history is the last ``H`` recommendation events (``<rec_item>`` + collaborative ID) and the last
``H`` search sessions (``<src_query>`` query ``<src_item>`` + semantic ID), merged in time order.
Identifier tokens are written without spaces between them. The templates are our own paraphrases (the
paper's are not published); each training instance draws one with a seed, evaluation always uses the
first.

Departure (``prompts="compact"``, the small profile): instead of the paraphrased templates, one short
template per family (:data:`COMPACT_TEMPLATES`) that ends with a task word right after the most
recent event, and for NSIP with the query after it. A T5 trained from scratch at a classroom budget
finds the last item or the query inside varying paraphrases late: after 800 steps the first identifier
code stayed at a uniform guess for two seeds of three, and compact prompts over 2 events left that
plateau sooner (``lab/benchmarks/first_code.py``; lab/LOG.md, "why the small models sit near chance"). The paper's instructions come from LC-Rec-style templates read by a
pretrained t5-small; the ``paper`` profile keeps the paraphrases.

Departure: the paper joins history entries with "; "; we join them with a space
(:data:`HISTORY_SEPARATOR`). Every entry starts with a behaviour token, which already delimits it,
and with the corpus-trained tokenizer "; " cost two tokens per entry: about a quarter of a prompt's
tokens, hence of the encoder's training time (notebook 04; ``docs/method.md``, section 6).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from gensar_lib.data.queries import query_from_categories
from gensar_lib.data.schema import Dataset, Event
from gensar_lib.data.splits import Case
from gensar_lib.identifiers import ItemIdentifiers
from gensar_lib.tasks import QUERY_TOKEN, TASK_FAMILIES, task_side
HISTORY_SEPARATOR = " "  # between history entries (the paper: "; "; see the module docstring)
TITLE_WORDS = 24  # item text in alignment prompts is cut to this many words

TEMPLATES: dict[str, tuple[str, ...]] = {
    "NRIP": (
        "History: {history}. Recommend the next item.",
        "Given the user's past activity {history}, which item comes next?",
        "A user did this: {history}. Predict the item they will interact with next.",
        "Activity so far: {history}. What should we recommend now?",
        "Based on {history}, suggest the user's next item.",
    ),
    "NSIP": (
        "History: {history}. Query: {query}. Find the item.",
        "The user, after {history}, searches for \"{query}\". Which item will they click?",
        "Search \"{query}\" from a user whose history is {history}. Return the best item.",
        "Given {history}, the user types \"{query}\". Predict the clicked item.",
        "Query \"{query}\" with history {history}: which item matches?",
    ),
    "NSQP": (
        "History: {history}. Predict the next query.",
        "Given the user's past activity {history}, what will they search for next?",
        "A user did this: {history}. Write their next search query.",
        "Activity so far: {history}. Guess the next query.",
        "Based on {history}, what query comes next?",
    ),
    "ITEM2ID": (
        "Item: {text}. Give its identifier.",
        "Which identifier belongs to the item \"{text}\"?",
        "Map this product to its ID: {text}",
        "Product description: {text}. Output the item ID.",
        "Identify the item: {text}",
    ),
    "ID2ITEM": (
        "Item {id}. Give its title.",
        "What is the title of item {id}?",
        "Describe the product with identifier {id}.",
        "Name the item {id}.",
        "Which product has the ID {id}?",
    ),
    "QUERY2ID": (
        "Query: {query}. Find a matching item.",
        "Which item answers the search \"{query}\"?",
        "Retrieve an item for the query \"{query}\".",
        "A shopper searches \"{query}\". Return an item.",
        "Find the product for: {query}",
    ),
}

# One template per family: the task word sits right after the most recent event (or is the prompt's
# start for the alignment families), so that its place never moves (module docstring).
COMPACT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "NRIP": ("{history} recommend",),
    "NSIP": ("{history} search {query}",),
    "NSQP": ("{history} next query",),
    "ITEM2ID": ("item {text}",),
    "ID2ITEM": ("title {id}",),
    "QUERY2ID": ("query {query}",),
}
PROMPT_STYLES: dict[str, dict[str, tuple[str, ...]]] = {"paraphrases": TEMPLATES, "compact": COMPACT_TEMPLATES}


def templates(prompts: str) -> dict[str, tuple[str, ...]]:
    """The templates of a prompt style (``paraphrases`` or ``compact``); ValueError names an unknown one."""
    if prompts not in PROMPT_STYLES:
        raise ValueError(f"unknown prompt style {prompts!r}; choose one of {sorted(PROMPT_STYLES)}")
    return PROMPT_STYLES[prompts]


def _template(family: str, template: int, prompts: str) -> str:
    options = templates(prompts)[family]
    return options[template % len(options)]


@dataclass(frozen=True)
class Instruction:
    """One source -> target training or evaluation instance."""

    task: str
    source: str
    target: str
    user: int = -1
    item: int = -1


@dataclass(frozen=True)
class TaskMix:
    """How many instances of each family go into training (multipliers of the available ones)."""

    weights: dict[str, float] = field(
        default_factory=lambda: {"NRIP": 1.0, "NSIP": 1.0, "NSQP": 0.2, "ITEM2ID": 1.0, "ID2ITEM": 0.5, "QUERY2ID": 0.5}
    )

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(TASK_FAMILIES)
        if unknown or any(w < 0 for w in self.weights.values()):
            raise ValueError(f"task mix: unknown families {sorted(unknown)} or negative weights in {self.weights}")

    @classmethod
    def of(cls, pairs: Sequence[tuple[str, float]] | None) -> TaskMix:
        """The mix of a profile's ``train.task_mix`` pairs; ``None``: the default mix."""
        return cls() if pairs is None else cls(dict(pairs))

    def restricted(self, families: Sequence[str]) -> TaskMix:
        """This mix without the families outside ``families`` (the single-task ablation runs)."""
        return TaskMix({f: w for f, w in self.weights.items() if f in families})


def identifier(ids: ItemIdentifiers, item: int, task: str) -> str:
    """An item's ID for a task (``rec`` or ``search``) as text: behaviour token + identifier tokens, no spaces."""
    return task_side(task).token + "".join(ids.for_task(task)[item])


def render_event(ev: Event, ids: ItemIdentifiers) -> str:
    """One history entry: a recommendation item, or a search session (query + clicked item)."""
    if ev.query is None:
        return identifier(ids, ev.item, "rec")
    return f"{QUERY_TOKEN} {ev.query} {identifier(ids, ev.item, 'search')}"


def kept_events(history: Sequence[Event], length: int) -> list[Event]:
    """The last ``length`` events of each task, merged in time order (what a prompt shows)."""
    rec = [e for e in history if e.query is None][-length:] if length else []
    search = [e for e in history if e.query is not None][-length:] if length else []
    return sorted(rec + search, key=lambda e: e.time)


def render_events(events: Sequence[Event], ids: ItemIdentifiers) -> str:
    """Events as prompt text, joined by :data:`HISTORY_SEPARATOR`; ``none`` for no event."""
    return HISTORY_SEPARATOR.join(render_event(e, ids) for e in events) or "none"


def render_history(history: Sequence[Event], ids: ItemIdentifiers, length: int) -> str:
    """The last ``length`` events of each task, merged in time order, as prompt text (notebook 04)."""
    return render_events(kept_events(history, length), ids)


def _item_text(ds: Dataset, item: int) -> str:
    return " ".join(ds.items[item].text.split()[:TITLE_WORDS])


def source_text(
    family: str, history: Sequence[Event], ids: ItemIdentifiers, length: int, template: int = 0,
    query: str | None = None, prompts: str = "paraphrases",
) -> str:
    """The prompt of a history-based family (NRIP, NSIP, NSQP) with template ``template`` of a style."""
    hist = render_history(history, ids, length)
    return _template(family, template, prompts).format(history=hist, query=query)


def case_instructions(case: Case, ids: ItemIdentifiers, length: int, template: int,
                      prompts: str = "paraphrases") -> list[Instruction]:
    """NRIP for a recommendation case; NSIP and NSQP for a search case."""
    t, item, user, h = case.target, case.target.item, case.user, case.history
    if t.query is None:
        return [Instruction("NRIP", source_text("NRIP", h, ids, length, template, prompts=prompts),
                            identifier(ids, item, "rec"), user, item)]
    return [
        Instruction("NSIP", source_text("NSIP", h, ids, length, template, t.query, prompts),
                    identifier(ids, item, "search"), user, item),
        Instruction("NSQP", source_text("NSQP", h, ids, length, template, prompts=prompts),
                    f"{QUERY_TOKEN} {t.query}", user, item),
    ]


def alignment_instructions(ds: Dataset, ids: ItemIdentifiers, item: int, template: int,
                           prompts: str = "paraphrases") -> list[Instruction]:
    """Item text -> ID (kind alternates with the item index), ID -> title, and query -> semantic ID."""
    kind = "search" if item % 2 == 0 else "rec"
    out = [
        Instruction("ITEM2ID", _template("ITEM2ID", template, prompts).format(text=_item_text(ds, item)),
                    identifier(ids, item, kind), item=item),
        Instruction("ID2ITEM", _template("ID2ITEM", template, prompts).format(id=identifier(ids, item, kind)),
                    ds.items[item].title or _item_text(ds, item), item=item),
    ]
    query = query_from_categories(ds.items[item].categories)
    if query:
        out.append(Instruction("QUERY2ID", _template("QUERY2ID", template, prompts).format(query=query),
                               identifier(ids, item, "search"), item=item))
    return out


def _apply_mix(pool: dict[str, list[Instruction]], mix: TaskMix, rng: np.random.Generator) -> list[Instruction]:
    out: list[Instruction] = []
    for family in TASK_FAMILIES:
        items, weight = pool.get(family, []), mix.weights.get(family, 0.0)
        whole, frac = int(weight), weight - int(weight)
        out += items * whole
        if items and frac:
            keep = rng.choice(len(items), size=int(round(frac * len(items))), replace=False)
            out += [items[i] for i in sorted(keep)]
    order = rng.permutation(len(out))
    return [out[i] for i in order]


def training_instructions(
    ds: Dataset,
    train_cases: Sequence[Case],
    ids: ItemIdentifiers,
    history_length: int = 5,
    mix: TaskMix | None = None,
    seed: int = 0,
    prompts: str = "paraphrases",
) -> list[Instruction]:
    """Every family's training instances, one random template of the style each, mixed by ``mix`` and
    shuffled."""
    rng = np.random.default_rng(seed)
    pool: dict[str, list[Instruction]] = {f: [] for f in TASK_FAMILIES}
    for case in train_cases:
        for ins in case_instructions(case, ids, history_length, int(rng.integers(5)), prompts):
            pool[ins.task].append(ins)
    for item in range(ds.n_items):
        for ins in alignment_instructions(ds, ids, item, int(rng.integers(5)), prompts):
            pool[ins.task].append(ins)
    return _apply_mix(pool, mix or TaskMix(), rng)


def evaluation_instructions(cases: Sequence[Case], ids: ItemIdentifiers, history_length: int = 5,
                            prompts: str = "paraphrases") -> list[Instruction]:
    """NRIP for recommendation cases, NSIP for search cases, with the style's fixed first template."""
    return [case_instructions(c, ids, history_length, 0, prompts)[0] for c in cases]
