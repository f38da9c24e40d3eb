"""Thompson sampling shared by every call site of the same function: warm starts for free.

:class:`~policy_store.learners.thompson.ThompsonLearner` keeps one Bayesian linear model
per (call site, backend), so a new query — or a new call site — starts at the prior. Here
all call sites of one generic function (``exists@2:11`` and ``exists@4:11``, and the
``exists`` sites of every other program) share one model per (function, backend): what
the learner saw on earlier call sites and queries applies to the next one from its first
item. The context is the item's image embedding, which carries what makes an image hard
for a cheap backend whatever the program asks of it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from policy_store.errors import LearnerError
from policy_store.learners.base import Choice, Example, _check_arms
from policy_store.learners.config import LearnerConfig
from policy_store.learners.thompson import ThompsonLearner


def family(call_site: str) -> str:
    """The shared arm group of a call site id (``exists@2:11`` -> ``exists``)."""
    return call_site.split("@", 1)[0]


class SharedThompsonLearner(ThompsonLearner):
    """One Thompson model per (function, backend), shared across call sites and programs."""

    name = "thompson-shared"

    def __init__(self, config: LearnerConfig, arms: dict[str, list[str]], costs: dict[str, float]) -> None:
        super().__init__(config, {}, costs)
        self.extend(arms, costs)

    def extend(self, arms: dict[str, list[str]], costs: dict[str, float]) -> None:
        """Add call sites (of a new program, say); sites of a known function share its model."""
        merged = {**self.arms}
        for site, backends in arms.items():
            for key in (site, family(site)):
                if key in merged and merged[key] != list(backends):
                    raise LearnerError(
                        f"thompson-shared: call site {site!r} has candidates {list(backends)} but "
                        f"{key!r} already has {merged[key]}; sites of one function must share them")
                merged[key] = list(backends)
        merged_costs = {**self.costs, **costs}
        _check_arms(merged, merged_costs)
        self.arms, self.costs = merged, merged_costs
        self._sites.clear()  # cached per-site stacks hold the old costs

    def choose(self, call_site: str, features: np.ndarray, rng: np.random.Generator) -> Choice:
        self.candidates(call_site)
        return super().choose(family(call_site), features, rng)

    def update(self, examples: list[Example]) -> None:
        for ex in examples:
            self.candidates(ex.call_site)
        super().update([replace(ex, call_site=family(ex.call_site)) for ex in examples])


class BudgetController:
    """Budget mode: adjusts λ online so that the mean cost per item holds ``budget``.

    After each labelled batch, λ ← λ·exp(rate·(mean cost / budget − 1)), clipped to
    [lam_min, lam_max]: over budget, cost weighs more; under it, accuracy wins more often.
    Costs are in the learner's unit (FLOPs ÷ one monolithic call).
    """

    def __init__(self, budget: float, lam: float, rate: float = 0.5,
                 lam_min: float = 1e-3, lam_max: float = 1e4) -> None:
        if budget <= 0:
            raise LearnerError(f"budget must be > 0 (cost per item), got {budget}")
        self.budget, self.lam, self.rate = budget, lam, rate
        self.lam_min, self.lam_max = lam_min, lam_max
        self.history: list[tuple[float, float]] = []  # (mean cost of the batch, λ after it)

    def observe(self, mean_cost: float) -> float:
        """Feed one batch's mean cost per item; returns the new λ."""
        if not np.isfinite(mean_cost) or mean_cost < 0:
            raise LearnerError(f"budget controller: mean cost must be finite and >= 0, got {mean_cost}")
        step = float(np.clip(self.rate * (mean_cost / self.budget - 1.0), -1.0, 1.0))
        self.lam = float(np.clip(self.lam * np.exp(step), self.lam_min, self.lam_max))
        self.history.append((mean_cost, self.lam))
        return self.lam
