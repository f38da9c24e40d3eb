"""The shared call cache and the per-item oracle, on scripted image-dependent backends."""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.counterfactual import CallCache, cached_round_runner, oracle_runs
from modules.backends.base import Backend, Call, Output
from modules.catalog import FakeSpec
from modules.executor import BatchExecutor, ItemInput, Route
from modules.program import parse_program
from modules.registry import Registry
from modules.tasks import local_round_runner

PROGRAM = parse_program(
    "def execute_command(image):\n"
    "    if not exists(image, \"circle\"):\n"
    "        return False\n"
    "    return exists(image, \"square\")\n"
)


class Detector(Backend):
    """Pixel (0, 0, 0) says circle, (0, 0, 1) says square; ``sloppy`` always sees a square."""

    kind = "scripted"

    def __init__(self, sloppy: bool, flops: float) -> None:
        super().__init__(FakeSpec(name="sloppy" if sloppy else "exact", functions=["exists"], price=0.0))
        self.sloppy, self._flops, self.seen = sloppy, flops, 0

    def setup(self) -> None:
        pass

    def infer(self, calls):
        self.seen += len(calls)
        out = []
        for c in calls:
            channel = 0 if c.args[0] == "circle" else 1
            value = True if (self.sloppy and channel == 1) else bool(c.image[0, 0, channel])
            out.append(Output(value, self.declared_usage(self._flops, self.params())))
        return out

    def flops(self, call):
        return self._flops

    def params(self):
        return 7


class ScriptedRegistry(Registry):
    """The two detectors, built here rather than from a catalog."""

    def __init__(self) -> None:
        super().__init__([])
        self.backends = {"cheap": Detector(True, 1.0), "big": Detector(False, 10.0)}

    def get(self, name: str) -> Backend:
        return self.backends[name]


def image(circle: bool, square: bool) -> np.ndarray:
    im = np.zeros((8, 8, 3), np.uint8)
    im[0, 0, 0], im[0, 0, 1] = circle, square
    return im


ARMS = {s.id: ["cheap", "big"] for s in PROGRAM.call_sites}
CASES = [(True, True), (True, False), (False, True), (False, False)]


class Pinned:
    def __init__(self, pins: dict[str, str]) -> None:
        self.pins = pins

    def choose(self, item_id, site, features):
        return Route(self.pins[site.id], 1.0)


def brute_force(images, truth, registry):
    """Cheapest right run per item over every static configuration (the program is small)."""
    best: list[float | None] = [None] * len(images)
    sites = [s.id for s in PROGRAM.call_sites]
    for combo in itertools.product(["cheap", "big"], repeat=len(sites)):
        pins = dict(zip(sites, combo, strict=True))
        out = BatchExecutor(PROGRAM, Pinned(pins), local_round_runner(registry)).run(
            [ItemInput(str(i), im, np.zeros(1)) for i, im in enumerate(images)])
        for i, o in enumerate(out):
            cost = sum(d.flops for d in o.decisions)
            known = best[i]
            if o.answer == truth[i] and (known is None or cost < known):
                best[i] = cost
    return best


def equals(truth: object) -> Callable[[Any], bool]:
    return lambda a: a == truth


def test_oracle_finds_the_cheapest_right_run_of_every_item():
    registry = ScriptedRegistry()
    images = [image(c, s) for c, s in CASES]
    truth = [c and s for c, s in CASES]
    runs = oracle_runs(PROGRAM, images, ARMS, CallCache(registry),
                       [equals(t) for t in truth])
    assert [r.found for r in runs] == [True] * 4
    assert [r.flops for r in runs] == brute_force(images, truth, ScriptedRegistry())
    # circle but no square: the sloppy detector says "square", so the oracle pays for the big one
    assert runs[1].flops == 11.0 and runs[1].assignment == {"exists@2:11": "cheap", "exists@4:11": "big"}
    # no circle: one cheap call decides, the second site never runs
    assert runs[2].flops == 1.0 and list(runs[2].assignment) == ["exists@2:11"]


def test_oracle_reports_when_no_run_is_right():
    registry = ScriptedRegistry()
    runs = oracle_runs(PROGRAM, [image(True, True)], ARMS, CallCache(registry), [lambda a: a == "never"])
    assert not runs[0].found
    assert runs[0].flops == 2.0  # the cheapest complete run seen


def test_cached_runner_answers_each_call_once_and_matches_the_models():
    registry = ScriptedRegistry()
    cache = CallCache(registry)
    images = [image(c, s) for c, s in CASES]
    items = [ItemInput(str(i), im, np.zeros(1)) for i, im in enumerate(images)]
    pins = Pinned({s.id: "big" for s in PROGRAM.call_sites})
    first = BatchExecutor(PROGRAM, pins, cached_round_runner(cache)).run(items)
    computed = registry.backends["big"].seen
    again = BatchExecutor(PROGRAM, pins, cached_round_runner(cache)).run(items)
    assert registry.backends["big"].seen == computed  # nothing recomputed
    assert cache.reused == computed
    direct = BatchExecutor(PROGRAM, pins, local_round_runner(ScriptedRegistry())).run(items)
    assert [o.answer for o in first] == [o.answer for o in again] == [o.answer for o in direct]
    assert [o.decisions for o in again] == [o.decisions for o in first]  # a cached answer costs the same
    assert [sum(d.flops for d in o.decisions) for o in again] == \
        [sum(d.flops for d in o.decisions) for o in direct]
    (reused,) = cache.get_many("big", [Call("exists", images[0], ("circle",))])
    assert reused.output.usage.cached and reused.output.value is True  # served from the cache, marked so
    assert not any(a.output.usage.cached for a in cache.answers.values())


class Seeded:
    """A router whose choice is a function of (item, site, round) and that counts its calls."""

    def __init__(self, round_: int) -> None:
        self.round = round_
        self.asked: list[tuple[str, str]] = []

    def choose(self, item_id, site, features):
        self.asked.append((item_id, site.id))
        pick = ["cheap", "big"][zlib.crc32(f"{item_id}/{site.id}/{self.round}".encode()) % 2]
        return Route(pick, 0.5 + 0.1 * self.round)


def test_remembered_paths_give_the_executors_outcomes_and_ask_each_site_once():
    from benchmarks.evaluate.paths import PathMemo

    registry = ScriptedRegistry()
    cache = CallCache(registry)
    items = [ItemInput(f"i{i}", image(c, s), np.zeros(1)) for i, (c, s) in enumerate(CASES * 3)]
    memo = PathMemo(PROGRAM)
    for round_ in range(4):  # later rounds reach paths earlier rounds added, and some new ones
        walked, executed = memo.walked, memo.executed
        router, plain_router = Seeded(round_), Seeded(round_)
        got, keys = memo.run_batch(items, router, cached_round_runner(cache), "bool", cache.key)
        plain = BatchExecutor(PROGRAM, plain_router, cached_round_runner(cache)).run(items)
        assert [(o.status, o.answer, o.decisions) for o in got] == \
            [(o.status, o.answer, o.decisions) for o in plain]
        assert sorted(router.asked) == sorted(plain_router.asked)  # once per (item, site reached)
        assert keys == {cache.key(d.backend, Call("exists", it.image, (arg,)))
                        for it, o in zip(items, plain, strict=True)
                        for d, arg in zip(o.decisions, ("circle", "square"), strict=False)}
        assert memo.walked + memo.executed - walked - executed == len(items)
    assert memo.walked > 0 and memo.executed > 0
    again = Seeded(0)
    before = memo.executed
    memo.run_batch(items, again, cached_round_runner(cache), "bool", cache.key)
    assert memo.executed == before  # every path of round 0 is known: nothing interpreted


def test_remembered_audit_runs_charge_exactly_what_fresh_runs_charge():
    from benchmarks.counterfactual import RunMemo, audit_run

    cache = CallCache(ScriptedRegistry())
    images = [image(c, s) for c, s in CASES]
    sites = [s.id for s in PROGRAM.call_sites]
    configs = [dict(zip(sites, combo, strict=True)) for combo in itertools.product(["cheap", "big"], repeat=2)]
    fallback = {s: "big" for s in sites}
    memo = RunMemo(PROGRAM)
    for _ in range(2):  # the second pass reads every run back
        for im in images:
            free_fresh: set = set()
            free_memo: set = set()
            for config in [*configs, {}, configs[0]]:
                fresh = audit_run(PROGRAM, im, config, fallback, cache, free_fresh)
                remembered = audit_run(PROGRAM, im, config, fallback, cache, free_memo, memo=memo)
                assert remembered == fresh
                assert free_memo == free_fresh
    assert audit_run(PROGRAM, images[2], configs[0], fallback, cache, set(), memo=RunMemo(PROGRAM))[0] is False
