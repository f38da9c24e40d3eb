"""A routing decision's random stream: a function of (seed, key, item, call site) only."""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from modules.program import parse_program
from policies.routing import FirstDraws, LazyRng, PolicyRouter, route_rng
from policy_store.learners.config import LearnerConfig
from policy_store.learners.fixed import FixedLearner, RandomLearner
from policy_store.learners.thompson import ThompsonLearner


def test_the_stream_is_the_seeded_default_and_the_same_every_time():
    for item in ("a/00001", "a/00002", "b/00001"):
        want = np.random.default_rng([3, zlib.crc32(f"key/{item}/s1".encode())]).standard_normal(6)
        for _ in range(3):  # the kept seed sequence starts every generator afresh
            assert (route_rng("key", item, "s1", 3).standard_normal(6) == want).all()
    assert (route_rng("key", "a/00001", "s1", 4).standard_normal(6) != want).any()


def test_a_router_seeds_a_generator_only_for_learners_that_draw():
    program = parse_program('def execute_command(image):\n    return exists(image, "x")\n')
    (site,) = program.call_sites
    arms, costs = {site.id: ["a", "b", "c"]}, {"a": 1.0, "b": 2.0, "c": 3.0}
    pinned = PolicyRouter(FixedLearner(LearnerConfig(lam=1.0, pins={"*": "b"}), arms, costs), "k", 0)
    assert pinned.choose("i", site, np.zeros(3)).backend == "b"
    drawn = [PolicyRouter(RandomLearner(LearnerConfig(lam=1.0), arms, costs), "k", 0).choose(
        f"i{n}", site, np.zeros(3)).backend for n in range(30)]
    again = [PolicyRouter(RandomLearner(LearnerConfig(lam=1.0), arms, costs), "k", 0).choose(
        f"i{n}", site, np.zeros(3)).backend for n in range(30)]
    assert drawn == again and set(drawn) == {"a", "b", "c"}
    want = [["a", "b", "c"][int(route_rng("k", f"i{n}", site.id, 0).integers(3))] for n in range(30)]
    assert drawn == want


def _draws(rng: Any) -> list[Any]:
    """A decision's draws as learners make them: a first draw, then more of the stream."""
    first = rng.standard_normal((33, 3))
    return [first.copy(), rng.random(), rng.integers(1000, size=4), rng.standard_normal(2)]


def _same(a: list[Any], b: list[Any]) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_remembered_first_draws_leave_every_stream_as_it_was():
    first = FirstDraws()
    for item in ("a/00001", "a/00002"):
        want = _draws(route_rng("key", item, "s1", 3))
        for _ in range(3):  # drawn, then served from memory twice: the same stream each time
            assert _same(_draws(LazyRng("key", item, "s1", 3, first)), want)
        alone = LazyRng("key", item, "s1", 3, first).standard_normal((33, 3))  # nothing after it
        assert np.array_equal(alone, want[0]) and not alone.flags.writeable  # shared: read-only
    assert first.hits == 2 * 3
    # a first draw of another kind or size is its own: random() first, then the stream goes on
    plain = route_rng("key", "a/00001", "s1", 3)
    want = [plain.random(), plain.standard_normal((33, 3))]
    for _ in range(2):
        rng = LazyRng("key", "a/00001", "s1", 3, first)
        assert _same([rng.random(), rng.standard_normal((33, 3))], want)
    # draws with a dtype or into an array are not remembered, and still the stream's
    out = np.empty(5, dtype=np.float32)
    LazyRng("key", "a/00002", "s1", 3, first).standard_normal(5, dtype=np.float32, out=out)
    assert np.array_equal(out, route_rng("key", "a/00002", "s1", 3).standard_normal(5, dtype=np.float32))


def test_remembered_draws_are_forgotten_when_full_and_choices_do_not_change():
    first = FirstDraws(size=4)
    for n in range(9):
        LazyRng("k", f"i{n}", "s", 0, first).standard_normal((2, 2))
    assert len(first._draws) <= 4
    program = parse_program('def execute_command(image):\n    return exists(image, "x")\n')
    (site,) = program.call_sites
    arms, costs = {site.id: ["a", "b", "c"]}, {"a": 1.0, "b": 2.0, "c": 3.0}

    def choices(lam: float, memory: FirstDraws | None) -> list[tuple[str, float]]:
        learner = ThompsonLearner(LearnerConfig(lam=lam), arms, costs)
        router = PolicyRouter(learner, "k", 0, first=memory)
        return [(r.backend, r.propensity) for r in
                (router.choose(f"i{n}", site, np.full(3, n / 40)) for n in range(40))]

    memory = FirstDraws()
    for lam in (0.0, 0.5, 4.0):  # every λ after the first is served from memory
        assert choices(lam, memory) == choices(lam, None)
    assert memory.hits == 2 * 40
