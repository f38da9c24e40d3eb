"""The Router the executor asks: a learner's choice per (item, call site), seeded for replays."""

from __future__ import annotations

import time
import zlib

import numpy as np

from modules.executor import Route
from modules.program import CallSite
from policy_store.learners.base import Learner


def route_rng(key: str, item_id: str, call_site: str, seed: int) -> np.random.Generator:
    """The random stream of one routing decision: a function of (seed, key, item, call site)
    only, so a replay of the same version on the same items makes the same choices."""
    digest = zlib.crc32(f"{key}/{item_id}/{call_site}".encode())
    return np.random.default_rng([seed, digest])


class PolicyRouter:
    """Routes call sites with a learner; sampling is seeded per item, so replays are exact.

    With ``times`` given, every decision's duration (µs) is appended to it.
    """

    def __init__(self, learner: Learner, key: str, seed: int, times: list[float] | None = None) -> None:
        self.learner = learner
        self.key = key
        self.seed = seed
        self.times = times

    def choose(self, item_id: str, site: CallSite, features: np.ndarray) -> Route:
        rng = route_rng(self.key, item_id, site.id, self.seed)
        if self.times is None:
            choice = self.learner.choose(site.id, features, rng)
        else:
            start = time.perf_counter()
            choice = self.learner.choose(site.id, features, rng)
            self.times.append((time.perf_counter() - start) * 1e6)
        return Route(choice.backend, choice.propensity)
