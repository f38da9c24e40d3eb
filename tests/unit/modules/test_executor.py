"""Lockstep execution: grouping, short-circuit charging, per-item failures."""

from __future__ import annotations

import numpy as np
import pytest

from modules.catalog import parse_catalog
from modules.executor import BatchExecutor, GroupRequest, ItemInput, Route
from modules.interpreter import Limits
from modules.program import parse_program
from modules.registry import Registry
from modules.tasks import local_round_runner

PROGRAM = '''def execute_command(image):
    if not exists(image, "circle"):
        return False
    if not exists(image, "square"):
        return False
    for c in find(image, "circle"):
        if verify_property(c, "circle", "red"):
            return True
    return False
'''


def _registry(answers: dict) -> Registry:
    return Registry(parse_catalog([
        {"name": "cheap", "kind": "fake", "functions": ["exists", "find", "verify_property"],
         "answers": answers, "default": False, "flops_per_call": 10.0, "n_params": 5},
        {"name": "big", "kind": "fake", "functions": ["exists", "find", "verify_property"],
         "answers": answers, "default": False, "flops_per_call": 1000.0, "n_params": 500},
    ]))


class _Fixed:
    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.asked: list[tuple[str, str]] = []

    def choose(self, item_id, site, features) -> Route:
        self.asked.append((item_id, site.id))
        return Route(self.backend, 1.0)


def _items(n: int) -> list[ItemInput]:
    return [ItemInput(f"i{k}", np.full((16, 16, 3), k, np.uint8), np.zeros(4)) for k in range(n)]


def test_calls_not_reached_are_neither_run_nor_charged_nor_routed() -> None:
    registry = _registry({})  # exists -> False: every item exits at the first call
    router = _Fixed("big")
    out = BatchExecutor(parse_program(PROGRAM), router, local_round_runner(registry)).run(_items(3))
    assert [o.answer for o in out] == [False, False, False]
    assert [[d.call_site for d in o.decisions] for o in out] == [["exists@2:11"]] * 3
    assert [o.decisions[0].flops for o in out] == [1000.0] * 3
    assert router.asked == [("i0", "exists@2:11"), ("i1", "exists@2:11"), ("i2", "exists@2:11")]


def test_loop_calls_share_one_decision_and_sum_their_cost() -> None:
    answers = {"exists|circle": True, "exists|square": True,
               "find|circle": [(0, 0, 4, 4), (4, 4, 8, 8), (8, 8, 12, 12)]}
    registry = _registry(answers)
    router = _Fixed("cheap")
    (out,) = BatchExecutor(parse_program(PROGRAM), router, local_round_runner(registry)).run(_items(1))
    assert out.answer is False
    (decision,) = [d for d in out.decisions if d.call_site == "verify_property@7:11"]
    assert (decision.calls, decision.flops, decision.params, decision.propensity) == (3, 30.0, 15, 1.0)
    assert router.asked.count(("i0", "verify_property@7:11")) == 1


def test_items_waiting_on_the_same_site_and_backend_form_one_group() -> None:
    registry = _registry({"exists|circle": True})
    seen: list[GroupRequest] = []

    def run_round(requests):
        seen.extend(requests)
        return local_round_runner(registry)(requests)

    BatchExecutor(parse_program(PROGRAM), _Fixed("cheap"), run_round).run(_items(4))
    assert [(r.call_site, r.backend, len(r.calls)) for r in seen] == [
        ("exists@2:11", "cheap", 4), ("exists@4:11", "cheap", 4)]


def test_a_failing_item_fails_alone_with_a_clear_error() -> None:
    program = parse_program('def f(image):\n    n = len(find(image, "circle"))\n    return 10 / n > 1\n')
    registry = _registry({"find|circle": []})
    out = BatchExecutor(program, _Fixed("cheap"), local_round_runner(registry)).run(_items(2))
    assert [o.status for o in out] == ["failed", "failed"]
    assert out[0].error == "line 3: division by zero"
    assert [(d.call_site, d.calls) for d in out[0].decisions] == [("find@2:12", 1)]  # what ran is still charged


def test_wrong_answer_type_is_an_item_failure() -> None:
    program = parse_program('def f(image):\n    return "maybe"\n')
    (out,) = BatchExecutor(program, _Fixed("cheap"), local_round_runner(_registry({}))).run(_items(1))
    assert out.status == "failed"
    assert out.error is not None and "expected bool" in out.error


def test_work_bounds_stop_a_runaway_program() -> None:
    answers = {"find|circle": [(0, 0, 1, 1)] * 50}
    program = parse_program('def f(image):\n    for a in find(image, "circle"):\n'
                            '        for b in find(image, "circle"):\n            x = 1\n    return True\n')
    out = BatchExecutor(program, _Fixed("cheap"), local_round_runner(_registry(answers)),
                        limits=Limits(max_calls=20)).run(_items(1))
    assert out[0].status == "failed"
    assert out[0].error == "find@3:17: program exceeded 20 module calls"


@pytest.mark.parametrize("backend", ["cheap", "big"])
def test_patch_geometry_reaches_the_program(backend: str) -> None:
    answers = {"find|circle": [(0, 0, 4, 4)], "find|square": [(10, 0, 14, 4)]}
    program = parse_program('def f(image):\n    c = find(image, "circle")[0]\n'
                            '    s = find(image, "square")[0]\n'
                            '    return c.left_of(s) and not c.overlaps(s) and s.area == 16\n')
    (out,) = BatchExecutor(program, _Fixed(backend), local_round_runner(_registry(answers))).run(_items(1))
    assert out.answer is True


def test_a_backend_answer_of_the_wrong_type_fails_the_item() -> None:
    program = parse_program('def f(image):\n    return len(find(image, "circle")) > 0\n')
    (out,) = BatchExecutor(program, _Fixed("cheap"), local_round_runner(_registry({}))).run(_items(1))
    assert out.status == "failed"
    assert out.error == "find@2:15: backend answered False, which is not a valid find() result"


def test_decisions_are_the_storage_records_built_from_returned_usage() -> None:
    """The executor's decisions are the records the results file stores, costs from usage."""
    from storage.records import DecisionRecord

    answers = {"exists|circle": True, "exists|square": False}
    (out,) = BatchExecutor(parse_program(PROGRAM), _Fixed("big"), local_round_runner(_registry(answers))).run(
        _items(1))
    assert all(type(d) is DecisionRecord for d in out.decisions)
    assert [(d.call_site, d.function, d.backend, d.calls, d.flops, d.params, d.price) for d in out.decisions] == [
        ("exists@2:11", "exists", "big", 1, 1000.0, 500.0, 0.0),
        ("exists@4:11", "exists", "big", 1, 1000.0, 500.0, 0.0)]


def test_a_call_the_backend_rejects_fails_alone_charged_its_estimate() -> None:
    from unittest import mock

    from modules.backends.base import Call, CallFailure, Output
    from modules.executor import answer_group

    registry = _registry({})
    backend = registry.get("cheap")
    real = backend.infer

    def picky(calls):
        if any(c.args == ("bad",) for c in calls):
            raise ValueError("no bad calls")
        return real(calls)

    with mock.patch.object(backend, "infer", picky):
        image = np.zeros((4, 4, 3), np.uint8)
        result = answer_group(registry, GroupRequest("exists@2:11", "exists", "cheap", [
            Call("exists", image, ("circle",)), Call("exists", image, ("bad",))]))
    good, bad = result.outputs
    assert isinstance(good, Output) and good.value is False
    assert bad.value == CallFailure("exists@2:11[cheap]: no bad calls")
    assert (bad.usage.flops, bad.usage.params) == (10.0, 5)
