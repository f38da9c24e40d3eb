"""Learner registry: name -> Learner class, plus constructors that validate the name.

    LEARNERS = {"thompson", "thompson-shared", "paper", "cheapest", "largest", "random", "fixed"}
"""

from __future__ import annotations

from policy_store.errors import LearnerError
from policy_store.learners.base import Choice, Example, Learner
from policy_store.learners.config import LearnerConfig
from policy_store.learners.fixed import CheapestLearner, FixedLearner, LargestLearner, RandomLearner
from policy_store.learners.paper import PaperLearner
from policy_store.learners.shared import SharedThompsonLearner
from policy_store.learners.thompson import ThompsonLearner

LEARNERS: dict[str, type[Learner]] = {
    cls.name: cls
    for cls in (
        ThompsonLearner,
        SharedThompsonLearner,
        PaperLearner,
        CheapestLearner,
        LargestLearner,
        RandomLearner,
        FixedLearner,
    )
}


def learner_class(name: str) -> type[Learner]:
    """The Learner class registered as ``name``; LearnerError listing valid names otherwise."""
    try:
        return LEARNERS[name]
    except KeyError:
        raise LearnerError(
            f"unknown learner {name!r}; valid learners: {', '.join(sorted(LEARNERS))}"
        ) from None


def make_learner(
    name: str, config: LearnerConfig, arms: dict[str, list[str]], costs: dict[str, float]
) -> Learner:
    """A fresh learner.

    ``arms``: call_site -> candidate backends, cheapest first; ``costs``: backend -> cost.
    """
    return learner_class(name)(config, arms, costs)


def load_learner(
    name: str,
    blob: bytes,
    config: LearnerConfig,
    arms: dict[str, list[str]],
    costs: dict[str, float],
) -> Learner:
    """A learner restored from a saved policy version's ``params`` blob."""
    return learner_class(name).from_bytes(blob, config, arms, costs)


__all__ = [
    "LEARNERS",
    "Choice",
    "Example",
    "Learner",
    "LearnerConfig",
    "learner_class",
    "load_learner",
    "make_learner",
]
