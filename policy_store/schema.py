"""Tables and views of the policy store (SQLAlchemy Core; DuckDB or Postgres).

Money, FLOPs, parameter counts and times are ``Double`` (never ``Float``: DuckDB maps
Float to 4-byte REAL). Answers and labels are normalised text (see answers.py).
Timestamps are naive UTC.

Views (read them with ``PolicyStore.query`` or ``fmp ledger``):

``cost_ledger``
    One row per executed call site per item: stream, policy, batch, item_id, call_site,
    function, backend, calls, flops, params, wall_ms, price (totals over ``calls``),
    propensity, policy_version, answer, label, correct (boolean; NULL when the item is
    unlabelled; FALSE for a labelled failed item), status, ingested_at.
``ledger_by_batch``
    One row per (stream, policy, batch): items (all results, including items that failed
    before any call), labelled, accuracy (over labelled items; NULL when none), and the
    summed flops, params, wall_ms, price of all decisions.
``ledger_by_backend``
    One row per (stream, policy, backend): calls, flops, params, wall_ms, price summed.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    Double,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

programs = Table(
    "programs", metadata,
    Column("program_id", String, primary_key=True),
    Column("query_id", String, nullable=False),
    Column("source", Text, nullable=False),
    Column("created_at", DateTime, nullable=False),
)

call_sites = Table(
    "call_sites", metadata,
    Column("program_id", String, primary_key=True),
    Column("call_site", String, primary_key=True),
    Column("function", String, nullable=False),
    Column("line", Integer, nullable=False),
    Column("col", Integer, nullable=False),
)

backends = Table(
    "backends", metadata,
    Column("name", String, primary_key=True),
    Column("kind", String, nullable=False),
    Column("functions", String, nullable=False),  # comma-separated generic functions
    Column("flops", Double, nullable=False),
    Column("params", Double, nullable=False),
    Column("wall_ms", Double, nullable=False),
    Column("price", Double, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

policy_versions = Table(
    "policy_versions", metadata,
    Column("stream", String, primary_key=True),
    Column("policy", String, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("learner", String, nullable=False),
    Column("config_json", Text, nullable=False),
    Column("params", LargeBinary, nullable=False),
    Column("parent", Integer),
    Column("created_at", DateTime, nullable=False),
    Column("note", Text, nullable=False),
)

results = Table(
    "results", metadata,
    Column("stream", String, primary_key=True),
    Column("policy", String, primary_key=True),
    Column("batch", String, primary_key=True),
    Column("item_id", String, primary_key=True),
    Column("status", String, nullable=False),
    Column("answer", Text),
    Column("error", Text),
    Column("policy_version", Integer, nullable=False),
    Column("program_id", String, nullable=False),
    Column("ingested_at", DateTime, nullable=False),
)

decisions = Table(
    "decisions", metadata,
    Column("stream", String, primary_key=True),
    Column("policy", String, primary_key=True),
    Column("batch", String, primary_key=True),
    Column("item_id", String, primary_key=True),
    Column("call_site", String, primary_key=True),
    Column("function", String, nullable=False),
    Column("backend", String, nullable=False),
    Column("propensity", Double, nullable=False),
    Column("calls", Integer, nullable=False),
    Column("flops", Double, nullable=False),
    Column("params", Double, nullable=False),
    Column("wall_ms", Double, nullable=False),
    Column("price", Double, nullable=False),
    Column("policy_version", Integer, nullable=False),
)

labels = Table(
    "labels", metadata,
    Column("stream", String, primary_key=True),
    Column("batch", String, primary_key=True),
    Column("item_id", String, primary_key=True),
    Column("answer", Text, nullable=False),
)

label_errors = Table(
    "label_errors", metadata,
    Column("stream", String, primary_key=True),
    Column("batch", String, primary_key=True),
    Column("item_id", String, primary_key=True),
    Column("reason", Text, nullable=False),
    Column("seen_at", DateTime, nullable=False),
)

learned_batches = Table(
    "learned_batches", metadata,
    Column("stream", String, primary_key=True),
    Column("policy", String, primary_key=True),
    Column("batch", String, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("learned_at", DateTime, nullable=False),
)

# TRUE when the answer matches the label, FALSE when it does not (a failed item, answer
# NULL, is wrong), NULL when the item is unlabelled.
_CORRECT = (
    "CASE WHEN l.answer IS NULL THEN NULL "
    "WHEN r.answer IS NOT NULL AND r.answer = l.answer THEN TRUE ELSE FALSE END"
)

VIEWS: dict[str, str] = {
    "cost_ledger": f"""
SELECT d.stream, d.policy, d.batch, d.item_id, d.call_site, d.function, d.backend,
       d.calls, d.flops, d.params, d.wall_ms, d.price, d.propensity, d.policy_version,
       r.answer, l.answer AS label, {_CORRECT} AS correct, r.status, r.ingested_at
FROM decisions d
JOIN results r
  ON r.stream = d.stream AND r.policy = d.policy AND r.batch = d.batch AND r.item_id = d.item_id
LEFT JOIN labels l
  ON l.stream = d.stream AND l.batch = d.batch AND l.item_id = d.item_id""",
    "ledger_by_batch": f"""
SELECT i.stream, i.policy, i.batch, i.items, i.labelled, i.accuracy,
       COALESCE(c.flops, 0.0) AS flops, COALESCE(c.params, 0.0) AS params,
       COALESCE(c.wall_ms, 0.0) AS wall_ms, COALESCE(c.price, 0.0) AS price
FROM (
  SELECT r.stream, r.policy, r.batch, COUNT(*) AS items, COUNT(l.answer) AS labelled,
         AVG(CASE WHEN ({_CORRECT}) THEN CAST(1.0 AS DOUBLE PRECISION)
                  WHEN l.answer IS NOT NULL THEN CAST(0.0 AS DOUBLE PRECISION) END) AS accuracy
  FROM results r
  LEFT JOIN labels l ON l.stream = r.stream AND l.batch = r.batch AND l.item_id = r.item_id
  GROUP BY r.stream, r.policy, r.batch
) i
LEFT JOIN (
  SELECT stream, policy, batch, SUM(flops) AS flops, SUM(params) AS params,
         SUM(wall_ms) AS wall_ms, SUM(price) AS price
  FROM decisions GROUP BY stream, policy, batch
) c ON c.stream = i.stream AND c.policy = i.policy AND c.batch = i.batch""",
    "ledger_by_backend": """
SELECT stream, policy, backend, CAST(SUM(calls) AS BIGINT) AS calls, SUM(flops) AS flops,
       SUM(params) AS params, SUM(wall_ms) AS wall_ms, SUM(price) AS price
FROM decisions GROUP BY stream, policy, backend""",
}
