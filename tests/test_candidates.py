"""Candidate lists: one positive, 99 distinct never-touched negatives, BM25 negatives share query terms."""
import numpy as np
import pytest

from gensar_lib.data.candidates import BM25Index, popularity, sample_candidates
from gensar_lib.data.queries import text_terms
from gensar_lib.data.schema import DataError


def check_lists(prepared, part):
    ds, cases = prepared.dataset, prepared.split.part(part)
    lists = prepared.candidates[part]
    assert lists.shape == (len(cases), 100)
    for case, row in zip(cases, lists):
        assert row[0] == case.target.item
        negatives = row[1:]
        assert len(set(negatives.tolist())) == 99
        touched = {e.item for e in ds.sequences[case.user]}
        assert touched.isdisjoint(negatives.tolist())


@pytest.mark.parametrize("part", ["valid", "test"])
def test_synthetic_candidate_lists(tiny_prepared, part):
    check_lists(tiny_prepared, part)


def test_office_candidate_lists(office_prepared):
    check_lists(office_prepared, "test")


def test_bm25_negatives_share_query_terms(office_prepared):
    ds, split = office_prepared.dataset, office_prepared.split
    lists = office_prepared.candidates["test"]
    index = BM25Index(ds)
    item_terms = [set(text_terms(item.text)) for item in ds.items]
    shared = []
    for case, row in zip(split.test, lists):
        if case.task != "search":
            continue
        q = set(text_terms(case.target.query))
        scores = index.scores(case.target.query)
        hard = [i for i in row[1:] if scores[i] > 0]
        assert all(q & item_terms[i] for i in hard)
        # hard negatives come first and are the best-scoring eligible items
        assert all(scores[i] > 0 for i in row[1 : 1 + len(hard)])
        shared.append(len(hard))
    assert np.mean(shared) > 90  # Office queries are generic enough to fill the list from BM25


def test_recommendation_negatives_follow_popularity(office_prepared):
    ds, split = office_prepared.dataset, office_prepared.split
    pop = popularity(ds, split)
    rec_rows = [row for case, row in zip(split.test, office_prepared.candidates["test"]) if case.task == "rec"]
    drawn = np.concatenate([row[1:] for row in rec_rows])
    median = np.median(pop)
    assert pop[drawn].mean() > 1.5 * pop.mean()  # popular items are drawn far more often
    assert (pop[drawn] > median).mean() > 0.6


def test_same_seed_same_candidates(tiny_prepared):
    ds, split = tiny_prepared.dataset, tiny_prepared.split
    a = sample_candidates(ds, split, split.test, 99, seed=3)
    b = sample_candidates(ds, split, split.test, 99, seed=3)
    c = sample_candidates(ds, split, split.test, 99, seed=4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_too_many_negatives_is_an_impossible_config(tiny_prepared):
    ds, split = tiny_prepared.dataset, tiny_prepared.split
    with pytest.raises(DataError, match="n_negatives = 100000"):
        sample_candidates(ds, split, split.test, 100000)


def test_stop_word_query_gets_popularity_negatives():
    from gensar_lib.data.schema import Dataset, Event, Item
    from gensar_lib.data.splits import Case, leave_one_out

    items = [Item(str(i), f"gadget number {i}") for i in range(12)]
    seqs = [[Event(t, (u + t) % 12) for t in range(4)] for u in range(6)]
    seqs[0] += [Event(10, 5, "the and of")]  # a query with no terms left once stop words go
    ds = Dataset("stop", items, [f"u{u}" for u in range(6)], seqs, source="stop")
    split = leave_one_out(ds)
    index = BM25Index(ds)
    assert text_terms("the and of") == [] and not index.scores("the and of").any()
    search = [Case(user=0, target=seqs[0][-1], history=tuple(seqs[0][:-1]))]
    lists = sample_candidates(ds, split, search, n_negatives=5, seed=0, index=index)
    touched = {e.item for e in ds.sequences[0]}
    assert lists.shape == (1, 6) and lists[0, 0] == 5
    assert len(set(lists[0, 1:].tolist())) == 5 and touched.isdisjoint(lists[0, 1:].tolist())
