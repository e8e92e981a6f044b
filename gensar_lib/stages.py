"""The pipeline's cached stages, declared once: what each reads, consumes and runs (all notebooks).

A stage's cache key is made of three parts:

- the slice of the profile it reads (``reads``, dotted field names);
- the keys of the artifacts it consumes (``consumes`` names those stages; their keys enter as inputs);
- the source of every module it runs (``runs``), with every ``gensar_lib`` module that those import,
  at any depth and wherever the import statement sits (found by reading the sources, not by a list),
  and the data files of those modules (``<module>_*.json`` beside a module).

So a change to any module a stage runs gives it a new key, and no stage lists its files by hand.
``config`` and ``artifacts`` are left out of the code part: a profile's values enter the key
themselves (a field marked ``config.KEYLESS_DEFAULT`` only when it differs from its default, so that a new
option whose default is the old behaviour keeps every key), and the cache's own code does not change what a
stage computes. So is ``methods``: what of a method changes a run enters its key through the run's profile
(a single-task method's task mix) and its name; its label and colour are for tables and figures. The price of reading imports instead of calls is that a stage is rebuilt more often than
strictly needed (a module imported for one function brings its whole source): correct before fast. Hence
one module (or package) per stage, and the tables, figures and results files outside all of them.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Any

from gensar_lib.artifacts import code_fingerprint
from gensar_lib.config import Profile

PACKAGE = Path(__file__).parent
KEYLESS = ("gensar_lib.config", "gensar_lib.artifacts", "gensar_lib.stages", "gensar_lib.methods")


@dataclass(frozen=True)
class Stage:
    """One cached stage: the profile fields it reads, the stages it consumes, the modules it runs."""

    name: str
    reads: tuple[str, ...]
    consumes: tuple[str, ...]
    runs: tuple[str, ...]

    def config(self, profile: Profile | Any) -> dict[str, Any]:
        """The profile slice this stage reads, by dotted field name (``profile`` may be any object with
        those attributes, e.g. ``SimpleNamespace(embeddings=cfg, seed=0)`` for a stage run on its own)."""
        return {path: attrgetter(path)(profile) for path in self.reads}

    def modules(self, root: Path = PACKAGE) -> list[Path]:
        """The source files of every module this stage runs (its imports included)."""
        return module_closure(self.runs, root)

    def code(self, root: Path = PACKAGE) -> str:
        """The fingerprint of :meth:`modules`: the code part of the stage's key."""
        return code_fingerprint(*self.modules(root))


STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("data", reads=("data",), consumes=(), runs=("gensar_lib.data",)),
    # the embedding stages consume the data through what they see of it (the item texts; the training
    # sequences), not its key, so that a change elsewhere in the data config does not re-encode items
    Stage("semantic_embeddings", reads=("embeddings.encoder", "embeddings.max_seq_length"),
          consumes=("data",), runs=("gensar_lib.embeddings",)),
    Stage("sasrec", reads=("embeddings.sasrec_dim", "embeddings.sasrec_blocks", "embeddings.sasrec_epochs",
                           "embeddings.sasrec_max_len", "embeddings.sasrec_lr", "embeddings.sasrec_batch_size",
                           "seed"),
          consumes=("data",), runs=("gensar_lib.embeddings",)),
    Stage("rqvae", reads=("quantize", "seed"), consumes=("semantic_embeddings", "sasrec"),
          runs=("gensar_lib.rqvae",)),
    # the T5 package (its validation runs evaluation and decoding), and the RQ-VAE stage that makes the
    # identifiers it is trained on (the command line's ``train`` runs both): a new RQ-VAE retrains the T5
    Stage("t5", reads=("model", "train", "eval", "seed"), consumes=("data", "rqvae"),
          runs=("gensar_lib.t5", "gensar_lib.rqvae")),
    # the learned baselines (baselines.neural): queries are encoded with the semantic encoder's settings
    Stage("learned_baseline", reads=("baselines", "embeddings.encoder", "embeddings.max_seq_length", "seed"),
          consumes=("data", "semantic_embeddings"), runs=("gensar_lib.baselines.neural",)),
    # a run's whole profile (``ablation_run.run_profile`` has already applied the ablation's overrides)
    Stage("ablation_run", reads=("data", "embeddings", "quantize", "model", "train", "eval", "seed"),
          consumes=("data", "rqvae", "t5"), runs=("gensar_lib.ablation_run",)),
)}


def _files(module: str, root: Path, whole: bool) -> list[Path]:
    """The source files of a ``gensar_lib`` module, with the ``__init__.py`` of every package above
    it (importing it runs them); a package is all its modules when ``whole``, else its ``__init__``.
    A module's data files, ``<module>_*.json`` beside it (``data/synthetic_vocabulary.json``), count
    as its source."""
    parts = module.split(".")[1:]
    path = root.joinpath(*parts)
    inits = [root.joinpath(*parts[:i], "__init__.py") for i in range(len(parts))]
    if path.is_dir():
        found = sorted(path.rglob("*.py")) if whole else [path / "__init__.py"]
    else:
        found = [path.with_suffix(".py")]
    missing = [p for p in found if not p.exists()]
    if missing:
        raise ValueError(f"stage module {module!r}: no source file {missing[0]}")
    data = [d for p in found for d in sorted(p.parent.glob(f"{p.stem}_*.json"))]
    return [p for p in inits if p.exists()] + found + data


def _imports(path: Path, root: Path) -> set[str]:
    """The ``gensar_lib`` modules a source file imports, anywhere in it (late imports too)."""
    package = ["gensar_lib", *path.relative_to(root).with_suffix("").parts[:-1]]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "gensar_lib"}
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else node.module or ""
            if base.split(".")[0] != "gensar_lib":
                continue
            found.add(base)
            for alias in node.names:  # ``from gensar_lib import ablation`` imports a module
                sub = root.joinpath(*base.split(".")[1:], alias.name)
                if sub.is_dir() or sub.with_suffix(".py").exists():
                    found.add(f"{base}.{alias.name}")
    return found


def module_closure(modules: tuple[str, ...], root: Path = PACKAGE) -> list[Path]:
    """The source files of ``modules`` (a package: all of it) and of every ``gensar_lib`` module they
    import, transitively, except :data:`KEYLESS`."""
    todo, seen, files = [(m, True) for m in modules], set(), set()
    while todo:
        module, whole = todo.pop()
        if (module, whole) in seen or module in KEYLESS:
            continue
        seen.add((module, whole))
        for path in _files(module, root, whole):
            if path not in files:
                files.add(path)
                todo += [(m, False) for m in sorted(_imports(path, root))]
    return sorted(files)
