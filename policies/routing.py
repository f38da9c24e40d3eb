"""The Router the executor asks: a learner's choice per (item, call site), seeded for replays;
for a learner that escalates (a cascade), also whether each answer is kept or re-issued on a
larger backend."""

from __future__ import annotations

import functools
import time
import zlib
from typing import Any

import numpy as np
from numpy.random.bit_generator import ISeedSequence

from modules.backends.base import CallFailure, Output
from modules.executor import Route, positive_answer
from modules.program import CallSite
from policy_store.learners.base import Learner


def route_rng(key: str, item_id: str, call_site: str, seed: int) -> np.random.Generator:
    """The random stream of one routing decision: a function of (seed, key, item, call site)
    only, so a replay of the same version on the same items makes the same choices. It is
    ``np.random.default_rng([seed, digest])``'s stream, made from kept words (below)."""
    return seeded_rng(seed, zlib.crc32(f"{key}/{item_id}/{call_site}".encode()))


def seeded_rng(seed: int, digest: int) -> np.random.Generator:
    """``np.random.default_rng([seed, digest])``: the same stream, its seed words kept."""
    return np.random.Generator(np.random.PCG64(_seed_words(seed, digest)))  # type: ignore[arg-type]


class _KeptWords(ISeedSequence):
    """The four 64-bit words PCG64 asks its seed sequence for, computed once: a PCG64 seeded
    from them is in the same state as one seeded from the ``SeedSequence`` itself, and
    making it skips hashing the entropy and drawing the words (a generator in about 2.4 µs
    instead of 8.3 on this machine)."""

    __slots__ = ("words",)

    def __init__(self, words: np.ndarray) -> None:
        self.words = words

    def generate_state(self, n_words: int, dtype: Any = np.uint32) -> np.ndarray:
        if n_words != len(self.words) or np.dtype(dtype) != self.words.dtype:
            raise ValueError(f"kept seed words are {len(self.words)} × {self.words.dtype}, "
                             f"asked for {n_words} × {np.dtype(dtype)}")
        return self.words.copy()


@functools.lru_cache(maxsize=1 << 16)
def _seed_words(seed: int, digest: int) -> _KeptWords:
    """``default_rng([seed, digest])``'s PCG64 seed words, kept: a benchmark asks for the
    same decision's stream at every λ."""
    return _KeptWords(np.random.SeedSequence([seed, digest]).generate_state(4, np.uint64))


class LazyRng:
    """``route_rng(...)``, made on first use: a learner that never draws (the fixed
    baselines) does not pay for seeding a generator per decision."""

    __slots__ = ("_args", "_rng")

    def __init__(self, key: str, item_id: str, call_site: str, seed: int) -> None:
        self._args = (key, item_id, call_site, seed)
        self._rng: np.random.Generator | None = None

    def __getattr__(self, name: str) -> object:
        if self._rng is None:
            self._rng = route_rng(*self._args)
        return getattr(self._rng, name)


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
        rng: np.random.Generator = LazyRng(self.key, item_id, site.id, self.seed)  # type: ignore[assignment]
        if self.times is None:
            choice = self.learner.choose(site.id, features, rng)
        else:
            start = time.perf_counter()
            choice = self.learner.choose(site.id, features, rng)
            self.times.append((time.perf_counter() - start) * 1e6)
        return Route(choice.backend, choice.propensity)


class CascadeRouter(PolicyRouter):
    """A PolicyRouter that also asks its learner, after every answer, whether to keep it or
    re-issue the call on a larger backend (``Learner.escalate``); the executor then runs the
    call again. Escalation draws are seeded per (item, call site, backend), like choices.
    With ``times`` given, each escalation decision's duration (µs) is appended too."""

    def escalate(self, item_id: str, site: CallSite, features: np.ndarray, backend: str,
                 output: Output) -> Route | None:
        start = time.perf_counter()
        # made on first use: most escalation decisions draw nothing
        rng: np.random.Generator = LazyRng(f"{self.key}/escalate/{backend}", item_id, site.id,  # type: ignore[assignment]
                                           self.seed)
        failed = isinstance(output.value, CallFailure)
        choice = self.learner.escalate(site.id, backend, output.usage.confidence,
                                       not failed and positive_answer(output.value), features, rng,
                                       failed=failed)
        if self.times is not None:
            self.times.append((time.perf_counter() - start) * 1e6)
        return None if choice is None else Route(choice.backend, choice.propensity)


def policy_router(learner: Learner, key: str, seed: int, times: list[float] | None = None) -> PolicyRouter:
    """The router of ``learner``: a CascadeRouter when it escalates, else a PolicyRouter."""
    cls = CascadeRouter if learner.escalates else PolicyRouter
    return cls(learner, key, seed, times)
