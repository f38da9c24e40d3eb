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


class FirstDraws:
    """The first draw of each decision's stream, remembered (at most ``size`` of them; all
    are forgotten when it is full): a benchmark asks for the same decision at every λ, and
    its stream does not depend on λ. A remembered array is read-only and shared by every
    decision that asks for it. The flows do not use one: each of their decisions is made
    once."""

    def __init__(self, size: int = 1 << 16) -> None:
        self.size = size
        self._draws: dict[tuple[Any, ...], Any] = {}
        self.hits = 0

    def get(self, key: tuple[Any, ...]) -> Any:
        got = self._draws.get(key)
        if got is not None:
            self.hits += 1
        return got

    def put(self, key: tuple[Any, ...], value: Any) -> None:
        if len(self._draws) >= self.size:
            self._draws.clear()
        self._draws[key] = value


def _plain_size(size: Any) -> bool:
    """None, an int or a tuple of ints: a size that can key a remembered draw."""
    if size is None or isinstance(size, int):
        return True
    return isinstance(size, tuple) and all(isinstance(n, int) for n in size)


class LazyRng:
    """``route_rng(...)``, made on first use: a learner that never draws (the fixed
    baselines) does not pay for seeding a generator per decision.

    With ``first`` (a ``FirstDraws``), the stream's first ``standard_normal(size)`` or
    ``random()`` is served from it when an earlier decision with the same arguments drew it;
    a later draw makes the generator and replays the first draw before it, so every draw is
    the stream's own."""

    __slots__ = ("_args", "_rng", "_first", "_pending")

    def __init__(self, key: str, item_id: str, call_site: str, seed: int,
                 first: FirstDraws | None = None) -> None:
        self._args = (key, item_id, call_site, seed)
        self._rng: np.random.Generator | None = None
        self._first = first
        self._pending: tuple[str, Any] | None = None  # a first draw served without the generator

    def _generator(self) -> np.random.Generator:
        if self._rng is None:
            self._rng = route_rng(*self._args)
            if self._pending is not None:  # advance past the first draw, served from memory
                method, size = self._pending
                getattr(self._rng, method)(*size)
                self._pending = None
        return self._rng

    def _remembered(self, method: str, size: tuple[Any, ...]) -> Any:
        if self._first is None or self._rng is not None or self._pending is not None:
            return getattr(self._generator(), method)(*size)
        key = (*self._args, method, size)
        got = self._first.get(key)
        if got is None:
            got = getattr(self._generator(), method)(*size)
            if isinstance(got, np.ndarray):
                got.setflags(write=False)
            self._first.put(key, got)
        else:
            self._pending = (method, size)
        return got

    def standard_normal(self, size: Any = None, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs or not _plain_size(size):  # other dtypes or outputs: not remembered
            return self._generator().standard_normal(size, *args, **kwargs)
        return self._remembered("standard_normal", (size,))

    def random(self, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs:
            return self._generator().random(*args, **kwargs)
        return self._remembered("random", ())

    def __getattr__(self, name: str) -> object:
        return getattr(self._generator(), name)


class PolicyRouter:
    """Routes call sites with a learner; sampling is seeded per item, so replays are exact.

    With ``times`` given, every decision's duration (µs) is appended to it.
    """

    def __init__(self, learner: Learner, key: str, seed: int, times: list[float] | None = None,
                 first: FirstDraws | None = None) -> None:
        self.learner = learner
        self.key = key
        self.seed = seed
        self.times = times
        self.first = first

    def choose(self, item_id: str, site: CallSite, features: np.ndarray) -> Route:
        rng: np.random.Generator = LazyRng(self.key, item_id, site.id, self.seed,  # type: ignore[assignment]
                                           self.first)
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
                                           self.seed, self.first)
        failed = isinstance(output.value, CallFailure)
        choice = self.learner.escalate(site.id, backend, output.usage.confidence,
                                       not failed and positive_answer(output.value), features, rng,
                                       failed=failed)
        if self.times is not None:
            self.times.append((time.perf_counter() - start) * 1e6)
        return None if choice is None else Route(choice.backend, choice.propensity)


def policy_router(learner: Learner, key: str, seed: int, times: list[float] | None = None,
                  first: FirstDraws | None = None) -> PolicyRouter:
    """The router of ``learner``: a CascadeRouter when it escalates, else a PolicyRouter."""
    cls = CascadeRouter if learner.escalates else PolicyRouter
    return cls(learner, key, seed, times, first)
