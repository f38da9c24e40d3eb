"""From per-item results to the report: quality (F1 or exact match), cost per item, regret
against the oracle, per-policy rows for every λ, savings, and the printed table."""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.evaluate.harness import ItemResult

#: policy → λ → query id → the query's items under that policy
Results = dict[str, dict[float, dict[str, list[ItemResult]]]]


def f1(results: list[ItemResult]) -> float:
    tp = sum(r.answer is True and r.label is True for r in results)
    fp = sum(r.answer is True and r.label is False for r in results)
    fn = sum(r.answer is not True and r.label is True for r in results)
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0


def quality(per_query: dict[str, list[ItemResult]], answer_type: str) -> float:
    """Binary: F1 per query, averaged over queries; open-form: exact match over all items."""
    if answer_type == "bool":
        return float(np.mean([f1(rs) for rs in per_query.values()]))
    return float(np.mean([r.right for rs in per_query.values() for r in rs]))


def summarise(per_query: dict[str, list[ItemResult]], answer_type: str, lam: float, mono_flops: float,
              oracle_q: dict[str, list[ItemResult]] | None) -> dict[str, Any]:
    items = [r for rs in per_query.values() for r in rs]
    total = np.array([r.flops + r.policy_flops for r in items])
    row: dict[str, Any] = {"items": len(items), "quality": quality(per_query, answer_type),
           "accuracy": float(np.mean([r.right for r in items])),
           "gflops_per_item": float(total.mean()) / 1e9,
           "policy_gflops_per_item": float(np.mean([r.policy_flops for r in items])) / 1e9,
           "mparams_calls_per_item": float(np.mean([r.params for r in items])) / 1e6,
           "wall_ms_per_item": float(np.mean([r.wall_ms for r in items])),
           "price_per_item": float(np.mean([r.price for r in items]))}
    if answer_type == "bool":
        row["f1_by_query"] = {q: f1(rs) for q, rs in per_query.items()}
    if oracle_q is not None:
        orc = [r for q in per_query for r in oracle_q[q]]
        mine = total / mono_flops
        theirs = np.array([r.flops for r in orc]) / mono_flops
        regret = (np.array([r.loss for r in items]) + lam * mine
                  - np.array([r.loss for r in orc]) - lam * theirs)
        row["cumulative_regret"] = float(regret.sum())
        row["regret_curve"] = [float(v) for v in np.cumsum(regret)[:: max(1, len(regret) // 50)]]
    for d in ("easy", "medium", "hard"):
        sub = {q: [r for r in rs if r.difficulty == d] for q, rs in per_query.items()}
        sub = {q: rs for q, rs in sub.items() if rs}
        if sub:
            row[f"accuracy_{d}"] = float(np.mean([r.right for rs in sub.values() for r in rs]))
    return row


def sweep(by_policy: Results, answer_type: str, lams: list[float], mono_flops: float
          ) -> dict[str, list[dict[str, Any]]]:
    """Every policy's row at every λ it ran, with its savings against the monolithic
    policy (or one monolithic call per item when it did not run), its savings against the
    program on its largest backends (``savings_vs_largest``; None when ``largest`` did not
    run) and its cost ÷ the oracle's; regret is against the oracle at the first λ."""
    oracle_q = by_policy.get("oracle", {}).get(lams[0])
    mono_row = None
    rows: dict[str, list[dict[str, Any]]] = {}
    for name, per_lam in by_policy.items():
        for lam, per_query in per_lam.items():
            row = summarise(per_query, answer_type, lam, mono_flops, oracle_q)
            row["lam"] = lam
            rows.setdefault(name, []).append(row)
            if name == "monolithic":
                mono_row = row
    ref = mono_row["gflops_per_item"] if mono_row else mono_flops / 1e9
    orc = rows["oracle"][0]["gflops_per_item"] if "oracle" in rows else None
    largest = rows["largest"][0]["gflops_per_item"] if "largest" in rows else None
    for policy_rows in rows.values():
        for r in policy_rows:
            r["savings_vs_monolithic"] = 1 - r["gflops_per_item"] / ref
            r["savings_vs_largest"] = 1 - r["gflops_per_item"] / largest if largest else None
            r["cost_vs_oracle"] = r["gflops_per_item"] / orc if orc else float("nan")
    return rows


def at_lambda(rows: dict[str, list[dict[str, Any]]], lam: float) -> dict[str, dict[str, Any]]:
    """Each policy's row at ``lam`` (its only row for the λ-independent ones)."""
    return {n: next(r for r in policy_rows if r["lam"] == lam) if len(policy_rows) > 1 else policy_rows[0]
            for n, policy_rows in rows.items()}


def table(rows: dict[str, dict[str, Any]], metric: str, decision_us: dict[str, float]) -> str:
    lines = [f"{'policy':12} {'λ':>6} {metric:>6} {'GFLOPs/item':>11} {'Mparams·calls':>13} "
             f"{'ms/item':>8} {'savings':>8} {'vs largest':>10} {'÷oracle':>8} {'regret':>9} "
             f"{'µs/decision':>11}"]
    for name, r in rows.items():
        us = decision_us.get(name)
        vs_largest = r.get("savings_vs_largest")
        lines.append(
            f"{name:12} {r['lam']:6.3g} {r['quality']:6.3f} {r['gflops_per_item']:11.4f} "
            f"{r['mparams_calls_per_item']:13.3f} {r['wall_ms_per_item']:8.2f} "
            f"{100 * r['savings_vs_monolithic']:7.1f}% "
            f"{'-' if vs_largest is None else f'{100 * vs_largest:.1f}%':>10} {r['cost_vs_oracle']:8.2f} "
            f"{r.get('cumulative_regret', float('nan')):9.1f} {'-' if us is None else f'{us:11.1f}'}")
    return "\n".join(lines)
