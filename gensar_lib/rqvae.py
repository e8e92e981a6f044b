"""The RQ-VAE stage: item embeddings -> one trained RQ-VAE per identifier type -> identifiers after
collision handling (cached; notebooks 01 to 03 and the command line's ``identifiers``).

``item_embeddings`` -> ``identifier_model`` (the cached RQ-VAE) -> ``identifiers``. Identifier types
(the paper's Fig. 5):

- ``gensar``: the joint RQ-VAE; each item gets a semantic ID (shared + semantic codes) and a
  collaborative ID (shared + collaborative codes);
- ``semantic`` / ``collaborative`` / ``concatenated``: a TIGER-style RQ-VAE over one embedding
  (the concatenation of both, for the last), giving one ID used for both tasks.

What the codes carry is measured in :mod:`gensar_lib.structure`.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from gensar_lib.artifacts import ArtifactCache, write_json
from gensar_lib.config import Profile
from gensar_lib.data.pipeline import PreparedData
from gensar_lib.devices import resolve_device
from gensar_lib.embeddings import cached_collaborative_embeddings, cached_semantic_embeddings
from gensar_lib.identifiers import (
    ItemIdentifiers,
    build_joint_identifiers,
    build_single_identifiers,
    identifier_stats,
    to_json,
    token_vectors,
)
from gensar_lib.quantize import JointRQVAE, SingleRQVAE, train_rqvae
from gensar_lib.stages import STAGES

IdentifierType = Literal["gensar", "semantic", "collaborative", "concatenated"]
STRATEGY = "paper"
# The checkpoint rule: reconstruction from the codes plus code entropy (quantize.checkpoint_score).
# Departure: the official code keeps the epoch with the fewest collisions ("best_collision").
SELECT = "recon_entropy"


@dataclass
class ItemEmbeddings:
    """Semantic (sentence encoder) and collaborative (SASRec table, rescaled) item embeddings."""

    semantic: np.ndarray
    collaborative: np.ndarray

    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.semantic.tobytes())
        digest.update(self.collaborative.tobytes())
        return digest.hexdigest()[:16]

    def inputs(self, kind: IdentifierType) -> tuple[np.ndarray, ...]:
        """The RQ-VAE input(s) of an identifier type."""
        return KINDS[kind].inputs(self)


@dataclass(frozen=True)
class JointKind:
    """GenSAR's identifiers: a joint RQ-VAE over both embeddings gives each item a semantic and a
    collaborative ID with a shared prefix."""

    name: str = "gensar"

    def inputs(self, emb: ItemEmbeddings) -> tuple[np.ndarray, ...]:
        return emb.semantic, emb.collaborative

    def rqvae(self, input_dims: tuple[int, ...], profile: Profile) -> JointRQVAE:
        return JointRQVAE(*input_dims, profile.quantize, seed=profile.seed)

    def assign(self, module: JointRQVAE, inputs: tuple[np.ndarray, ...], profile: Profile, strategy: str,
               item_ids: list[str]) -> tuple[ItemIdentifiers, Any]:
        shared, sem, col = module.encode_codes(*inputs)
        d_sem, d_col = module.last_level_distances(*inputs)
        return build_joint_identifiers(shared, sem, col, profile.quantize.codebook_size, strategy,
                                       semantic_distances=d_sem, collab_distances=d_col, cfg=profile.quantize,
                                       item_ids=item_ids)

    def reports(self, handling: dict) -> dict[str, dict]:
        """The collision-handling report of each task's ID: GenSAR handles its two IDs apart."""
        return handling

    def labelled_reports(self, handling: dict) -> list[tuple[str, dict]]:
        """(table label, report) of each distinct ID."""
        return [(f"GenSAR {name} ID", rep) for name, rep in handling.items()]


@dataclass(frozen=True)
class SingleKind:
    """A TIGER-style RQ-VAE over one embedding (``fields``, concatenated when two): one ID for both tasks."""

    name: str
    title: str
    fields: tuple[str, ...]

    def inputs(self, emb: ItemEmbeddings) -> tuple[np.ndarray, ...]:
        return (np.concatenate([getattr(emb, f) for f in self.fields], axis=1),)

    def rqvae(self, input_dims: tuple[int, ...], profile: Profile) -> SingleRQVAE:
        return SingleRQVAE(input_dims[0], profile.quantize, kind=self.name, seed=profile.seed)

    def assign(self, module: SingleRQVAE, inputs: tuple[np.ndarray, ...], profile: Profile, strategy: str,
               item_ids: list[str]) -> tuple[ItemIdentifiers, Any]:
        return build_single_identifiers(module.encode_codes(inputs[0]), profile.quantize.codebook_size, self.name,
                                        strategy, last_distances=module.last_level_distances(inputs[0]),
                                        cfg=profile.quantize, item_ids=item_ids)

    def reports(self, handling: dict) -> dict[str, dict]:
        """The one ID serves both tasks, so both share its collision-handling report."""
        return {"semantic": handling, "collaborative": handling}

    def labelled_reports(self, handling: dict) -> list[tuple[str, dict]]:
        """(table label, report) of each distinct ID: the one."""
        return [(self.title, handling)]


KINDS: dict[str, JointKind | SingleKind] = {k.name: k for k in (
    JointKind(),
    SingleKind("semantic", "semantic-only", ("semantic",)),
    SingleKind("collaborative", "collaborative-only", ("collaborative",)),
    SingleKind("concatenated", "concatenated", ("semantic", "collaborative")),
)}
IDENTIFIER_TYPES: tuple[str, ...] = tuple(KINDS)
SINGLE_LABELS = {k.name: k.title for k in KINDS.values() if isinstance(k, SingleKind)}


def item_embeddings(
    prepared: PreparedData, profile: Profile, cache: ArtifactCache | None = None, progress: bool = True
) -> ItemEmbeddings:
    """Both embeddings of every item (cached; notebook 01_embeddings).

    The SASRec table is divided by its mean row norm so that both inputs of the RQ-VAE live on the
    scale of unit vectors (the semantic rows are L2-normalised); the paper feeds UniSAR's table as is.
    """
    cache = cache or ArtifactCache()
    sem = cached_semantic_embeddings(prepared.dataset, profile.embeddings, cache, progress, profile.device)
    col = cached_collaborative_embeddings(
        prepared.dataset, prepared.split, profile.embeddings, profile.seed, cache, progress, profile.device
    )
    col = col / np.linalg.norm(col, axis=1).mean()
    return ItemEmbeddings(sem.astype(np.float32), col.astype(np.float32))


@dataclass
class IdentifierModel:
    """A trained RQ-VAE of one identifier type, with its training curves."""

    kind: str
    state: dict
    history: dict
    input_dims: tuple[int, ...]

    def tree(self) -> dict[str, Any]:
        """What the cache stores (:func:`gensar_lib.artifacts.write_tree`): the state as tensors."""
        return {"kind": self.kind, "state": self.state, "history": self.history, "input_dims": list(self.input_dims)}

    @classmethod
    def from_tree(cls, tree: dict[str, Any]) -> IdentifierModel:
        """The model :meth:`tree` stored."""
        return cls(tree["kind"], tree["state"], tree["history"], tuple(int(d) for d in tree["input_dims"]))

    def module(self, profile: Profile) -> JointRQVAE | SingleRQVAE:
        """The trained RQ-VAE on ``profile.device``, in eval mode."""
        model = build_rqvae(self.kind, self.input_dims, profile)
        model.load_state_dict(self.state)
        return model.to(resolve_device(profile.device)).eval()


def build_rqvae(kind: str, input_dims: tuple[int, ...], profile: Profile) -> JointRQVAE | SingleRQVAE:
    """An untrained RQ-VAE for an identifier type, sized by the profile."""
    return KINDS[kind].rqvae(input_dims, profile)


def identifier_model(
    kind: IdentifierType,
    emb: ItemEmbeddings,
    profile: Profile,
    cache: ArtifactCache | None = None,
    progress: bool = True,
) -> IdentifierModel:
    """Train (or load) the RQ-VAE of one identifier type (cached; notebooks 02 and 03), on
    ``profile.device`` (``quantize`` places the inputs beside the model; the cached state is on the CPU)."""
    cache = cache or ArtifactCache()
    inputs = emb.inputs(kind)

    def make() -> IdentifierModel:
        model = build_rqvae(kind, tuple(x.shape[1] for x in inputs), profile).to(resolve_device(profile.device))
        history = train_rqvae(model, inputs if len(inputs) > 1 else inputs[0], profile.quantize,
                              profile.seed, progress, select=SELECT)
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        return IdentifierModel(kind, state, history.as_dict(), tuple(x.shape[1] for x in inputs))

    stage = STAGES["rqvae"]
    return cache.cached(f"{stage.name}_{kind}", {**stage.config(profile), "select": SELECT}, make,
                        [emb.fingerprint(), stage.code()], encode=IdentifierModel.tree,
                        decode=IdentifierModel.from_tree)


@dataclass
class Identifiers:
    """Item identifiers of one type, before and after collision handling."""

    kind: str
    ids: ItemIdentifiers
    stats: dict  # identifier_stats after handling, including the handling report (before/after)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # each token's codebook vector (token_vectors)


@torch.no_grad()
def identifiers(
    kind: IdentifierType,
    prepared: PreparedData,
    emb: ItemEmbeddings,
    model: IdentifierModel,
    profile: Profile,
    strategy: str = STRATEGY,
) -> Identifiers:
    """Assign identifiers from a trained RQ-VAE and handle collisions (notebook 03_identifiers)."""
    module = model.module(profile)
    ids, reports = KINDS[kind].assign(module, emb.inputs(kind), profile, strategy,
                                      [it.id for it in prepared.dataset.items])
    return Identifiers(kind, ids, identifier_stats(ids, reports), token_vectors(module.codebooks()))


def collision_table(results: dict[str, Identifiers]) -> list[dict]:
    """Collision rate before and after handling per identifier (the rows of the paper's Fig. 5)."""
    rows = []
    for kind, res in results.items():
        for label, rep in KINDS[kind].labelled_reports(res.stats["handling"]):
            rows.append({"identifier": label, "before": rep["before"], "after": rep["after"],
                         "strategy": rep["strategy"]})
    return rows


def write_identifier_files(out: str | Path, results: dict[str, Identifiers], structure: dict | None = None,
                           prefixes: dict | None = None) -> tuple[Path, Path]:
    """``identifiers.json`` (GenSAR IDs per item) and ``identifier_stats.json`` (all types; with
    ``structure`` from :func:`identifier_structure` and ``prefix_structure`` from
    :func:`prefix_structure` when given), atomically."""
    out = Path(out)
    ids_path = write_json(out / "identifiers.json", to_json(results["gensar"].ids))
    stats = {"collision_rates": collision_table(results), "types": {k: r.stats for k, r in results.items()}}
    if structure is not None:
        stats["structure"] = structure
    if prefixes is not None:
        stats["prefix_structure"] = prefixes
    return ids_path, write_json(out / "identifier_stats.json", stats)


def all_identifiers(
    prepared: PreparedData,
    profile: Profile,
    kinds: tuple[str, ...] = IDENTIFIER_TYPES,
    strategy: str = STRATEGY,
    cache: ArtifactCache | None = None,
    progress: bool = True,
) -> dict[str, Identifiers]:
    """Embeddings -> RQ-VAE -> identifiers for each type (the command line's ``identifiers``)."""
    emb = item_embeddings(prepared, profile, cache, progress)
    return {
        kind: identifiers(kind, prepared, emb, identifier_model(kind, emb, profile, cache, progress), profile, strategy)
        for kind in kinds
    }
