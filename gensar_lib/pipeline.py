"""The pipeline's stages after the data layer, each cached (notebooks 01 to 03 and the command line).

``item_embeddings`` -> ``identifier_model`` (one RQ-VAE per identifier type) -> ``identifiers``.
Identifier types (the paper's Fig. 5):

- ``gensar``: the joint RQ-VAE; each item gets a semantic ID (shared + semantic codes) and a
  collaborative ID (shared + collaborative codes);
- ``semantic`` / ``collaborative`` / ``concatenated``: a TIGER-style RQ-VAE over one embedding
  (the concatenation of both, for the last), giving one ID used for both tasks.

``identifier_structure`` measures what the codes carry (notebook 03, section 5): per level AMI, NMI
and purity with the planted leaf and bundle (synthetic world) or the leaf category (Amazon), the
same for plain residual k-means on each input embedding (the floor), how often item pairs sharing a
prefix share a label, and how often a recommendation target shares its prefix with the previous item.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import numpy as np
import torch

from gensar_lib.artifacts import ArtifactCache, DamagedEntry, atomic_dir, check_folder, checked_folder, write_json
from gensar_lib.codestats import next_item_prefix_match, pair_agreement, structure_measures
from gensar_lib.config import Profile, fingerprint
from gensar_lib.data.pipeline import PreparedData
from gensar_lib.embeddings import cached_collaborative_embeddings, cached_semantic_embeddings
from gensar_lib.identifiers import (
    ItemIdentifiers,
    build_joint_identifiers,
    build_single_identifiers,
    identifier_stats,
    all_level_codes,
    to_json,
    token_vectors,
)
from gensar_lib.devices import processes, resolve_device
from gensar_lib.generative import (
    GenerativeModel,
    TrainResult,
    behaviour_and_identifier_tokens,
    build_model,
    check_vectors,
    init_identifier_embeddings,
    load_best,
    load_pretrained_tokenizer,
    train,
    train_tokenizer,
    vectors_fingerprint,
)
from gensar_lib.instructions import TaskMix, training_instructions
from gensar_lib.evaluation import validator
from gensar_lib.quantize import JointRQVAE, SingleRQVAE, kmeans, level_names, train_rqvae
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


def structure_labels(prepared: PreparedData) -> dict[str, np.ndarray]:
    """Known labels per item: planted ``leaf`` and ``bundle`` (synthetic world), else the leaf
    ``category`` (the full category path; -1 for items without one)."""
    if prepared.world is not None:
        return {"leaf": np.asarray(prepared.world.item_leaf), "bundle": np.asarray(prepared.world.item_bundle)}
    paths = [" > ".join(it.categories) for it in prepared.dataset.items]
    index = {p: i for i, p in enumerate(sorted(set(paths) - {""}))}
    return {"category": np.array([index.get(p, -1) for p in paths], np.int64)}


def kmeans_floor(x: np.ndarray, codebook_size: int, n_levels: int, seed: int, kind: str) -> dict[str, np.ndarray]:
    """Plain residual k-means on an embedding (no encoder, no training): ``{level name: codes}``.

    The floor the trained identifiers are compared with: what the input embedding gives without a
    learned latent. Level l is seeded ``(seed, 0, l)``, as in notebook 02.
    """
    residual, out = np.asarray(x, np.float64), {}
    for level, name in enumerate(level_names(kind, n_levels)):
        km = kmeans(residual, codebook_size, seed=(seed, 0, level))
        residual = residual - km.centroids[km.labels]
        out[name] = km.labels
    return out


def _previous_items(prepared: PreparedData) -> tuple[list[int], list[int]]:
    """(target, last earlier recommendation item) of every recommendation test case that has one."""
    targets, previous = [], []
    for case in prepared.split.test:
        rec = [e for e in case.history if e.task == "rec"]
        if case.task == "rec" and rec:
            targets.append(case.target.item)
            previous.append(rec[-1].item)
    return targets, previous


def _level_sets(emb: ItemEmbeddings, results: dict[str, Identifiers], profile: Profile) -> dict[str, dict]:
    """``{type: {level name: codes}}``: each identifier type (after collision handling) and
    ``kmeans:<embedding>`` for the semantic, collaborative and concatenated embeddings."""
    q = profile.quantize
    sets = {kind: all_level_codes(res.ids) for kind, res in results.items()}
    for name in ("semantic", "collaborative", "concatenated"):
        sets[f"kmeans:{name}"] = kmeans_floor(emb.inputs(name)[0], q.codebook_size,
                                              q.shared_levels + q.specific_levels, profile.seed, name)
    return sets


def identifier_structure(prepared: PreparedData, emb: ItemEmbeddings, results: dict[str, Identifiers],
                         profile: Profile) -> dict:
    """What each level's codes carry: ``{type: {level name: {"ami_<label>", "nmi_<label>",
    "purity_<label>"}}}`` (``structure`` in identifier_stats.json; notebook 03, section 5).

    Labels from :func:`structure_labels`. Types: every identifier type of ``results`` (codes after
    collision handling) and ``kmeans:semantic``, ``kmeans:collaborative``, ``kmeans:concatenated``,
    plain residual k-means on that embedding (:func:`kmeans_floor`, the floor).
    """
    labels = structure_labels(prepared)
    return {kind: {lv: structure_measures(c, labels) for lv, c in codes.items()}
            for kind, codes in _level_sets(emb, results, profile).items()}


def prefix_structure(prepared: PreparedData, emb: ItemEmbeddings, results: dict[str, Identifiers],
                     profile: Profile) -> dict:
    """How prefixes group items (``prefix_structure`` in identifier_stats.json; notebook 03).

    Per type (as :func:`identifier_structure`): ``first_code`` and ``shared_prefix`` (the first
    ``shared_levels`` codes of the semantic ID), each ``{label: pair_agreement}`` (of the item pairs
    with that prefix, the share with the same label, against random pairs: the lift); and
    ``next_item``: the share of recommendation test targets whose shared prefix equals that of the
    user's last earlier recommendation item, with its chance level.
    """
    labels = structure_labels(prepared)
    q = profile.quantize
    n_levels, lm = q.shared_levels + q.specific_levels, q.shared_levels
    targets, previous = _previous_items(prepared)
    out = {}
    for kind, codes in _level_sets(emb, results, profile).items():
        ordered = np.stack(list(codes.values())[:n_levels], 1)  # the semantic ID's levels come first
        out[kind] = {depth_name: {name: pair_agreement(ordered[:, :depth], lab) for name, lab in labels.items()}
                     for depth_name, depth in (("first_code", 1), ("shared_prefix", lm))}
        out[kind]["next_item"] = next_item_prefix_match(ordered[:, :lm], targets, previous)
    return out


def structure_targets(structure: dict) -> list[dict]:
    """The AMI the issue's targets name, each beside its k-means floor (synthetic world only).

    Rows: semantic-only first level vs leaf, collaborative-only first level vs bundle, and the best
    level of each GenSAR ID (semantic ID vs leaf, collaborative ID vs bundle). The floor of a single
    type is its own embedding's first k-means level; of a GenSAR ID, the best level of residual
    k-means on that side's embedding (``floor``) and on the concatenation (``floor_concatenated``).
    """
    lv = structure
    if "ami_leaf" not in next(iter(lv["gensar"].values())):
        return []

    def best(kind: str, label: str, prefixes: tuple[str, ...]) -> tuple[str, float]:
        name = max((n for n in lv[kind] if n.startswith(prefixes)), key=lambda n: lv[kind][n][f"ami_{label}"])
        return name, lv[kind][name][f"ami_{label}"]

    rows = []
    for kind, label in (("semantic", "leaf"), ("collaborative", "bundle")):
        first = f"{kind}_a"
        rows.append({"target": f"{kind}-only {first} vs {label}", "ami": lv[kind][first][f"ami_{label}"],
                     "floor": lv[f"kmeans:{kind}"][first][f"ami_{label}"], "floor_concatenated": None})
    for side, label, specific in (("semantic", "leaf", "semantic_"), ("collaborative", "bundle", "collab_")):
        name, value = best("gensar", label, ("shared_", specific))
        rows.append({"target": f"GenSAR {side} ID best level ({name}) vs {label}", "ami": value,
                     "floor": best(f"kmeans:{side}", label, (side,))[1],
                     "floor_concatenated": best("kmeans:concatenated", label, ("concatenated",))[1]})
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



# ---------------------------------------------------------------------------
# Generative stage: instructions -> tokenizer -> T5 -> evaluation (notebooks 04 and 05)
# ---------------------------------------------------------------------------

EVAL_TASKS = {"rec": "NRIP", "search": "NSIP"}


def tokenizer_corpus(prepared: PreparedData, pairs: list[tuple[str, str]]) -> list[str]:
    """The texts the tokenizer is trained on: item text, queries and the instructions."""
    ds = prepared.dataset
    return [it.text for it in ds.items] + [e.query for _, e in ds.events("search")] + [s for p in pairs for s in p]


def work_tokenizer(work: Path, prepared: PreparedData, pairs: list[tuple[str, str]], ids: ItemIdentifiers,
                   profile: Profile) -> object:
    """The run's tokenizer: reloaded from ``work/tokenizer`` when a previous attempt saved it, else made and saved.

    Saving it before training starts means a resumed run continues with the very
    tokenizer its weights were trained with (its hash is in the run signature).
    """
    from transformers import AutoTokenizer

    folder = work / "tokenizer"
    if checked_folder(folder) is None:
        tokens = behaviour_and_identifier_tokens(ids.vocabulary)
        if profile.model.pretrained:
            tokenizer = load_pretrained_tokenizer(profile.model.pretrained, tokens)
        else:
            tokenizer = train_tokenizer(tokenizer_corpus(prepared, pairs), profile.model.vocab_size, tokens)
        with atomic_dir(folder, manifest=True) as tmp:
            tokenizer.save_pretrained(tmp)
    return AutoTokenizer.from_pretrained(folder, local_files_only=True)  # the saved one, also on a first run


def train_generative(
    prepared: PreparedData,
    ids: ItemIdentifiers,
    profile: Profile,
    cache: ArtifactCache | None = None,
    progress: bool = True,
    vectors: Mapping[str, np.ndarray] | None = None,
) -> GenerativeModel:
    """Instructions (mixed by ``train.task_mix``) -> tokenizer -> T5 -> training with validation (cached,
    resumable; notebook 05), on ``profile.device``. ``vectors`` (``Identifiers.vectors``) are needed when
    ``model.identifier_init`` is ``"codebook"``, and checked before any work.

    Under a launcher every process trains (data-parallel, :func:`~gensar_lib.generative.train`)
    and the main one publishes the artifact; alone, a process holds the stage's lock while it trains.
    """
    cache = cache or ArtifactCache()
    codebook = profile.model.identifier_init == "codebook"
    if codebook:
        check_vectors(ids, vectors)
    stage = STAGES["t5"]
    config, inputs = stage.config(profile), [prepared.key, fingerprint(to_json(ids)), stage.code()]
    if codebook:
        inputs.append(vectors_fingerprint(vectors))
    key = cache.key(stage.name, config, inputs)
    work = cache.work_path(stage.name, key)  # resumable training state lives here until the stage is done
    device = resolve_device(profile.device)
    state = processes(device)

    def run_training() -> TrainResult:
        pairs = [(i.source, i.target) for i in training_instructions(
            prepared.dataset, prepared.split.train, ids, profile.train.history_length,
            TaskMix.of(profile.train.task_mix), profile.seed, profile.train.prompts)]
        with contextlib.nullcontext() if state is None else state.main_process_first():
            tokenizer = work_tokenizer(work, prepared, pairs, ids, profile)
        model = build_model(profile.model, tokenizer, profile.seed)
        if codebook:
            init_identifier_embeddings(model, tokenizer, vectors, profile.seed)
        model = model.to(device)
        return train(model, tokenizer, pairs, profile.train, work, validator(prepared, profile, tokenizer, ids),
                     profile.seed, progress, device=profile.device)

    def publish(folder: Path, result: TrainResult) -> None:
        problem = check_folder(result.best_dir)
        if problem is not None:  # damaged since training wrote it: the next attempt's resume starts over
            raise DamagedEntry(problem)
        shutil.copytree(result.best_dir, folder / "best")
        write_json(folder / "history.json", result.history)

    def read(folder: Path) -> GenerativeModel:
        model, tokenizer = load_best(folder)
        history = json.loads((folder / "history.json").read_text())
        return GenerativeModel(model.to(device), tokenizer, ids, history, folder)

    if state is None:  # locked per key: one process trains, another waits
        gen = cache.load(stage.name, config, lambda f: publish(f, run_training()), read, inputs)
        shutil.rmtree(work, ignore_errors=True)
        return gen
    if not cache.exists(stage.name, key):
        result = run_training()
        if state.is_main_process:
            cache.build(stage.name, config, lambda f: publish(f, result), inputs)
            shutil.rmtree(work, ignore_errors=True)
    state.wait_for_everyone()
    return read(cache.path(stage.name, key))
