"""Named policies: which learner routes which program, and the learner's arms and costs."""

from __future__ import annotations

import weakref
import zlib
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from modules.backends.base import Call
from modules.executor import Route
from modules.program import CallSite, Program
from modules.registry import Registry
from policy_store.learners import load_learner, make_learner
from policy_store.learners.base import Learner
from policy_store.learners.config import LearnerConfig
from policy_store.records import PolicyVersion


@dataclass(frozen=True)
class PolicySpec:
    """A policy: a learner and the program it routes (the stream's or the monolithic one)."""

    name: str
    learner: str
    program: Literal["program", "monolithic"] = "program"
    options: dict[str, float] = field(default_factory=dict)


POLICIES: dict[str, PolicySpec] = {
    p.name: p
    for p in (
        # start on the largest backends and move down as cheaper ones prove right
        PolicySpec("learned", "thompson",
                   options={"escalation_prior": 0.5, "prior_var": 0.05, "explore": 0.5}),
        PolicySpec("cheapest", "cheapest"),
        PolicySpec("largest", "largest"),
        PolicySpec("random", "random"),
        PolicySpec("monolithic", "largest", program="monolithic"),
    )
}


def policy_spec(name: str) -> PolicySpec:
    try:
        return POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; valid: {sorted(POLICIES)}") from None


def arms_for(program: Program, registry: Registry, spec: PolicySpec) -> dict[str, list[str]]:
    """Candidate backends per call site, cheapest first (baseline-only ones for the monolith)."""
    arms = {}
    for site in program.call_sites:
        if spec.program == "monolithic":
            names = [n for n, s in registry.specs.items() if s.baseline_only and site.function in s.functions]
        else:
            names = registry.candidates(site.function)
        if not names:
            raise ValueError(f"call site {site.id}: no backend in the catalog serves {site.function}()")
        arms[site.id] = sorted(names, key=lambda n: unit_flops(registry, n, site.function))
    return arms


#: backend object -> function -> unit FLOPs (a representative OCR call runs the model; once is enough)
_UNIT_FLOPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def unit_flops(registry: Registry, backend: str, function: str) -> float:
    """Measured FLOPs of one representative call of ``function`` on ``backend`` (cached per
    loaded backend).

    Vision models cost the same on any 128 px image (a blank one here); OCR costs depend on
    content (a blank patch runs only the text localiser), so ``read_text`` is measured on a
    patch with one word on a sign.
    """
    model = registry.get(backend)
    known = _UNIT_FLOPS.setdefault(model, {})
    if function not in known:
        known[function] = _measure_unit(model, function)
    return known[function]


def _measure_unit(model: Any, function: str) -> float:
    if function == "llm_query":
        image = None
    elif function == "read_text":
        from modules.backends.ocr import representative_text_image

        image = representative_text_image()
    else:
        image = np.zeros((128, 128, 3), np.uint8)
    args = {"verify_property": ("object", "red"), "query": ("what colour is this?",),
            "llm_query": ("how many sides does a triangle have?",)}.get(function, ("object",))
    return model.flops(Call(function, image, args))


def monolithic_backend(registry: Registry) -> str:
    """The monolithic model: the most expensive baseline_only ``query`` backend (by measured
    FLOPs per call; catalog order breaks ties). With one such backend it is not measured here."""
    mono = [n for n, s in registry.specs.items() if s.baseline_only and "query" in s.functions]
    if not mono:
        raise ValueError("the catalog has no baseline_only query backend (the monolithic model)")
    if len(mono) == 1:
        return mono[0]
    flops = [unit_flops(registry, n, "query") for n in mono]
    return mono[flops.index(max(flops))]


def monolithic_flops(registry: Registry) -> float:
    """FLOPs of one monolithic call: the unit in which the policy's cost is expressed."""
    return unit_flops(registry, monolithic_backend(registry), "query")


def unit_costs(registry: Registry, arms: dict[str, list[str]], program: Program,
               unit: float | None = None) -> dict[str, float]:
    """Normalised cost per call of every arm: its FLOPs ÷ ``unit`` (default: one monolithic
    call's FLOPs)."""
    unit = unit or monolithic_flops(registry)
    functions = {s.id: s.function for s in program.call_sites}
    costs: dict[str, float] = {}
    for site, names in arms.items():
        for name in names:
            costs[name] = max(costs.get(name, 0.0), unit_flops(registry, name, functions[site]) / unit)
    return costs


def initial_config(spec: PolicySpec, lam: float, seed: int) -> LearnerConfig:
    """The learner config of a policy's first version (later versions carry their own)."""
    return LearnerConfig(lam=lam, seed=seed, **spec.options)


def pinned_config(spec: PolicySpec, version: PolicyVersion | None, lam: float, seed: int) -> LearnerConfig:
    """The config stored with ``version``, or the initial one before the first version."""
    if version is None:
        return initial_config(spec, lam, seed)
    return LearnerConfig.model_validate_json(version.config_json)


def build_learner(spec: PolicySpec, config: LearnerConfig, arms: dict[str, list[str]],
                  costs: dict[str, float], version: PolicyVersion | None) -> Learner:
    """The pinned version's learner, or the prior when the policy has no version yet."""
    if version is None or not version.params:
        return make_learner(spec.learner, config, arms, costs)
    return load_learner(spec.learner, version.params, config, arms, costs)


class PolicyRouter:
    """Routes call sites with a learner; sampling is seeded per item, so replays are exact."""

    def __init__(self, learner: Learner, key: str, seed: int) -> None:
        self.learner = learner
        self.key = key
        self.seed = seed

    def choose(self, item_id: str, site: CallSite, features: np.ndarray) -> Route:
        digest = zlib.crc32(f"{self.key}/{item_id}/{site.id}".encode())
        rng = np.random.default_rng([self.seed, digest])
        choice = self.learner.choose(site.id, features, rng)
        return Route(choice.backend, choice.propensity)
