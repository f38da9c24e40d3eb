"""A learner's arms: the candidate backends of every call site, cheapest first."""

from __future__ import annotations

from modules.program import Program
from modules.registry import Registry
from policies.costs import unit_flops
from policies.specs import PolicySpec


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
