"""One entry point from a dataset spec to cases and candidate lists (notebook 00_data).

``prepare_data("synthetic" | folder, profile)`` loads or builds the dataset,
adds semi-synthetic search events to real data, splits it and samples the
candidate lists, caching the result under a key derived from the data config
and the input files' contents.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from typing import Any

from gensar_lib.artifacts import ArtifactCache
from gensar_lib.config import Profile, dataset_spec, load_profile
from gensar_lib.data.amazon import load_folder
from gensar_lib.data.candidates import build_candidates
from gensar_lib.data.codec import (dataset_from_tree, dataset_tree, split_from_tree, split_tree, world_from_tree,
                                   world_tree)
from gensar_lib.data.queries import add_search_events, warn_if_no_search
from gensar_lib.data.schema import DataError, Dataset
from gensar_lib.data.splits import Split, leave_one_out
from gensar_lib.data.synthetic import SyntheticWorld, build_synthetic_world
from gensar_lib.stages import STAGES

SYNTHETIC = "synthetic"


@dataclass
class PreparedData:
    """A dataset with its split and candidate lists; ``world`` holds the synthetic ground truth."""

    dataset: Dataset
    split: Split
    candidates: dict[str, np.ndarray]
    world: SyntheticWorld | None
    key: str


def prepared_tree(prepared: PreparedData) -> dict[str, Any]:
    """What the cache stores of prepared data (:mod:`gensar_lib.data.codec`)."""
    ds = prepared.dataset
    if prepared.world is not None and prepared.world.dataset is not ds:
        raise ValueError("cannot store prepared data whose synthetic world holds another dataset")
    return {"dataset": dataset_tree(ds), "split": split_tree(prepared.split, ds), "candidates": prepared.candidates,
            "world": None if prepared.world is None else world_tree(prepared.world), "key": prepared.key}


def prepared_from_tree(tree: dict[str, Any]) -> PreparedData:
    """The prepared data :func:`prepared_tree` stored."""
    ds = dataset_from_tree(tree["dataset"])
    world = None if tree["world"] is None else world_from_tree(tree["world"], ds)
    return PreparedData(ds, split_from_tree(tree["split"], ds), dict(tree["candidates"]), world, tree["key"])


def source_fingerprint(spec: str) -> str:
    """``synthetic``, or a hash of the data files in the folder (names and contents)."""
    if spec == SYNTHETIC:
        return SYNTHETIC
    folder = Path(spec).expanduser()
    if folder.is_file():
        raise DataError(f"dataset {str(folder)!r} is a file, not a dataset folder (GENSAR_DATASET or --dataset)")
    if not folder.is_dir():
        raise DataError(f"dataset folder {str(folder)!r} does not exist (GENSAR_DATASET or --dataset)")
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.name.endswith((".json", ".json.gz")):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def load_dataset(spec: str, profile: Profile) -> tuple[Dataset, SyntheticWorld | None]:
    """The dataset named by ``spec``; real data gets its semi-synthetic search events here."""
    cfg = profile.data
    if spec == SYNTHETIC:
        world = build_synthetic_world(cfg.synthetic)
        return world.dataset, world
    ds = load_folder(Path(spec).expanduser(), min_user_events=cfg.min_user_events)
    return add_search_events(ds, cfg.search_fraction, cfg.seed), None


def _prepare(spec: str, profile: Profile, key: str) -> PreparedData:
    ds, world = load_dataset(spec, profile)
    split = leave_one_out(ds, profile.data.protocol)
    candidates = build_candidates(ds, split, profile.data.n_negatives, profile.data.seed)
    return PreparedData(ds, split, candidates, world, key)


def prepare_data(
    spec: str | None = None, profile: Profile | None = None, cache: ArtifactCache | None = None
) -> PreparedData:
    """Load, split and sample candidates for ``spec`` under ``profile`` (cached)."""
    spec = dataset_spec(spec)
    profile = profile or load_profile()
    cache = cache or ArtifactCache()
    stage = STAGES["data"]
    config, inputs = stage.config(profile), [source_fingerprint(spec), stage.code()]
    key = cache.key(stage.name, config, inputs)
    prepared = cache.cached(stage.name, config, lambda: _prepare(spec, profile, key), inputs,
                            encode=prepared_tree, decode=prepared_from_tree)
    warn_if_no_search(prepared.dataset)  # again for a cached dataset (the warnings module shows it once)
    return prepared
