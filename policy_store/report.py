"""The savings table: accuracy, F1 and cost per policy, read from the ledger in SQL.

Policies are compared on the same items: the labelled items that every policy in the
table has a result for (a failed item counts as a wrong answer). Savings are against the
monolithic counterfactual, as in ``ledger_savings``: the items the program ran on times
the cost of one call of the monolithic model registered in ``backends``. A number that
cannot be computed (no common items, no monolithic model registered) is ``None``, shown
as ``n/a``; never NaN.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from policy_store.schema import _MONO as MONOLITHIC_COST  # the one rule for the monolith's cost
from policy_store.store import PolicyStore

#: Per policy: the numbers of ``policy_table``; ``None`` where there is nothing to divide by.
PolicyTable = dict[str, dict[str, float | None]]

_SQL = """
WITH scope AS (
    SELECT r.stream, r.policy, r.batch, r.item_id, r.answer, l.answer AS label
    FROM results r JOIN labels l USING (stream, batch, item_id)
    WHERE r.stream IN ({streams})
), answered AS (
    SELECT policy, COUNT(*) AS answered FROM scope GROUP BY policy
), common AS (
    SELECT stream, batch, item_id FROM scope GROUP BY stream, batch, item_id
    HAVING COUNT(DISTINCT policy) = (SELECT COUNT(*) FROM answered)
), compared AS (
    SELECT s.* FROM scope s JOIN common USING (stream, batch, item_id)
), costs AS (
    SELECT d.policy, d.stream, d.batch, d.item_id, SUM(d.flops) AS flops, SUM(d.params) AS params,
           SUM(d.wall_ms) AS wall_ms, SUM(d.price) AS price
    FROM decisions d JOIN common USING (stream, batch, item_id)
    GROUP BY d.policy, d.stream, d.batch, d.item_id
), mono AS ({mono})
SELECT a.policy, a.answered,
       COUNT(i.item_id) AS items,
       AVG(CASE WHEN i.answer = i.label THEN 1.0 WHEN i.item_id IS NOT NULL THEN 0.0 END) AS accuracy,
       SUM(CASE WHEN i.answer = 'yes' AND i.label = 'yes' THEN 1 ELSE 0 END) AS tp,
       SUM(CASE WHEN i.answer = 'yes' AND i.label = 'no' THEN 1 ELSE 0 END) AS fp,
       SUM(CASE WHEN (i.answer IS NULL OR i.answer = 'no') AND i.label = 'yes' THEN 1 ELSE 0 END) AS fn,
       COUNT(c.item_id) AS items_run,
       COALESCE(SUM(c.flops), 0.0) AS flops, COALESCE(SUM(c.params), 0.0) AS params,
       COALESCE(SUM(c.wall_ms), 0.0) AS wall_ms, COALESCE(SUM(c.price), 0.0) AS price,
       ANY_VALUE(m.flops) AS mono_flops, ANY_VALUE(m.price) AS mono_price
FROM answered a
LEFT JOIN compared i ON i.policy = a.policy
LEFT JOIN costs c
  ON c.policy = i.policy AND c.stream = i.stream AND c.batch = i.batch AND c.item_id = i.item_id
LEFT JOIN mono m ON 1 = 1
GROUP BY a.policy, a.answered
"""


def policy_table(db: PolicyStore, streams: list[str]) -> PolicyTable:
    """Per policy, on the labelled items every policy answered: items, accuracy, F1, cost (FLOPs),
    params, wall ms, price, and savings vs the monolithic model; ``answered`` counts the
    policy's own labelled items, common or not."""
    if not streams:
        return {}
    quoted = ", ".join("'" + s.replace("'", "''") + "'" for s in streams)
    columns, rows = db.query(_SQL.format(streams=quoted, mono=MONOLITHIC_COST))
    table: PolicyTable = {}
    for row in rows:
        r = dict(zip(columns, row, strict=True))
        items, tp, fp, fn = int(r["items"]), r["tp"], r["fp"], r["fn"]
        f1 = (2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0) if items else None
        mono_flops = r["items_run"] * r["mono_flops"] if r["mono_flops"] else 0.0
        table[r["policy"]] = {
            "answered": int(r["answered"]), "items": items,
            "accuracy": float(r["accuracy"]) if r["accuracy"] is not None else None, "f1": f1,
            "cost": float(r["flops"]), "params": float(r["params"]), "wall_ms": float(r["wall_ms"]),
            "price": float(r["price"]),
            "savings_vs_monolithic": 1 - float(r["flops"]) / mono_flops if mono_flops > 0 else None}
    return table


def _number(value: float | None, spec: str, width: int) -> str:
    return f"{'n/a':>{width}}" if value is None else f"{value:>{width}{spec}}"


def format_table(table: PolicyTable) -> str:
    """A fixed-width text table, policies in a stable order, under a line saying which items."""
    order = ["confirmed", "learned", "cheapest", "largest", "random", "monolithic"]
    names = [p for p in order if p in table] + sorted(set(table) - set(order))
    lines = [comparison_line(table),
             f"{'policy':<12}{'items':>7}{'accuracy':>10}{'F1':>8}{'GFLOPs':>11}"
             f"{'Mparams·calls':>15}{'wall s':>9}{'savings vs mono':>17}"]
    for name in names:
        s = table[name]
        cost, params, wall = (s[k] or 0.0 for k in ("cost", "params", "wall_ms"))
        lines.append(f"{name:<12}{int(s['items'] or 0):>7}{_number(s['accuracy'], '.3f', 10)}"
                     f"{_number(s['f1'], '.3f', 8)}{cost / 1e9:>11.3f}{params / 1e6:>15.1f}"
                     f"{wall / 1e3:>9.2f}{_number(s['savings_vs_monolithic'], '.1%', 17)}")
    return "\n".join(lines)


def comparison_line(table: PolicyTable) -> str:
    """Which items the policies were compared on, and what each answered in all."""
    if not table:
        return "no labelled results in the ledger for these streams"
    common = int(next(iter(table.values()))["items"] or 0)
    if len(table) == 1:
        return f"{common} labelled items answered by the one policy in the ledger"
    line = f"compared on the {common} labelled items every policy answered"
    if any(s["answered"] != common for s in table.values()):
        line += "; labelled items answered in all: " + ", ".join(
            f"{p} {int(s['answered'] or 0)}" for p, s in sorted(table.items()))
    return line


def write_report(path: Path, table: PolicyTable, extra: dict[str, Any] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"policies": table, **(extra or {})}, indent=2, sort_keys=True))
