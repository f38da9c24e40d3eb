"""Learners that do not learn: cheapest, largest, pinned, uniformly random baselines."""

from __future__ import annotations

import numpy as np

from policy_store.errors import LearnerError
from policy_store.learners.base import Choice, Example, Learner
from policy_store.learners.config import LearnerConfig


class _StatelessLearner(Learner):
    """Shared no-op update and empty serialisation."""

    learns = False

    def update(self, examples: list[Example]) -> None:
        """Baselines ignore feedback."""

    def to_bytes(self) -> bytes:
        """Baselines have no state."""
        return b""

    @classmethod
    def from_bytes(
        cls,
        blob: bytes,
        config: LearnerConfig,
        arms: dict[str, list[str]],
        costs: dict[str, float],
    ) -> Learner:
        """Rebuild from an empty blob; a non-empty one belongs to another learner."""
        if blob:
            raise LearnerError(
                f"{cls.name} learner has no state but got a {len(blob)}-byte blob; "
                "was this version saved by a different learner?"
            )
        return cls(config, arms, costs)


class CheapestLearner(_StatelessLearner):
    """Always the first (cheapest) candidate."""

    name = "cheapest"

    def choose(self, call_site: str, features: np.ndarray, rng: np.random.Generator) -> Choice:
        """Return the cheapest candidate with propensity 1."""
        return Choice(self.candidates(call_site)[0], 1.0)


class LargestLearner(_StatelessLearner):
    """Always the last (largest) candidate."""

    name = "largest"

    def choose(self, call_site: str, features: np.ndarray, rng: np.random.Generator) -> Choice:
        """Return the largest candidate with propensity 1."""
        return Choice(self.candidates(call_site)[-1], 1.0)


class RandomLearner(_StatelessLearner):
    """A uniformly random candidate (a logging policy for off-policy evaluation)."""

    name = "random"

    def choose(self, call_site: str, features: np.ndarray, rng: np.random.Generator) -> Choice:
        """Return a uniform draw with propensity 1/k."""
        backends = self.candidates(call_site)
        return Choice(backends[int(rng.integers(len(backends)))], 1.0 / len(backends))


class FixedLearner(_StatelessLearner):
    """The backend pinned in ``config.pins`` for each call site ("*" pins every other site)."""

    name = "fixed"

    def __init__(
        self, config: LearnerConfig, arms: dict[str, list[str]], costs: dict[str, float]
    ) -> None:
        super().__init__(config, arms, costs)
        self._pin = {site: self._resolve(site, backends) for site, backends in self.arms.items()}

    def _resolve(self, site: str, backends: list[str]) -> str:
        pins = self.config.pins
        unknown = sorted(set(pins) - set(self.arms) - {"*"})
        if unknown:
            raise LearnerError(
                f"fixed learner: pins name unknown call site(s) {unknown}; "
                f"known call sites: {sorted(self.arms)}"
            )
        pinned = pins.get(site, pins.get("*"))
        if pinned is None:
            raise LearnerError(
                f"fixed learner: no pin for call site {site!r}; add pins[{site!r}] or pins['*']"
            )
        if pinned not in backends:
            raise LearnerError(
                f"fixed learner: call site {site!r} is pinned to {pinned!r}, "
                f"which is not one of its candidates {backends}"
            )
        return pinned

    def repin(self, pins: dict[str, str]) -> None:
        """Pin the call sites to ``pins`` from now on (checked as at construction)."""
        self.config = self.config.model_copy(update={"pins": dict(pins)})
        self._pin = {site: self._resolve(site, backends) for site, backends in self.arms.items()}

    def choose(self, call_site: str, features: np.ndarray, rng: np.random.Generator) -> Choice:
        """Return the pinned backend with propensity 1."""
        self.candidates(call_site)
        return Choice(self._pin[call_site], 1.0)
