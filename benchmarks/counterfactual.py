"""Answer each backend call once, however many policies ask it; and the per-item oracle.

Every policy of an evaluation runs the same items. A backend is a deterministic function
of (function, args, pixels), so :class:`CallCache` keys answers by exactly that and the
:func:`cached_round_runner` answers a lockstep round from the cache, sending only unseen
calls to the models (one ``infer`` per backend). Costs are the usage each backend returned
with its output (FLOPs, parameters, price) and the wall time of the batched call that first
computed it, so a cached answer (``usage.cached``) costs a policy what it would have cost to
compute.

:func:`oracle_runs` finds, for each item, the cheapest run (in FLOPs) whose answer is right:
a best-first search over the item's runs, which branch at the first visit of each call
site (one backend per call site per item, as policies choose). Partial runs are ordered by
the FLOPs spent so far, a lower bound on their completions, so the first right complete
run taken from the queue is the cheapest one.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from modules.backends.base import Call, CallFailure, Output
from modules.errors import FmpModuleError
from modules.executor import GroupRequest, GroupResult, RoundRunner
from modules.interpreter import Interpreter, Limits
from modules.program import Program
from modules.registry import Registry
from modules.stored_calls import CallKey as CallKey
from modules.stored_calls import call_key as call_key

#: How many calls' pixel digests ``CallCache.key`` keeps by call (a batch's calls are keyed
#: again within the batch; the memo starts afresh when full).
_RECENT_CALLS = 4096
#: A run's (FLOPs, params, wall ms, price).
Totals = tuple[float, float, float, float]
#: Where a replay stopped: ("done", answer, totals), ("fork", site, totals) or ("need", backend, call).
Replay = (tuple[Literal["done"], Any, Totals] | tuple[Literal["fork"], str, Totals]
          | tuple[Literal["need"], str, Call])


@dataclass(frozen=True)
class Answered:
    """A computed call: its output (value and usage) and its share of its batch's wall time."""

    output: Output
    wall_ms: float

    def reused(self) -> Answered:
        """The same answer, marked as served from the cache."""
        return replace(self, output=replace(self.output, usage=replace(self.output.usage, cached=True)))


@dataclass
class CallCache:
    """Answers by (backend, function, args, pixels); counts what was computed vs reused.

    ``preload`` adds answers computed earlier (a stored call table); ``fresh`` lists, in
    order, the keys this cache computed itself since ``clear``. Pixel digests of views of a
    read-only image are kept per (image, offset, shape, strides) until ``clear``: the
    harness's items are read-only, and a call's patch is a view of its item.
    """

    registry: Registry
    answers: dict[CallKey, Answered] = field(default_factory=dict)
    computed: int = 0
    reused: int = 0
    loaded: int = 0
    fresh: list[CallKey] = field(default_factory=list)
    remember_digests: bool = True
    _digests: dict[tuple[int, int, tuple[int, ...], tuple[int, ...]], bytes] = field(default_factory=dict)
    _roots: dict[int, np.ndarray] = field(default_factory=dict)
    _reused: dict[CallKey, Answered] = field(default_factory=dict)  # answers marked as reused
    #: the pixel digests of the calls keyed last (a call is keyed when it is answered, when
    #: its run is recorded and when shadow runs ask which calls were free; a Call and its
    #: read-only pixels never change)
    _calls: dict[int, tuple[Call, bytes]] = field(default_factory=dict)

    def key(self, backend: str, call: Call) -> CallKey:
        """``call_key(backend, call)``, the pixel digest remembered for read-only images."""
        img = call.image
        if img is None:
            return backend, call.function, call.args, None, b""
        last = self._calls.get(id(call))
        if last is not None and last[0] is call:  # the same call asked again (another backend)
            return backend, call.function, call.args, img.shape, last[1]
        root = img
        while isinstance(root.base, np.ndarray):
            root = root.base
        if root.flags.writeable or not self.remember_digests:
            return call_key(backend, call)
        where = (id(root), img.__array_interface__["data"][0], img.shape, img.strides)
        pix = self._digests.get(where)
        if pix is None:
            pix = hashlib.blake2b(np.ascontiguousarray(img).tobytes(), digest_size=16).digest()
            self._digests[where] = pix
            self._roots[id(root)] = root  # alive while its digests are kept: ids stay unique
        if len(self._calls) >= _RECENT_CALLS:
            self._calls.clear()
        self._calls[id(call)] = (call, pix)  # the call is kept with it: its id stays its own
        return backend, call.function, call.args, img.shape, pix

    def get_many(self, backend: str, calls: list[Call], seen: set[CallKey] | None = None) -> list[Answered]:
        """The answers to ``calls`` on ``backend``, computing those not known; their keys are
        added to ``seen`` when given."""
        keys = [self.key(backend, c) for c in calls]
        if seen is not None:
            seen.update(keys)
        hits = [k in self.answers for k in keys]
        missing = {k: c for k, c, hit in zip(keys, calls, hits, strict=True) if not hit}
        self.reused += len(keys) - len(missing)
        if missing:
            self._compute(backend, list(missing.keys()), list(missing.values()))
        return [self._reused_answer(k) if hit else self.answers[k]
                for k, hit in zip(keys, hits, strict=True)]

    def _reused_answer(self, key: CallKey) -> Answered:
        got = self._reused.get(key)
        if got is None:
            got = self._reused[key] = self.answers[key].reused()
        return got

    def peek(self, backend: str, call: Call) -> Answered | None:
        """The cached answer, or None (never computes)."""
        return self.answers.get(self.key(backend, call))

    def preload(self, answers: dict[CallKey, Answered]) -> int:
        """Add answers computed earlier (those not already here); returns how many were added."""
        before = len(self.answers)
        for key, got in answers.items():
            self.answers.setdefault(key, got)
        added = len(self.answers) - before
        self.loaded += added
        return added

    def _compute(self, name: str, keys: list[CallKey], calls: list[Call]) -> None:
        backend = self.registry.get(name)
        start = time.perf_counter()
        outputs = [Output(o.value.at(name), o.usage) if isinstance(o.value, CallFailure) else o
                   for o in backend.answer(calls)]
        wall = (time.perf_counter() - start) * 1000
        self.computed += len(calls)
        for key, out in zip(keys, outputs, strict=True):
            self.answers[key] = Answered(out, wall / len(calls))
        self.fresh.extend(keys)

    def clear(self) -> None:
        self.answers.clear()
        self._reused.clear()
        self.fresh.clear()
        self._digests.clear()
        self._roots.clear()
        self._calls.clear()


def cached_round_runner(cache: CallCache, seen: set[CallKey] | None = None) -> RoundRunner:
    """A RoundRunner for the lockstep executor that answers from (and fills) ``cache``; the
    keys of the calls it answers are added to ``seen`` when given."""

    def run_round(requests: list[GroupRequest]) -> list[GroupResult]:
        results = []
        for req in requests:
            got = cache.get_many(req.backend, req.calls, seen)
            results.append(GroupResult([a.output for a in got], sum(a.wall_ms for a in got)))
        return results

    return run_round


# -- the oracle ------------------------------------------------------------------------------
@dataclass(frozen=True)
class OracleRun:
    """The cheapest right run of an item (``found``), else the cheapest run seen."""

    found: bool
    answer: Any
    assignment: dict[str, str]
    flops: float
    params: float
    wall_ms: float
    price: float
    expanded: int


class _Search:
    """One item's best-first search state."""

    def __init__(self, arms: dict[str, list[str]], is_right: Callable[[Any], bool]) -> None:
        self.arms, self.is_right = arms, is_right
        self.tie = itertools.count()
        self.heap: list[tuple[float, int, dict[str, str], tuple[Any, Totals] | None]] = [
            (0.0, next(self.tie), {}, None)]
        self.current: dict[str, str] | None = None
        self.best_wrong: OracleRun | None = None
        self.result: OracleRun | None = None
        self.expanded = 0


def oracle_runs(program: Program, images: list[np.ndarray], arms: dict[str, list[str]],
                cache: CallCache, is_right: list[Callable[[Any], bool]], limits: Limits = Limits(),
                max_expansions: int = 400) -> list[OracleRun]:
    """Best-first search, per item, for the cheapest run whose answer ``is_right[i]``.

    The items' searches advance in lockstep so that the model calls they need are computed
    in one batch per backend. After ``max_expansions`` partial runs of an item without a
    right one, its result is the cheapest complete run seen (``found=False``; with none at
    all, the run on the largest backends).
    """
    searches = [_Search(arms, f) for f in is_right]
    while True:
        wanted: dict[str, dict[CallKey, Call]] = defaultdict(dict)
        for i, search in enumerate(searches):
            while search.result is None:
                need = _step(program, images[i], search, cache, limits, max_expansions)
                if need is not None:
                    backend, call = need
                    wanted[backend][cache.key(backend, call)] = call
                    break
        if not wanted:
            return [s.result for s in searches]  # type: ignore[misc]
        for backend, calls in wanted.items():
            cache.get_many(backend, list(calls.values()))


def _step(program: Program, image: np.ndarray, search: _Search, cache: CallCache, limits: Limits,
          max_expansions: int) -> tuple[str, Call] | None:
    """Advance one search by one partial run; returns the uncached call it waits on, if any."""
    if search.current is None:
        if not search.heap or search.expanded >= max_expansions:
            search.result = search.best_wrong or _largest_run(program, image, search, cache, limits)
            return None
        flops, _, assignment, done = heapq.heappop(search.heap)
        if done is not None:  # a complete run, the cheapest of all open ones
            answer, totals = done
            run = OracleRun(search.is_right(answer), answer, assignment, *totals, search.expanded)
            if run.found:
                search.result = run
            elif search.best_wrong is None:
                search.best_wrong = run
            return None
        search.current = assignment
        search.expanded += 1
    outcome = _replay(program, image, search.current, cache, limits)
    if outcome[0] == "need":
        return outcome[1], outcome[2]
    assignment, search.current = search.current, None
    if outcome[0] == "fork":
        _, site, totals = outcome
        for name in search.arms[site]:
            heapq.heappush(search.heap, (totals[0], next(search.tie), {**assignment, site: name}, None))
    else:
        _, answer, totals = outcome
        heapq.heappush(search.heap, (totals[0], next(search.tie), assignment, (answer, totals)))
    return None


def _largest_run(program: Program, image: np.ndarray, search: _Search, cache: CallCache,
                 limits: Limits) -> OracleRun:
    largest = {s: names[-1] for s, names in search.arms.items()}
    while True:
        outcome = _replay(program, image, largest, cache, limits)
        if outcome[0] != "need":
            return OracleRun(False, outcome[1], largest, *outcome[2], search.expanded)
        cache.get_many(outcome[1], [outcome[2]])


def _replay(program: Program, image: np.ndarray, assignment: dict[str, str], cache: CallCache,
            limits: Limits) -> Replay:
    """Run the program with ``assignment`` from cached answers until it ends ("done", answer,
    totals), reaches a call site it has no backend for ("fork", site, totals), or needs a call
    not in the cache ("need", backend, call); totals = (FLOPs, params, wall ms, price)."""
    totals = [0.0, 0.0, 0.0, 0.0]
    gen = Interpreter(program, image, limits).run()
    value: Any = None
    try:
        while True:
            pending = gen.send(value)
            site = pending.site.id
            if site not in assignment:
                gen.close()
                return "fork", site, _totals(totals)
            got = cache.peek(assignment[site], pending.call)
            if got is None:
                gen.close()
                return "need", assignment[site], pending.call
            usage = got.output.usage
            totals[0] += usage.flops
            totals[1] += usage.params
            totals[2] += got.wall_ms
            totals[3] += usage.price
            if isinstance(got.output.value, CallFailure):
                gen.close()
                return "done", None, _totals(totals)
            value = got.output.value
    except StopIteration as stop:
        return "done", stop.value, _totals(totals)
    except (FmpModuleError, RecursionError):
        return "done", None, _totals(totals)


def _totals(sums: list[float]) -> Totals:
    flops, params, wall_ms, price = sums
    return flops, params, wall_ms, price


# -- shadow runs -----------------------------------------------------------------------------
def shadow_run(program: Program, image: np.ndarray, assignment: dict[str, str], fallback: dict[str, str],
               cache: CallCache, free: set[CallKey], limits: Limits = Limits(),
               memo: RunMemo | None = None) -> tuple[Any, float]:
    """Run the program once more with ``assignment`` (sites it lacks take ``fallback``).

    Returns the answer (None if the run failed) and the FLOPs of the calls it had to make:
    calls whose key is in ``free`` (answered for the item's own run) cost nothing, as a
    shadow run reuses the outputs of the calls it shares with the run it shadows; every
    other call is charged once (its key then joins ``free``), whether or not the cache
    already holds its answer: what a policy pays never depends on which policies ran
    before it, or on a stored call table.
    """
    answer, _, charged = audit_run(program, image, assignment, fallback, cache, free, limits, memo)
    return answer, charged


class RunMemo:
    """The runs :func:`audit_run` made of one program, per image: a trie of the (call site,
    backend) choices in the order the program reached the sites, each leaf holding the run's
    answer and its calls (key, FLOPs) in order. A run is a function of the image and the
    backends of the sites it reaches, so a run whose choices reach a known leaf is read back
    instead of interpreted again; what it charges is worked out from its calls and ``free``
    exactly as a fresh run would."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self._nodes: dict[tuple[int, tuple[tuple[str, str], ...]], Any] = {}
        self._images: dict[int, np.ndarray] = {}  # kept alive while their ids key the trie

    def get(self, image: np.ndarray, assignment: dict[str, str], fallback: dict[str, str],
            ) -> tuple[Any, tuple[tuple[CallKey, float], ...]] | None:
        """(answer, calls) of the run of ``image`` under the choices, or None if never made."""
        path: tuple[tuple[str, str], ...] = ()
        at = id(image)
        while True:
            node = self._nodes.get((at, path))
            if node is None:
                return None
            if not isinstance(node, str):
                return node  # type: ignore[no-any-return]
            path = (*path, (node, assignment.get(node) or fallback[node]))

    def add(self, image: np.ndarray, path: list[tuple[str, str]], answer: Any,
            calls: list[tuple[CallKey, float]]) -> None:
        at = id(image)
        self._images[at] = image
        for k, (site, _) in enumerate(path):
            self._nodes[(at, tuple(path[:k]))] = site
        self._nodes[(at, tuple(path))] = (answer, tuple(calls))


def audit_run(program: Program, image: np.ndarray, assignment: dict[str, str], fallback: dict[str, str],
              cache: CallCache, free: set[CallKey], limits: Limits = Limits(),
              memo: RunMemo | None = None) -> tuple[Any, float, float]:
    """:func:`shadow_run` that also says what the run would cost on its own: (answer, the
    FLOPs of all its calls, the FLOPs of the calls not in ``free``, which join it).
    ``memo``: runs of ``program`` made before (``RunMemo``), read back instead of run again."""
    known = memo.get(image, assignment, fallback) if memo is not None and memo.program is program else None
    if known is None:
        path: list[tuple[str, str]] = []
        calls: list[tuple[CallKey, float]] = []
        answer = _audit_run(program, image, assignment, fallback, cache, limits, path, calls)
        if memo is not None and memo.program is program:
            memo.add(image, path, answer, calls)
    else:
        answer, calls_made = known
        calls = list(calls_made)
    charged = total = 0.0
    for key, flops in calls:  # in call order: a call made twice in one run is charged once
        total += flops
        if key not in free:
            charged += flops
            free.add(key)
    return answer, total, charged


def _audit_run(program: Program, image: np.ndarray, assignment: dict[str, str], fallback: dict[str, str],
               cache: CallCache, limits: Limits, path: list[tuple[str, str]],
               calls: list[tuple[CallKey, float]]) -> Any:
    """Run once, filling ``path`` (choices at first reach) and ``calls`` (key, FLOPs)."""
    gen = Interpreter(program, image, limits).run()
    value: Any = None
    reached: set[str] = set()
    try:
        while True:
            pending = gen.send(value)
            site = pending.site.id
            backend = assignment.get(site) or fallback[site]
            if site not in reached:
                reached.add(site)
                path.append((site, backend))
            got = cache.get_many(backend, [pending.call])[0]
            calls.append((cache.key(backend, pending.call), got.output.usage.flops))
            if isinstance(got.output.value, CallFailure):
                gen.close()
                return None
            value = got.output.value
    except StopIteration as stop:
        return stop.value
    except (FmpModuleError, RecursionError):
        return None
