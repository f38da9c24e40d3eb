"""Call-site cascades in the lockstep executor: a router that escalates re-issues a call on a
larger backend; every rung is charged; the program gets the last rung's answer."""

from __future__ import annotations

import numpy as np
import pytest

from modules.backends.base import Call, Output, Usage
from modules.catalog import parse_catalog
from modules.executor import BatchExecutor, GroupRequest, ItemInput, Route, answers_agree, positive_answer
from modules.program import parse_program
from modules.registry import Registry
from modules.tasks import local_round_runner

PROGRAM = '''def execute_command(image):
    if not exists(image, "circle"):
        return False
    for c in find(image, "circle"):
        if verify_property(c, "circle", "red"):
            return True
    return False
'''
CIRCLES = [(0, 0, 4, 4), (4, 4, 8, 8), (8, 8, 12, 12)]


def _registry(cheap: dict, big: dict) -> Registry:
    fns = ["exists", "find", "verify_property"]
    none: dict = {"find|circle": []}  # the default False is no find() answer
    return Registry(parse_catalog([
        {"name": "cheap", "kind": "fake", "functions": fns, "answers": none | cheap, "default": False,
         "flops_per_call": 10.0, "n_params": 5},
        {"name": "big", "kind": "fake", "functions": fns, "answers": none | big, "default": False,
         "flops_per_call": 1000.0, "n_params": 500},
    ]))


class _Cascade:
    """Starts on ``cheap``; escalates to ``big`` the (site, call number) pairs in ``up``."""

    def __init__(self, up: set[str] | None = None, target: str = "big") -> None:
        self.up = up
        self.target = target
        self.asked: list[tuple[str, str]] = []
        self.seen: list[tuple[str, str, object]] = []

    def choose(self, item_id, site, features) -> Route:
        self.asked.append((item_id, site.id))
        return Route("cheap", 1.0)

    def escalate(self, item_id, site, features, backend, output: Output) -> Route | None:
        self.seen.append((site.id, backend, output.value))
        if backend == "cheap" and (self.up is None or site.id in self.up):
            return Route(self.target, 1.0)
        return None


class _Fixed:
    def __init__(self, backend: str) -> None:
        self.backend = backend

    def choose(self, item_id, site, features) -> Route:
        return Route(self.backend, 1.0)


def _items(n: int) -> list[ItemInput]:
    return [ItemInput(f"i{k}", np.full((16, 16, 3), k, np.uint8), np.zeros(4)) for k in range(n)]


def test_an_escalated_call_charges_every_rung_and_the_program_gets_the_last_answer() -> None:
    registry = _registry({}, {"exists|circle": True, "find|circle": CIRCLES[:1],
                              "verify_property|circle|red": True})
    router = _Cascade()
    (out,) = BatchExecutor(parse_program(PROGRAM), router, local_round_runner(registry)).run(_items(1))
    assert out.answer is True  # cheap says no circle; big's answers were used
    assert [(d.call_site, d.backend, d.tried, d.calls, d.flops, d.params) for d in out.decisions] == [
        ("exists@2:11", "big", ["cheap"], 2, 1010.0, 505.0),
        ("find@4:13", "big", ["cheap"], 2, 1010.0, 505.0),
        ("verify_property@5:11", "big", ["cheap"], 2, 1010.0, 505.0)]
    exists = out.decisions[0]
    assert [(r.backend, r.positive, r.agreed, r.confidence) for r in exists.rungs] == [
        ("cheap", False, False, None), ("big", True, None, None)]
    assert router.asked == [("i0", "exists@2:11"), ("i0", "find@4:13"), ("i0", "verify_property@5:11")]


def test_a_kept_answer_is_used_and_recorded_as_the_only_rung() -> None:
    registry = _registry({"exists|circle": True}, {"exists|circle": True})
    router = _Cascade(up=set())
    (out,) = BatchExecutor(parse_program(PROGRAM), router, local_round_runner(registry)).run(_items(1))
    assert out.answer is False  # cheap finds no circle to check
    first = out.decisions[0]
    assert (first.backend, first.tried, first.calls, first.flops) == ("cheap", [], 1, 10.0)
    assert [(r.backend, r.positive, r.agreed) for r in first.rungs] == [("cheap", True, None)]


def test_agreeing_rungs_are_recorded_as_agreed() -> None:
    registry = _registry({"exists|circle": True}, {"exists|circle": True})
    (out,) = BatchExecutor(parse_program(PROGRAM), _Cascade(up={"exists@2:11"}),
                           local_round_runner(registry)).run(_items(1))
    assert [(r.backend, r.agreed) for r in out.decisions[0].rungs] == [("cheap", True), ("big", None)]


def test_escalation_is_sticky_for_the_item_in_loops() -> None:
    answers = {"exists|circle": True, "find|circle": CIRCLES}
    registry = _registry(answers, answers)
    router = _Cascade(up={"verify_property@5:11"})
    (out,) = BatchExecutor(parse_program(PROGRAM), router, local_round_runner(registry)).run(_items(1))
    (verify,) = [d for d in out.decisions if d.call_site == "verify_property@5:11"]
    # the first circle ran on both rungs; the other two started on the rung it reached
    assert (verify.backend, verify.tried, verify.calls, verify.flops) == ("big", ["cheap"], 4, 3010.0)
    assert [r.backend for r in verify.rungs] == ["cheap", "big", "big", "big"]
    assert router.asked.count(("i0", "verify_property@5:11")) == 1


def test_escalated_items_regroup_by_rung_in_the_next_round() -> None:
    registry = _registry({}, {})
    seen: list[GroupRequest] = []

    def run_round(requests):
        seen.extend(requests)
        return local_round_runner(registry)(requests)

    BatchExecutor(parse_program(PROGRAM), _Cascade(), run_round).run(_items(3))
    assert [(r.call_site, r.backend, len(r.calls)) for r in seen] == [
        ("exists@2:11", "cheap", 3), ("exists@2:11", "big", 3)]


def test_a_failed_cheap_call_can_be_escalated_and_the_item_survives() -> None:
    registry = _registry({}, {"exists|circle": True, "find|circle": []})
    backend = registry.get("cheap")
    real = backend.infer

    def picky(calls: list[Call]) -> list[Output]:
        if any(c.function == "exists" for c in calls):
            raise ValueError("cannot")
        return real(calls)

    backend.infer = picky  # type: ignore[method-assign]
    try:
        (out,) = BatchExecutor(parse_program(PROGRAM), _Cascade(), local_round_runner(registry)).run(_items(1))
    finally:
        del backend.infer
    assert (out.status, out.answer) == ("ok", False)
    first = out.decisions[0]
    assert (first.backend, first.tried, first.calls) == ("big", ["cheap"], 2)
    assert [(r.backend, r.positive, r.agreed) for r in first.rungs] == [("cheap", False, False), ("big", True, None)]


def test_a_router_cannot_loop_a_call_back_to_a_rung_it_ran_on() -> None:
    registry = _registry({}, {})

    class PingPong(_Cascade):
        def escalate(self, item_id, site, features, backend, output):
            return Route("big" if backend == "cheap" else "cheap", 1.0)

    (out,) = BatchExecutor(parse_program(PROGRAM), PingPong(), local_round_runner(registry)).run(_items(1))
    assert out.answer is False
    assert (out.decisions[0].backend, out.decisions[0].calls) == ("big", 2)


@pytest.mark.parametrize("backend", ["cheap", "big"])
def test_routers_without_escalation_run_and_record_as_before(backend: str) -> None:
    answers = {"exists|circle": True, "find|circle": CIRCLES}
    registry = _registry(answers, answers)
    (out,) = BatchExecutor(parse_program(PROGRAM), _Fixed(backend), local_round_runner(registry)).run(_items(1))
    assert out.answer is False
    flops = {"cheap": 10.0, "big": 1000.0}[backend]
    assert [(d.call_site, d.backend, d.calls, d.flops, d.tried, d.rungs) for d in out.decisions] == [
        ("exists@2:11", backend, 1, flops, [], []), ("find@4:13", backend, 1, flops, [], []),
        ("verify_property@5:11", backend, 3, 3 * flops, [], [])]


def test_confidences_reach_the_router_and_the_record() -> None:
    registry = _registry({}, {})
    backend = registry.get("cheap")
    real = backend.infer

    def sure(calls: list[Call]) -> list[Output]:
        return [Output(o.value, Usage(o.usage.flops, o.usage.params, o.usage.price, confidence=0.8))
                for o in real(calls)]

    backend.infer = sure  # type: ignore[method-assign]
    try:
        (out,) = BatchExecutor(parse_program(PROGRAM), _Cascade(up=set()), local_round_runner(registry)).run(
            _items(1))
    finally:
        del backend.infer
    assert [(r.confidence, r.positive) for r in out.decisions[0].rungs] == [(0.8, False)]


def test_answers_agree_and_polarity() -> None:
    assert answers_agree(True, True) and not answers_agree(True, False)
    assert answers_agree("Red.", "red") and not answers_agree("red", "blue")
    assert answers_agree([(0, 0, 10, 10)], [(1, 0, 10, 10)])  # IoU 0.9
    assert not answers_agree([(0, 0, 10, 10)], [(8, 8, 20, 20)])
    assert not answers_agree([(0, 0, 10, 10)], [])
    assert answers_agree(2, 2) and not answers_agree(2, 3)
    assert [positive_answer(v) for v in (True, False, 0, 3, [], [(0, 0, 1, 1)], "", "no", "N/A",
                                         "unknown", "red", "STOP")] == [
        True, False, False, True, False, True, False, False, False, False, True, True]


def test_unchecked_records_equal_checked_ones_and_checked_ones_refuse_bad_usage() -> None:
    from pydantic import ValidationError

    registry = _registry({"exists|circle": True, "find|circle": CIRCLES},
                         {"exists|circle": True, "find|circle": CIRCLES[:1], "verify_property|circle|red": True})
    runs = [BatchExecutor(parse_program(PROGRAM), _Cascade(up={"find@4:13"}), local_round_runner(registry),
                          checked=checked).run(_items(2)) for checked in (True, False)]
    dumps = [[[d.model_dump(exclude={"wall_ms"}) for d in o.decisions] for o in run] for run in runs]
    assert dumps[0] == dumps[1] and any(d["rungs"] for o in dumps[0] for d in o)
    assert [o.answer for o in runs[0]] == [o.answer for o in runs[1]]

    def negative(requests):  # a backend reporting negative FLOPs
        out = local_round_runner(registry)(requests)
        return [r.__class__(**{**r.__dict__, "outputs": [
            Output(o.value, Usage(**{**o.usage.__dict__, "flops": -1.0})) for o in r.outputs]}) for r in out]

    with pytest.raises(ValidationError, match="flops"):
        BatchExecutor(parse_program(PROGRAM), _Fixed("cheap"), negative).run(_items(1))
