"""Semi-synthetic queries and search twins (gensar_lib.data.queries, notebook 00_data)."""
from __future__ import annotations

import json
import warnings

import pytest

from gensar_lib.data.queries import (
    add_search_events,
    item_queries,
    query_from_categories,
    singular,
    text_terms,
)
from gensar_lib.data.schema import Dataset, DataError, DataWarning, Event, Item, validate


# ---------------------------------------------------------------- text_terms


def test_text_terms_lowercases_splits_and_drops_stop_words():
    assert text_terms("The Pens & Refills for an Office") == ["pen", "refill", "office"]


def test_text_terms_splits_on_every_non_alphanumeric():
    assert text_terms("Self-Stick Notes, 3x3/yellow") == ["self", "stick", "note", "3x3", "yellow"]


def test_text_terms_decodes_html_entities():
    assert text_terms("AT&amp;T Phones &amp; Fax&nbsp;Machines") == ["t", "phone", "fax", "machine"]
    assert "amp" not in text_terms("Pens &amp; Refills")
    assert "nbsp" not in text_terms("Desk&nbsp;Pads")


def test_text_terms_possessive_and_apostrophes():
    assert text_terms("Children's Music") == ["child", "music"]
    assert text_terms("Swingline\u2019s staplers") == ["swingline", "stapler"]


@pytest.mark.parametrize(
    "word, expected",
    [
        ("supplies", "supply"),
        ("accessories", "accessory"),
        ("boxes", "box"),
        ("shelves", "shelf"),
        ("pouches", "pouch"),
        ("children", "child"),
        ("glasses", "glass"),
        ("styluses", "stylus"),
        ("dictionaries", "dictionary"),
        ("skis", "ski"),
        ("indices", "index"),
    ],
)
def test_singular_plurals(word, expected):
    assert singular(word) == expected


@pytest.mark.parametrize(
    "word",
    ["glass", "scissors", "business", "compass", "address", "porous", "status", "bus", "gas",
     "lens", "canvas", "analysis", "series", "news", "electronics", "data", "gps", "s", "3d",
     "pen", "equipment", "furniture"],
)
def test_singular_leaves_singular_or_fixed_words_alone(word):
    assert singular(word) == word


def test_text_terms_never_mangles_glass_and_scissors():
    assert text_terms("Glass Scissors Glasses") == ["glass", "scissors", "glass"]


def test_text_terms_empty_and_stop_word_only():
    assert text_terms("") == []
    assert text_terms("the and of & , -") == []


def test_singular_is_cached():
    singular.cache_clear()
    text_terms("printers printers printers")
    info = singular.cache_info()
    assert info.misses == 1 and info.hits == 2


# ---------------------------------------------------------------- queries


def test_query_two_levels():
    assert query_from_categories(["Cell Phones & Accessories", "Cases"]) == "cell phone accessory case"


def test_query_repeats_dropped_top_down():
    path = ["Office & School Supplies", "Writing & Correction Supplies", "Pens & Refills", "Ballpoint Pens"]
    assert query_from_categories(path) == "office school supply writing correction pen refill ballpoint"


def test_query_repeat_within_one_level_dropped():
    assert query_from_categories(["Tape, Adhesives", "Tape Tape Dispensers"]) == "tape adhesive dispenser"


def test_query_single_level_or_empty_is_none():
    assert query_from_categories(["Office Electronics"]) is None
    assert query_from_categories([]) is None
    assert query_from_categories(()) is None


def test_query_all_stop_words_is_none():
    assert query_from_categories(["The", "Other"]) is None


def test_query_is_html_free_and_has_no_stop_words():
    q = query_from_categories(["Office &amp; School Supplies", "Forms, Recordkeeping &amp; Money Handling"])
    assert q == "office school supply form recordkeeping money handling"
    assert "amp" not in q.split() and "&" not in q
    q2 = query_from_categories(["Home & Kitchen", "Kitchen & Dining", "Small Appliances", "Other"])
    assert q2 == "home kitchen dining small appliance"


def test_query_scissors_stays_scissors():
    path = ["Office & School Supplies", "Cutting & Measuring Devices", "Scissors"]
    assert query_from_categories(path) == "office school supply cutting measuring device scissors"


def test_query_rejects_a_bare_string():
    with pytest.raises(TypeError):
        query_from_categories("Office, Pens")


# ---------------------------------------------------------------- search twins


def _toy() -> Dataset:
    items = [
        Item("a", "Blue pen", categories=("Office & School Supplies", "Pens")),
        Item("b", "Stapler", categories=("Office & School Supplies", "Staplers")),
        Item("c", "Fax", categories=("Office Electronics",)),  # no query
    ]
    seqs = [
        [Event(0, 0), Event(1, 2), Event(1, 1), Event(5, 0)],
        [Event(10, 1), Event(11, 1), Event(12, 2)],
    ]
    return Dataset("toy", items, ["u0", "u1"], seqs, source="toy", meta={"layout": "test"})


def test_twins_follow_their_review_with_same_time_item_and_query():
    ds = _toy()
    out = add_search_events(ds, 1.0, seed=0)
    assert out.sequences[0] == [
        Event(0, 0), Event(0, 0, "office school supply pen"),
        Event(1, 2),
        Event(1, 1), Event(1, 1, "office school supply stapler"),
        Event(5, 0), Event(5, 0, "office school supply pen"),
    ]
    assert out.sequences[1] == [
        Event(10, 1), Event(10, 1, "office school supply stapler"),
        Event(11, 1), Event(11, 1, "office school supply stapler"),
        Event(12, 2),
    ]
    assert out.meta["search_events_added"] == 5
    assert out.meta["layout"] == "test"
    assert out.meta["items_with_query"] == 2 and out.meta["distinct_queries"] == 2
    validate(out)


def test_add_search_events_returns_a_new_dataset():
    ds = _toy()
    before = [list(s) for s in ds.sequences]
    out = add_search_events(ds, 1.0, seed=0)
    assert out is not ds and ds.sequences == before and "search_events_added" not in ds.meta
    assert out.items == ds.items and out.users == ds.users


def test_fraction_zero_adds_nothing():
    ds = _toy()
    out = add_search_events(ds, 0.0, seed=3)
    assert out.sequences == ds.sequences and out.meta["search_events_added"] == 0


@pytest.mark.parametrize("fraction", [-0.1, 1.5, float("nan")])
def test_fraction_outside_unit_interval_is_an_error(fraction):
    with pytest.raises(DataError, match="search_fraction"):
        add_search_events(_toy(), fraction, seed=0)


def test_adding_twice_is_an_error():
    once = add_search_events(_toy(), 1.0, seed=0)
    with pytest.raises(DataError, match="already"):
        add_search_events(once, 1.0, seed=0)


def _big() -> Dataset:
    items = [Item(str(i), f"item {i}", categories=("Office", f"Kind{i % 7}")) for i in range(50)]
    seqs = [[Event(t, (u * 7 + t) % 50) for t in range(20)] for u in range(100)]
    return Dataset("big", items, [f"u{u}" for u in range(100)], seqs)


def test_fraction_is_seeded_and_roughly_respected():
    ds = _big()
    a = add_search_events(ds, 0.3, seed=7)
    b = add_search_events(ds, 0.3, seed=7)
    c = add_search_events(ds, 0.3, seed=8)
    assert a.sequences == b.sequences
    assert a.sequences != c.sequences
    n = a.meta["search_events_added"]
    assert 0.25 * 2000 < n < 0.35 * 2000
    assert sum(1 for _ in a.events("search")) == n
    assert a.meta["search_fraction"] == 0.3 and a.meta["search_seed"] == 7


def test_every_twin_directly_follows_its_review():
    out = add_search_events(_big(), 0.5, seed=1)
    queries = item_queries(out)
    for seq in out.sequences:
        for prev, ev in zip(seq, seq[1:]):
            if ev.query is not None:
                assert prev.query is None and prev.item == ev.item and prev.time == ev.time
                assert ev.query == queries[ev.item]
        assert seq[0].query is None


# ---------------------------------------------------------------- no categories: a warning, not silence


def test_no_item_with_a_query_warns_with_the_count():
    ds = _toy()
    flat = Dataset(ds.name, [Item(it.id, it.title, categories=it.categories[:1]) for it in ds.items],
                   ds.users, ds.sequences, ds.source, dict(ds.meta))
    with pytest.warns(DataWarning, match=r"toy: 3 of 3 items have no query .* no search cases"):
        out = add_search_events(flat, 1.0, seed=0)
    assert out.meta["search_events_added"] == 0


def test_items_with_queries_or_fraction_zero_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        add_search_events(_toy(), 1.0, seed=0)  # one item of three has no query: expected, no warning
        add_search_events(_toy(), 0.0, seed=0)  # no search asked for


def test_prepare_data_without_categories_warns_also_from_the_cache(tmp_path):
    from gensar_lib.artifacts import ArtifactCache
    from gensar_lib.config import load_profile
    from gensar_lib.data.pipeline import prepare_data

    folder = tmp_path / "flat"
    folder.mkdir()
    items = {str(i): {"title": f"item {i}", "categories": "Office Products"} for i in range(150)}
    inter = {f"u{u}": [(u * 7 + t) % 150 for t in range(5)] for u in range(30)}
    (folder / "Flat.item.json").write_text(json.dumps(items))
    (folder / "Flat.inter.json").write_text(json.dumps(inter))
    cache = ArtifactCache(tmp_path / "cache")
    for _ in range(2):  # built, then read from the cache
        with pytest.warns(DataWarning, match="150 of 150 items have no query"):
            prepared = prepare_data(str(folder), load_profile("tiny"), cache)
        assert prepared.split.counts()["test"].get("search", 0) == 0
