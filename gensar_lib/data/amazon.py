"""Amazon review data loaders (notebook 00_data).

Two folder layouts are read into the one ``Dataset`` schema:

- LC-Rec JSON (``<Name>.inter.json`` + ``<Name>.item.json``), as published by
  LC-Rec / APAO: each user's item indices in time order, timestamps dropped,
  so ``Event.time`` is the position in the user's list. The category path is
  one string joined by ``","``; it is split on every comma, so a level whose
  own name has a comma ("Calendars, Planners & Personal Organizers") becomes
  two levels. Queries barely change (repeats are dropped anyway).
- The original 2014 dumps (``reviews_<Category>_5.json.gz``, JSON lines, and
  ``meta_<Category>.json.gz``, one Python dict literal per line): real
  ``unixReviewTime`` timestamps are kept, each user's events are sorted by
  time (ties keep file order), only reviewed items enter the catalogue, and
  the first of an item's category paths is used.

Both unescape HTML entities in every text field and drop the top category
(e.g. "Office Products") when asked or when one first level covers at least
90% of the items. Loaders read only; nothing is written to disk. Every bad
input raises ``DataError`` naming the file, the field and the value.
"""
from __future__ import annotations

import ast
import gzip
import html
import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gensar_lib.data.schema import Dataset, DataError, Event, Item, validate

TOP_CATEGORY_SHARE = 0.9  # a first level on >= 90% of items is the dump's top category
LCREC_PATTERN = "*.inter.json"
REVIEWS_PATTERNS = ("reviews_*_5.json.gz", "reviews_*_5.json")
_ASIN_FIELD = re.compile(r"""['"]asin['"]\s*:\s*['"]([^'"]+)['"]""")
_WHITESPACE = re.compile(r"\s+")


# ---------------------------------------------------------------- text helpers


def clean_text(value: str) -> str:
    """HTML entities decoded (double-escaped ones too) and whitespace collapsed."""
    for _ in range(3):
        if "&" not in value:
            break
        decoded = html.unescape(value)
        if decoded == value:
            break
        value = decoded
    return _WHITESPACE.sub(" ", value).strip()


def _text_field(record: dict[str, Any], fld: str, where: str) -> str:
    """A text field, possibly absent (""), None or a list of strings (joined)."""
    value = record.get(fld)
    if value is None:
        return ""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        value = " ".join(value)
    if not isinstance(value, str):
        raise DataError(f"{where}: field {fld!r} must be text, got {value!r:.80}")
    return clean_text(value)


def _split_path(value: Any, where: str) -> tuple[str, ...]:
    """A category path from "A, B, C" or ["A", "B", "C"]; levels cleaned, empties dropped."""
    if isinstance(value, str):
        levels = value.split(",")
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        levels = list(value)
    else:
        raise DataError(f"{where}: field 'categories' must be a path (text or list of text), got {value!r:.80}")
    return tuple(c for c in (clean_text(v) for v in levels) if c)


def drop_top_category(
    paths: list[tuple[str, ...]], top_category: str | None
) -> tuple[list[tuple[str, ...]], dict[str, Any]]:
    """Remove the top category from paths: the one named, else one on >= 90% of items.

    ``top_category=""`` keeps every level. Returns the paths and what was dropped.
    """
    firsts = Counter(p[0] for p in paths if p)
    if top_category is None:
        name, count = firsts.most_common(1)[0] if firsts else ("", 0)
        top = name if paths and count >= TOP_CATEGORY_SHARE * len(paths) else ""
        how = "auto"
    else:
        top, how = clean_text(top_category), "given"
    if not top:
        return paths, {"top_category_dropped": None, "top_category_rule": how}
    dropped = [p[1:] if p and p[0] == top else p for p in paths]
    info = {"top_category_dropped": top, "top_category_rule": how, "top_category_items": firsts.get(top, 0)}
    return dropped, info


# ---------------------------------------------------------------- file helpers


def _check_folder(folder: str | Path) -> Path:
    folder = Path(folder).expanduser()
    if folder.is_file():
        raise DataError(f"{folder}: is a file, not a dataset folder")
    if not folder.is_dir():
        raise DataError(f"{folder}: dataset folder does not exist (or is not a folder)")
    return folder


def _unique_keys(path: Path) -> Any:
    """A json ``object_pairs_hook`` that rejects a key repeated in one object (json keeps the last)."""

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in pairs:
            if key in obj:
                raise DataError(f"{path}: duplicate key {key!r} in one object (json would keep the last)")
            obj[key] = value
        return obj

    return hook


def _read_json(path: Path) -> Any:
    """A whole JSON file (a UTF-8 BOM allowed); DataError with line and column when malformed."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            return json.load(f, object_pairs_hook=_unique_keys(path))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: malformed JSON at line {e.lineno} column {e.colno} (char {e.pos}): {e.msg}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text at byte {e.start}") from None


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a plain or gzipped UTF-8 file (BOM allowed), blank lines skipped."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8-sig") as f:  # a BOM is dropped
            for n, line in enumerate(f, 1):
                if line.strip():
                    yield n, line
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: unreadable ({type(e).__name__}: {e})") from None


def _only_match(folder: Path, patterns: tuple[str, ...], what: str) -> Path:
    found = sorted({p for pat in patterns for p in folder.glob(pat)})
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise DataError(f"{folder}: expected exactly one {what} ({' or '.join(patterns)}), found {names}")
    return found[0]


def _first_existing(folder: Path, names: list[str]) -> Path:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder / names[0]}: file not found (also tried {', '.join(names[1:])})")


def _check_min_events(path: Path, users: list[str], sequences: list[list[Event]], min_user_events: int) -> None:
    for user, seq in zip(users, sequences):
        if len(seq) < min_user_events:
            raise DataError(
                f"{path}: user {user!r} has {len(seq)} events, fewer than min_user_events={min_user_events}"
            )


# ---------------------------------------------------------------- LC-Rec layout


def _lcrec_item(item_id: str, record: Any, path: Path) -> tuple[Item, tuple[str, ...]]:
    where = f"{path}: item {item_id!r}"
    if not isinstance(record, dict):
        raise DataError(f"{where}: record must be an object, got {record!r:.80}")
    for fld in ("title", "categories"):
        if fld not in record:
            raise DataError(f"{where}: missing field {fld!r}")
    categories = _split_path(record["categories"], where)
    item = Item(
        id=item_id,
        title=_text_field(record, "title", where),
        description=_text_field(record, "description", where),
        brand=_text_field(record, "brand", where),
    )
    return item, categories


def _lcrec_sequences(
    raw: Any, path: Path, index: dict[str, int]
) -> tuple[list[str], list[list[Event]]]:
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected an object {{user: [item index, ...]}}, got {type(raw).__name__}")
    if not raw:
        raise DataError(f"{path}: no users (an empty object)")
    users, sequences = [], []
    for user, items in raw.items():
        if not isinstance(items, list):
            raise DataError(f"{path}: user {user!r} field 'items' must be a list, got {items!r:.80}")
        seq = []
        for t, item in enumerate(items):
            i = index.get(str(item)) if isinstance(item, (int, str)) and not isinstance(item, bool) else None
            if i is None:
                raise DataError(f"{path}: user {user!r} field 'items' has unknown item id {item!r}")
            seq.append(Event(t, i))
        users.append(str(user))
        sequences.append(seq)
    return users, sequences


def load_lcrec(
    folder: str | Path,
    name: str | None = None,
    top_category: str | None = None,
    min_user_events: int = 3,
) -> Dataset:
    """Load the LC-Rec JSON layout (``<Name>.inter.json`` + ``<Name>.item.json``); notebook 00_data.

    ``name`` defaults to the single ``*.inter.json`` in the folder; item ids
    are the item indices (file order kept); ``Event.time`` is the position in
    the user's list. ``top_category=""`` keeps every category level.
    """
    folder = _check_folder(folder)
    inter_path = folder / f"{name}.inter.json" if name else _only_match(folder, (LCREC_PATTERN,), "interaction file")
    name = name or inter_path.name[: -len(".inter.json")]
    item_path = folder / f"{name}.item.json"
    raw_items = _read_json(item_path)
    if not isinstance(raw_items, dict):
        raise DataError(f"{item_path}: expected an object {{item index: {{title, ...}}}}, got {type(raw_items).__name__}")
    if not raw_items:
        raise DataError(f"{item_path}: empty catalogue (no items)")
    parsed = [_lcrec_item(str(k), v, item_path) for k, v in raw_items.items()]
    paths, top_info = drop_top_category([c for _, c in parsed], top_category)
    items = [Item(it.id, it.title, it.description, it.brand, c) for (it, _), c in zip(parsed, paths)]
    index = {it.id: i for i, it in enumerate(items)}
    users, sequences = _lcrec_sequences(_read_json(inter_path), inter_path, index)
    _check_min_events(inter_path, users, sequences, min_user_events)
    meta = {"layout": "lcrec", "files": [inter_path.name, item_path.name], "timestamps": "positions", **top_info}
    ds = Dataset(name, items, users, sequences, source=str(folder), meta=meta)
    return validate(ds, min_user_events)


# ---------------------------------------------------------------- 2014 layout


def _parse_meta_line(line: str, path: Path, n: int) -> dict[str, Any]:
    """One meta record: a Python dict literal (2014 dumps), else JSON."""
    try:
        record = ast.literal_eval(line)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(
                f"{path}: line {n}: malformed record, neither a Python literal nor JSON "
                f"(column {e.colno}: {e.msg}): {line.strip()[:80]!r}"
            ) from None
    if not isinstance(record, dict):
        raise DataError(f"{path}: line {n}: record must be a dict, got {record!r:.80}")
    return record


def _read_meta(path: Path, wanted: set[str]) -> dict[str, tuple[int, dict[str, Any]]]:
    """asin -> (line number, record) for the reviewed asins; first record of an asin wins."""
    records: dict[str, tuple[int, dict[str, Any]]] = {}
    for n, line in _lines(path):
        quick = _ASIN_FIELD.search(line)
        if quick and quick.group(1) not in wanted:
            continue  # skip parsing the (many) items nobody reviewed
        record = _parse_meta_line(line, path, n)
        asin = record.get("asin")
        if not isinstance(asin, str) or not asin:
            raise DataError(f"{path}: line {n}: missing field 'asin' (got {asin!r})")
        if asin in wanted and asin not in records:
            records[asin] = (n, record)
    return records


def _read_reviews(path: Path) -> list[tuple[str, str, int]]:
    """(reviewerID, asin, unixReviewTime) per review line, in file order."""
    reviews = []
    for n, line in _lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: line {n} column {e.colno}: malformed JSON: {e.msg}") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}: line {n}: review must be an object, got {record!r:.80}")
        for fld in ("reviewerID", "asin", "unixReviewTime"):
            if fld not in record:
                ids = {k: record.get(k) for k in ("reviewerID", "asin") if k in record}
                raise DataError(f"{path}: line {n}: review {ids} missing field {fld!r}")
        time = record["unixReviewTime"]
        if isinstance(time, bool) or not isinstance(time, int):
            raise DataError(f"{path}: line {n}: field 'unixReviewTime' must be an integer, got {time!r}")
        reviews.append((str(record["reviewerID"]), str(record["asin"]), time))
    return reviews


def _meta_item(asin: str, n: int, record: dict[str, Any], path: Path) -> tuple[Item, tuple[str, ...]]:
    where = f"{path}: line {n}: item {asin!r}"
    cats = record.get("categories") or [[]]
    if not isinstance(cats, list) or not isinstance(cats[0], (list, tuple)):
        raise DataError(f"{where}: field 'categories' must be a list of paths, got {cats!r:.80}")
    item = Item(
        id=asin,
        title=_text_field(record, "title", where),
        description=_text_field(record, "description", where),
        brand=_text_field(record, "brand", where),
    )
    return item, _split_path(list(cats[0]), where)


def _review_sequences(
    reviews: list[tuple[str, str, int]], index: dict[str, int]
) -> tuple[list[str], list[list[Event]]]:
    """Users in first-appearance order, events sorted by time (stable on file order)."""
    by_user: dict[str, list[Event]] = {}
    for user, asin, time in reviews:
        by_user.setdefault(user, []).append(Event(time, index[asin]))
    users = list(by_user)
    return users, [sorted(by_user[u], key=lambda e: e.time) for u in users]


def _paths_2014(folder: Path, category: str | None) -> tuple[str, Path, Path]:
    """Category name, review file and meta file (gzipped or plain)."""
    if category:
        reviews_path = _first_existing(folder, [f"reviews_{category}_5.json.gz", f"reviews_{category}_5.json"])
    else:
        reviews_path = _only_match(folder, REVIEWS_PATTERNS, "5-core review file")
        category = re.sub(r"^reviews_|_5\.json(\.gz)?$", "", reviews_path.name)
    meta_path = _first_existing(folder, [f"meta_{category}.json.gz", f"meta_{category}.json"])
    return category, reviews_path, meta_path


def load_amazon2014(
    folder: str | Path,
    category: str | None = None,
    top_category: str | None = None,
    min_user_events: int = 3,
    drop_missing_meta: bool = False,
) -> Dataset:
    """Load the 2014 dumps ``reviews_<Category>_5.json.gz`` + ``meta_<Category>.json.gz``; notebook 00_data.

    ``Event.time`` is ``unixReviewTime``. A review of an asin absent from the
    meta file is an error, or dropped (and counted in ``meta``) with
    ``drop_missing_meta=True``. ``top_category=""`` keeps every level.
    """
    category, reviews_path, meta_path = _paths_2014(_check_folder(folder), category)
    reviews = _read_reviews(reviews_path)
    meta = _read_meta(meta_path, {asin for _, asin, _ in reviews})
    missing = [r for r in reviews if r[1] not in meta]
    if missing and not drop_missing_meta:
        raise DataError(
            f"{reviews_path}: review by {missing[0][0]!r} of asin {missing[0][1]!r} has no record in "
            f"{meta_path.name} (field 'asin'; {len(missing)} such reviews; drop_missing_meta=True drops them)"
        )
    reviews = [r for r in reviews if r[1] in meta]
    if not reviews:
        raise DataError(f"{reviews_path}: empty catalogue (no reviewed item has a record in {meta_path.name})")
    lines = sorted(meta.items(), key=lambda kv: kv[1][0])  # meta file order
    parsed = [_meta_item(asin, n, rec, meta_path) for asin, (n, rec) in lines]
    paths, top_info = drop_top_category([c for _, c in parsed], top_category)
    items = [Item(it.id, it.title, it.description, it.brand, c) for (it, _), c in zip(parsed, paths)]
    users, sequences = _review_sequences(reviews, {it.id: i for i, it in enumerate(items)})
    _check_min_events(reviews_path, users, sequences, min_user_events)
    info = {
        "layout": "amazon2014",
        "files": [reviews_path.name, meta_path.name],
        "timestamps": "unixReviewTime",
        "reviews_dropped_missing_meta": len(missing),
        **top_info,
    }
    return validate(Dataset(category, items, users, sequences, source=str(folder), meta=info), min_user_events)


# ---------------------------------------------------------------- either layout


def detect_layout(folder: str | Path) -> str:
    """``"lcrec"`` or ``"amazon2014"``; DataError listing what was expected otherwise."""
    folder = _check_folder(folder)
    if any(folder.glob(LCREC_PATTERN)):
        return "lcrec"
    if any(p for pat in REVIEWS_PATTERNS for p in folder.glob(pat)):
        return "amazon2014"
    present = ", ".join(sorted(p.name for p in folder.iterdir())[:10]) or "nothing"
    raise DataError(
        f"{folder}: no dataset layout found; expected LC-Rec JSON (<Name>.inter.json + <Name>.item.json) "
        f"or Amazon 2014 (reviews_<Category>_5.json.gz + meta_<Category>.json.gz); found {present}"
    )


def load_folder(folder: str | Path, **kw: Any) -> Dataset:
    """Load a dataset folder of either layout (notebook 00_data); ``kw`` go to the loader."""
    layout = detect_layout(folder)
    loader = load_lcrec if layout == "lcrec" else load_amazon2014
    return loader(folder, **kw)
