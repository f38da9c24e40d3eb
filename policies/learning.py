"""One online learning step: a batch's labelled results become per-call-site examples."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from modules.backends.base import Output
from modules.program import Program
from modules.registry import Registry
from modules.stored_calls import CallKey
from policies.audit_calls import KeptCall
from policies.audits import Replayer, known_runs
from policies.costs import monolithic_flops
from policies.pinned import PinnedPolicy, pin
from policy_store.learners.base import Example
from policy_store.learners.config import LearnerConfig
from policy_store.learners.confirmed import ConfirmedLearner
from policy_store.records import PolicyVersion
from policy_store.rewards import item_loss, split_reward
from storage.records import DecisionRecord, ResultRow


def examples_from(rows: list[ResultRow], labels: dict[str, bool | str], answer_type: Literal["bool", "str"],
                  config: LearnerConfig, unit_flops: float) -> list[Example]:
    """Per executed call site of every labelled item: its cost (FLOPs ÷ ``unit_flops``, one
    monolithic call), its share of the item's loss, its rung answers (escalating routers)
    and the item's label; unlabelled items teach nothing."""
    examples: list[Example] = []
    for row in rows:
        if row.item_id not in labels or not row.decisions:
            continue
        loss = item_loss(row.answer, labels[row.item_id], answer_type, config)
        features = np.asarray(row.features, dtype=np.float64)
        rungs = {d.call_site: tuple(d.rungs) for d in row.decisions}
        examples += split_reward(
            [(d.call_site, d.backend, d.flops / unit_flops, features, d.propensity) for d in row.decisions],
            loss, row.item_id, rungs, labels[row.item_id])
    return examples


def learn(registry: Registry, program: Program, policy: str, latest: PolicyVersion | None,
          lam: float, seed: int, answer_type: Literal["bool", "str"],
          rows: list[ResultRow], labels: dict[str, bool | str]) -> tuple[PinnedPolicy, int]:
    """The latest version's learner updated on one batch, and the number of examples."""
    pinned = pin(registry, program, policy, latest, lam, seed, answer_type)
    examples = examples_from(rows, labels, answer_type, pinned.config, monolithic_flops(registry))
    pinned.learner.update(examples)
    return pinned, len(examples)


@dataclass(frozen=True)
class Audited:
    """What one audit step did: the updated policy, the items audited so far, the item replays
    run now, their calls (batch, item_id, decision) to charge to the policy, the charged calls
    themselves (key -> (output, wall ms), to keep for later steps), and how many calls (and
    FLOPs) earlier steps had computed and charged, reused now for free."""

    pinned: PinnedPolicy
    audited: int
    replays: int
    charges: list[tuple[str, str, DecisionRecord]]
    calls: dict[CallKey, tuple[Output, float]] = field(default_factory=dict)
    reused: int = 0
    reused_flops: float = 0.0


def audit(registry: Registry, program: Program, policy: str, latest: PolicyVersion | None,
          lam: float, seed: int, answer_type: Literal["bool", "str"], batch: str,
          rows: list[ResultRow], labels: dict[str, bool | str],
          image: Callable[[str, str], np.ndarray], kept: dict[CallKey, KeptCall] | None = None
          ) -> Audited:
    """The ``confirmed`` policy's learning step on one batch's new labels: admit the labelled
    items by stratum, replay the audited ones (this batch's and earlier ones') under the
    configurations the descent tries, with the real backends (``image(batch, item_id)`` gives
    an item's pixels; ``kept``: calls earlier steps computed, ``policies.audit_calls``), and
    repin. Items are keyed ``batch/item_id`` in the learner."""
    pinned = pin(registry, program, policy, latest, lam, seed, answer_type)
    learner = pinned.learner
    if not isinstance(learner, ConfirmedLearner):
        raise TypeError(f"policy {policy!r} runs the {learner.name} learner; audits need 'confirmed'")

    def pixels(key: str) -> np.ndarray:
        b, item = key.split("/", 1)
        return image(b, item)

    replayer = Replayer(registry, program, answer_type, pixels,
                        {f"{batch}/{r.item_id}": np.asarray(r.features, dtype=np.float64) for r in rows},
                        kept=kept or {})
    # a failed item (its image did not decode, its program failed) has no run to compare and
    # may have nothing to replay: its label counts as learned, but it is not audited
    arrived = [(f"{batch}/{r.item_id}", labels[r.item_id], r.answer) for r in rows
               if r.item_id in labels and r.status == "ok"]
    own = {f"{batch}/{r.item_id}": known_runs(r, learner.pins, learner.fallback) for r in rows}
    learner.audit(answer_type, arrived, replayer, monolithic_flops(registry), own,
                  charged=lambda: replayer.charged_flops)
    charges = []
    for key, ds in replayer.decisions().items():
        b, item = key.split("/", 1)
        charges += [(b, item, d) for d in ds]
    return Audited(replace(pinned, config=learner.config), len(learner.book.weights), replayer.runs,
                   charges, replayer.computed, replayer.reused, replayer.reused_flops)
