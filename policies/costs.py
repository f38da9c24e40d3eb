"""What calls cost: measured unit FLOPs per backend, the monolithic model, normalised arm
costs for the learners, and the cost profiles the ledger prices counterfactuals with."""

from __future__ import annotations

import logging
import weakref
from typing import Any

import numpy as np

from modules.backends.base import Call
from modules.program import Program
from modules.registry import Registry
from policy_store.records import BackendCost
from policy_store.store import PolicyStore

#: ``backends.kind`` of the monolithic model; the ledger_by_day view prices savings with it.
MONOLITHIC_KIND = "monolithic"

log = logging.getLogger(__name__)

#: backend object -> function -> unit FLOPs (a representative OCR call runs the model; once is enough)
_UNIT_FLOPS: weakref.WeakKeyDictionary[Any, dict[str, float]] = weakref.WeakKeyDictionary()
#: (backend's catalog entry as JSON, function) -> unit FLOPs, measured in this process or given
#: by ``remember_unit_flops``; a known value is returned without loading the model
_BY_SPEC: dict[tuple[str, str], float] = {}


def unit_flops(registry: Registry, backend: str, function: str) -> float:
    """Measured FLOPs of one representative call of ``function`` on ``backend`` (cached per
    loaded backend and per catalog entry).

    Vision models cost the same on any 128 px image (a blank one here); OCR costs depend on
    content (a blank patch runs only the text localiser), so ``read_text`` is measured on a
    patch with one word on a sign.
    """
    key = (registry.spec(backend).model_dump_json(), function)
    if key not in _BY_SPEC:
        model = registry.get(backend)
        known = _UNIT_FLOPS.setdefault(model, {})
        if function not in known:
            known[function] = _measure_unit(model, function)
        _BY_SPEC[key] = known[function]
    return _BY_SPEC[key]


def remember_unit_flops(registry: Registry, values: dict[tuple[str, str], float]) -> None:
    """Take (backend, function) -> unit FLOPs measured earlier (the benchmark harness keeps them
    on disk per backend version), so that ``unit_flops`` neither loads nor measures those."""
    for (backend, function), flops in values.items():
        _BY_SPEC[(registry.spec(backend).model_dump_json(), function)] = float(flops)


def known_unit_flops(registry: Registry) -> dict[tuple[str, str], float]:
    """(backend, function) -> unit FLOPs of the registry's backends known in this process."""
    by_json = {spec.model_dump_json(): name for name, spec in registry.specs.items()}
    return {(by_json[spec], function): flops for (spec, function), flops in _BY_SPEC.items()
            if spec in by_json}


def _measure_unit(model: Any, function: str) -> float:
    image: np.ndarray | None
    if function == "llm_query":
        image = None
    elif function == "read_text":
        from modules.backends.ocr import representative_text_image

        image = representative_text_image()
    else:
        image = np.zeros((128, 128, 3), np.uint8)
    args = {"verify_property": ("object", "red"), "query": ("what colour is this?",),
            "llm_query": ("how many sides does a triangle have?",)}.get(function, ("object",))
    return float(model.flops(Call(function, image, args)))


def monolithic_candidates(registry: Registry) -> list[str]:
    """The catalog's baseline-only ``query`` backends: the models that may act as the monolith."""
    return [n for n, s in registry.specs.items() if s.baseline_only and "query" in s.functions]


def monolithic_backend(registry: Registry, name: str | None = None) -> str:
    """The monolithic model: ``name`` when given (it must be a baseline-only ``query``
    backend), else the most expensive one by measured FLOPs per call (catalog order breaks
    ties; with a single candidate nothing is measured)."""
    mono = monolithic_candidates(registry)
    if not mono:
        raise ValueError("the catalog has no baseline_only query backend (the monolithic model)")
    if name is not None:
        if name not in mono:
            raise ValueError(f"{name!r} is not a baseline-only query backend; valid: {mono}")
        return name
    if len(mono) == 1:
        return mono[0]
    flops = [unit_flops(registry, n, "query") for n in mono]
    return mono[flops.index(max(flops))]


def monolithic_flops(registry: Registry, name: str | None = None) -> float:
    """FLOPs of one monolithic call: the unit in which the policy's cost is expressed."""
    return unit_flops(registry, monolithic_backend(registry, name), "query")


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


def backend_costs(registry: Registry, program: Program) -> list[BackendCost]:
    """Per-call cost of every backend the program can route to, plus the monolithic model.

    A backend serving several of the program's functions gets its most expensive one.
    Backends that cannot be set up (missing weights) are skipped with a warning: the
    ledger still works, only their catalog row is absent.
    """
    mono = monolithic_backend(registry)
    functions: dict[str, set[str]] = {}
    for site in program.call_sites:
        for name in registry.candidates(site.function):
            functions.setdefault(name, set()).add(site.function)
    costs = []
    for name, used in sorted(functions.items()):
        try:
            flops = max(unit_flops(registry, name, f) for f in used)
            params = float(registry.get(name).params())
        except (OSError, ValueError, RuntimeError) as exc:
            log.warning("backend %s: cost not registered: %s", name, exc)
            continue
        spec = registry.spec(name)
        costs.append(BackendCost(name, spec.kind, tuple(spec.functions), flops, params, 0.0,
                                 spec.price))
    spec = registry.spec(mono)
    costs.append(BackendCost(mono, MONOLITHIC_KIND, tuple(spec.functions), monolithic_flops(registry),
                             float(registry.get(mono).params()), 0.0, spec.price))
    return costs


def register_costs(db: PolicyStore, registry: Registry, program: Program) -> list[BackendCost]:
    """Upsert the program's backend costs and the monolithic model's into ``backends``."""
    costs = backend_costs(registry, program)
    db.register_backends(costs)
    return costs
