"""Leave-one-out splits: which event goes where, and that no history leaks its target."""
import pytest

from gensar_lib.data.schema import Dataset, Event, Item
from gensar_lib.data.splits import history, leaked_cases, leave_one_out


def review_world() -> Dataset:
    """One user, five reviews; reviews 1, 2 and 3 also yield a search twin at the same time."""
    items = [Item(id=str(i), title=f"item {i}") for i in range(6)]
    seq = []
    for t in range(5):
        seq.append(Event(t, t))
        if t in (1, 2, 3):
            seq.append(Event(t, t, query=f"query {t}"))
    return Dataset("toy", items, ["u0"], [seq])


def test_last_event_per_task_is_test_second_last_is_valid():
    split = leave_one_out(review_world())
    assert [c.target for c in split.test] == [Event(3, 3, "query 3"), Event(4, 4)]
    assert [c.target for c in split.valid] == [Event(2, 2, "query 2"), Event(3, 3)]


def test_strict_history_is_strictly_earlier_and_excludes_the_review_twin():
    split = leave_one_out(review_world(), "strict")
    for case in split.train + split.valid + split.test:
        assert all(h.time < case.target.time for h in case.history)
    search_test = split.cases("test", "search")[0]
    assert Event(3, 3) not in search_test.history
    assert search_test.history[-1] == Event(2, 2, "query 2")
    assert leaked_cases(split.valid + split.test) == 0


def test_strict_drops_training_twins_of_held_out_targets():
    split = leave_one_out(review_world(), "strict")
    held = {(c.target.time, c.target.item) for c in split.valid + split.test}
    assert all((c.target.time, c.target.item) not in held for c in split.train)
    # review 2 is the twin of the search validation target: not a training target
    assert [c.target for c in split.train] == [Event(0, 0), Event(1, 1), Event(1, 1, "query 1")]


def test_official_protocol_reproduces_the_twin_leak():
    split = leave_one_out(review_world(), "official")
    search_test = split.cases("test", "search")[0]
    assert search_test.history[-1] == Event(3, 3)  # its own review twin
    assert leaked_cases(split.cases("test", "search")) == 1
    assert Event(2, 2) in [c.target for c in split.train]  # twin of a held-out target stays


def test_task_with_fewer_than_three_events_stays_in_training():
    ds = review_world()
    ds.sequences[0] = [e for e in ds.sequences[0] if e.query is None or e.time == 1]
    split = leave_one_out(ds)
    assert split.cases("test", "search") == []
    assert [c.target.query for c in split.cases("train", "search")] == ["query 1"]


def test_unknown_protocol_is_rejected():
    with pytest.raises(ValueError, match="protocol 'leaky'"):
        history(review_world().sequences[0], 2, "leaky")


def test_synthetic_world_has_no_leak(tiny_prepared):
    split = tiny_prepared.split
    for case in split.valid + split.test:
        assert all(h.time < case.target.time for h in case.history)
    assert leaked_cases(split.valid + split.test) == 0
    counts = split.counts()
    assert counts["test"]["rec"] == tiny_prepared.dataset.n_users
