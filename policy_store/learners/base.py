"""The Learner contract: choose a backend per call site, learn from per-call-site rewards."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from policy_store.errors import LearnerError
from policy_store.learners.config import LearnerConfig
from storage.records import RungRecord

#: What a learner's ``features`` are (``policy_store.learners.features.item_features`` computes
#: them from the item's image): ``"embedding"``, the image embedding of ``modules.embedding``
#: (``embedding.DIM`` floats); ``"pixels"``, the image itself resized to
#: ``config.paper_input``² RGB, flat, channels first, in [0, 1] (the paper's learner).
FeatureKind = Literal["embedding", "pixels"]


@dataclass(frozen=True)
class Choice:
    """A chosen backend and the probability the learner had of choosing it (0 < p <= 1)."""

    backend: str
    propensity: float


@dataclass(frozen=True)
class Example:
    """One executed call site of one labelled item.

    ``reward`` is the loss part only (-loss/N); ``cost`` is the normalised cost of
    the call, which learners weigh with ``config.lam`` themselves. ``item_id`` names
    the item the call site ran for ("" when unknown); learners that count items use it.
    ``rungs`` are the call site's rung answers when its router escalates
    (``DecisionRecord.rungs``; empty otherwise) and ``label`` the item's label where the
    caller passes it (None otherwise): what a cascade learner calibrates against.
    """

    call_site: str
    backend: str
    features: np.ndarray
    reward: float
    propensity: float
    cost: float
    item_id: str = ""
    rungs: tuple[RungRecord, ...] = ()
    label: bool | str | None = None


class Learner(ABC):
    """Picks a backend for each call site from that site's candidates (cheapest first)."""

    name: ClassVar[str]
    #: The features ``choose`` and ``Example.features`` carry; see ``FeatureKind``. Learners
    #: that ignore features (the fixed baselines) keep the embedding, which the flows store.
    feature_kind: ClassVar[FeatureKind] = "embedding"
    #: Whether the learner decides escalations (``escalate``): then a call site runs the
    #: chosen backend first and the call is re-issued on a larger one while the learner does
    #: not trust the answer (``policies.routing.CascadeRouter``).
    escalates: ClassVar[bool] = False
    #: Whether ``update`` uses its examples; a learner that ignores feedback (the fixed
    #: baselines) says False, and callers may then skip building them.
    learns: ClassVar[bool] = True

    def __init__(
        self, config: LearnerConfig, arms: dict[str, list[str]], costs: dict[str, float]
    ) -> None:
        _check_arms(arms, costs)
        self.config = config
        self.arms = {site: list(backends) for site, backends in arms.items()}
        self.costs = dict(costs)

    @abstractmethod
    def choose(self, call_site: str, features: np.ndarray, rng: np.random.Generator) -> Choice:
        """Pick a backend for ``call_site`` given the item's features."""

    @abstractmethod
    def update(self, examples: list[Example]) -> None:
        """Learn from labelled examples (one per executed call site)."""

    @abstractmethod
    def to_bytes(self) -> bytes:
        """Serialise the learned state (no pickle)."""

    @classmethod
    @abstractmethod
    def from_bytes(
        cls,
        blob: bytes,
        config: LearnerConfig,
        arms: dict[str, list[str]],
        costs: dict[str, float],
    ) -> Learner:
        """Rebuild a learner from ``to_bytes`` output."""

    def escalate(self, call_site: str, backend: str, confidence: float | None, positive: bool,
                 features: np.ndarray, rng: np.random.Generator, failed: bool = False) -> Choice | None:
        """After ``backend`` answered a call of ``call_site`` (with ``confidence``, a
        ``positive`` answer or not, or ``failed``): the larger backend to re-issue the call
        on, or None to keep the answer. Learners that do not escalate keep every answer."""
        return None

    def candidates(self, call_site: str) -> list[str]:
        """The candidate backends of ``call_site``; LearnerError if the site is unknown."""
        try:
            return self.arms[call_site]
        except KeyError:
            known = ", ".join(sorted(self.arms)) or "(none)"
            raise LearnerError(
                f"{self.name} learner: unknown call site {call_site!r}; known call sites: {known}. "
                "Rebuild the learner with the program's current call sites."
            ) from None


def _check_arms(arms: dict[str, list[str]], costs: dict[str, float]) -> None:
    """Every call site needs >= 1 distinct candidate, each with a known finite cost."""
    for site, backends in arms.items():
        if not backends:
            raise LearnerError(f"call site {site!r} has no candidate backends; give at least one")
        if len(set(backends)) != len(backends):
            raise LearnerError(f"call site {site!r} lists a backend twice: {backends}")
        missing = [b for b in backends if b not in costs]
        if missing:
            raise LearnerError(
                f"call site {site!r}: no cost for backend(s) {missing}; "
                f"add them to costs (known: {sorted(costs)})"
            )
        bad = [b for b in backends if not np.isfinite(costs[b]) or costs[b] < 0]
        if bad:
            raise LearnerError(f"call site {site!r}: cost of {bad} must be finite and >= 0")
