"""Semi-synthetic search queries from category paths (notebook 00_data).

Amazon review data has no search logs. Following Ai et al. (SIGIR 2017), as
the GenSAR paper does for its Amazon data, an item's query is built from its
category path: lower-case, stop words dropped, nouns singularised, and every
word already used at a higher level dropped, from the top level down
(``["Cell Phones & Accessories", "Cases"] -> "cell phone accessory case"``).
Each review of an item with such a query then also yields a search event, a
same-time twin of the review (``add_search_events``).

``text_terms`` is also the tokeniser of the BM25 index (candidate lists and
the BM25 baseline), so queries and documents are normalised the same way.
"""
from __future__ import annotations

import html
import re
import warnings
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from gensar_lib.data.schema import Dataset, DataError, DataWarning, Event

STOP_WORDS: frozenset[str] = frozenset(ENGLISH_STOP_WORDS)

# Runs of letters/digits (any script); "_" counts as a separator.
_TOKEN = re.compile(r"[^\W_]+")
# Possessive "'s" ("Children's" -> "children"); other apostrophes join ("don't" -> "dont").
_POSSESSIVE = re.compile(r"['\u2019]s\b")
_APOSTROPHE = re.compile(r"['\u2019]")

# Words inflect would mangle or that are not plurals in a catalogue.
KEEP_AS_IS: frozenset[str] = frozenset(
    """
    alias atlas bias canvas christmas gas lens texas vegas yes gps ios abs
    data media news series species scissors pliers tweezers shears tongs dice
    jeans pants shorts trousers leggings tights pajamas pyjamas overalls
    sunglasses eyeglasses goggles binoculars
    electronics graphics optics acoustics physics mathematics economics
    politics ethics athletics aerobics gymnastics robotics analytics logistics
    """.split()
)
# Plurals the guards below would miss, or inflect gets wrong.
PLURALS: dict[str, str] = {
    "skis": "ski", "taxis": "taxi", "menus": "menu", "tutus": "tutu",
    "indices": "index", "matrices": "matrix", "vertices": "vertex", "appendices": "appendix",
}
# Endings of singular words that inflect strips an "s" from (bus -> bu, porous -> porou).
_SINGULAR_ENDINGS = ("ss", "us", "is", "ous")


@lru_cache(maxsize=1)
def _engine():
    """The inflect engine, built on first use (importing inflect takes about 2 s)."""
    import inflect

    return inflect.engine()


@lru_cache(maxsize=None)
def singular(word: str) -> str:
    """The singular of a lower-case word, guarded against inflect's mangling."""
    if word in PLURALS:
        return PLURALS[word]
    if len(word) <= 2 or word in KEEP_AS_IS or word.endswith(_SINGULAR_ENDINGS) or word.isdigit():
        return word
    single = _engine().singular_noun(word)
    return single if single else word


def text_terms(text: str) -> list[str]:
    """Lower-cased, stop-word-free, singularised terms of ``text``, in order.

    HTML entities are decoded first and every non-alphanumeric character
    (``&``, ``,``, ``-`` ...) separates terms. Also the BM25 tokeniser.
    """
    text = text.lower()
    if "&" in text:
        text = html.unescape(text)
    if "'" in text or "\u2019" in text:
        text = _APOSTROPHE.sub("", _POSSESSIVE.sub("", text))
    return [singular(w) for w in _TOKEN.findall(text) if w not in STOP_WORDS]


def query_key(query: str) -> str:
    """The form in which two queries count as the same query: case and surrounding spaces ignored
    (query popularity and the search-protocol statistics, notebook 06_identifier_ablation)."""
    return " ".join(query.lower().split())


def query_from_categories(path: Sequence[str]) -> str | None:
    """Ai et al. 2017 query of a category path; None below two levels (notebook 00_data).

    Levels are read top down; a term already used (at a higher level or
    earlier in the same level) is dropped.
    """
    if isinstance(path, str):
        raise TypeError("query_from_categories takes a sequence of levels, not one string")
    if len(path) < 2:
        return None
    seen: dict[str, None] = {}
    for level in path:
        for term in text_terms(level):
            seen.setdefault(term, None)
    return " ".join(seen) or None


def item_queries(ds: Dataset) -> list[str | None]:
    """The query of every item (None where its path has fewer than two levels)."""
    return [query_from_categories(item.categories) for item in ds.items]


def add_search_events(ds: Dataset, fraction: float, seed: int) -> Dataset:
    """Add a search twin to reviews of items with a query (notebook 00_data).

    Each recommendation event whose item has a query yields, with probability
    ``fraction`` (1 = every one, the official protocol), a search event with
    the same user, time and item, placed right after it. Returns a new
    Dataset; ``meta`` records how many twins were added.
    """
    if not 0.0 <= fraction <= 1.0:
        raise DataError(f"{ds.source or ds.name}: field 'search_fraction' must be in [0, 1], got {fraction!r}")
    if "search_events_added" in ds.meta:
        raise DataError(f"{ds.source or ds.name}: search events were already added (meta 'search_events_added')")
    queries = item_queries(ds)
    rng = np.random.default_rng(seed)
    sequences: list[list[Event]] = []
    added = 0
    for seq in ds.sequences:
        eligible = [ev.query is None and queries[ev.item] is not None for ev in seq]
        keep = rng.random(sum(eligible)) < fraction
        out: list[Event] = []
        k = 0
        for ev, ok in zip(seq, eligible):
            out.append(ev)
            if ok:
                if keep[k]:
                    out.append(Event(ev.time, ev.item, queries[ev.item]))
                    added += 1
                k += 1
        sequences.append(out)
    with_query = [q for q in queries if q is not None]
    meta = dict(ds.meta)
    meta.update(
        search_events_added=added,
        search_fraction=fraction,
        search_seed=seed,
        items_with_query=len(with_query),
        distinct_queries=len(set(with_query)),
    )
    out = Dataset(ds.name, list(ds.items), list(ds.users), sequences, ds.source, meta)
    warn_if_no_search(out)
    return out


def warn_if_no_search(ds: Dataset) -> None:
    """A DataWarning when search twins were asked for but none could be made (no item has a query).

    Shown once per process and dataset (the warnings module's default), also when the
    dataset comes from the cache.
    """
    meta = ds.meta
    if meta.get("search_fraction", 0) > 0 and meta.get("search_events_added") == 0:
        without = ds.n_items - meta.get("items_with_query", 0)
        warnings.warn(
            f"{ds.source or ds.name}: {without:,} of {ds.n_items:,} items have no query (a query needs a "
            "category path of at least two levels), so there are no search events and no search cases",
            DataWarning,
        )
