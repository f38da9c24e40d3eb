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


def test_requests_are_counted_from_every_thread_and_overlapping_ones_once() -> None:
    import httpx

    from benchmarks.overhead import RequestClock

    sync_send, async_send = httpx.Client.send, httpx.AsyncClient.send
    try:
        api = RequestClock()
        transport = httpx.MockTransport(lambda request: (__import__("time").sleep(0.05),
                                                         httpx.Response(200))[1])
        mark = api.mark()
        with httpx.Client(transport=transport) as client:
            threads = [threading.Thread(target=client.get, args=("http://server/api/x",))
                       for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            client.get("http://server/api/y")
        busy, requests = api.since(mark)
    finally:
        httpx.Client.send, httpx.AsyncClient.send = sync_send, async_send  # type: ignore[method-assign]
    assert requests == 3
    # two at once, then one: about two requests' time, not three
    assert 0.09 < busy < 0.14


def test_the_table_prints_the_requests_per_run() -> None:
    row = {"flow_wall_s": 1.0, "model_s": 0.8, "overhead_ratio": 0.25, "plain_wall_s": 0.5,
           "plain_overhead_ratio": 0.1, "flow_over_plain": 2.0, "flow_head_s": 0.1,
           "flow_gaps_s": 0.04, "flow_tail_s": 0.06, "plain_head_s": 0.02, "plain_gaps_s": 0.01,
           "plain_tail_s": 0.015, "api_requests": 7, "api_wait_s": 0.081}
    fb = {"flow_wall_s": 1.0, "plain_wall_s": 0.9, "flow_over_plain": 1.1, "api_requests": 5,
          "api_wait_s": 0.04}
    table = format_table({"stream_batch": {"64": row}, "ingest_feedback": {"64": fb}})
    assert table.splitlines()[-1].split() == ["64", "7", "(81)", "|", "5", "(40)"]
