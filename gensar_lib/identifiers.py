"""Item identifiers from RQ codes: tokens, collisions, diagnostics, JSON; notebook 03.

GenSAR gives every item two identifiers that share a prefix (``docs/method.md``,
section 2):

* semantic ID      = ``<shared_a_i> <shared_b_j> <semantic_a_k> <semantic_b_l>``
* collaborative ID = ``<shared_a_i> <shared_b_j> <collab_a_m> <collab_b_n>``

Level letters run ``a, b, c, ...``; the number is the code index. (The
official code spells the collaborative tokens ``<collaborate_a_5>``; this suite
uses ``<collab_a_5>``.) Codes come from :mod:`gensar_lib.quantize`
(``JointRQVAE.encode_codes``); this module turns them into tokens, handles
collisions (two items, one ID), measures the codes (collision rate, usage and entropy
live in :mod:`gensar_lib.codestats` and are re-exported here) and exports JSON-able
dicts. It does no file I/O.

Collision strategies (:func:`handle_collisions`):

* ``"paper"`` -- what the official ``generate_indices.py`` does: for each group
  of items sharing a full ID, re-assign only the *last* specific code with
  Sinkhorn over the group's distances to every code of that level, up to
  ``cfg.collision_rounds`` rounds, and keep what is left. Unlike the official
  loop, a group's change is kept only if it lowers the number of colliding
  items, so the collision count can never rise (the official code accepts
  every change and can oscillate). Exact duplicate items stay collided.
* ``"tiger"`` -- TIGER's de-duplication code: *every* item gets one more token
  ``<dedup_k>``, k = the item's rank among the items sharing its ID (0 for
  items that collide with nobody). Fixed-length IDs keep the decoding trie
  and beam search uniform; collision rate is exactly 0.
* ``"none"`` -- leave the codes as they are.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Literal, Mapping, Sequence

import numpy as np

from gensar_lib.codestats import as_codes, code_entropy, code_usage, collision_rate, group_ids
from gensar_lib.config import QuantizeConfig
from gensar_lib.quantize.residual import SINKHORN_ITERS, level_letter, sinkhorn
from gensar_lib.tasks import task_side

SHARED, SEMANTIC, COLLAB, DEDUP = "shared", "semantic", "collab", "dedup"
KIND_ORDER = (SHARED, SEMANTIC, COLLAB)
STRATEGIES = ("paper", "tiger", "none")
Strategy = Literal["paper", "tiger", "none"]

_TOKEN_RE = re.compile(r"^<([a-z]+)_([a-z])_(\d+)>$")
_DEDUP_RE = re.compile(r"^<dedup_(\d+)>$")


# ---------------------------------------------------------------------------
# Tokens and vocabulary
# ---------------------------------------------------------------------------


def make_token(kind: str, level: int, code: int) -> str:
    """``make_token("shared", 0, 12) == "<shared_a_12>"``."""
    if not re.fullmatch(r"[a-z]+", kind) or kind == DEDUP:
        raise ValueError(f"token kind must be lower-case letters other than 'dedup', got {kind!r}")
    return f"<{kind}_{level_letter(level)}_{int(code)}>"


def token_vectors(codebooks: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each identifier token's codebook vector, from an RQ-VAE's ``codebooks()``: ``<shared_a_12>`` is row 12
    of level ``shared_a`` (``t5.model.init_identifier_embeddings``; notebook 05)."""
    return {f"<{level}_{code}>": vectors[code] for level, vectors in codebooks.items() for code in range(len(vectors))}


def dedup_token(k: int) -> str:
    """``dedup_token(3) == "<dedup_3>"`` (TIGER's de-duplication code)."""
    return f"<dedup_{int(k)}>"


def parse_token(token: str) -> tuple[str, int | None, int]:
    """``"<semantic_b_7>" -> ("semantic", 1, 7)``; ``"<dedup_2>" -> ("dedup", None, 2)``."""
    m = _DEDUP_RE.match(token)
    if m:
        return DEDUP, None, int(m.group(1))
    m = _TOKEN_RE.match(token)
    if not m:
        raise ValueError(f"not an identifier token: {token!r}")
    return m.group(1), ord(m.group(2)) - ord("a"), int(m.group(3))


def level_tokens(kind: str, n_levels: int, codebook_size: int) -> list[str]:
    """All tokens of ``n_levels`` levels of one kind, level by level."""
    return [make_token(kind, lv, c) for lv in range(n_levels) for c in range(codebook_size)]


def _vocabulary(levels: Sequence[tuple[str, int]], codebook_size: int, n_dedup: int) -> list[str]:
    vocab = [t for kind, n in levels for t in level_tokens(kind, n, codebook_size)]
    return vocab + [dedup_token(k) for k in range(n_dedup)]


def identifier_vocabulary(cfg: QuantizeConfig = QuantizeConfig(), n_dedup: int = 0) -> list[str]:
    """Every token a joint identifier can contain (to add to a tokenizer).

    ``(shared_levels + 2 * specific_levels) * codebook_size`` level tokens in
    a fixed order (shared, semantic, collab; level; code), then ``n_dedup``
    ``<dedup_k>`` tokens (``"tiger"`` strategy only).
    """
    levels = [(SHARED, cfg.shared_levels), (SEMANTIC, cfg.specific_levels),
              (COLLAB, cfg.specific_levels)]
    return _vocabulary(levels, cfg.codebook_size, n_dedup)


def single_vocabulary(kind: str, n_levels: int, codebook_size: int, n_dedup: int = 0) -> list[str]:
    """Every token of a single-RQ identifier (``<kind>_a ...``), plus dedup tokens."""
    return _vocabulary([(kind, n_levels)], codebook_size, n_dedup)


# ---------------------------------------------------------------------------
# Identifiers
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemIdentifiers:
    """The two identifiers of every item, aligned with ``item_ids``.

    ``semantic[i]`` / ``collaborative[i]`` are tuples of token strings of item
    ``item_ids[i]``; ``vocabulary`` is every token the scheme can produce
    (all codes of all levels, used or not, plus the dedup tokens in use), the
    list to add to a tokenizer. For single-RQ identifiers both IDs are the same.
    """

    item_ids: tuple[str, ...]
    semantic: tuple[tuple[str, ...], ...]
    collaborative: tuple[tuple[str, ...], ...]
    vocabulary: tuple[str, ...]
    codebook_size: int
    _index: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        if len(self.semantic) != n or len(self.collaborative) != n:
            raise ValueError(
                f"{n} item ids but {len(self.semantic)} semantic and "
                f"{len(self.collaborative)} collaborative identifiers"
            )
        index = {item: i for i, item in enumerate(self.item_ids)}
        if len(index) != n:
            raise ValueError("item_ids must be unique")
        object.__setattr__(self, "_index", index)

    def __len__(self) -> int:
        return len(self.item_ids)

    def get(self, item_id: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """``(semantic ID, collaborative ID)`` of one item."""
        i = self._index[str(item_id)]
        return self.semantic[i], self.collaborative[i]

    def for_task(self, task: str) -> tuple[tuple[str, ...], ...]:
        """Every item's ID for a task (:func:`gensar_lib.tasks.task_side`): collaborative for ``rec``,
        semantic for ``search``."""
        return getattr(self, task_side(task).ids)

    def index_of(self, item_id: str) -> int:
        return self._index[str(item_id)]

    def tokens_used(self) -> set[str]:
        return {t for ident in (*self.semantic, *self.collaborative) for t in ident}


def _item_ids(n: int, item_ids: Sequence | None) -> tuple[str, ...]:
    if item_ids is None:
        return tuple(str(i) for i in range(n))
    ids = tuple(str(i) for i in item_ids)
    if len(ids) != n:
        raise ValueError(f"{len(ids)} item ids for {n} items")
    return ids


_as_codes = as_codes


def _row_tokens(kinds: Sequence[tuple[str, int]], row: Sequence[int], dedup: int | None):
    toks = tuple(make_token(kind, lv, c) for (kind, lv), c in zip(kinds, row))
    return toks if dedup is None else toks + (dedup_token(dedup),)


def _n_dedup(*dedups) -> int:
    return max((int(np.max(d)) + 1 for d in dedups if d is not None and len(d)), default=0)


def joint_identifiers(
    shared: np.ndarray,
    semantic: np.ndarray,
    collab: np.ndarray,
    codebook_size: int,
    item_ids: Sequence | None = None,
    semantic_dedup: np.ndarray | None = None,
    collab_dedup: np.ndarray | None = None,
) -> ItemIdentifiers:
    """Token identifiers from joint codes ``[N, Lm]``, ``[N, Ln]``, ``[N, Ln]``.

    semantic ID = shared tokens + semantic tokens (+ ``<dedup_k>``),
    collaborative ID = shared tokens + collab tokens (+ ``<dedup_k>``).
    """
    shared = _as_codes(shared, "shared")
    n = len(shared)
    semantic = _as_codes(semantic, "semantic", n)
    collab = _as_codes(collab, "collab", n)
    lm, ln = shared.shape[1], semantic.shape[1]
    if collab.shape[1] != ln:
        raise ValueError(f"semantic has {ln} levels but collab has {collab.shape[1]}")
    sem_kinds = [(SHARED, i) for i in range(lm)] + [(SEMANTIC, i) for i in range(ln)]
    col_kinds = [(SHARED, i) for i in range(lm)] + [(COLLAB, i) for i in range(ln)]
    sem_rows = np.concatenate([shared, semantic], 1).tolist()
    col_rows = np.concatenate([shared, collab], 1).tolist()
    sem = tuple(_row_tokens(sem_kinds, r, None if semantic_dedup is None else semantic_dedup[i])
                for i, r in enumerate(sem_rows))
    col = tuple(_row_tokens(col_kinds, r, None if collab_dedup is None else collab_dedup[i])
                for i, r in enumerate(col_rows))
    vocab = _vocabulary([(SHARED, lm), (SEMANTIC, ln), (COLLAB, ln)], codebook_size,
                        _n_dedup(semantic_dedup, collab_dedup))
    return ItemIdentifiers(_item_ids(n, item_ids), sem, col, tuple(vocab), codebook_size)


def single_identifiers(
    codes: np.ndarray,
    codebook_size: int,
    kind: str = "item",
    item_ids: Sequence | None = None,
    dedup: np.ndarray | None = None,
) -> ItemIdentifiers:
    """Identifiers from one RQ-VAE's codes ``[N, L]``: ``<kind>_a ...``, used for both IDs."""
    codes = _as_codes(codes, "codes")
    kinds = [(kind, i) for i in range(codes.shape[1])]
    ids = tuple(_row_tokens(kinds, r, None if dedup is None else dedup[i])
                for i, r in enumerate(codes.tolist()))
    vocab = single_vocabulary(kind, codes.shape[1], codebook_size, _n_dedup(dedup))
    return ItemIdentifiers(_item_ids(len(codes), item_ids), ids, ids, tuple(vocab), codebook_size)


# ---------------------------------------------------------------------------
# Diagnostics
# ---------------------------------------------------------------------------


_group_ids = group_ids


def collision_groups(codes) -> list[np.ndarray]:
    """Row indices of every group of >= 2 items sharing an identifier (by first member)."""
    inverse, _ = _group_ids(codes)
    order = np.argsort(inverse, kind="stable")
    splits = np.flatnonzero(np.diff(inverse[order])) + 1
    groups = [g for g in np.split(order, splits) if len(g) > 1]
    return sorted(groups, key=lambda g: int(g[0]))


def code_stats(codes, codebook_size: int, names: Sequence[str] | None = None) -> dict:
    """JSON-able ``{level name: {"usage", "entropy_bits", "entropy_normalised"}}``."""
    arr = _as_codes(codes, "codes")
    names = list(names) if names is not None else [f"level_{level_letter(i)}"
                                                   for i in range(arr.shape[1])]
    usage = code_usage(arr, codebook_size)
    bits = code_entropy(arr, codebook_size, normalise=False)
    norm = code_entropy(arr, codebook_size, normalise=True)
    return {n: {"usage": float(u), "entropy_bits": float(b), "entropy_normalised": float(e)}
            for n, u, b, e in zip(names, usage, bits, norm)}


def reconstruction_error(x: np.ndarray, x_hat: np.ndarray, per_item: bool = False):
    """Mean squared error of a reconstruction (per item with ``per_item``)."""
    x, x_hat = np.asarray(x, np.float64), np.asarray(x_hat, np.float64)
    if x.shape != x_hat.shape:
        raise ValueError(f"shapes differ: {x.shape} vs {x_hat.shape}")
    err = ((x - x_hat) ** 2).reshape(len(x), -1).mean(1)
    return err if per_item else float(err.mean())


def items_per_prefix(codes, depth: int | None = None) -> np.ndarray:
    """Sizes of the groups of items sharing their first ``depth`` codes/tokens, largest first.

    ``depth=None`` uses the whole identifier. ``np.bincount`` of the result is
    the histogram "how many prefixes hold s items".
    """
    if isinstance(codes, np.ndarray) and codes.dtype != object:
        arr = codes[:, None] if codes.ndim == 1 else codes
        rows = arr[:, :depth] if depth is not None else arr
    else:
        rows = [tuple(r)[:depth] if depth is not None else tuple(r) for r in codes]
    inverse, distinct = _group_ids(rows)
    return np.sort(np.bincount(inverse, minlength=distinct))[::-1]


# ---------------------------------------------------------------------------
# Collision handling
# ---------------------------------------------------------------------------


@dataclass
class CollisionReport:
    """What a collision strategy did (JSON-able through :meth:`as_dict`)."""

    strategy: str
    before: float
    after: float
    rounds: int = 0
    changed_items: int = 0
    rejected_groups: int = 0
    unresolved_groups: int = 0
    per_round: list[float] = field(default_factory=list)
    n_dedup: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def resolve_paper(
    codes: np.ndarray,
    last_distances: np.ndarray,
    rounds: int = 20,
    epsilon: float = 0.003,
    sinkhorn_iters: int = SINKHORN_ITERS,
) -> tuple[np.ndarray, CollisionReport]:
    """The official collision handling, made monotone.

    ``codes`` ``[N, L]`` are full identifiers; ``last_distances`` ``[N, K]`` the
    distances from each item's residual entering the last level to every code
    of that level (``JointRQVAE.last_level_distances``). Each round, every
    group of items sharing an ID gets new last codes from
    ``sinkhorn(last_distances[group], epsilon).argmax(1)`` (distances
    normalised within the group, as the official code does); the change is
    kept only if the number of distinct IDs grows, else rejected. Stops when
    nothing collides, a round changes nothing, or after ``rounds`` rounds.
    Returns a copy of the codes with only the last column changed.
    """
    codes = _as_codes(codes, "codes").copy()
    dist = np.asarray(last_distances, np.float64)
    if dist.ndim != 2 or len(dist) != len(codes):
        raise ValueError(f"last_distances must be [N={len(codes)}, K], got {dist.shape}")
    report = CollisionReport("paper", before=collision_rate(codes), after=0.0)
    counter = Counter(map(tuple, codes.tolist()))
    distinct = len(counter)
    for _ in range(rounds):
        groups = collision_groups(codes)
        if not groups:
            break
        report.rounds += 1
        changed = 0
        for g in groups:
            new_last = sinkhorn(dist[g], epsilon, sinkhorn_iters).argmax(1).numpy()
            if np.array_equal(new_last, codes[g, -1]):
                continue
            old_rows = [tuple(r) for r in codes[g].tolist()]
            new_rows = [r[:-1] + (int(c),) for r, c in zip(old_rows, new_last)]
            touched = set(old_rows) | set(new_rows)
            present_before = sum(1 for r in touched if counter[r] > 0)
            counter.subtract(old_rows)
            counter.update(new_rows)
            gain = sum(1 for r in touched if counter[r] > 0) - present_before
            if gain > 0:  # more distinct IDs = fewer collisions: keep
                codes[g, -1] = new_last
                distinct += gain
                changed += int((codes[g, -1] != np.asarray([r[-1] for r in old_rows])).sum())
            else:  # would not lower the collision count: reject
                counter.subtract(new_rows)
                counter.update(old_rows)
                report.rejected_groups += 1
        report.changed_items += changed
        report.per_round.append(collision_rate(codes))
        if changed == 0:
            break
    assert distinct == len({tuple(r) for r in codes.tolist()})
    report.after = collision_rate(codes)
    report.unresolved_groups = len(collision_groups(codes))
    return codes, report


def dedup_codes(codes) -> np.ndarray:
    """TIGER's de-duplication code: each item's rank among items sharing its ID (0 if alone)."""
    inverse, _ = _group_ids(codes)
    order = np.argsort(inverse, kind="stable")
    sorted_inv = inverse[order]
    rank = np.arange(len(order)) - np.searchsorted(sorted_inv, sorted_inv, side="left")
    out = np.empty(len(order), np.int64)
    out[order] = rank
    return out


def handle_collisions(
    codes: np.ndarray,
    strategy: Strategy = "paper",
    last_distances: np.ndarray | None = None,
    cfg: QuantizeConfig = QuantizeConfig(),
    sinkhorn_iters: int = SINKHORN_ITERS,
) -> tuple[np.ndarray, np.ndarray | None, CollisionReport]:
    """Apply a strategy to full identifier codes ``[N, L]``.

    Returns ``(codes, dedup, report)``: ``codes`` possibly with a new last
    column (``"paper"``), ``dedup`` the ``[N]`` de-duplication codes
    (``"tiger"``; ``None`` otherwise).
    """
    codes = _as_codes(codes, "codes")
    if strategy == "none":
        rate = collision_rate(codes)
        return codes.copy(), None, CollisionReport(
            "none", rate, rate, unresolved_groups=len(collision_groups(codes)))
    if strategy == "tiger":
        dedup = dedup_codes(codes)
        report = CollisionReport("tiger", collision_rate(codes),
                                 collision_rate(np.concatenate([codes, dedup[:, None]], 1)),
                                 n_dedup=int(dedup.max()) + 1 if len(dedup) else 0)
        return codes.copy(), dedup, report
    if strategy == "paper":
        if last_distances is None:
            raise ValueError("strategy 'paper' needs last_distances (model.last_level_distances)")
        new, report = resolve_paper(codes, last_distances, cfg.collision_rounds,
                                    cfg.sinkhorn_epsilon, sinkhorn_iters)
        return new, None, report
    raise ValueError(f"unknown collision strategy {strategy!r}; choose one of {STRATEGIES}")


def build_joint_identifiers(
    shared: np.ndarray,
    semantic: np.ndarray,
    collab: np.ndarray,
    codebook_size: int,
    strategy: Strategy = "paper",
    *,
    semantic_distances: np.ndarray | None = None,
    collab_distances: np.ndarray | None = None,
    cfg: QuantizeConfig = QuantizeConfig(),
    item_ids: Sequence | None = None,
    sinkhorn_iters: int = SINKHORN_ITERS,
) -> tuple[ItemIdentifiers, dict[str, CollisionReport]]:
    """Joint codes -> identifiers, the two IDs' collisions handled separately.

    As the official code: the semantic ID ``[shared | semantic]`` and the
    collaborative ID ``[shared | collab]`` are de-collided independently; the
    ``"paper"`` strategy only ever changes the last specific code, so the
    shared prefix of the two IDs stays common. Returns the identifiers and
    ``{"semantic": report, "collaborative": report}``.
    """
    shared = _as_codes(shared, "shared")
    lm = shared.shape[1]
    sem_full = np.concatenate([shared, _as_codes(semantic, "semantic", len(shared))], 1)
    col_full = np.concatenate([shared, _as_codes(collab, "collab", len(shared))], 1)
    sem_full, sem_dedup, sem_rep = handle_collisions(sem_full, strategy, semantic_distances,
                                                     cfg, sinkhorn_iters)
    col_full, col_dedup, col_rep = handle_collisions(col_full, strategy, collab_distances,
                                                     cfg, sinkhorn_iters)
    ids = joint_identifiers(shared, sem_full[:, lm:], col_full[:, lm:], codebook_size,
                            item_ids, sem_dedup, col_dedup)
    return ids, {"semantic": sem_rep, "collaborative": col_rep}


def build_single_identifiers(
    codes: np.ndarray,
    codebook_size: int,
    kind: str = "item",
    strategy: Strategy = "paper",
    *,
    last_distances: np.ndarray | None = None,
    cfg: QuantizeConfig = QuantizeConfig(),
    item_ids: Sequence | None = None,
    sinkhorn_iters: int = SINKHORN_ITERS,
) -> tuple[ItemIdentifiers, CollisionReport]:
    """Single-RQ codes -> identifiers (same ID for both tasks), collisions handled."""
    codes, dedup, report = handle_collisions(codes, strategy, last_distances, cfg, sinkhorn_iters)
    return single_identifiers(codes, codebook_size, kind, item_ids, dedup), report


# ---------------------------------------------------------------------------
# Statistics and JSON
# ---------------------------------------------------------------------------


def position_codes(idents: Sequence[tuple[str, ...]]) -> dict[str, np.ndarray]:
    """``{level name: codes [N]}`` from one token tuple per item (dedup positions skipped)."""
    out: dict[str, list[int]] = {}
    for ident in idents:
        for tok in ident:
            kind, level, code = parse_token(tok)
            if kind != DEDUP:
                out.setdefault(f"{kind}_{level_letter(level)}", []).append(code)
    return {k: np.asarray(v, np.int64) for k, v in out.items()}


def all_level_codes(ids: ItemIdentifiers) -> dict[str, np.ndarray]:
    """``{level name: codes [N]}`` of both IDs: the semantic ID's levels, then the collaborative-only ones."""
    return {**position_codes(ids.semantic), **position_codes(ids.collaborative)}


def identifier_stats(
    ids: ItemIdentifiers, reports: Mapping[str, CollisionReport] | CollisionReport | None = None
) -> dict:
    """JSON-able summary: collision rates, items per ID, per-level usage and entropy."""
    n = len(ids)
    shared_len = sum(1 for t in ids.semantic[0] if parse_token(t)[0] == SHARED) if n else 0
    levels = all_level_codes(ids)
    stats = {
        "n_items": n,
        "codebook_size": ids.codebook_size,
        "vocabulary_size": len(ids.vocabulary),
        "tokens_used": len(ids.tokens_used()),
        "id_length": {"semantic": len(ids.semantic[0]) if n else 0,
                      "collaborative": len(ids.collaborative[0]) if n else 0},
        "collision_rate": {
            "semantic": collision_rate(ids.semantic),
            "collaborative": collision_rate(ids.collaborative),
            "shared_prefix": collision_rate([s[:shared_len] for s in ids.semantic])
            if shared_len else None,
        },
        "max_items_per_id": {
            "semantic": int(items_per_prefix(ids.semantic)[0]) if n else 0,
            "collaborative": int(items_per_prefix(ids.collaborative)[0]) if n else 0,
        },
        "levels": {name: code_stats(c, ids.codebook_size, [name])[name]
                   for name, c in levels.items()},
    }
    if isinstance(reports, CollisionReport):
        stats["handling"] = reports.as_dict()
    elif reports is not None:
        stats["handling"] = {k: r.as_dict() for k, r in reports.items()}
    return stats


def to_json(ids: ItemIdentifiers) -> dict[str, dict[str, list[str]]]:
    """``{item id: {"semantic": [tokens], "collaborative": [tokens]}}``."""
    return {item: {"semantic": list(s), "collaborative": list(c)}
            for item, s, c in zip(ids.item_ids, ids.semantic, ids.collaborative)}


def from_json(data: Mapping[str, Mapping[str, Sequence[str]]], codebook_size: int) -> ItemIdentifiers:
    """Inverse of :func:`to_json`; the vocabulary is rebuilt from the kinds and levels seen."""
    items = list(data)
    sem = tuple(tuple(data[i]["semantic"]) for i in items)
    col = tuple(tuple(data[i]["collaborative"]) for i in items)
    n_levels: dict[str, int] = {}
    n_dedup = 0
    for ident in (*sem, *col):
        for tok in ident:
            kind, level, code = parse_token(tok)
            if kind == DEDUP:
                n_dedup = max(n_dedup, code + 1)
            else:
                n_levels[kind] = max(n_levels.get(kind, 0), level + 1)
    order = [k for k in KIND_ORDER if k in n_levels] + sorted(set(n_levels) - set(KIND_ORDER))
    vocab = _vocabulary([(k, n_levels[k]) for k in order], codebook_size, n_dedup)
    return ItemIdentifiers(tuple(items), sem, col, tuple(vocab), codebook_size)
