"""Named policies: a learner and the program it routes, and how a version's learner is built."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from policy_store.learners import load_learner, make_learner
from policy_store.learners.base import Learner
from policy_store.learners.config import LearnerConfig
from policy_store.records import PolicyVersion


@dataclass(frozen=True)
class PolicySpec:
    """A policy: a learner and the program it routes (the stream's or the monolithic one)."""

    name: str
    learner: str
    program: Literal["program", "monolithic"] = "program"
    options: dict[str, float] = field(default_factory=dict)
    #: the learner on streams whose answers are text, where it differs from ``learner``
    text_learner: str | None = None

    def learner_for(self, answer_type: str) -> str:
        """The learner this policy runs on a stream of ``answer_type`` ("bool" or "str")."""
        return self.text_learner if self.text_learner and answer_type != "bool" else self.learner


POLICIES: dict[str, PolicySpec] = {
    p.name: p
    for p in (
        # start on the largest backends and move down as cheaper ones prove right
        PolicySpec("learned", "thompson",
                   options={"escalation_prior": 0.5, "prior_var": 0.05, "explore": 0.5}),
        # call-site cascades: run cheap, re-issue one rung up while the answer is not trusted
        # (benchmarks/README.md has its measurements)
        PolicySpec("cascade", "cascade"),
        # a static configuration searched by audits of labelled items, every "yes" confirmed on
        # the largest backends (benchmarks/README.md)
        PolicySpec("confirmed", "confirmed", options={"audit_start": 0.5}),
        # the default: the benchmarks' recommended learner for the stream's answers, `confirmed`
        # on yes/no streams, the call-site cascade on text streams (benchmarks/README.md, `fmp`)
        PolicySpec("fmp", "confirmed", options={"audit_start": 0.5}, text_learner="cascade"),
        PolicySpec("cheapest", "cheapest"),
        PolicySpec("largest", "largest"),
        PolicySpec("random", "random"),
        PolicySpec("monolithic", "largest", program="monolithic"),
    )
}

#: The policy every flow, deployment and command runs unless told otherwise: the benchmarks'
#: recommended learner for the stream's answers (``fmp`` in ``python -m benchmarks.evaluate``).
DEFAULT_POLICY = "fmp"

#: Learners whose choices never change with feedback (their labels can be ingested once).
FIXED_LEARNERS = frozenset({"cheapest", "largest", "fixed", "random"})


def policy_spec(name: str) -> PolicySpec:
    """The named policy; ValueError listing the valid names otherwise."""
    try:
        return POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; valid: {sorted(POLICIES)}") from None


def initial_config(spec: PolicySpec, lam: float, seed: int) -> LearnerConfig:
    """The learner config of a policy's first version (later versions carry their own)."""
    return LearnerConfig(lam=lam, seed=seed, **spec.options)


def pinned_config(spec: PolicySpec, version: PolicyVersion | None, lam: float, seed: int) -> LearnerConfig:
    """The config stored with ``version``, or the initial one before the first version."""
    if version is None:
        return initial_config(spec, lam, seed)
    return LearnerConfig.model_validate_json(version.config_json)


def build_learner(spec: PolicySpec, config: LearnerConfig, arms: dict[str, list[str]],
                  costs: dict[str, float], version: PolicyVersion | None,
                  answer_type: str = "bool") -> Learner:
    """The pinned version's learner, or the prior when the policy has no version yet (the
    policy's learner for streams of ``answer_type``)."""
    name = spec.learner_for(answer_type)
    if version is None or not version.params:
        return make_learner(name, config, arms, costs)
    return load_learner(name, version.params, config, arms, costs)
