"""Amazon loaders (gensar_lib.data.amazon, notebook 00_data): real Office data, 2014 fixture, bad inputs."""
from __future__ import annotations

import gzip
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from gensar_lib.data.amazon import (
    clean_text,
    detect_layout,
    load_amazon2014,
    load_folder,
    load_lcrec,
)
from gensar_lib.data.queries import add_search_events, item_queries, query_from_categories
from gensar_lib.data.schema import DataError, Event

FIXTURE_2014 = Path(__file__).parent / "fixtures" / "amazon2014"
REVIEWS = "reviews_Office_Products_5.json"
META = "meta_Office_Products.json"


# ---------------------------------------------------------------- real Office data (LC-Rec layout)


@pytest.fixture(scope="module")
def office(office_dir):
    return load_lcrec(office_dir)


def test_office_counts(office):
    assert office.name == "Office"
    assert office.n_users == 4905
    assert office.n_items == 2420
    assert sum(1 for _ in office.events("rec")) == 53258
    assert sum(1 for _ in office.events("search")) == 0


def test_office_ids_and_order(office):
    assert [it.id for it in office.items[:3]] == ["0", "1", "2"]
    assert office.users[:2] == ["0", "1"]
    assert office.sequences[0] == [Event(t, t) for t in range(5)]  # time = position
    assert min(len(s) for s in office.sequences) == 5 and max(len(s) for s in office.sequences) == 94


def test_office_has_no_html_entities_left(office):
    for it in office.items:
        for text in (it.title, it.brand, *it.categories):
            assert "&amp;" not in text and "&quot;" not in text and "&#" not in text and "&reg;" not in text
    assert office.items[2].title == "AT&T 210 Corded Phone, Black, 1 Handset"
    assert office.items[2].brand == "AT&T"
    assert sum("&amp;" in it.description or "&nbsp;" in it.description for it in office.items) == 0


def test_office_top_category_absent(office):
    firsts = Counter(it.categories[0] for it in office.items if it.categories)
    assert "Office Products" not in firsts
    assert firsts.most_common(1)[0] == ("Office & School Supplies", 1665)
    assert office.meta["top_category_dropped"] is None  # 69% < 90%: nothing to drop


def test_office_single_level_paths_get_no_query(office):
    single = [it for it in office.items if len(it.categories) == 1]
    assert len(single) == 69
    queries = item_queries(office)
    assert sum(q is None for q in queries) == 69
    assert all(queries[i] is None for i, it in enumerate(office.items) if len(it.categories) < 2)


def test_office_comma_level_is_split(office):
    # "Calendars, Planners & Personal Organizers" is split on its comma (documented).
    it = next(it for it in office.items if "Planners & Personal Organizers" in it.categories)
    assert it.categories[:3] == ("Office & School Supplies", "Calendars", "Planners & Personal Organizers")


def test_office_search_twins(office):
    out = add_search_events(office, 1.0, seed=0)
    queries = item_queries(office)
    eligible = sum(queries[ev.item] is not None for _, ev in office.events("rec"))
    assert out.meta["search_events_added"] == eligible
    assert out.meta["items_with_query"] == 2420 - 69


def test_load_folder_detects_lcrec(office_dir):
    assert detect_layout(office_dir) == "lcrec"
    assert load_folder(office_dir, min_user_events=5).n_users == 4905


# ---------------------------------------------------------------- 2014 layout fixture


def _gzip_fixture(dest: Path) -> Path:
    for name in (REVIEWS, META):
        with open(FIXTURE_2014 / name, "rb") as src, gzip.open(dest / f"{name}.gz", "wb") as out:
            shutil.copyfileobj(src, out)
    return dest


@pytest.fixture
def dir2014(tmp_path) -> Path:
    """The hand-written 2014 fixture as real .json.gz files."""
    return _gzip_fixture(tmp_path)


@pytest.fixture
def ds2014(dir2014):
    return load_amazon2014(dir2014)


def _ids(ds, u):
    return [ds.items[e.item].id for e in ds.sequences[u]]


def test_2014_catalogue_is_reviewed_items_in_meta_order(ds2014):
    assert ds2014.name == "Office_Products"
    assert [it.id for it in ds2014.items] == ["B000A", "B000B", "B000C", "B000D", "B000E", "B000G", "B000H"]
    assert ds2014.users == ["U1", "U2", "U3", "U4"]
    assert sum(1 for _ in ds2014.events()) == 16


def test_2014_timestamps_kept_and_sorted_stably(ds2014):
    assert _ids(ds2014, 0) == ["B000B", "B000A", "B000C", "B000E"]  # A and C tie: file order
    assert [e.time for e in ds2014.sequences[0]] == [1380000000, 1390000000, 1390000000, 1400000000]
    assert _ids(ds2014, 2) == ["B000E", "B000B", "B000C", "B000G"]
    assert _ids(ds2014, 3) == ["B000C", "B000D", "B000E", "B000H"]  # all on one day
    assert {e.time for e in ds2014.sequences[3]} == {1200000000}


def test_2014_top_category_dropped_and_first_path_used(ds2014):
    assert ds2014.meta["top_category_dropped"] == "Office Products"
    assert ds2014.meta["top_category_rule"] == "auto"
    assert all(not it.categories or it.categories[0] != "Office Products" for it in ds2014.items)
    b = ds2014.items[1]
    assert b.categories == ("Office & School Supplies", "Staplers & Punches", "Manual Staplers", "Desktop Staplers")
    h = ds2014.items[-1]  # a level with a comma stays one level in the 2014 layout
    assert h.categories == ("Office & School Supplies", "Calendars, Planners & Personal Organizers", "Wall Calendars")


def test_2014_text_fields(ds2014):
    a, _, c, d, e, g, h = ds2014.items
    assert a.title == "Pilot G2 Retractable Gel Ink Pens & Refills, Black"
    assert a.description == "Smooth writing gel ink \u2014 12 pens."
    assert c.title == "Post-it\u00ae Notes, 3 in x 3 in, Canary Yellow"
    assert e.title == 'Fiskars 8" Scissors'
    assert d.title == "" and d.brand == ""  # no title in meta
    assert g.title == "Glass Desk Organizer"  # JSON-format line
    assert h.description == "Twelve months of planning"  # list description joined


def test_2014_queries(ds2014):
    assert item_queries(ds2014) == [
        "office school supply writing correction pen refill rollerball",
        "office school supply stapler punch manual desktop",
        "office school supply paper notebook writing pad self stick note",
        None,  # ("Office Electronics",): one level left
        "office school supply cutting measuring device scissors",
        "office school supply desk accessory workspace organizer",
        "office school supply calendar planner personal organizer wall",
    ]


def test_2014_twins_share_timestamps(ds2014):
    out = add_search_events(ds2014, 1.0, seed=0)
    assert out.meta["search_events_added"] == 14  # 16 reviews, 2 of B000D
    seq = out.sequences[0]
    assert [(e.time, ds2014.items[e.item].id, e.task) for e in seq[:4]] == [
        (1380000000, "B000B", "rec"), (1380000000, "B000B", "search"),
        (1390000000, "B000A", "rec"), (1390000000, "B000A", "search"),
    ]


def test_2014_top_category_given_or_kept(dir2014):
    kept = load_amazon2014(dir2014, top_category="")
    assert kept.items[0].categories[0] == "Office Products"
    assert kept.meta["top_category_dropped"] is None
    given = load_amazon2014(dir2014, top_category="Office Products")
    assert given.meta["top_category_rule"] == "given"
    assert given.items[0].categories[0] == "Office & School Supplies"


def test_2014_plain_json_and_category_argument(tmp_path):
    for name in (REVIEWS, META):
        shutil.copy(FIXTURE_2014 / name, tmp_path / name)
    ds = load_amazon2014(tmp_path, category="Office_Products")
    assert ds.n_items == 7 and ds.meta["layout"] == "amazon2014"


def test_load_folder_detects_2014(dir2014):
    assert detect_layout(dir2014) == "amazon2014"
    assert load_folder(dir2014).meta["timestamps"] == "unixReviewTime"


# ---------------------------------------------------------------- LC-Rec on hand-written folders


def _write_lcrec(folder: Path, items, inter, name: str = "Toy") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for suffix, obj in (("item", items), ("inter", inter)):
        text = obj if isinstance(obj, str) else json.dumps(obj)
        (folder / f"{name}.{suffix}.json").write_text(text, encoding="utf-8")
    return folder


TOY_ITEMS = {
    "0": {"title": "Pens &amp; Refills", "description": "Gel&nbsp;pens", "brand": "Pilot",
          "categories": "Office Products,Office & School Supplies,Pens & Refills"},
    "1": {"title": "AT&amp;T Phone", "description": ["Corded", "phone"], "brand": "AT&amp;T",
          "categories": "Office Products, Office Electronics, Telephones & Accessories"},
    "2": {"title": "Shredder", "description": "", "brand": "",
          "categories": "Office Products,Office Electronics"},
}
TOY_INTER = {"u1": [0, 1, 2], "u2": [2, 0, 1, 0]}


@pytest.fixture
def toy_lcrec(tmp_path) -> Path:
    return _write_lcrec(tmp_path / "toy", TOY_ITEMS, TOY_INTER)


def test_lcrec_toy(toy_lcrec):
    ds = load_lcrec(toy_lcrec)
    assert ds.name == "Toy" and ds.users == ["u1", "u2"]
    assert [it.id for it in ds.items] == ["0", "1", "2"]
    assert ds.sequences[1] == [Event(0, 2), Event(1, 0), Event(2, 1), Event(3, 0)]
    p, t, s = ds.items
    assert p.title == "Pens & Refills" and p.description == "Gel pens"
    assert t.title == "AT&T Phone" and t.brand == "AT&T" and t.description == "Corded phone"
    assert p.categories == ("Office & School Supplies", "Pens & Refills")  # "," without space
    assert t.categories == ("Office Electronics", "Telephones & Accessories")  # ", "
    assert s.categories == ("Office Electronics",)
    assert ds.meta["top_category_dropped"] == "Office Products"
    assert item_queries(ds) == ["office school supply pen refill", "office electronics telephone accessory", None]


def test_lcrec_name_argument_and_top_category_kept(toy_lcrec):
    ds = load_lcrec(toy_lcrec, name="Toy", top_category="")
    assert ds.items[0].categories[0] == "Office Products"
    assert query_from_categories(ds.items[2].categories) == "office product electronics"


def test_lcrec_string_item_indices(tmp_path):
    folder = _write_lcrec(tmp_path / "s", TOY_ITEMS, {"u1": ["0", "1", "2"]})
    assert load_lcrec(folder).sequences[0] == [Event(0, 0), Event(1, 1), Event(2, 2)]


def test_clean_text():
    assert clean_text("A &amp;amp; B") == "A & B"  # double-escaped
    assert clean_text("  x&nbsp;&nbsp;y \n z ") == "x y z"
    assert clean_text("AT&T;") == "AT&T;"  # not an entity: left alone


# ---------------------------------------------------------------- bad inputs: folders


@pytest.mark.parametrize("loader", [load_lcrec, load_amazon2014, load_folder])
def test_missing_folder(loader, tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match="does not exist") as e:
        loader(missing)
    assert str(missing) in str(e.value)


def test_folder_with_neither_layout(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(DataError) as e:
        load_folder(tmp_path)
    msg = str(e.value)
    assert str(tmp_path) in msg and ".inter.json" in msg and "reviews_<Category>_5.json.gz" in msg
    assert "notes.txt" in msg


def test_lcrec_two_interaction_files(toy_lcrec):
    _write_lcrec(toy_lcrec, TOY_ITEMS, TOY_INTER, name="Other")
    with pytest.raises(DataError, match="Other.inter.json, Toy.inter.json"):
        load_lcrec(toy_lcrec)


def test_lcrec_missing_item_file(tmp_path):
    folder = _write_lcrec(tmp_path / "m", TOY_ITEMS, TOY_INTER)
    (folder / "Toy.item.json").unlink()
    with pytest.raises(DataError, match=r"Toy\.item\.json: file not found"):
        load_lcrec(folder)


def test_2014_missing_meta_file(dir2014):
    (dir2014 / f"{META}.gz").unlink()
    with pytest.raises(DataError, match=r"meta_Office_Products\.json\.gz: file not found"):
        load_amazon2014(dir2014)


# ---------------------------------------------------------------- bad inputs: malformed JSON


def test_lcrec_malformed_item_json(tmp_path):
    folder = _write_lcrec(tmp_path / "b", '{"0": {"title": "x",\n "categories": "A, B"', TOY_INTER)
    with pytest.raises(DataError, match=r"Toy\.item\.json: malformed JSON at line 2 column \d+"):
        load_lcrec(folder)


def test_lcrec_malformed_inter_json(tmp_path):
    folder = _write_lcrec(tmp_path / "b", TOY_ITEMS, '{"u1": [0, 1, 2],\n"u2": [0 1 2]}')
    with pytest.raises(DataError, match=r"Toy\.inter\.json: malformed JSON at line 2 column 10"):
        load_lcrec(folder)


def _edit_2014(folder: Path, name: str, edit) -> None:
    path = folder / f"{name}.gz"
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = f.read().splitlines()
    lines = edit(lines)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def test_2014_malformed_review_line(dir2014):
    _edit_2014(dir2014, REVIEWS, lambda ls: ls[:2] + [ls[2][:40]] + ls[3:])
    with pytest.raises(DataError, match=r"reviews_Office_Products_5\.json\.gz: line 3 column \d+: malformed JSON"):
        load_amazon2014(dir2014)


def test_2014_malformed_meta_line(dir2014):
    _edit_2014(dir2014, META, lambda ls: [ls[0][:60]] + ls[1:])
    with pytest.raises(DataError, match=r"meta_Office_Products\.json\.gz: line 1: malformed record") as e:
        load_amazon2014(dir2014)
    assert "B000A" in str(e.value)


def test_2014_corrupt_gzip(dir2014):
    (dir2014 / f"{REVIEWS}.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=r"reviews_Office_Products_5\.json\.gz: unreadable"):
        load_amazon2014(dir2014)


# ---------------------------------------------------------------- bad inputs: missing or bad fields


def test_lcrec_missing_title(tmp_path):
    items = json.loads(json.dumps(TOY_ITEMS))
    del items["1"]["title"]
    folder = _write_lcrec(tmp_path / "f", items, TOY_INTER)
    with pytest.raises(DataError, match=r"Toy\.item\.json: item '1': missing field 'title'"):
        load_lcrec(folder)


def test_lcrec_missing_categories(tmp_path):
    items = json.loads(json.dumps(TOY_ITEMS))
    del items["2"]["categories"]
    folder = _write_lcrec(tmp_path / "f", items, TOY_INTER)
    with pytest.raises(DataError, match=r"Toy\.item\.json: item '2': missing field 'categories'"):
        load_lcrec(folder)


def test_lcrec_wrong_field_type(tmp_path):
    items = json.loads(json.dumps(TOY_ITEMS))
    items["0"]["title"] = 42
    folder = _write_lcrec(tmp_path / "f", items, TOY_INTER)
    with pytest.raises(DataError, match=r"Toy\.item\.json: item '0': field 'title' must be text, got 42"):
        load_lcrec(folder)


def test_2014_review_missing_time(dir2014):
    def edit(lines):
        rec = json.loads(lines[4])
        del rec["unixReviewTime"]
        return lines[:4] + [json.dumps(rec)] + lines[5:]

    _edit_2014(dir2014, REVIEWS, edit)
    with pytest.raises(DataError) as e:
        load_amazon2014(dir2014)
    msg = str(e.value)
    assert "reviews_Office_Products_5.json.gz: line 5" in msg
    assert "'unixReviewTime'" in msg and "U1" in msg and "B000C" in msg


def test_2014_review_bad_time(dir2014):
    def edit(lines):
        rec = json.loads(lines[0])
        rec["unixReviewTime"] = "01 17, 2014"
        return [json.dumps(rec)] + lines[1:]

    _edit_2014(dir2014, REVIEWS, edit)
    with pytest.raises(DataError, match=r"line 1: field 'unixReviewTime' must be an integer, got '01 17, 2014'"):
        load_amazon2014(dir2014)


def test_2014_meta_missing_asin(dir2014):
    _edit_2014(dir2014, META, lambda ls: ls + ["{'title': 'orphan', 'categories': [['Office Products']]}"])
    with pytest.raises(DataError, match=r"meta_Office_Products\.json\.gz: line 9: missing field 'asin'"):
        load_amazon2014(dir2014)


def test_2014_meta_bad_categories(dir2014):
    _edit_2014(dir2014, META, lambda ls: [ls[0].replace("'categories': [[", "'categories': [")[:-2] + "}"] + ls[1:])
    with pytest.raises(DataError, match=r"line 1: item 'B000A': field 'categories' must be a list of paths"):
        load_amazon2014(dir2014)


# ---------------------------------------------------------------- bad inputs: unknown items


def test_lcrec_unknown_item(tmp_path):
    folder = _write_lcrec(tmp_path / "u", TOY_ITEMS, {"u1": [0, 1, 2], "u2": [0, 99, 1]})
    with pytest.raises(DataError, match=r"Toy\.inter\.json: user 'u2' field 'items' has unknown item id 99"):
        load_lcrec(folder)


def test_2014_review_of_item_missing_from_meta(dir2014):
    _edit_2014(dir2014, META, lambda ls: [line for line in ls if "B000E" not in line])
    with pytest.raises(DataError) as e:
        load_amazon2014(dir2014)
    msg = str(e.value)
    assert "reviews_Office_Products_5.json.gz" in msg and "'B000E'" in msg and "meta_Office_Products.json.gz" in msg
    assert "3 such reviews" in msg


def test_2014_drop_missing_meta_option(dir2014):
    _edit_2014(dir2014, META, lambda ls: [line for line in ls if "B000E" not in line])
    ds = load_amazon2014(dir2014, drop_missing_meta=True)
    assert "B000E" not in [it.id for it in ds.items]
    assert ds.meta["reviews_dropped_missing_meta"] == 3
    assert _ids(ds, 0) == ["B000B", "B000A", "B000C"]


# ---------------------------------------------------------------- bad inputs: too few events


def test_lcrec_user_with_too_few_events(tmp_path):
    folder = _write_lcrec(tmp_path / "few", TOY_ITEMS, {"u1": [0, 1, 2], "u2": [0, 1]})
    with pytest.raises(DataError) as e:
        load_lcrec(folder)
    msg = str(e.value)
    assert "Toy.inter.json" in msg and "'u2'" in msg and "2 events" in msg and "min_user_events=3" in msg
    assert load_lcrec(folder, min_user_events=2).n_users == 2


def test_2014_user_with_too_few_events(dir2014):
    with pytest.raises(DataError) as e:
        load_amazon2014(dir2014, min_user_events=5)
    msg = str(e.value)
    assert "reviews_Office_Products_5.json.gz" in msg and "'U1'" in msg and "4 events" in msg
    assert "min_user_events=5" in msg


# ---------------------------------------------------------------- bad inputs: empty catalogue


def test_lcrec_empty_catalogue(tmp_path):
    folder = _write_lcrec(tmp_path / "e", {}, {})
    with pytest.raises(DataError, match=r"Toy\.item\.json: empty catalogue"):
        load_lcrec(folder)


def test_2014_empty_catalogue(dir2014):
    _edit_2014(dir2014, REVIEWS, lambda ls: [])
    with pytest.raises(DataError, match=r"reviews_Office_Products_5\.json\.gz: empty catalogue"):
        load_amazon2014(dir2014)


def test_loaders_write_nothing(toy_lcrec, dir2014):
    before = {p: sorted(p.iterdir()) for p in (toy_lcrec, dir2014)}
    load_lcrec(toy_lcrec)
    load_amazon2014(dir2014)
    assert before == {p: sorted(p.iterdir()) for p in (toy_lcrec, dir2014)}


# ---------------------------------------------------------------- edge cases: duplicate keys, no users, BOM, a file


def test_lcrec_duplicate_user_key(tmp_path):
    folder = _write_lcrec(tmp_path / "d", TOY_ITEMS, '{"u1": [0, 1, 2],\n "u2": [2, 0, 1],\n "u1": [1, 1, 1]}')
    with pytest.raises(DataError, match=r"Toy\.inter\.json: duplicate key 'u1'"):
        load_lcrec(folder)


def test_lcrec_duplicate_item_key(tmp_path):
    text = json.dumps(TOY_ITEMS)[:-1] + ', "1": {"title": "Other", "categories": "A,B"}}'
    folder = _write_lcrec(tmp_path / "d", text, TOY_INTER)
    with pytest.raises(DataError, match=r"Toy\.item\.json: duplicate key '1'"):
        load_lcrec(folder)


def test_lcrec_duplicate_field_in_a_record(tmp_path):
    text = '{"0": {"title": "A", "title": "B", "categories": "X,Y"}}'
    folder = _write_lcrec(tmp_path / "d", text, {"u1": [0, 0, 0]})
    with pytest.raises(DataError, match=r"Toy\.item\.json: duplicate key 'title'"):
        load_lcrec(folder)


def test_lcrec_no_users(tmp_path):
    folder = _write_lcrec(tmp_path / "n", TOY_ITEMS, {})
    with pytest.raises(DataError, match=r"Toy\.inter\.json: no users"):
        load_lcrec(folder)


def test_lcrec_utf8_bom_is_accepted(tmp_path, toy_lcrec):
    folder = tmp_path / "bom"
    folder.mkdir()
    for path in toy_lcrec.iterdir():
        (folder / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8-sig")
    assert (folder / "Toy.item.json").read_bytes().startswith(b"\xef\xbb\xbf")
    bom, plain = load_lcrec(folder), load_lcrec(toy_lcrec)
    assert bom.items == plain.items and bom.users == plain.users and bom.sequences == plain.sequences


@pytest.mark.parametrize("gz", [False, True])
def test_2014_utf8_bom_is_accepted(tmp_path, ds2014, gz):
    folder = tmp_path / "bom"
    folder.mkdir()
    for name in (REVIEWS, META):
        data = b"\xef\xbb\xbf" + (FIXTURE_2014 / name).read_bytes()
        if gz:
            with gzip.open(folder / f"{name}.gz", "wb") as out:
                out.write(data)
        else:
            (folder / name).write_bytes(data)
    ds = load_amazon2014(folder)
    assert ds.items == ds2014.items and ds.users == ds2014.users and ds.sequences == ds2014.sequences


@pytest.mark.parametrize("loader", [load_lcrec, load_amazon2014, load_folder])
def test_dataset_given_as_a_file(loader, toy_lcrec):
    file = toy_lcrec / "Toy.inter.json"
    with pytest.raises(DataError, match="is a file, not a dataset folder") as e:
        loader(file)
    assert str(file) in str(e.value)


def test_source_fingerprint_of_a_file(toy_lcrec):
    from gensar_lib.data.pipeline import source_fingerprint

    with pytest.raises(DataError, match="is a file, not a dataset folder"):
        source_fingerprint(str(toy_lcrec / "Toy.inter.json"))
