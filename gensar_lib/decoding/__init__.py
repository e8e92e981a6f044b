"""Constrained beam search over item identifiers with a T5 model (notebook 05_t5_training).

GenSAR decodes an item by generating its identifier. With the decoder start
token ``<pad>`` given, a valid output is exactly::

    <pad>  <behaviour>  c_1 c_2 ... c_L  </s>

where ``<behaviour>`` is the task's token (``<rec_item>`` or ``<src_item>``)
and ``c_1 .. c_L`` are the identifier tokens of one real item (``codes[i]``,
an int array ``[n_items, L]`` of token ids). Nothing else may be generated.

The package keeps the lesson apart from the engine:

* :mod:`~gensar_lib.decoding.trie` -- :class:`ItemTrie`, which decides what
  may come next (the lesson; exercise 5.1 rebuilds its look-up);
* :mod:`~gensar_lib.decoding.search` -- :func:`beam_search`, the readable
  constrained beam search that notebook 05 steps through, and the references
  it is tested against: :func:`generate_reference` (the official code's
  ``model.generate(prefix_allowed_tokens_fn=...)``) and
  :func:`exhaustive_scores` (teacher forcing: every allowed item's exact
  log-likelihood, the ground truth);
* :mod:`~gensar_lib.decoding.fast` -- :func:`constrained_beam_search`, the
  batched engine that evaluation uses, with the same signature's results:
  the same items and scores as ``generate``, several times faster. It reaches
  into ``transformers``' T5 internals, fenced by :func:`check_t5_internals`.

Why every path returns *exactly* what ``generate`` returns: each takes the
log-softmax over the full vocabulary and only then discards disallowed tokens
(``generate`` adds ``-inf`` to them), so a hypothesis's score is the sum of its
tokens' true log-probabilities, behaviour token and ``</s>`` included. Every
hypothesis has the same length ``L + 2``, so ``generate``'s length penalty
(``sequences_scores = sum_log_probs / (L + 2) ** length_penalty``) divides all
of them by the same number and never reorders them.

Items that share one identifier (collisions) cannot be told apart by decoding:
an identifier stands for the lowest item index among the allowed items that
carry it.
"""
from gensar_lib.decoding.fast import check_t5_internals, constrained_beam_search
from gensar_lib.decoding.search import (
    BeamResult,
    beam_search,
    exhaustive_scores,
    generate_reference,
    ranked_items,
    top_k_from_scores,
)
from gensar_lib.decoding.trie import ItemTrie, make_prefix_allowed_tokens_fn

__all__ = ["BeamResult", "ItemTrie", "beam_search", "check_t5_internals", "constrained_beam_search",
           "exhaustive_scores", "generate_reference", "make_prefix_allowed_tokens_fn", "ranked_items",
           "top_k_from_scores"]
