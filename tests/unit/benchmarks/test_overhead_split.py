"""benchmarks.overhead: model compute as the union of call groups, the rest split three ways."""

from __future__ import annotations

import threading

import pytest

from benchmarks.overhead import ModelClock, format_table


def _clock(intervals: list[tuple[float, float]]) -> ModelClock:
    clock = object.__new__(ModelClock)  # without patching modules.tasks.answer_group
    clock.intervals = list(intervals)
    clock._lock = threading.Lock()
    return clock


def test_busy_time_is_the_union_and_the_span_is_first_start_to_last_end() -> None:
    # two groups overlap (1-3, 2-4), one is inside another (5-6 in 4.5-7), a gap 4-4.5
    clock = _clock([(0.0, 0.5), (2.0, 4.0), (1.0, 3.0), (4.5, 7.0), (5.0, 6.0)])
    busy, first, last, groups = clock.span_since(1)
    assert busy == pytest.approx(5.5)
    assert (first, last, groups) == (1.0, 7.0, 4)
    assert clock.since(1) == (busy, 4)
    # the gaps between groups where none computed: span − busy
    assert last - first - busy == pytest.approx(0.5)
    assert _clock([]).since(0) == (0.0, 0)


def test_the_table_prints_where_the_time_besides_the_models_went() -> None:
    row = {"flow_wall_s": 1.0, "model_s": 0.8, "overhead_ratio": 0.25, "plain_wall_s": 0.5,
           "plain_overhead_ratio": 0.1, "flow_over_plain": 2.0, "flow_head_s": 0.1,
           "flow_gaps_s": 0.04, "flow_tail_s": 0.06, "plain_head_s": 0.02, "plain_gaps_s": 0.01,
           "plain_tail_s": 0.015}
    table = format_table({"stream_batch": {"64": row}, "ingest_feedback": {}})
    assert table.splitlines()[-1].split() == ["64", "100", "/", "40", "/", "60", "|", "20", "/",
                                              "10", "/", "15"]
