"""Bootstrap intervals over queries, paired differences and the front comparison, on results
built by hand (no model runs)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.evaluate.harness import ItemResult
from benchmarks.evaluate.intervals import Bootstrap, add_intervals, dominance, dominance_table, per_query
from benchmarks.evaluate.summary import sweep


def _items(query: str, labels: list[bool], answers: list[bool], gflops: float) -> list[ItemResult]:
    return [ItemResult(query, "easy", y, a, a == y, 0.0 if a == y else 1.0, gflops * 1e9, 0.0, 0.0, 0.0, 0.0, 1)
            for y, a in zip(labels, answers, strict=True)]


LABELS = [True, True, False, False, False, False, False, False, False, False]
QUERIES = [f"q{i}" for i in range(8)]


def _policy(right_positives: int, false_positives: int, gflops: float) -> dict[str, list[ItemResult]]:
    """Per query: ``right_positives`` of the 2 positives found, ``false_positives`` wrong yeses."""
    out = {}
    for q in QUERIES:
        answers = [i < right_positives for i in range(2)] + [i < false_positives for i in range(8)]
        out[q] = _items(q, LABELS, answers, gflops)
    return out


def _results() -> dict:
    return {
        "largest": {1.0: _policy(2, 1, 1.0)},
        "fmp": {1.0: _policy(2, 0, 0.1), 4.0: _policy(1, 0, 0.01)},
        "static": {1.0: _policy(1, 1, 0.1), 4.0: _policy(0, 0, 0.001)},
    }


def test_intervals_hold_the_point_and_paired_differences_are_exact_when_every_query_agrees():
    by_policy = _results()
    rows = sweep(by_policy, "bool", [1.0, 4.0], 1e9)
    boot = Bootstrap(QUERIES, "bool", reps=500, seed=3)
    add_intervals(rows, by_policy, "bool", boot)
    fmp = {r["lam"]: r for r in rows["fmp"]}
    # every query has the same F1, so every resample does: the interval is the point
    assert fmp[1.0]["quality_ci"] == pytest.approx([1.0, 1.0])
    assert fmp[1.0]["minus_largest"] == pytest.approx(1.0 - 0.8)
    assert fmp[1.0]["minus_largest_ci"] == pytest.approx([0.2, 0.2])


def test_an_interval_widens_with_queries_that_disagree():
    by_policy = {"a": {1.0: {q: _items(q, LABELS, [i % 2 == 0] * 2 + [False] * 8, 1.0)
                             for i, q in enumerate(QUERIES)}}}
    rows = sweep(by_policy, "bool", [1.0], 1e9)
    add_intervals(rows, by_policy, "bool", Bootstrap(QUERIES, "bool", reps=2000, seed=0))
    lo, hi = rows["a"][0]["quality_ci"]
    assert rows["a"][0]["quality"] == pytest.approx(0.5)
    assert 0.1 < lo < 0.5 < hi < 0.9


def test_the_front_is_compared_at_each_baseline_cost_with_a_verdict():
    by_policy = _results()
    rows = sweep(by_policy, "bool", [1.0, 4.0], 1e9)
    boot = Bootstrap(QUERIES, "bool", reps=500, seed=0)
    entries = dominance(rows, by_policy, "fmp", boot, baselines=("static",))
    by_lam = {e["baseline_lam"]: e for e in entries}
    # at static's λ=1 cost (0.1) fmp's best point is its λ=1 (F1 1.0 against 0.5): above
    assert by_lam[1.0]["lam"] == 1.0 and by_lam[1.0]["verdict"] == "above"
    assert by_lam[1.0]["difference"] == pytest.approx(1.0 - 0.5)
    # static's λ=4 point costs 0.001, cheaper than any fmp point
    assert by_lam[4.0]["verdict"] == "no point" and by_lam[4.0]["quality"] is None
    text = dominance_table(entries, "fmp", "F1")
    assert "no point this cheap" in text and "dominates within the intervals: no (1 of 2" in text


def test_a_baseline_that_is_better_is_called_below():
    by_policy = {"fmp": {1.0: _policy(0, 0, 0.1)}, "static": {1.0: _policy(2, 0, 0.1)}}
    rows = sweep(by_policy, "bool", [1.0], 1e9)
    [e] = dominance(rows, by_policy, "fmp", Bootstrap(QUERIES, "bool", reps=200), baselines=("static",))
    assert e["verdict"] == "below" and e["difference_ci"][1] < 0


def test_exact_match_resamples_pool_items():
    per_q = {"a": _items("a", [True] * 4, [True] * 4, 1.0), "b": _items("b", [True] * 2, [False] * 2, 1.0)}
    boot = Bootstrap(["a", "b"], "str", reps=4000, seed=1)
    s = boot.samples(per_q)
    # resamples: {a,a} → 1, {b,b} → 0, {a,b} → 4/6
    assert set(np.round(s, 6)) <= {1.0, 0.0, round(4 / 6, 6)}
    assert np.mean(s) == pytest.approx(0.25 * 1 + 0.5 * 4 / 6, abs=0.03)


def test_per_query_rows_give_quality_and_cost_against_largest():
    rows = per_query(_results(), "bool", 1.0, "fmp")
    assert [r["query"] for r in rows] == QUERIES
    assert rows[0]["largest"] == pytest.approx(0.8) and rows[0]["fmp"] == pytest.approx(1.0)
    assert rows[0]["static"] == pytest.approx(0.5)
    assert rows[0]["cost_vs_largest"] == pytest.approx(0.1)
