"""One online learning step: a batch's labelled results become per-call-site examples."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import numpy as np

from modules.program import Program
from modules.registry import Registry
from policies.costs import monolithic_flops
from policies.pinned import PinnedPolicy, pin
from policy_store.learners.base import Example
from policy_store.learners.config import LearnerConfig
from policy_store.records import PolicyVersion
from policy_store.rewards import item_loss, split_reward
from storage.records import ResultRow


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
        examples += [replace(e, rungs=rungs[e.call_site], label=labels[row.item_id]) for e in split_reward(
            [(d.call_site, d.backend, d.flops / unit_flops, features, d.propensity) for d in row.decisions],
            loss, row.item_id)]
    return examples


def learn(registry: Registry, program: Program, policy: str, latest: PolicyVersion | None,
          lam: float, seed: int, answer_type: Literal["bool", "str"],
          rows: list[ResultRow], labels: dict[str, bool | str]) -> tuple[PinnedPolicy, int]:
    """The latest version's learner updated on one batch, and the number of examples."""
    pinned = pin(registry, program, policy, latest, lam, seed)
    examples = examples_from(rows, labels, answer_type, pinned.config, monolithic_flops(registry))
    pinned.learner.update(examples)
    return pinned, len(examples)
