"""The cached T5 stage: identifiers -> instructions (mixed by ``train.task_mix``) -> tokenizer -> T5 trained
with validation (resumable; notebooks 04 and 05 and the command line's ``train``)."""
from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Mapping

import numpy as np

from gensar_lib.artifacts import ArtifactCache, DamagedEntry, atomic_dir, check_folder, checked_folder, write_json
from gensar_lib.config import Profile, fingerprint
from gensar_lib.data.pipeline import PreparedData
from gensar_lib.devices import processes, resolve_device
from gensar_lib.evaluation import validator
from gensar_lib.identifiers import ItemIdentifiers, to_json
from gensar_lib.instructions import TaskMix, training_instructions
from gensar_lib.stages import STAGES
from gensar_lib.t5.checkpoints import load_best
from gensar_lib.t5.model import GenerativeModel, build_model, check_vectors, init_identifier_embeddings, vectors_fingerprint
from gensar_lib.t5.tokenizer import behaviour_and_identifier_tokens, load_pretrained_tokenizer, train_tokenizer
from gensar_lib.t5.train import TrainResult, train


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

    Under a launcher every process trains (data-parallel, :func:`~gensar_lib.t5.train.train`)
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
