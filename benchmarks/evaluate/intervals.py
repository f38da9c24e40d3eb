"""How sure the numbers are: 95 % bootstrap intervals over queries, paired differences, the
recommended learner's front against the baselines' at every cost level, and the per-query
table.

Every interval resamples the benchmark's queries with replacement (``REPS`` times, one seeded
draw shared by every policy and λ, so differences are paired: both sides see the same
resampled queries, the same items). A resample's quality is computed as the benchmark's
quality is: mean F1 over the resampled queries (binary), or exact match pooled over their
items (open-form).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.evaluate.harness import ItemResult
from benchmarks.evaluate.summary import Results, f1

#: Bootstrap resamples.
REPS = 2000
#: The baselines the recommended learner's front is held against.
BASELINES = ("static", "routing")


class Bootstrap:
    """One seeded resample of the queries, shared by every policy and λ."""

    def __init__(self, queries: list[str], answer_type: str, reps: int = REPS, seed: int = 0) -> None:
        self.queries = list(queries)
        self.answer_type = answer_type
        rng = np.random.default_rng(seed)
        n = len(self.queries)
        # counts[b, q]: how often query q is drawn in resample b
        draws = rng.integers(0, n, size=(reps, n))
        self.counts = np.zeros((reps, n))
        for q in range(n):
            self.counts[:, q] = (draws == q).sum(axis=1)

    def samples(self, per_query: dict[str, list[ItemResult]]) -> np.ndarray:
        """The quality of every resample (binary: mean F1; open-form: pooled exact match)."""
        if self.answer_type == "bool":
            score = np.array([f1(per_query[q]) for q in self.queries])
            return np.asarray((self.counts @ score) / self.counts.sum(axis=1), dtype=float)
        right = np.array([sum(r.right for r in per_query[q]) for q in self.queries], dtype=float)
        items = np.array([len(per_query[q]) for q in self.queries], dtype=float)
        return np.asarray((self.counts @ right) / np.maximum(self.counts @ items, 1.0), dtype=float)


def interval(samples: np.ndarray) -> list[float]:
    """The central 95 % of ``samples``."""
    lo, hi = np.percentile(samples, [2.5, 97.5])
    return [float(lo), float(hi)]


def add_intervals(rows: dict[str, list[dict[str, Any]]], by_policy: Results, answer_type: str,
                  boot: Bootstrap) -> None:
    """Give every row ``quality_ci`` and, when ``largest`` ran, ``minus_largest`` (quality −
    largest's, paired) with ``minus_largest_ci``."""
    ref = None
    if "largest" in by_policy:
        ref = boot.samples(next(iter(by_policy["largest"].values())))
    for name, policy_rows in rows.items():
        for row in policy_rows:
            s = boot.samples(by_policy[name][row["lam"]])
            row["quality_ci"] = interval(s)
            if ref is not None:
                row["minus_largest"] = float(np.mean(s - ref))
                row["minus_largest_ci"] = interval(s - ref)


def front(rows: dict[str, list[dict[str, Any]]], name: str, cost: float) -> dict[str, Any] | None:
    """``name``'s best-quality point costing at most ``cost`` (None when it has none)."""
    pts = [r for r in rows.get(name, []) if r["gflops_per_item"] <= cost * (1 + 1e-9)]
    return max(pts, key=lambda r: r["quality"]) if pts else None


def dominance(rows: dict[str, list[dict[str, Any]]], by_policy: Results, learner: str,
              boot: Bootstrap, baselines: tuple[str, ...] = BASELINES) -> list[dict[str, Any]]:
    """At the cost of every baseline point: ``learner``'s best point costing no more, and the
    paired difference (learner − baseline) with its 95 % interval. ``verdict``: ``above``
    (interval above 0), ``level`` (interval holds 0), ``below`` (interval below 0) or ``no
    point`` (the learner has no point that cheap). The learner's front dominates the
    baseline's within the intervals when no verdict is ``below`` or ``no point``."""
    out: list[dict[str, Any]] = []
    for base in baselines:
        for b in sorted(rows.get(base, []), key=lambda r: r["gflops_per_item"]):
            mine = front(rows, learner, b["gflops_per_item"])
            entry: dict[str, Any] = {"baseline": base, "baseline_lam": b["lam"],
                                     "gflops_per_item": b["gflops_per_item"],
                                     "baseline_quality": b["quality"]}
            if mine is None:
                entry.update(lam=None, quality=None, difference=None, difference_ci=None,
                             verdict="no point")
            else:
                d = (boot.samples(by_policy[learner][mine["lam"]])
                     - boot.samples(by_policy[base][b["lam"]]))
                lo, hi = interval(d)
                entry.update(lam=mine["lam"], quality=mine["quality"],
                             learner_gflops_per_item=mine["gflops_per_item"],
                             difference=mine["quality"] - b["quality"], difference_ci=[lo, hi],
                             verdict="above" if lo > 0 else "below" if hi < 0 else "level")
            out.append(entry)
    return out


def dominance_table(entries: list[dict[str, Any]], learner: str, metric: str) -> str:
    lines = [f"{learner}'s front against the baselines, at each baseline point's cost "
             f"(paired over queries, 95 % bootstrap):",
             f"{'baseline':9} {'λ':>6} {'GFLOPs':>8} {metric:>6}   {learner + ' λ':>10} {'GFLOPs':>8} "
             f"{metric:>6} {'difference [95 %]':>26}  verdict"]
    for e in entries:
        head = (f"{e['baseline']:9} {e['baseline_lam']:6.3g} {e['gflops_per_item']:8.4f} "
                f"{e['baseline_quality']:6.3f}   ")
        if e["lam"] is None:
            lines.append(head + f"{'-':>10} {'-':>8} {'-':>6} {'-':>26}  no point this cheap")
            continue
        lo, hi = e["difference_ci"]
        lines.append(head + f"{e['lam']:10.3g} {e['learner_gflops_per_item']:8.4f} {e['quality']:6.3f} "
                            f"{e['difference']:+7.3f} [{lo:+.3f}, {hi:+.3f}]  {e['verdict']}")
    bad = sum(e["verdict"] in ("below", "no point") for e in entries)
    lines.append(f"dominates within the intervals: {'yes' if entries and not bad else 'no'} "
                 f"({bad} of {len(entries)} baseline points not matched)")
    return "\n".join(lines)


def per_query(by_policy: Results, answer_type: str, lam: float, learner: str,
              ) -> list[dict[str, Any]]:
    """Per query at ``lam``: quality of ``largest``, ``learner`` and ``static`` (those that
    ran) and ``learner``'s cost ÷ ``largest``'s."""
    def score(rs: list[ItemResult]) -> float:
        return f1(rs) if answer_type == "bool" else float(np.mean([r.right for r in rs]))

    def cost(rs: list[ItemResult]) -> float:
        return float(np.mean([r.flops + r.policy_flops for r in rs]))

    def at(name: str) -> dict[str, list[ItemResult]] | None:
        per_lam = by_policy.get(name)
        if not per_lam:
            return None
        return per_lam.get(lam) if len(per_lam) > 1 else next(iter(per_lam.values()))

    largest, mine, static = at("largest"), at(learner), at("static")
    queries = list((largest or mine or static or {}).keys())
    out = []
    for q in queries:
        row: dict[str, Any] = {"query": q}
        for name, got in (("largest", largest), (learner, mine), ("static", static)):
            if got is not None:
                row[name] = score(got[q])
                row[f"{name}_gflops_per_item"] = cost(got[q]) / 1e9
        if largest is not None and mine is not None:
            row["cost_vs_largest"] = cost(mine[q]) / cost(largest[q])
        out.append(row)
    return out


def per_query_table(rows: list[dict[str, Any]], learner: str, metric: str, lam: float) -> str:
    lines = [f"per query at λ = {lam:g} ({metric}; {learner}'s cost ÷ largest's):",
             f"{'query':44} {'largest':>8} {learner:>9} {'static':>7} {'cost ÷ largest':>15}"]

    def cell(r: dict[str, Any], k: str, width: int) -> str:
        return f"{r[k]:{width}.3f}" if k in r else f"{'-':>{width}}"

    for r in rows:
        lines.append(f"{r['query'][:44]:44} {cell(r, 'largest', 8)} {cell(r, learner, 9)} "
                     f"{cell(r, 'static', 7)} {cell(r, 'cost_vs_largest', 15)}")
    return "\n".join(lines)
