"""Run a program over a batch of items, answering calls in (call site, backend) groups.

Every item's program advances until it waits on a module call. Waiting calls are grouped
by call site and chosen backend, each group is answered in one backend call (one Prefect
task in the flows), outputs are sent back, and the items advance again. The backend of a
call site is chosen once per item by the Router and reused if the site runs again (loops).

What each call cost is the usage its backend returned with the output. Per item and call
site it adds up to one ``DecisionRecord`` (``ItemOutcome.decisions``), the record the
results file and the ledger store as is.

Escalation (call-site cascades): a router that also has ``escalate`` (``EscalatingRouter``)
sees every answer before the program does. When it names a larger backend, the same call
is re-issued there in the next round and the program waits; when it returns None, the
program gets the answer. Every rung that ran is charged to the item. The escalation is
sticky for the item: later calls of the same site (loops) start on the rung it reached.
The decision record names the rung whose answer was used, lists the cheaper rungs tried
first and every rung's answer (confidence, polarity, agreement with the next rung).
Routers without ``escalate`` run exactly as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from modules.answers import NA, normalise_answer
from modules.backends.base import Call, CallFailure, Output
from modules.errors import ExecutionError, FmpModuleError
from modules.interpreter import Interpreter, Limits, PendingCall
from modules.program import CallSite, Program
from modules.registry import Registry
from storage.records import DecisionRecord, RungRecord, trusted


@dataclass(frozen=True)
class Route:
    """The backend chosen for one call site of one item, with its probability."""

    backend: str
    propensity: float


class Router(Protocol):
    def choose(self, item_id: str, site: CallSite, features: np.ndarray) -> Route: ...


class EscalatingRouter(Router, Protocol):
    """A router that may also escalate: after ``backend`` answered a call of ``site`` for
    ``item_id``, return the Route of a larger backend to re-issue the call on, or None to
    let the program use the answer (``output`` carries its confidence in ``usage``)."""

    def escalate(self, item_id: str, site: CallSite, features: np.ndarray, backend: str,
                 output: Output) -> Route | None: ...


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
    tried: list[str] = field(default_factory=list)  # rungs escalated from, in order
    rungs: list[dict[str, Any]] = field(default_factory=list)  # RungRecord fields, per answer
    call_rungs: set[str] = field(default_factory=set)  # rungs the call in progress ran on
    escalated: Any = None  # the answer of the call in progress that was escalated from

    def record(self, checked: bool = True) -> DecisionRecord:
        """The call site's decision record; ``checked=False`` builds it without validation
        (``BatchExecutor``'s ``checked``)."""
        fields: dict[str, Any] = dict(
            call_site=self.call_site, function=self.function, backend=self.backend, calls=self.calls,
            propensity=self.propensity, flops=self.flops, params=self.params, wall_ms=self.wall_ms,
            price=self.price, tried=list(self.tried))
        if checked:
            return DecisionRecord(**fields, rungs=[RungRecord(**r) for r in self.rungs])
        for name in ("propensity", "flops", "params", "wall_ms", "price"):
            fields[name] = float(fields[name])  # as validation makes them
        fields["rungs"] = [trusted(RungRecord, r) for r in self.rungs]
        return trusted(DecisionRecord, fields)


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
                 answer_type: str = "bool", limits: Limits = Limits(),
                 observe: Callable[[str, str, Call], None] | None = None, checked: bool = True) -> None:
        """``observe(item_id, backend, call)``, when given, sees every call as it is answered.

        ``checked``: validate each decision record (a backend's usage that is negative or not
        finite fails the item's record); the benchmark harness, replaying usage its own
        backends reported into the call table, passes False (validating them was about a
        sixth of the executor's time in a cascade's warm re-run)."""
        self.program = program
        self.checked = checked
        self.observe = observe
        self.router = router
        self.run_round = run_round
        self.answer_type = answer_type
        self.limits = limits
        self._escalate: Callable[..., Route | None] | None = getattr(router, "escalate", None)

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
            for (req, item_ids), result in zip(groups, results, strict=True):
                for k, item_id in enumerate(item_ids):
                    output = result.outputs[k]
                    if self.observe is not None:
                        self.observe(item_id, req.backend, req.calls[k])
                    sofar = spent[item_id][req.call_site]
                    _charge(sofar, output, result.wall_ms / len(req.calls))
                    pending = waiting.pop(item_id)
                    if self._escalated(item_id, pending, sofar, output, features[item_id]):
                        waiting[item_id] = pending  # the same call, on the next rung, next round
                        continue
                    if isinstance(output.value, CallFailure):
                        _fail(outcomes[item_id], output.value.message)
                        running[item_id].close()
                    else:
                        self._advance(outcomes[item_id], running[item_id], output.value, waiting)
        for it in items:  # every routed call site ran at least once: its round charged it
            outcomes[it.item_id].decisions = [s.record(self.checked) for s in spent[it.item_id].values()]
        return [outcomes[it.item_id] for it in items]

    def _escalated(self, item_id: str, pending: PendingCall, sofar: _Spent, output: Output,
                   features: np.ndarray) -> bool:
        """Record the rung's answer; True when the router re-issues the call on a larger rung."""
        if self._escalate is None:
            return False
        failed = isinstance(output.value, CallFailure)
        if sofar.escalated is not None:  # the rung below answered this call first
            (index, answer, below_failed), sofar.escalated = sofar.escalated, None
            agreed = not failed and not below_failed and answers_agree(answer, output.value)
            sofar.rungs[index]["agreed"] = agreed
        confidence = output.usage.confidence
        if confidence is not None:
            confidence = float(min(max(confidence, 0.0), 1.0)) if np.isfinite(confidence) else None
        sofar.rungs.append({"backend": sofar.backend, "confidence": confidence,
                            "positive": not failed and positive_answer(output.value), "agreed": None})
        sofar.call_rungs.add(sofar.backend)
        route = self._escalate(item_id, pending.site, features, sofar.backend, output)
        if route is None or route.backend in sofar.call_rungs:
            sofar.call_rungs.clear()
            return False
        if sofar.backend not in sofar.tried:
            sofar.tried.append(sofar.backend)
        sofar.escalated = (len(sofar.rungs) - 1, output.value, failed)
        sofar.backend = route.backend
        return True

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


#: Text answers that say "nothing": the negative ones (besides "no"), as ``positive_answer`` reads them.
_NEGATIVE_TEXT = frozenset({"", "no", NA.lower(), "unknown", "none", "0"})


def positive_answer(value: Any) -> bool:
    """Whether a module answer is a positive one: True, a count above 0, a non-empty list of
    boxes, a text other than no / N/A / unknown / none / 0 / empty."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | float):
        return value > 0
    if isinstance(value, str):
        return normalise_answer(value).lower() not in _NEGATIVE_TEXT
    if isinstance(value, list | tuple):
        return len(value) > 0
    return value is not None


def answers_agree(a: Any, b: Any, min_iou: float = 0.5) -> bool:
    """Whether two backends gave the same answer to one call: equal values; texts equal after
    ``normalise_answer``; lists of boxes of the same length, matched one to one at IoU >=
    ``min_iou`` (boxes of two detectors at different resolutions never match to the pixel)."""
    if isinstance(a, str) and isinstance(b, str):
        return normalise_answer(a) == normalise_answer(b)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        if len(a) != len(b):
            return False
        free = list(b)
        for box in a:
            scores = [_iou(box, other) for other in free]
            best = int(np.argmax(scores)) if scores else -1
            if best < 0 or scores[best] < min_iou:
                return False
            free.pop(best)
        return True
    return bool(a == b)


def _iou(a: Any, b: Any) -> float:
    try:
        ax0, ay0, ax1, ay1 = a
        bx0, by0, bx1, by1 = b
    except (TypeError, ValueError):
        return 1.0 if a == b else 0.0
    w, h = min(ax1, bx1) - max(ax0, bx0), min(ay1, by1) - max(ay0, by0)
    inter = max(w, 0) * max(h, 0)
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return float(inter / union) if union > 0 else float(a == b)


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


__all__ = ["BatchExecutor", "EscalatingRouter", "ExecutionError", "GroupRequest", "GroupResult",
           "ItemInput", "ItemOutcome", "Route", "Router", "answer_group", "answers_agree",
           "positive_answer"]
