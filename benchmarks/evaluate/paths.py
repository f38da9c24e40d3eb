"""Paths through a program, remembered per item, so a policy that reaches a known path does
not interpret the program again.

Why. On a re-run (every backend output in the call table) most of a query's time went to
interpreting the program: every policy at every λ ran every item's program again, though
the policies take only a few distinct paths through it. An item's run is decided by the
backends chosen at its call sites, in the order the program first reaches them: which
site comes next, what each call returns, the answer and what each site cost are all
functions of (item, the backends chosen so far). ``PathMemo`` keeps, per item, a trie of
those choices: the node after choices c₁…cₖ names the next call site to decide, or holds the
finished run. ``run_batch`` walks each item's trie asking the policy's router at each node,
exactly as the executor would ask it; only an item that leaves the known trie runs on the
executor (a ``BatchExecutor``, told the choices already made), and its path is added.

What stays the same. The router is asked once per (item, call site), with the same item,
site and features, and learners change state only in ``update`` (between batches), so the
choices are the same whichever order the items are walked in. Each decision's propensity is
the router's of this run. What a path cost is its calls' usage, as recorded on the run that
added it. The one figure that may differ is a site's wall-time share: the executor charges
each call its group's mean, so it depends on which items shared the group; a walked path
keeps the share of the run that added it (``benchmarks.speed`` ignores wall times).

Routers that escalate (cascades) re-issue calls after seeing answers; they always run on the
executor. A memo is kept for one query's phase (``run_query``), so what each policy gets
does not depend on how many worker processes ran.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from modules.backends.base import Call
from modules.executor import BatchExecutor, ItemInput, ItemOutcome, RoundRunner, Route, Router
from modules.program import CallSite, Program
from storage.records import DecisionRecord, trusted

#: A path: the (call site, backend) choices made so far, in first-reach order.
Path = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class _Done:
    """A finished run: its outcome (decisions' propensities are the run's own) and the call
    keys it made (for shadow runs, which charge only calls the batch did not make)."""

    status: str
    answer: Any
    error: str | None
    decisions: tuple[DecisionRecord, ...]
    keys: tuple[Any, ...]


class _Replaying:
    """A router that returns the choices already made for an item, and asks ``router`` for
    the rest."""

    def __init__(self, router: Router, made: dict[str, dict[str, Route]]) -> None:
        self.router, self.made = router, made

    def choose(self, item_id: str, site: CallSite, features: np.ndarray) -> Route:
        route = self.made.get(item_id, {}).get(site.id)
        return route if route is not None else self.router.choose(item_id, site, features)


class PathMemo:
    """One program's paths, per item (see the module docstring)."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self.sites = {s.id: s for s in program.call_sites}
        self._nodes: dict[tuple[str, Path], str | _Done] = {}
        self.walked = 0  # items answered from the memo
        self.executed = 0  # items that ran on the executor

    def run_batch(self, items: list[ItemInput], router: Router, run_round: RoundRunner,
                  answer_type: str, key: Callable[[str, Call], Any],
                  ) -> tuple[list[ItemOutcome], set[Any]]:
        """Every item's outcome, in order, and the call keys (``key(backend, call)``) of
        every call the batch's runs made (kept with each path, so a walked item reports its
        calls as an executed one would)."""
        out: dict[str, ItemOutcome] = {}
        keys: set[Any] = set()
        made: dict[str, dict[str, Route]] = {}
        left: list[ItemInput] = []
        for it in items:
            routes: dict[str, Route] = {}
            done = self._walk(it, router, routes)
            if done is None:
                made[it.item_id] = routes
                left.append(it)
                continue
            self.walked += 1
            out[it.item_id] = ItemOutcome(it.item_id, done.status, done.answer, done.error, [
                d if d.propensity == routes[d.call_site].propensity
                else trusted(DecisionRecord, {**d.__dict__, "propensity": routes[d.call_site].propensity})
                for d in done.decisions])
            keys.update(done.keys)
        if left:
            self.executed += len(left)
            seen: dict[str, list[Any]] = {it.item_id: [] for it in left}

            def observe(item_id: str, backend: str, call: Call) -> None:
                seen[item_id].append(key(backend, call))

            ran = BatchExecutor(self.program, _Replaying(router, made), run_round, answer_type,
                                observe=observe, checked=False).run(left)
            for it, o in zip(left, ran, strict=True):
                self._add(it.item_id, o, tuple(seen[it.item_id]))
                keys.update(seen[it.item_id])
                out[it.item_id] = o
        return [out[it.item_id] for it in items], keys

    def _walk(self, it: ItemInput, router: Router, routes: dict[str, Route]) -> _Done | None:
        path: Path = ()
        while True:
            node = self._nodes.get((it.item_id, path))
            if node is None:
                return None
            if isinstance(node, _Done):
                return node
            route = router.choose(it.item_id, self.sites[node], it.features)
            routes[node] = route
            path = (*path, (node, route.backend))

    def _add(self, item_id: str, outcome: ItemOutcome, keys: tuple[Any, ...]) -> None:
        path: Path = ()
        for d in outcome.decisions:
            self._nodes[(item_id, path)] = d.call_site
            path = (*path, (d.call_site, d.backend))
        self._nodes[(item_id, path)] = _Done(outcome.status, outcome.answer, outcome.error,
                                            tuple(outcome.decisions), keys)

