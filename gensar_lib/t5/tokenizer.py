"""The T5 tokenizer: corpus-trained Unigram pieces plus one token per behaviour and identifier token
(notebook 04_instructions; notebook 05_t5_training trains with it).

:func:`train_tokenizer` trains a Unigram tokenizer on the corpus, with T5's special tokens (``<pad>``,
``</s>``, ``<unk>`` at ids 0, 1, 2), then adds the behaviour tokens (``<rec_item>``, ``<src_item>``,
``<src_query>``) and every identifier token (``<shared_a_3>``, ...) so that each is ONE token.
:func:`load_pretrained_tokenizer` does the same on top of t5-small's own tokenizer for users who have it
locally. Departure: the CPU profiles train their own vocabulary instead of reusing t5-small's.
"""
from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from gensar_lib.config import ConfigError
from gensar_lib.tasks import BEHAVIOUR_TOKENS

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
T5_SPECIALS: tuple[str, ...] = (PAD, EOS, UNK)  # ids 0, 1, 2 as in T5
IDENTIFIER_PATTERN = re.compile(r"<(?:shared|semantic|collab)_[a-z]_\d+>|<dedup_\d+>")
# A fixed printable alphabet, so digits and punctuation never become <unk>.
INITIAL_ALPHABET = [chr(c) for c in range(33, 127)]

Tokenizer = Any  # a transformers fast tokenizer (PreTrainedTokenizerFast / TokenizersBackend)


def quiet_transformers() -> None:
    """Silence the "Loading weights" bar transformers 5 prints on every load."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def offline_error(name: str, what: str) -> ConfigError:
    """The error for a pretrained tokenizer or model that is neither a folder nor in the local cache."""
    return ConfigError(
        f"pretrained {what} {name!r} is not available offline: it is neither a local folder nor in "
        "the Hugging Face cache, and this suite never downloads. On a machine with internet run "
        f"`python -c \"from transformers import AutoTokenizer, T5ForConditionalGeneration as T; "
        f"T.from_pretrained('{name}').save_pretrained('models/{name}'); "
        f"AutoTokenizer.from_pretrained('{name}').save_pretrained('models/{name}')\"`, copy the folder "
        f"here and set ModelConfig(pretrained='models/{name}'), or use pretrained=None to train a "
        "small T5 from scratch (the tiny and small profiles)."
    )


def behaviour_and_identifier_tokens(identifier_tokens: Iterable[str]) -> list[str]:
    """The behaviour tokens followed by ``identifier_tokens`` in their order, without repeats."""
    return list(dict.fromkeys([*BEHAVIOUR_TOKENS, *identifier_tokens]))


def _strip_tokens(texts: Iterable[str], tokens: Sequence[str]) -> Iterator[str]:
    """``texts`` with every added token replaced by a space (they must not shape the Unigram vocabulary)."""
    by_length = sorted(set(tokens) | set(BEHAVIOUR_TOKENS), key=len, reverse=True)
    pattern = re.compile("|".join(map(re.escape, by_length)) + "|" + IDENTIFIER_PATTERN.pattern)
    for text in texts:
        yield pattern.sub(" ", text)


def _unigram_backend(texts: Iterable[str], vocab_size: int) -> Any:
    """A ``tokenizers.Tokenizer``: NFKC, Metaspace words, Unigram pieces, ``</s>`` appended.

    The pieces come from ``tokenizers``' Unigram trainer, whose piece order and
    scores vary from process to process (Rust hash-map order; up to about 0.008
    in score here). :func:`_canonical_scores` then fixes the order and re-scores
    the pieces deterministically, so one corpus gives one byte-identical
    ``tokenizer.json`` in every process (notebook 05).
    """
    from tokenizers import Regex, Tokenizer as RawTokenizer
    from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

    texts = list(texts)
    raw = RawTokenizer(models.Unigram())
    raw.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(r"\s+"), " ")])
    raw.pre_tokenizer = pre_tokenizers.Metaspace()
    raw.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=list(T5_SPECIALS),
        unk_token=UNK,
        initial_alphabet=INITIAL_ALPHABET,
        show_progress=False,
    )
    raw.train_from_iterator(texts, trainer)
    _canonical_scores(raw, texts, sorted(p for p in raw.get_vocab() if p not in T5_SPECIALS))
    eos_id = raw.token_to_id(EOS)
    raw.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}", special_tokens=[(EOS, eos_id)]
    )
    return raw


def _canonical_scores(raw: Any, texts: list[str], pieces: list[str], rounds: int = 2) -> None:
    """Give ``raw`` a Unigram model of the specials then ``pieces`` (sorted), scored by hard EM.

    Starting from equal scores (fewest pieces per word), each round segments the
    corpus with the current scores and sets every piece's score to its
    add-one-smoothed log relative frequency. Integer counts in a fixed order make
    the result the same in every process.
    """
    from tokenizers import models

    specials = [(t, 0.0) for t in T5_SPECIALS]
    raw.model = models.Unigram(specials + [(p, -1.0) for p in pieces], unk_id=2)
    for _ in range(rounds):
        ids = [i for enc in raw.encode_batch(texts, add_special_tokens=False) for i in enc.ids]
        counts = np.bincount(np.asarray(ids, dtype=np.int64), minlength=len(specials) + len(pieces))
        counts = counts[len(specials):]
        log_total = math.log(int(counts.sum()) + len(pieces))
        scores = [round(math.log(int(c) + 1) - log_total, 6) for c in counts]
        raw.model = models.Unigram(specials + list(zip(pieces, scores)), unk_id=2)


def add_special_tokens(tokenizer: Tokenizer, special_tokens: Sequence[str]) -> Tokenizer:
    """Add behaviour + identifier tokens so each encodes to one id, with or without spaces around it.

    ``lstrip=True`` lets a token swallow the space before it, so
    ``"<rec_item> <shared_a_3>"`` and ``"<rec_item><shared_a_3>"`` give the same
    ids; they are ordinary (not "special") tokens, so ``decode(...,
    skip_special_tokens=True)`` keeps them.
    """
    from tokenizers import AddedToken

    tokens = behaviour_and_identifier_tokens(special_tokens)
    tokenizer.add_tokens(
        [AddedToken(t, lstrip=True, rstrip=False, normalized=False, single_word=False) for t in tokens]
    )
    check_single_tokens(tokenizer, tokens)
    return tokenizer


def check_single_tokens(tokenizer: Tokenizer, tokens: Sequence[str]) -> None:
    """Raise ``ValueError`` if any token of ``tokens`` does not encode to exactly one id."""
    joined = "".join(tokens)
    ids = tokenizer(joined, add_special_tokens=False)["input_ids"]
    if len(ids) != len(tokens) or UNK in tokenizer.convert_ids_to_tokens(ids):
        bad = [t for t in tokens if len(tokenizer(t, add_special_tokens=False)["input_ids"]) != 1]
        raise ValueError(f"these tokens are not single tokens of the tokenizer: {bad[:10]}")


def train_tokenizer(texts: Iterable[str], vocab_size: int, special_tokens: Sequence[str]) -> Tokenizer:
    """A corpus-trained Unigram tokenizer with T5's specials at 0/1/2 and ``special_tokens`` added.

    ``texts`` are sources and targets of the instruction data; identifier and
    behaviour tokens inside them are removed before training, then every
    behaviour token and every token of ``special_tokens`` (the identifier
    tokens) is added as one token on top of ``vocab_size``. Departure: the
    paper reuses t5-small's SentencePiece vocabulary (:func:`load_pretrained_tokenizer`).
    """
    from transformers import PreTrainedTokenizerFast

    raw = _unigram_backend(_strip_tokens(texts, special_tokens), vocab_size)
    ids = [raw.token_to_id(t) for t in T5_SPECIALS]
    if ids != [0, 1, 2]:
        raise RuntimeError(f"T5 specials got ids {ids}, expected [0, 1, 2]")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, pad_token=PAD, eos_token=EOS, unk_token=UNK, model_max_length=1024
    )
    return add_special_tokens(tokenizer, special_tokens)


def load_pretrained_tokenizer(name_or_path: str, special_tokens: Sequence[str]) -> Tokenizer:
    """t5-small's tokenizer (cache name or local folder) with behaviour + identifier tokens added.

    Raises :class:`~gensar_lib.config.ConfigError` naming the model when it is
    not available offline.
    """
    from transformers import AutoTokenizer

    quiet_transformers()
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, local_files_only=True)
    except (OSError, ValueError) as err:
        raise offline_error(name_or_path, "tokenizer") from err
    return add_special_tokens(tokenizer, special_tokens)


def tokenizer_fingerprint(tokenizer: Tokenizer) -> str:
    """A hash of the tokenizer's full definition (pieces, scores, added tokens)."""
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()[:16]
