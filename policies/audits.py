"""The ``confirmed`` policy's two extra runs: the confirmation of every "yes" (batch flow) and
the audits' replays with the real backends (feedback flow).

The search they feed (strata, objective, descent) is ``policy_store.learners.confirmed``'s.
Both runs are real compute and go to the ledger as decisions of the item they ran for, under
a call-site id of their own so they never collide with the item's own run:

- ``{site}+confirm``: the confirmation's calls, in the item's row of ``results.jsonl`` (the
  item's answer is the confirmation's);
- ``{site}+audit[{backend}]``: the audits' calls, written by the feedback flow with the
  version it saves (``PolicyStore.save_learned_version``), summed per (item, call site,
  backend) over every feedback run that replayed the item. A call an earlier feedback run
  computed and charged is answered from its kept output (``policies.audit_calls``) and not
  charged again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from modules.answers import normalise_answer
from modules.backends.base import Call, Output
from modules.executor import (
    BatchExecutor,
    GroupRequest,
    GroupResult,
    ItemInput,
    ItemOutcome,
    RoundRunner,
    Route,
    answer_group,
)
from modules.program import CallSite, Program
from modules.registry import Registry
from modules.stored_calls import CallKey, call_key
from policies.audit_calls import KeptCall
from policy_store.learners.base import Learner
from policy_store.learners.confirmed import ConfirmedLearner, largest
from policy_store.records import AUDIT_SUFFIX
from storage.records import DecisionRecord, ResultRow

#: Call-site suffix of the confirmation's decisions.
CONFIRM_SUFFIX = "+confirm"


class FixedRouter:
    """Every call site on the backend ``pins`` names, propensity 1."""

    def __init__(self, pins: dict[str, str]) -> None:
        self.pins = dict(pins)

    def choose(self, item_id: str, site: CallSite, features: np.ndarray) -> Route:
        return Route(self.pins[site.id], 1.0)


def confirms(learner: Learner, answer_type: str) -> bool:
    """Whether a batch run of ``learner`` confirms its "yes" answers (a confirmed learner on a
    bool stream)."""
    return isinstance(learner, ConfirmedLearner) and answer_type == "bool"


def is_yes(answer: Any) -> bool:
    """Whether an answer reads as "yes"."""
    return bool(normalise_answer(answer) == "yes")


def confirm(program: Program, arms: dict[str, list[str]], run_round: RoundRunner, answer_type: str,
            inputs: list[ItemInput], outcomes: list[ItemOutcome]) -> list[ItemOutcome]:
    """Run the items answered "yes" again with every call site on its largest backend; their
    answer is the second run's (a failed second run fails the item), and the second run's
    decisions join theirs as ``{site}+confirm``. Other items are returned as they are."""
    yes = [(i, o) for i, o in zip(inputs, outcomes, strict=True) if o.status == "ok" and is_yes(o.answer)]
    if not yes:
        return outcomes
    second = BatchExecutor(program, FixedRouter(largest(arms)), run_round, answer_type).run(
        [i for i, _ in yes])
    merged = {o.item_id: o for o in outcomes}
    for (_, first), again in zip(yes, second, strict=True):
        extra = [d.model_copy(update={"call_site": d.call_site + CONFIRM_SUFFIX}) for d in again.decisions]
        merged[first.item_id] = replace(
            first, status=again.status, answer=again.answer,
            error=None if again.error is None else f"confirmation on the largest backends: {again.error}",
            decisions=[*first.decisions, *extra])
    return [merged[o.item_id] for o in outcomes]


def extra_site(call_site: str) -> bool:
    """Whether a decision's call site is a confirmation's or an audit's, not the item's own run."""
    return CONFIRM_SUFFIX in call_site or AUDIT_SUFFIX in call_site


def known_runs(row: ResultRow, pins: dict[str, str], fallback: dict[str, str]
               ) -> list[tuple[dict[str, str], Any, float]]:
    """The runs an item already had, as audit replays (configuration, answer, FLOPs): its own
    run under ``pins`` (the answer before any confirmation) and its confirmation on the largest
    backends (``fallback``), if any. None of them when the item failed or when a call site of
    its own run was not on the backend ``pins`` names (the batch ran under other pins)."""
    first = [d for d in row.decisions if not extra_site(d.call_site)]
    again = [d for d in row.decisions if CONFIRM_SUFFIX in d.call_site]
    if row.status != "ok" or not first or any(pins.get(d.call_site) != d.backend for d in first) \
            or any(fallback.get(d.call_site.removesuffix(CONFIRM_SUFFIX)) != d.backend for d in again):
        return []
    if not again:
        return [(dict(pins), row.answer, sum(d.flops for d in first))]
    # only a "yes" is confirmed; the confirmation's answer is the item's
    return [(dict(pins), True, sum(d.flops for d in first)),
            (dict(fallback), row.answer, sum(d.flops for d in again))]


@dataclass
class Replayer:
    """Runs items of one feedback run under fixed configurations with the real backends.

    A call made once in this run (same backend, function, arguments and pixels) is answered
    again from memory and charged once. A call in ``kept`` (earlier feedback runs', see
    ``policies.audit_calls``) is not computed again: free when the ledger charged it then
    (``reused`` counts those), charged now when it never was. ``charged`` holds, per item and
    call site, what this run charges for it (``DecisionRecord``s, to go to the ledger as
    ``{site}+audit[{backend}]``); ``computed``, the calls behind those charges (output, wall
    ms), to keep for later runs.
    """

    registry: Registry
    program: Program
    answer_type: str
    image: Callable[[str], np.ndarray]  # item -> its pixels
    features: dict[str, np.ndarray] = field(default_factory=dict)
    kept: dict[CallKey, KeptCall] = field(default_factory=dict)
    memo: dict[CallKey, Output] = field(default_factory=dict)
    charged: dict[str, dict[str, DecisionRecord]] = field(default_factory=dict)
    computed: dict[CallKey, tuple[Output, float]] = field(default_factory=dict)
    runs: int = 0
    reused: int = 0
    reused_flops: float = 0.0
    charged_flops: float = 0.0  # FLOPs of the calls this run charges (the audits' stake)

    def __call__(self, item: str, config: dict[str, str]) -> tuple[Any, float]:
        """Item ``item`` under ``config``: (its answer, None when it failed; FLOPs of all calls)."""
        fresh: list[tuple[str, str, str, Output, float]] = []

        def run_round(requests: list[GroupRequest]) -> list[GroupResult]:
            out = []
            for req in requests:
                keys = [call_key(req.backend, c) for c in req.calls]
                todo: dict[CallKey, Call] = {}
                for call, key in zip(req.calls, keys, strict=True):
                    if key in self.memo or key in todo:
                        continue
                    kept = self.kept.get(key)
                    if kept is None:
                        todo[key] = call
                        continue
                    self.memo[key] = kept.output
                    if kept.charged:
                        self.reused += 1
                        self.reused_flops += kept.output.usage.flops
                    else:  # computed by a run that never committed: charged now
                        self.computed[key] = (kept.output, kept.wall_ms)
                        fresh.append((req.call_site, req.function, req.backend, kept.output, kept.wall_ms))
                wall = 0.0
                if todo:
                    got = answer_group(self.registry, GroupRequest(req.call_site, req.function,
                                                                   req.backend, list(todo.values())))
                    wall = got.wall_ms / len(todo)
                    for key, output in zip(todo, got.outputs, strict=True):
                        self.memo[key] = output
                        self.computed[key] = (output, wall)
                        fresh.append((req.call_site, req.function, req.backend, output, wall))
                out.append(GroupResult([self.memo[k] for k in keys], wall * len(todo)))
            return out

        features = self.features.get(item, np.zeros(0))
        [outcome] = BatchExecutor(self.program, FixedRouter(config), run_round, self.answer_type).run(
            [ItemInput(item, self.image(item), features)])
        self.runs += 1
        for site, function, backend, output, wall in fresh:
            self._charge(item, site, function, backend, output, wall)
        total = sum(d.flops for d in outcome.decisions)
        return (outcome.answer if outcome.status == "ok" else None), total

    def _charge(self, item: str, site: str, function: str, backend: str, output: Output,
                wall_ms: float) -> None:
        sites = self.charged.setdefault(item, {})
        key = f"{site}{AUDIT_SUFFIX}[{backend}]"
        before = sites.get(key)
        usage = output.usage
        self.charged_flops += usage.flops
        add = {"calls": 1, "flops": usage.flops, "params": float(usage.params), "wall_ms": wall_ms,
               "price": usage.price}
        if before is None:
            sites[key] = DecisionRecord(call_site=key, function=function, backend=backend, propensity=1.0,
                                        **add)
        else:
            sites[key] = before.model_copy(update={
                k: getattr(before, k) + v for k, v in add.items()})

    def decisions(self) -> dict[str, list[DecisionRecord]]:
        """item -> the audits' decisions computed for it in this run."""
        return {item: list(sites.values()) for item, sites in self.charged.items()}
