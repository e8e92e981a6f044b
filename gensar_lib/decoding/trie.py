"""The identifier trie: which tokens may follow a prefix (notebook 05_t5_training, exercise 5.1).

The trie (:class:`ItemTrie`) is built once from ``codes``: the codes are sorted
lexicographically, so every identifier prefix is a contiguous range of sorted
rows, and a node is just such a range. The children of a node are consecutive
node ids, so "the allowed next tokens of these 1,920 beams" is one vectorised
gather (:meth:`ItemTrie.children`), and "which of those are in this example's
100-candidate list" is a difference of two prefix counts
(:meth:`ItemTrie.allowed_nodes`).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch


# ---------------------------------------------------------------------------
# The trie
# ---------------------------------------------------------------------------


class ItemTrie:
    """Prefix trie over item identifiers ``codes [n_items, L]``, stored as node arrays.

    Rows of ``codes`` are sorted lexicographically (``order``: item index of
    each sorted row; ties keep ascending item index). A node of depth ``d`` is
    an identifier prefix of ``d`` tokens and owns the contiguous sorted rows
    ``[node_lo, node_hi)`` that start with it. Node 0 is the root (the empty
    prefix, all rows). Nodes are numbered depth by depth in sorted order, so
    the children of a node are the consecutive ids
    ``first_child[n] .. first_child[n] + n_children[n] - 1``; ``node_token`` is
    the token that leads into a node. Leaves have depth ``L``.

    >>> trie = ItemTrie(np.array([[5, 7], [5, 8], [6, 7]]))
    >>> trie.allowed_next_tokens([]), trie.allowed_next_tokens([5]), trie.allowed_next_tokens([5, 8])
    ([5, 6], [7, 8], [])
    """

    def __init__(self, codes: np.ndarray):
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[0] == 0 or codes.shape[1] == 0:
            raise ValueError(f"codes must be a non-empty [n_items, L] array, got shape {codes.shape}")
        if not np.issubdtype(codes.dtype, np.integer) or codes.min() < 0:
            raise ValueError("codes must hold non-negative integer token ids")
        codes = codes.astype(np.int64)
        n, depth = codes.shape
        self.codes = codes
        self.n_items, self.depth = n, depth
        # lexsort sorts by the last key first: pass columns reversed so column 0 is the primary key.
        self.order = np.lexsort(codes.T[::-1])
        self.rank = np.empty(n, dtype=np.int64)
        self.rank[self.order] = np.arange(n)
        sorted_codes = codes[self.order]
        self.sorted_codes = sorted_codes

        # changed[i, d]: sorted row i starts a new prefix of length d + 1 (differs from row i - 1
        # somewhere in its first d + 1 tokens); those rows are where the depth-(d + 1) nodes begin.
        changed = np.ones((n, depth), dtype=bool)
        changed[1:] = np.logical_or.accumulate(sorted_codes[1:] != sorted_codes[:-1], axis=1)
        lo, hi, tok, dep = [np.array([0])], [np.array([n])], [np.array([-1])], [np.array([0])]
        first_child = []
        n_children = []
        level_lo = np.array([0])  # row starts of the nodes of the previous depth
        next_id = 1
        for d in range(depth):
            starts = np.flatnonzero(changed[:, d])
            ends = np.append(starts[1:], n)
            # parent of each new node: the previous-depth node whose range holds its first row
            parent = np.searchsorted(level_lo, starts, side="right") - 1
            counts = np.bincount(parent, minlength=len(level_lo))
            first = next_id + np.concatenate(([0], np.cumsum(counts)[:-1]))
            first_child.append(first)
            n_children.append(counts)
            lo.append(starts)
            hi.append(ends)
            tok.append(sorted_codes[starts, d])
            dep.append(np.full(len(starts), d + 1))
            next_id += len(starts)
            level_lo = starts
        n_leaves = len(level_lo)
        first_child.append(np.full(n_leaves, next_id))  # leaves: no children
        n_children.append(np.zeros(n_leaves, dtype=np.int64))
        self.node_lo = np.concatenate(lo)
        self.node_hi = np.concatenate(hi)
        self.node_token = np.concatenate(tok)
        self.node_depth = np.concatenate(dep)
        self.first_child = np.concatenate(first_child)
        self.n_children = np.concatenate(n_children).astype(np.int64)
        self.n_nodes = len(self.node_lo)
        self._child_dicts: dict[int, dict[int, int]] = {}
        self._torch: dict[torch.device, dict[str, torch.Tensor]] = {}  # per device

    # -- the slow, one-prefix-at-a-time interface (generate's prefix_allowed_tokens_fn) --

    def _child_dict(self, node: int) -> dict[int, int]:
        found = self._child_dicts.get(node)
        if found is None:
            first, count = int(self.first_child[node]), int(self.n_children[node])
            found = {int(self.node_token[c]): c for c in range(first, first + count)}
            self._child_dicts[node] = found
        return found

    def node_of(self, prefix: Sequence[int]) -> int:
        """Node id of an identifier prefix; -1 if no item starts with it."""
        node = 0
        for token in prefix:
            node = self._child_dict(node).get(int(token), -1)
            if node < 0:
                return -1
        return node

    def allowed_next_tokens(self, prefix: Sequence[int]) -> list[int]:
        """Identifier tokens that may follow ``prefix`` (identifier tokens only, no behaviour token).

        Empty when ``prefix`` is already a complete identifier; raises
        ``KeyError`` when no item starts with ``prefix``.
        """
        node = self.node_of(prefix)
        if node < 0:
            raise KeyError(f"no item identifier starts with {list(prefix)}")
        return list(self._child_dict(node))

    def items_of(self, prefix: Sequence[int]) -> np.ndarray:
        """Item indices whose identifier starts with ``prefix`` (ascending)."""
        node = self.node_of(prefix)
        if node < 0:
            return np.zeros(0, dtype=np.int64)
        return np.sort(self.order[self.node_lo[node] : self.node_hi[node]])

    # -- the vectorised interface (the fast path) --

    def allowed_nodes(self, candidates: np.ndarray) -> np.ndarray:
        """``[batch, n_nodes]`` bool: does the node's subtree hold one of the example's candidates?

        ``candidates [batch, n_cand]`` are item indices, -1 for padding. A
        node owns sorted rows ``[lo, hi)``; with ``counts[b, r]`` = how many of
        example b's candidates sit at sorted rows ``< r``, the node is allowed
        iff ``counts[b, hi] - counts[b, lo] > 0``.
        """
        candidates = np.asarray(candidates, dtype=np.int64)
        if candidates.ndim != 2:
            raise ValueError("candidates must be a [batch, n_cand] array")
        if candidates.size and candidates.max() >= self.n_items:
            raise ValueError("candidate item index out of range")
        batch = candidates.shape[0]
        valid = candidates >= 0
        rows = np.repeat(np.arange(batch), candidates.shape[1])[valid.ravel()]
        ranks = self.rank[candidates[valid]]
        marks = np.zeros((batch, self.n_items + 1), dtype=np.int32)
        np.add.at(marks, (rows, ranks + 1), 1)
        counts = np.cumsum(marks, axis=1)
        return (counts[:, self.node_hi] - counts[:, self.node_lo]) > 0

    def _tensors(self, device: torch.device) -> dict[str, torch.Tensor]:
        if device not in self._torch:
            self._torch[device] = {
                "first_child": torch.from_numpy(self.first_child).to(device),
                "n_children": torch.from_numpy(self.n_children).to(device),
                "node_token": torch.from_numpy(np.maximum(self.node_token, 0)).to(device),
            }
        return self._torch[device]

    def children(self, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batched child look-up: for nodes of any shape ``S``, ``(child_ids, tokens, valid)`` of shape ``S + [C]``.

        ``C`` is the largest child count among ``nodes``; padding slots have
        ``valid == False`` (their ids/tokens are placeholders, 0).
        """
        t = self._tensors(nodes.device)
        count = t["n_children"][nodes]
        width = int(count.max()) if count.numel() else 0
        slot = torch.arange(width)
        valid = slot < count.unsqueeze(-1)
        child = torch.where(valid, t["first_child"][nodes].unsqueeze(-1) + slot, torch.zeros((), dtype=torch.long))
        return child, t["node_token"][child], valid

    def next_token_mask(self, nodes: torch.Tensor, vocab_size: int, node_allowed: torch.Tensor | None = None) -> torch.Tensor:
        """Dense ``[n, vocab_size]`` bool mask of the allowed next identifier tokens of ``nodes [n]``.

        ``node_allowed`` (``[n, n_nodes]`` bool, e.g. rows of
        :meth:`allowed_nodes`) restricts children to a candidate list. The
        beam search uses the sparse :meth:`children` directly; this dense form
        is what a logits processor would add as ``0 / -inf``.
        """
        child, tokens, valid = self.children(nodes)
        if node_allowed is not None:
            valid = valid & torch.gather(node_allowed, 1, child)
        mask = torch.zeros(len(nodes), vocab_size, dtype=torch.bool)
        mask[torch.arange(len(nodes)).unsqueeze(1).expand_as(tokens)[valid], tokens[valid]] = True
        return mask

    def leaf_items(self, leaves: np.ndarray, candidates_row: np.ndarray | None = None) -> np.ndarray:
        """Item index for leaf nodes (``-1`` stays ``-1``): the lowest allowed item with that identifier."""
        leaves = np.asarray(leaves, dtype=np.int64)
        out = np.full(leaves.shape, -1, dtype=np.int64)
        ok = leaves >= 0
        lo = self.node_lo[leaves[ok]]
        if candidates_row is None:
            out[ok] = self.order[lo]  # sorted rows tie-break by ascending item index
        else:
            cand = np.asarray(candidates_row)
            cand_ranks = np.sort(self.rank[cand[cand >= 0]])
            out[ok] = self.order[cand_ranks[np.searchsorted(cand_ranks, lo)]]
        return out


def make_prefix_allowed_tokens_fn(
    tries: ItemTrie | Sequence[ItemTrie], behaviour_token: int, eos_token: int
) -> Callable[[int, torch.Tensor], list[int]]:
    """``prefix_allowed_tokens_fn(batch_id, sent)`` for ``model.generate`` (the official-style slow path).

    ``sent`` is a beam's decoder sequence so far, decoder start token
    included. ``tries`` is one trie for all examples or one per example (the
    official code builds one per example for candidate lists).
    """
    shared = tries if isinstance(tries, ItemTrie) else None

    def allowed(batch_id: int, sent: torch.Tensor) -> list[int]:
        trie = shared if shared is not None else tries[batch_id]
        prefix = sent.tolist()[1:]  # drop the decoder start token
        if not prefix:
            return [behaviour_token]
        if prefix[0] != behaviour_token:
            return [eos_token]  # unreachable for live beams; never return [] (generate raises on it)
        ident = prefix[1:]
        if len(ident) >= trie.depth:
            return [eos_token]
        try:
            return trie.allowed_next_tokens(ident)
        except KeyError:  # unreachable for live beams
            return [eos_token]

    return allowed
