"""The cluster demo's checks that need no services: a policy version chain, a round's verdict."""

from __future__ import annotations

from benchmarks.cluster import Round, _broken_links, _scoped
from benchmarks.faults import DOUBLED_SQL


def test_a_chain_is_intact_only_numbered_from_1_each_version_the_child_of_the_one_before() -> None:
    assert _broken_links([]) == 0
    assert _broken_links([(1, None), (2, 1), (3, 2)]) == 0
    assert _broken_links([(1, None), (2, 1), (3, 1)]) == 1   # a fork: v3 learned from v1
    assert _broken_links([(1, None), (3, 1)]) == 1           # a gap
    assert _broken_links([(1, 5), (2, 1)]) == 1              # a first version with a parent


def test_the_doubled_counts_read_only_the_rounds_streams() -> None:
    sql = _scoped(DOUBLED_SQL["duplicate decision keys"], ["w3-s0", "w3-s1"])
    # both reads of the table (the count and the distinct keys) keep the round's rows only
    assert sql.count("FROM decisions") == 2
    assert sql.count("FROM (SELECT * FROM decisions WHERE stream IN ('w3-s0', 'w3-s1'))") == 2


def test_a_round_fails_on_anything_lost_doubled_broken_or_different() -> None:
    assert Round(3, []).ok
    for field in ("lost", "doubled", "broken_links", "differing"):
        r = Round(3, [])
        setattr(r, field, 1)
        assert not r.ok, field
