"""Dataset statistics and what the search protocol lets a model memorise (gensar_lib.data.stats)."""
from types import SimpleNamespace

import numpy as np
import pytest

from gensar_lib.data.schema import Event
from gensar_lib.data.splits import Case, Split
from gensar_lib.data.stats import describe_search_protocol, entropy_bits, search_protocol


def _case(item, query, time=0):
    return Case(0, Event(time, item, query), ())


def test_search_protocol_counts_what_a_query_memoriser_could_know():
    train = [_case(0, "pens"), _case(0, "Pens "), _case(1, "pens"), _case(2, "paper"), _case(3, None)]
    test = [_case(1, "PENS"), _case(2, "pens"), _case(3, "never asked"), _case(0, None)]
    stats = search_protocol(SimpleNamespace(n_items=8), Split("strict", train=train, test=test))
    assert stats["training_queries"] == 2  # "pens" and "Pens " are one query; the rec case is not a query
    assert stats["items_per_query"] == pytest.approx(1.5)  # pens -> {0, 1}, paper -> {2}
    assert stats["test_queries_seen"] == pytest.approx(2 / 3)  # three search test cases, two asked before
    assert stats["test_targets_seen_with_query"] == pytest.approx(1 / 3)  # only item 1 was a target of "pens"
    # H(target | query) = 3/4 * H(2/3, 1/3) + 1/4 * 0; H(target) over the training search targets {0: 2, 1: 1, 2: 1}
    h = lambda *p: float(-sum(x * np.log2(x) for x in p))  # noqa: E731
    assert stats["entropy_given_query_bits"] == pytest.approx(0.75 * h(2 / 3, 1 / 3))
    assert stats["entropy_bits"] == pytest.approx(h(0.5, 0.25, 0.25))
    assert stats["uniform_entropy_bits"] == pytest.approx(3.0)


def test_entropy_and_the_sentences_follow_the_numbers():
    from collections import Counter

    assert entropy_bits(Counter()) == 0.0 and entropy_bits(Counter({7: 5})) == 0.0
    assert entropy_bits(Counter({1: 1, 2: 1, 3: 1, 4: 1})) == pytest.approx(2.0)
    stats = {"training_queries": 269, "items_per_query": 8.69, "test_queries_seen": 1.0,
             "test_targets_seen_with_query": 0.986, "entropy_given_query_bits": 3.69, "entropy_bits": 10.31,
             "uniform_entropy_bits": 11.24}
    lines = describe_search_protocol(stats)
    assert lines[0].startswith("269 distinct queries") and "8.7 distinct items" in lines[0]
    assert "100% of the test search cases" in lines[1] and "for 99% the target" in lines[1]
    assert "leaves 3.69 bits" in lines[2] and "removes 64% of it" in lines[2]
