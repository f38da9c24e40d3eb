"""Learner registry: name -> "module:Class", imported on first use, plus constructors.

    LEARNERS = {"thompson", "thompson-shared", "paper", "cascade", "cheapest", "largest", "random",
                "fixed", "confirmed"}

Classes are imported lazily (like ``modules.registry.KINDS`` for backends) so that importing
this package, the flows or the policy store never imports torch: only the ``paper`` learner
needs it, and it loads when that learner is first asked for.
"""

from __future__ import annotations

import importlib

from policy_store.errors import LearnerError
from policy_store.learners.base import Choice, Example, FeatureKind, Learner
from policy_store.learners.config import LearnerConfig
from policy_store.learners.features import item_features

#: name -> "module:Class" of every registered learner (``Class.name == name``).
LEARNERS: dict[str, str] = {
    "thompson": "policy_store.learners.thompson:ThompsonLearner",
    "thompson-shared": "policy_store.learners.shared:SharedThompsonLearner",
    "paper": "policy_store.learners.paper:PaperLearner",
    "cascade": "policy_store.learners.cascade:CascadeLearner",
    "cheapest": "policy_store.learners.fixed:CheapestLearner",
    "largest": "policy_store.learners.fixed:LargestLearner",
    "random": "policy_store.learners.fixed:RandomLearner",
    "fixed": "policy_store.learners.fixed:FixedLearner",
    "confirmed": "policy_store.learners.confirmed:ConfirmedLearner",
}


def learner_class(name: str) -> type[Learner]:
    """The Learner class registered as ``name``; LearnerError listing valid names otherwise."""
    try:
        target = LEARNERS[name]
    except KeyError:
        raise LearnerError(
            f"unknown learner {name!r}; valid learners: {', '.join(sorted(LEARNERS))}"
        ) from None
    module, _, cls = target.partition(":")
    learner: type[Learner] = getattr(importlib.import_module(module), cls)
    return learner


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
    "FeatureKind",
    "Learner",
    "LearnerConfig",
    "item_features",
    "learner_class",
    "load_learner",
    "make_learner",
]
