"""A routing decision's random stream: a function of (seed, key, item, call site) only."""

from __future__ import annotations

import zlib

import numpy as np

from modules.program import parse_program
from policies.routing import PolicyRouter, route_rng
from policy_store.learners.config import LearnerConfig
from policy_store.learners.fixed import FixedLearner, RandomLearner


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
