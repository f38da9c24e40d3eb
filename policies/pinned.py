"""A policy pinned to one saved version: its config, arms, learner and seeded router.

A batch run routes with the version that was latest when it started; the feedback report
replays a new version on the same items; learning continues from the latest version. All
three build the learner the same way, here.
"""

from __future__ import annotations

from dataclasses import dataclass

from modules.program import Program
from modules.registry import Registry
from policies.arms import arms_for
from policies.costs import unit_costs
from policies.routing import PolicyRouter, policy_router
from policies.specs import PolicySpec, build_learner, pinned_config, policy_spec
from policy_store.learners.base import Learner
from policy_store.learners.config import LearnerConfig
from policy_store.records import PolicyVersion


@dataclass(frozen=True)
class PinnedPolicy:
    """``policy`` at ``version`` (0: no version saved yet, the learner is its prior)."""

    spec: PolicySpec
    version: int
    config: LearnerConfig
    arms: dict[str, list[str]]
    costs: dict[str, float]
    learner: Learner

    def router(self, stream: str, batch: str) -> PolicyRouter:
        """The router of one batch: seeded by (stream, batch, policy, version), item and call
        site, so replaying the same version on the same items makes the same choices."""
        return policy_router(self.learner, routing_key(stream, batch, self.spec.name, self.version),
                             self.config.seed)


def routing_key(stream: str, batch: str, policy: str, version: int) -> str:
    """The routing seed key of a batch run."""
    return f"{stream}/{batch}/{policy}/v{version}"


def pin(registry: Registry, program: Program, policy: str, version: PolicyVersion | None,
        lam: float, seed: int, answer_type: str = "bool") -> PinnedPolicy:
    """The policy at ``version`` (or its initial state with ``lam`` and ``seed`` when None),
    with its learner for streams of ``answer_type``."""
    spec = policy_spec(policy)
    config = pinned_config(spec, version, lam, seed)
    arms = arms_for(program, registry, spec)
    costs = unit_costs(registry, arms, program)
    learner = build_learner(spec, config, arms, costs, version, answer_type)
    return PinnedPolicy(spec, version.version if version else 0, config, arms, costs, learner)
