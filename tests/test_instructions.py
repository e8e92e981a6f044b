"""Instruction builders: histories, the behaviour tokens, templates, the task mix."""
import re

import pytest

from gensar_lib.data.schema import Dataset, Event, Item
from gensar_lib.data.splits import leave_one_out
from gensar_lib.identifiers import ItemIdentifiers
from gensar_lib.instructions import (
    COMPACT_TEMPLATES,
    TASK_FAMILIES,
    TEMPLATES,
    TaskMix,
    evaluation_instructions,
    identifier,
    render_history,
    training_instructions,
)


def toy():
    items = [Item(str(i), f"title {i}", f"text of item {i}", categories=("Office", "Pens", f"Kind{i}")) for i in range(14)]
    seq = [Event(t, t, f"pen query {t}" if t % 3 == 2 else None) for t in range(14)]
    ds = Dataset("toy", items, ["u"], [seq])
    ids = ItemIdentifiers(
        item_ids=tuple(it.id for it in items),
        semantic=tuple((f"<shared_a_{i % 2}>", f"<semantic_a_{i}>") for i in range(14)),
        collaborative=tuple((f"<shared_a_{i % 2}>", f"<collab_a_{i}>") for i in range(14)),
        vocabulary=(),
        codebook_size=14,
    )
    return ds, ids


def test_history_keeps_last_h_of_each_task_in_time_order():
    ds, ids = toy()
    seq = ds.sequences[0]
    text = render_history(seq, ids, 2)
    # last two recommendation events (t=12, 13) and last two searches (t=8, 11), merged by time
    assert text == " ".join([
        "<src_query> pen query 8 <src_item><shared_a_0><semantic_a_8>",
        "<src_query> pen query 11 <src_item><shared_a_1><semantic_a_11>",
        "<rec_item><shared_a_0><collab_a_12>",
        "<rec_item><shared_a_1><collab_a_13>",
    ])
    assert render_history([], ids, 5) == "none"


def test_targets_carry_the_behaviour_token_and_the_right_identifier():
    ds, ids = toy()
    split = leave_one_out(ds)
    ev = evaluation_instructions(split.test, ids)
    by_task = {i.task: i for i in ev}
    assert by_task["NRIP"].target == "<rec_item>" + "".join(ids.collaborative[by_task["NRIP"].item])
    assert by_task["NSIP"].target == "<src_item>" + "".join(ids.semantic[by_task["NSIP"].item])
    assert "pen query 11" in by_task["NSIP"].source
    # evaluation uses the first template
    prefix = TEMPLATES["NRIP"][0].split("{history}")[0]
    assert by_task["NRIP"].source.startswith(prefix)


def test_no_target_leaks_into_its_source():
    ds, ids = toy()
    split = leave_one_out(ds)
    for ins in evaluation_instructions(split.test + split.valid, ids):
        assert ins.target not in ins.source


def test_training_mix_templates_and_determinism():
    ds, ids = toy()
    split = leave_one_out(ds)
    mix = TaskMix({f: 1.0 for f in TASK_FAMILIES})
    a = training_instructions(ds, split.train, ids, mix=mix, seed=1)
    b = training_instructions(ds, split.train, ids, mix=mix, seed=1)
    assert a == b
    families = {i.task for i in a}
    assert families == set(TASK_FAMILIES)
    only_rec = training_instructions(ds, split.train, ids, mix=TaskMix({"NRIP": 2.0}), seed=1)
    n_rec = sum(c.task == "rec" for c in split.train)
    assert len(only_rec) == 2 * n_rec and {i.task for i in only_rec} == {"NRIP"}
    # several templates are drawn for the same family
    starts = {re.sub(r"<.*", "", i.source)[:12] for i in training_instructions(ds, split.train * 10, ids, seed=2) if i.task == "NRIP"}
    assert len(starts) >= 3


def test_every_family_has_five_templates_and_bad_mix_is_rejected():
    assert all(len(TEMPLATES[f]) >= 5 for f in TASK_FAMILIES)
    with pytest.raises(ValueError, match="NOPE"):
        TaskMix({"NOPE": 1.0})


def test_task_mix_of_profile_pairs_and_restricted():
    assert TaskMix.of(None) == TaskMix()
    assert TaskMix.of((("NRIP", 1.0), ("NSIP", 0.5))).weights == {"NRIP": 1.0, "NSIP": 0.5}
    assert TaskMix().restricted(("NSIP", "QUERY2ID")).weights == {"NSIP": 1.0, "QUERY2ID": 0.5}


def test_compact_prompts_end_with_the_task_word_after_the_last_event():
    ds, ids = toy()
    split = leave_one_out(ds)
    for case, ins in zip(split.test, evaluation_instructions(split.test, ids, 5, "compact")):
        history = render_history(case.history, ids, 5)
        expected = f"{history} search {case.target.query}" if case.target.query else f"{history} recommend"
        assert ins.source == expected
    train = training_instructions(ds, split.train, ids, 5, TaskMix({f: 1.0 for f in TASK_FAMILIES}), 1, "compact")
    assert {i.task for i in train} == set(TASK_FAMILIES)
    first_words = {(i.task, i.source.split()[0]) for i in train if i.task in ("ITEM2ID", "ID2ITEM", "QUERY2ID")}
    assert first_words == {("ITEM2ID", "item"), ("ID2ITEM", "title"), ("QUERY2ID", "query")}
    # one template per family, shorter than any paraphrase
    assert all(len(COMPACT_TEMPLATES[f]) == 1 and len(COMPACT_TEMPLATES[f][0]) < min(map(len, TEMPLATES[f]))
               for f in TASK_FAMILIES)
    with pytest.raises(ValueError, match="unknown prompt style 'fancy'"):
        evaluation_instructions(split.test, ids, 5, "fancy")


def test_each_task_has_one_side_read_by_instructions_and_the_model():
    from gensar_lib.data.schema import TASKS
    from gensar_lib.tasks import REC_TOKEN, SIDES, SRC_TOKEN, task_side

    _, ids = toy()
    assert tuple(SIDES) == TASKS
    assert (task_side("rec").token, ids.for_task("rec")) == (REC_TOKEN, ids.collaborative)
    assert (task_side("search").token, ids.for_task("search")) == (SRC_TOKEN, ids.semantic)
    assert identifier(ids, 3, "rec") == REC_TOKEN + "".join(ids.collaborative[3])
    with pytest.raises(ValueError, match="unknown task 'recommend'"):
        task_side("recommend")
