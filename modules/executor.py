"""Run a program over a batch of items, answering calls in (call site, backend) groups.

Every item's program advances until it waits on a module call. Waiting calls are grouped
by call site and chosen backend, each group is answered in one backend call (one Prefect
task in the flows), outputs are sent back, and the items advance again. The backend of a
call site is chosen once per item by the Router and reused if the site runs again (loops).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from modules.backends.base import Call
from modules.errors import ExecutionError, FmpModuleError
from modules.interpreter import Interpreter, Limits, PendingCall
from modules.program import CallSite, Program
from modules.registry import Registry


@dataclass(frozen=True)
class Route:
    """The backend chosen for one call site of one item, with its probability."""

    backend: str
    propensity: float


class Router(Protocol):
    def choose(self, item_id: str, site: CallSite, features: np.ndarray) -> Route: ...


@dataclass(frozen=True)
class CallFailure:
    """Stands in for the output of a call the backend rejected."""

    message: str


@dataclass(frozen=True, eq=False)
class GroupRequest:
    call_site: str
    function: str
    backend: str
    calls: list[Call]


@dataclass(frozen=True)
class GroupResult:
    outputs: list[Any]
    flops: list[float]
    params: int
    prices: list[float]
    wall_ms: float


RoundRunner = Callable[[list[GroupRequest]], list[GroupResult]]


@dataclass(frozen=True, eq=False)
class ItemInput:
    item_id: str
    image: np.ndarray
    features: np.ndarray


@dataclass
class Tally:
    """What one call site cost one item (summed over its runs)."""

    call_site: str
    function: str
    backend: str
    propensity: float
    calls: int = 0
    flops: float = 0.0
    params: float = 0.0
    wall_ms: float = 0.0
    price: float = 0.0


@dataclass
class ItemOutcome:
    item_id: str
    status: str = "ok"
    answer: Any = None
    error: str | None = None
    tallies: dict[str, Tally] = field(default_factory=dict)


def answer_group(registry: Registry, request: GroupRequest) -> GroupResult:
    """Answer one group on its backend; a call the backend rejects fails alone."""
    backend = registry.get(request.backend)
    start = time.perf_counter()
    try:
        outputs: list[Any] = backend.infer(request.calls)
    except (ValueError, TypeError):
        outputs = []
        for call in request.calls:
            try:
                outputs.extend(backend.infer([call]))
            except (ValueError, TypeError) as exc:
                outputs.append(CallFailure(f"{request.call_site}[{request.backend}]: {exc}"))
    wall_ms = (time.perf_counter() - start) * 1000
    flops = [backend.flops(c) for c in request.calls]
    prices = [backend.price(c) for c in request.calls]
    return GroupResult(outputs, flops, backend.params(), prices, wall_ms)


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
        running = {}
        waiting: dict[str, PendingCall] = {}
        for it in items:
            gen = Interpreter(self.program, it.image, self.limits).run()
            running[it.item_id] = gen
            self._advance(outcomes[it.item_id], gen, None, waiting)
        while waiting:
            groups = self._group(waiting, outcomes, features)
            results = self.run_round([req for req, _ in groups])
            for (req, item_ids), result in zip(groups, results):
                for k, item_id in enumerate(item_ids):
                    self._charge(outcomes[item_id], req, result, k)
                    output = result.outputs[k]
                    del waiting[item_id]
                    if isinstance(output, CallFailure):
                        _fail(outcomes[item_id], output.message)
                        running[item_id].close()
                    else:
                        self._advance(outcomes[item_id], running[item_id], output, waiting)
        return [outcomes[it.item_id] for it in items]

    def _group(self, waiting: dict[str, PendingCall], outcomes: dict[str, ItemOutcome],
               features: dict[str, np.ndarray]) -> list[tuple[GroupRequest, list[str]]]:
        groups: dict[tuple[str, str], tuple[GroupRequest, list[str]]] = {}
        for item_id, pending in waiting.items():
            site = pending.site
            tally = outcomes[item_id].tallies.get(site.id)
            if tally is None:
                route = self.router.choose(item_id, site, features[item_id])
                tally = Tally(site.id, site.function, route.backend, route.propensity)
                outcomes[item_id].tallies[site.id] = tally
            key = (site.id, tally.backend)
            if key not in groups:
                groups[key] = (GroupRequest(site.id, site.function, tally.backend, []), [])
            groups[key][0].calls.append(pending.call)
            groups[key][1].append(item_id)
        return list(groups.values())

    @staticmethod
    def _charge(outcome: ItemOutcome, req: GroupRequest, result: GroupResult, k: int) -> None:
        tally = outcome.tallies[req.call_site]
        tally.calls += 1
        tally.flops += result.flops[k]
        tally.params += result.params
        tally.price += result.prices[k]
        tally.wall_ms += result.wall_ms / len(req.calls)

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


def _fail(outcome: ItemOutcome, message: str) -> None:
    outcome.status = "failed"
    outcome.answer = None
    outcome.error = message


__all__ = ["BatchExecutor", "ExecutionError", "GroupRequest", "GroupResult", "ItemInput",
           "ItemOutcome", "Route", "Router", "Tally", "answer_group"]
