"""Backend cost profiles in the ledger, so SQL can price the monolithic counterfactual."""

from __future__ import annotations

import logging

from flows import policies
from flows.policies import monolithic_flops, unit_flops
from modules.program import Program
from modules.registry import Registry
from policy_store.records import BackendCost
from policy_store.store import PolicyStore

#: ``backends.kind`` of the monolithic model; the ledger_by_day view prices savings with it.
MONOLITHIC_KIND = "monolithic"

log = logging.getLogger(__name__)


def monolithic_backend(registry: Registry) -> str:
    """Name of the monolithic model: the most expensive baseline_only ``query`` backend."""
    return policies.monolithic_backend(registry)


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
