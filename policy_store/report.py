"""The savings table: accuracy, F1 and cost per policy, read from the ledger in SQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from policy_store.store import PolicyStore

_SQL = """
WITH items AS (
    SELECT r.policy, r.stream, r.batch, r.item_id, r.answer, l.answer AS label
    FROM results r JOIN labels l USING (stream, batch, item_id)
    WHERE r.stream IN ({streams})
), costs AS (
    SELECT policy, SUM(flops) AS flops, SUM(params) AS params, SUM(wall_ms) AS wall_ms
    FROM decisions WHERE stream IN ({streams}) GROUP BY policy
)
SELECT i.policy,
       COUNT(*) AS items,
       AVG(CASE WHEN i.answer = i.label THEN 1.0 ELSE 0.0 END) AS accuracy,
       SUM(CASE WHEN i.answer = 'yes' AND i.label = 'yes' THEN 1 ELSE 0 END) AS tp,
       SUM(CASE WHEN i.answer = 'yes' AND i.label = 'no' THEN 1 ELSE 0 END) AS fp,
       SUM(CASE WHEN (i.answer IS NULL OR i.answer = 'no') AND i.label = 'yes' THEN 1 ELSE 0 END) AS fn,
       ANY_VALUE(c.flops) AS flops, ANY_VALUE(c.params) AS params, ANY_VALUE(c.wall_ms) AS wall_ms
FROM items i LEFT JOIN costs c USING (policy)
GROUP BY i.policy
"""


def policy_table(db: PolicyStore, streams: list[str]) -> dict[str, dict[str, float]]:
    """Per policy: accuracy, F1, cost (FLOPs), params, wall ms and savings vs monolithic."""
    quoted = ", ".join("'" + s.replace("'", "''") + "'" for s in streams)
    columns, rows = db.query(_SQL.format(streams=quoted))
    table: dict[str, dict[str, float]] = {}
    for row in rows:
        r = dict(zip(columns, row, strict=True))
        tp, fp, fn = r["tp"], r["fp"], r["fn"]
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
        table[r["policy"]] = {"items": int(r["items"]), "accuracy": float(r["accuracy"]), "f1": f1,
                              "cost": float(r["flops"] or 0.0), "params": float(r["params"] or 0.0),
                              "wall_ms": float(r["wall_ms"] or 0.0)}
    mono = table.get("monolithic", {}).get("cost")
    for stats in table.values():
        stats["savings_vs_monolithic"] = 1 - stats["cost"] / mono if mono else float("nan")
    return table


def format_table(table: dict[str, dict[str, float]]) -> str:
    """A fixed-width text table, policies in a stable order."""
    order = ["learned", "cheapest", "largest", "random", "monolithic"]
    names = [p for p in order if p in table] + sorted(set(table) - set(order))
    lines = [f"{'policy':<12}{'items':>7}{'accuracy':>10}{'F1':>8}{'GFLOPs':>11}"
             f"{'Mparams·calls':>15}{'wall s':>9}{'savings vs mono':>17}"]
    for name in names:
        s = table[name]
        lines.append(f"{name:<12}{s['items']:>7}{s['accuracy']:>10.3f}{s['f1']:>8.3f}"
                     f"{s['cost'] / 1e9:>11.3f}{s['params'] / 1e6:>15.1f}{s['wall_ms'] / 1e3:>9.2f}"
                     f"{s['savings_vs_monolithic']:>16.1%}")
    return "\n".join(lines)


def write_report(path: Path, table: dict[str, dict[str, float]],
                 extra: dict[str, Any] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"policies": table, **(extra or {})}, indent=2, sort_keys=True))
