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
``ledger_by_call_site``
    One row per (stream, policy, call_site, backend): items routed there, calls, flops,
    params, wall_ms, price summed, and the mean propensity of those decisions.
``ledger_by_day_backend``
    One row per (stream, policy, day, backend); ``day`` is the UTC date the batch's
    feedback was ingested. items, calls, flops, wall_ms, price.
``ledger_by_day``
    One row per (stream, policy, day): batches, items, failed, labelled, correct, accuracy,
    flops, wall_ms, price; ``items_run`` (items the program ran on, the ones the monolith
    would have answered), ``monolithic_flops`` and ``monolithic_price`` (items_run × the
    cost of one call of the monolithic model), ``saved_flops``, ``saved_price`` and
    ``savings`` (1 - flops / monolithic_flops). The monolithic model is the row of
    ``backends`` with kind 'monolithic' (the feedback flow registers it); with none, the
    monolithic and saved columns are NULL.
``ledger_savings``
    ``ledger_by_day`` summed over all days per (stream, policy): first_day, last_day and
    the same columns; accuracy = correct / labelled.
``policy_history``
    One row per policy version: stream, policy, version, parent, learner, created_at,
    note and the batch it learned from (NULL for rollbacks and priors), without the blob.
``feedback_by_batch``
    One row per (stream, policy, batch) in the ledger: items, labelled (items with a current
    label), learned (labelled items whose current label version this policy's learner was
    trained on), unlearned (labelled - learned) and corrected (labelled items whose current
    label is not their first). A batch is fully learned when unlearned = 0.

Schema versions: ``schema_version`` records the versions a file went through;
``PolicyStore.init`` migrates an older file (``migrations.py``).

Money (``price``, ``monolithic_price``, ``saved_price``; US$) and FLOPs columns are DOUBLE.
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

# The first version that learned from a batch (``PolicyStore.learned``); later versions that
# learned late or corrected labels of the batch are in ``learned_labels``.
learned_batches = Table(
    "learned_batches", metadata,
    Column("stream", String, primary_key=True),
    Column("policy", String, primary_key=True),
    Column("batch", String, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("learned_at", DateTime, nullable=False),
)

#: The schema this code writes; ``migrations.migrate`` brings older files up to it.
SCHEMA_VERSION = 2

# One row per migration applied (and one for the version a new file was created at).
schema_version = Table(
    "schema_version", metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", DateTime, nullable=False),
)

# Every label value an item has had, in the order feedback saw them: ``seq`` counts from 1
# and grows only when the normalised label text changes (``label_hash`` = sha256 of it), so
# a label version is (stream, batch, item_id, seq). ``labels`` holds the current value.
label_versions = Table(
    "label_versions", metadata,
    Column("stream", String, primary_key=True),
    Column("batch", String, primary_key=True),
    Column("item_id", String, primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("answer", Text, nullable=False),
    Column("label_hash", String, nullable=False),
    Column("seen_at", DateTime, nullable=False),
)

# Which label versions each policy's learner was trained on, and by which saved version:
# a label version is learned once per policy, never twice.
learned_labels = Table(
    "learned_labels", metadata,
    Column("stream", String, primary_key=True),
    Column("policy", String, primary_key=True),
    Column("batch", String, primary_key=True),
    Column("item_id", String, primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("learned_at", DateTime, nullable=False),
)

# What the ledger rows of (stream, policy, batch) were built from: the sha256 of the
# results.jsonl and labels.jsonl bytes ingested last. Feedback re-ingests a batch when either
# differs (a rerun batch, late or corrected labels); no timestamp is compared.
feedback_state = Table(
    "feedback_state", metadata,
    Column("stream", String, primary_key=True),
    Column("policy", String, primary_key=True),
    Column("batch", String, primary_key=True),
    Column("results_sha256", String, nullable=False),
    Column("labels_sha256", String, nullable=False),
    Column("ingested_at", DateTime, nullable=False),
)

# Programs written from task text (modules.synthesis): one row per (task, revision);
# ``fmp synthesize --regenerate`` adds a revision, lookups take the latest.
synthesized_programs = Table(
    "synthesized_programs", metadata,
    Column("task_hash", String, primary_key=True),  # sha256 of the normalised task text
    Column("revision", Integer, primary_key=True),
    Column("task_text", Text, nullable=False),
    Column("answer_type", String, nullable=False),
    Column("synthesizer", String, nullable=False),  # grammar | openai | transformers
    Column("model", String, nullable=False),
    Column("version", String, nullable=False),  # synthesizer/prompt version
    Column("program_id", String, nullable=False),
    Column("source", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("created_at", DateTime, nullable=False),
)

# TRUE when the answer matches the label, FALSE when it does not (a failed item, answer
# NULL, is wrong), NULL when the item is unlabelled.
_CORRECT = (
    "CASE WHEN l.answer IS NULL THEN NULL "
    "WHEN r.answer IS NOT NULL AND r.answer = l.answer THEN TRUE ELSE FALSE END"
)

# The cost of one monolithic call: the newest 'monolithic' row the feedback flow registered.
_MONO = "SELECT flops, price FROM backends WHERE kind = 'monolithic' ORDER BY updated_at DESC LIMIT 1"
_DOUBLE = "DOUBLE PRECISION"

_REPORT_VIEWS: dict[str, str] = {
    "ledger_by_call_site": """
SELECT stream, policy, call_site, function, backend, COUNT(*) AS items,
       CAST(SUM(calls) AS BIGINT) AS calls, SUM(flops) AS flops, SUM(params) AS params,
       SUM(wall_ms) AS wall_ms, SUM(price) AS price, AVG(propensity) AS mean_propensity
FROM decisions GROUP BY stream, policy, call_site, function, backend""",
    "ledger_by_day_backend": """
SELECT d.stream, d.policy, CAST(r.ingested_at AS DATE) AS day, d.backend,
       COUNT(DISTINCT d.batch || '/' || d.item_id) AS items, CAST(SUM(d.calls) AS BIGINT) AS calls,
       SUM(d.flops) AS flops, SUM(d.wall_ms) AS wall_ms, SUM(d.price) AS price
FROM decisions d
JOIN results r
  ON r.stream = d.stream AND r.policy = d.policy AND r.batch = d.batch AND r.item_id = d.item_id
GROUP BY d.stream, d.policy, CAST(r.ingested_at AS DATE), d.backend""",
    "ledger_by_day": f"""
WITH mono AS ({_MONO}),
item_costs AS (
  SELECT stream, policy, batch, item_id, SUM(flops) AS flops, SUM(wall_ms) AS wall_ms,
         SUM(price) AS price
  FROM decisions GROUP BY stream, policy, batch, item_id
),
days AS (
  SELECT r.stream, r.policy, CAST(r.ingested_at AS DATE) AS day,
         COUNT(DISTINCT r.batch) AS batches, COUNT(*) AS items,
         CAST(SUM(CASE WHEN r.status = 'failed' THEN 1 ELSE 0 END) AS BIGINT) AS failed,
         COUNT(l.answer) AS labelled,
         CAST(SUM(CASE WHEN ({_CORRECT}) THEN 1 ELSE 0 END) AS BIGINT) AS correct,
         CAST(SUM(CASE WHEN c.item_id IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT) AS items_run,
         CAST(COALESCE(SUM(c.flops), 0.0) AS {_DOUBLE}) AS flops,
         CAST(COALESCE(SUM(c.wall_ms), 0.0) AS {_DOUBLE}) AS wall_ms,
         CAST(COALESCE(SUM(c.price), 0.0) AS {_DOUBLE}) AS price
  FROM results r
  LEFT JOIN labels l ON l.stream = r.stream AND l.batch = r.batch AND l.item_id = r.item_id
  LEFT JOIN item_costs c
    ON c.stream = r.stream AND c.policy = r.policy AND c.batch = r.batch AND c.item_id = r.item_id
  GROUP BY r.stream, r.policy, CAST(r.ingested_at AS DATE)
)
SELECT d.stream, d.policy, d.day, d.batches, d.items, d.failed, d.labelled, d.correct,
       CASE WHEN d.labelled > 0 THEN CAST(d.correct AS {_DOUBLE}) / d.labelled END AS accuracy,
       d.items_run, d.flops, d.wall_ms, d.price,
       CAST(d.items_run * m.flops AS {_DOUBLE}) AS monolithic_flops,
       CAST(d.items_run * m.price AS {_DOUBLE}) AS monolithic_price,
       CAST(d.items_run * m.flops - d.flops AS {_DOUBLE}) AS saved_flops,
       CAST(d.items_run * m.price - d.price AS {_DOUBLE}) AS saved_price,
       CASE WHEN d.items_run * m.flops > 0
            THEN 1.0 - d.flops / CAST(d.items_run * m.flops AS {_DOUBLE}) END AS savings
FROM days d LEFT JOIN mono m ON 1 = 1""",
    "ledger_savings": f"""
SELECT stream, policy, MIN(day) AS first_day, MAX(day) AS last_day,
       CAST(SUM(batches) AS BIGINT) AS batches, CAST(SUM(items) AS BIGINT) AS items,
       CAST(SUM(failed) AS BIGINT) AS failed, CAST(SUM(labelled) AS BIGINT) AS labelled,
       CAST(SUM(correct) AS BIGINT) AS correct,
       CASE WHEN SUM(labelled) > 0 THEN CAST(SUM(correct) AS {_DOUBLE}) / SUM(labelled) END
         AS accuracy,
       CAST(SUM(items_run) AS BIGINT) AS items_run, SUM(flops) AS flops,
       SUM(wall_ms) AS wall_ms, SUM(price) AS price,
       SUM(monolithic_flops) AS monolithic_flops, SUM(monolithic_price) AS monolithic_price,
       SUM(saved_flops) AS saved_flops, SUM(saved_price) AS saved_price,
       CASE WHEN SUM(monolithic_flops) > 0
            THEN 1.0 - SUM(flops) / SUM(monolithic_flops) END AS savings
FROM ledger_by_day GROUP BY stream, policy""",
    "policy_history": """
SELECT v.stream, v.policy, v.version, v.parent, v.learner, v.created_at, v.note,
       b.batch AS learned_batch
FROM policy_versions v
LEFT JOIN (
  SELECT stream, policy, version, MIN(batch) AS batch FROM (
    SELECT stream, policy, version, batch FROM learned_batches
    UNION SELECT stream, policy, version, batch FROM learned_labels
  ) u GROUP BY stream, policy, version
) b ON b.stream = v.stream AND b.policy = v.policy AND b.version = v.version""",
    "feedback_by_batch": """
SELECT r.stream, r.policy, r.batch, COUNT(*) AS items, COUNT(l.item_id) AS labelled,
       COUNT(ll.item_id) AS learned, COUNT(l.item_id) - COUNT(ll.item_id) AS unlearned,
       CAST(SUM(CASE WHEN cur.seq > 1 THEN 1 ELSE 0 END) AS BIGINT) AS corrected
FROM results r
LEFT JOIN labels l ON l.stream = r.stream AND l.batch = r.batch AND l.item_id = r.item_id
LEFT JOIN (
  SELECT stream, batch, item_id, MAX(seq) AS seq FROM label_versions GROUP BY stream, batch, item_id
) cur ON cur.stream = l.stream AND cur.batch = l.batch AND cur.item_id = l.item_id
LEFT JOIN learned_labels ll
  ON ll.stream = r.stream AND ll.policy = r.policy AND ll.batch = r.batch
 AND ll.item_id = r.item_id AND ll.seq = cur.seq
GROUP BY r.stream, r.policy, r.batch""",
}

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
    **_REPORT_VIEWS,
}
