"""How a new policy version's choices differ from the ones the old version made on a batch."""

from __future__ import annotations

from collections import Counter

import numpy as np

from modules.program import Program
from modules.registry import Registry
from policies.audits import extra_site
from policies.pinned import pin
from policy_store.learners.config import LearnerConfig
from policy_store.records import PolicyVersion
from storage.records import ResultRow

#: (call site, backend) -> number of items routed there.
Shares = Counter[tuple[str, str]]


def made_choices(rows: list[ResultRow]) -> Shares:
    """What the batch's pinned version chose: one count per executed (item, call site), the
    ``confirmed`` policy's confirmations and audits left out (no choice of the policy's)."""
    return Counter((d.call_site, d.backend) for row in rows for d in row.decisions
                   if not extra_site(d.call_site))


def replayed_choices(registry: Registry, program: Program, policy: str, version: PolicyVersion,
                     stream: str, batch: str, rows: list[ResultRow], answer_type: str = "bool") -> Shares:
    """What ``version`` would choose on the same executed (item, call site) pairs.

    Routing is seeded by (stream, batch, policy, version), item and call site exactly as a
    batch run would be, so the counts are what the next batch would see on these items.
    """
    config = LearnerConfig.model_validate_json(version.config_json)
    router = pin(registry, program, policy, version, config.lam, config.seed,
                 answer_type).router(stream, batch)
    sites = {s.id: s for s in program.call_sites}
    counts: Shares = Counter()
    for row in rows:
        features = np.asarray(row.features, dtype=np.float64)
        for d in row.decisions:
            if d.call_site in sites:
                counts[(d.call_site, router.choose(row.item_id, sites[d.call_site], features).backend)] += 1
    return counts
