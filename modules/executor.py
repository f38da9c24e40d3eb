"""Run a program over a batch of items, answering calls in (call site, backend) groups.

Every item's program advances until it waits on a module call. Waiting calls are grouped
by call site and chosen backend, each group is answered in one backend call (one Prefect
task in the flows), outputs are sent back, and the items advance again. The backend of a
call site is chosen once per item by the Router and reused if the site runs again (loops).

What each call cost is the usage its backend returned with the output. Per item and call
site it adds up to one ``DecisionRecord`` (``ItemOutcome.decisions``), the record the
results file and the ledger store as is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from modules.backends.base import Call, CallFailure, Output
from modules.errors import ExecutionError, FmpModuleError
from modules.interpreter import Interpreter, Limits, PendingCall
from modules.program import CallSite, Program
from modules.registry import Registry
from storage.records import DecisionRecord


@dataclass(frozen=True)
class Route:
    """The backend chosen for one call site of one item, with its probability."""

    backend: str
    propensity: float


class Router(Protocol):
    def choose(self, item_id: str, site: CallSite, features: np.ndarray) -> Route: ...


@dataclass(frozen=True, eq=False)
class GroupRequest:
    call_site: str
    function: str
    backend: str
    calls: list[Call]


@dataclass(frozen=True)
class GroupResult:
    """A group's outputs in call order (each with its usage) and the group's wall time."""

    outputs: list[Output]
    wall_ms: float


RoundRunner = Callable[[list[GroupRequest]], list[GroupResult]]


@dataclass(frozen=True, eq=False)
class ItemInput:
    item_id: str
    image: np.ndarray
    features: np.ndarray


@dataclass
class _Spent:
    """What one call site has cost one item so far (summed over its runs)."""

    call_site: str
    function: str
    backend: str
    propensity: float
    calls: int = 0
    flops: float = 0.0
    params: float = 0.0
    wall_ms: float = 0.0
    price: float = 0.0

    def record(self) -> DecisionRecord:
        return DecisionRecord(call_site=self.call_site, function=self.function, backend=self.backend,
                              propensity=self.propensity, calls=self.calls, flops=self.flops,
                              params=self.params, wall_ms=self.wall_ms, price=self.price)


@dataclass
class ItemOutcome:
    """One item's answer (or error) and one decision per call site that ran, in first-run order."""

    item_id: str
    status: str = "ok"
    answer: Any = None
    error: str | None = None
    decisions: list[DecisionRecord] = field(default_factory=list)


def answer_group(registry: Registry, request: GroupRequest) -> GroupResult:
    """Answer one group on its backend; a call the backend rejects fails alone."""
    backend = registry.get(request.backend)
    where = f"{request.call_site}[{request.backend}]"
    start = time.perf_counter()
    outputs = [Output(o.value.at(where), o.usage) if isinstance(o.value, CallFailure) else o
               for o in backend.answer(request.calls)]
    return GroupResult(outputs, (time.perf_counter() - start) * 1000)


class BatchExecutor:
    """Drives one program over many items in lockstep."""

    def __init__(self, program: Program, router: Router, run_round: RoundRunner,
                 answer_type: str = "bool", limits: Limits = Limits()) -> None:
        self.program = program
        self.router = router
        self.run_round = run_round
        self.answer_type = answer_type
        self.limits = limits

    def run(self, items: list[ItemInput]) -> list[ItemOutcome]:
        """Run every item to completion (or failure) and return outcomes in order."""
        outcomes = {it.item_id: ItemOutcome(it.item_id) for it in items}
        features = {it.item_id: it.features for it in items}
        spent: dict[str, dict[str, _Spent]] = {it.item_id: {} for it in items}
        running = {}
        waiting: dict[str, PendingCall] = {}
        for it in items:
            gen = Interpreter(self.program, it.image, self.limits).run()
            running[it.item_id] = gen
            self._advance(outcomes[it.item_id], gen, None, waiting)
        while waiting:
            groups = self._group(waiting, spent, features)
            results = self.run_round([req for req, _ in groups])
            for (req, item_ids), result in zip(groups, results):
                for k, item_id in enumerate(item_ids):
                    output = result.outputs[k]
                    _charge(spent[item_id][req.call_site], output, result.wall_ms / len(req.calls))
                    del waiting[item_id]
                    if isinstance(output.value, CallFailure):
                        _fail(outcomes[item_id], output.value.message)
                        running[item_id].close()
                    else:
                        self._advance(outcomes[item_id], running[item_id], output.value, waiting)
        for it in items:  # every routed call site ran at least once: its round charged it
            outcomes[it.item_id].decisions = [s.record() for s in spent[it.item_id].values()]
        return [outcomes[it.item_id] for it in items]

    def _group(self, waiting: dict[str, PendingCall], spent: dict[str, dict[str, _Spent]],
               features: dict[str, np.ndarray]) -> list[tuple[GroupRequest, list[str]]]:
        groups: dict[tuple[str, str], tuple[GroupRequest, list[str]]] = {}
        for item_id, pending in waiting.items():
            site = pending.site
            sofar = spent[item_id].get(site.id)
            if sofar is None:
                route = self.router.choose(item_id, site, features[item_id])
                sofar = _Spent(site.id, site.function, route.backend, route.propensity)
                spent[item_id][site.id] = sofar
            key = (site.id, sofar.backend)
            if key not in groups:
                groups[key] = (GroupRequest(site.id, site.function, sofar.backend, []), [])
            groups[key][0].calls.append(pending.call)
            groups[key][1].append(item_id)
        return list(groups.values())

    def _advance(self, outcome: ItemOutcome, gen: Any, value: Any,
                 waiting: dict[str, PendingCall]) -> None:
        try:
            pending = gen.send(value)
        except StopIteration as stop:
            self._finish(outcome, stop.value)
        except FmpModuleError as exc:
            _fail(outcome, str(exc))
        except RecursionError:
            _fail(outcome, "program nested too deeply")
        else:
            waiting[outcome.item_id] = pending

    def _finish(self, outcome: ItemOutcome, answer: Any) -> None:
        expected = bool if self.answer_type == "bool" else str
        if not isinstance(answer, expected):
            _fail(outcome, f"program returned {answer!r} ({type(answer).__name__}); "
                           f"expected {expected.__name__}")
            return
        outcome.answer = answer


def _charge(sofar: _Spent, output: Output, wall_ms: float) -> None:
    """Add one call's usage (and its share of the group's wall time) to its call site."""
    sofar.calls += 1
    sofar.flops += output.usage.flops
    sofar.params += output.usage.params
    sofar.price += output.usage.price
    sofar.wall_ms += wall_ms


def _fail(outcome: ItemOutcome, message: str) -> None:
    outcome.status = "failed"
    outcome.answer = None
    outcome.error = message


__all__ = ["BatchExecutor", "ExecutionError", "GroupRequest", "GroupResult", "ItemInput",
           "ItemOutcome", "Route", "Router", "answer_group"]
