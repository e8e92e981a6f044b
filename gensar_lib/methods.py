"""The methods of the identifier ablation and their properties, declared once (notebook 06_identifier_ablation).

Every list the ablation, its tables and its figures need (the identifier variants, the single-ID ones, the
single-task runs, labels, colours, the default ``AblationConfig.methods``) is read from :data:`METHODS`
(name -> :class:`Method`, in the order of tables and figures).
This module imports nothing from the library, so that ``config`` can take its default from it.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    """One generative method: its name, its label in tables and figures, its colour, whether one ID serves
    both tasks (``single_id``), and for a single-task run the task families it keeps from the profile's mix."""

    name: str
    label: str
    colour: str
    single_id: bool = False
    families: tuple[str, ...] = ()  # empty: an identifier variant trained on the whole mix


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("gensar", "GenSAR (shared + specific)", "C0"),
    Method("semantic", "semantic-only (TIGER)", "C1", single_id=True),
    Method("collaborative", "collaborative-only", "C2", single_id=True),
    Method("concatenated", "concatenated embedding", "C3", single_id=True),
    Method("separate", "separate sem. + collab. (no shared)", "C4"),
    Method("random", "random IDs", "C5", single_id=True),
    Method("gensar-rec-only", "GenSAR, rec. data only", "C6", families=("NRIP", "ITEM2ID", "ID2ITEM")),
    Method("gensar-search-only", "GenSAR, search data only", "C7",
           families=("NSIP", "NSQP", "ITEM2ID", "ID2ITEM", "QUERY2ID")),
)}
METHOD_NAMES: tuple[str, ...] = tuple(METHODS)
IDENTIFIER_VARIANTS: tuple[str, ...] = tuple(n for n, m in METHODS.items() if not m.families)
SINGLE_ID: tuple[str, ...] = tuple(n for n, m in METHODS.items() if m.single_id)  # one ID serves both tasks
SINGLE_TASK: dict[str, tuple[str, ...]] = {n: m.families for n, m in METHODS.items() if m.families}
# the baselines of gensar_lib.baselines, as tables and figures name them
BASELINE_LABELS = {
    "popularity": "popularity", "query-popularity": "query popularity", "sasrec": "SASRec", "bm25": "BM25",
    "dense": "dense (MiniLM)", "query-popularity+sasrec": "query popularity + SASRec", "bm25+sasrec": "BM25 + SASRec",
    "personal-search": "personalised search (TEM-like)", "joint": "joint search + rec. (UniSAR-like)",
}
LABELS: dict[str, str] = {**{n: m.label for n, m in METHODS.items()}, **BASELINE_LABELS}
