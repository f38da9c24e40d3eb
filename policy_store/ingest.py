"""Validate an IngestBatch and turn it into table rows (pure; no database access).

Each row and decision already passed its record's own checks (``storage.records``: status
and answer agree, propensity in (0, 1], at least one call, finite non-negative costs); what
is checked here spans records: one result per item, one decision per call site.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from policy_store.answers import normalise_answer
from policy_store.errors import AnswerError, IngestError
from policy_store.records import IngestBatch, IngestSummary
from storage.records import ResultRow

_COSTS = ("flops", "params", "wall_ms", "price")


@dataclass(frozen=True)
class IngestRows:
    """Rows ready for insertion plus the summary to hand back."""

    results: list[dict[str, Any]]
    decisions: list[dict[str, Any]]
    labels: list[dict[str, Any]]
    label_errors: list[dict[str, Any]]
    summary: IngestSummary


def build_rows(batch: IngestBatch, now: datetime) -> IngestRows:
    """Validate ``batch`` and build result, decision, label and label_error rows."""
    where = f"stream {batch.stream!r}, policy {batch.policy!r}, batch {batch.batch!r}"
    key = {"stream": batch.stream, "policy": batch.policy, "batch": batch.batch}
    results: list[dict[str, Any]] = []
    decisions: list[dict[str, Any]] = []
    seen: set[str] = set()
    for row in batch.rows:
        _check_row(row, where, seen)
        seen.add(row.item_id)
        results.append({
            **key, "item_id": row.item_id, "status": row.status,
            "answer": _normalise(row.answer, f"{where}, item {row.item_id!r}: answer"),
            "error": row.error, "policy_version": batch.policy_version,
            "program_id": batch.program_id, "ingested_at": now,
        })
        decisions.extend(_decision_rows(row, key, batch.policy_version, where))
    labels: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for item_id in sorted(batch.labels):
        if item_id not in seen:
            errors.append({
                "stream": batch.stream, "batch": batch.batch, "item_id": item_id, "seen_at": now,
                "reason": f"label for item {item_id!r} but policy {batch.policy!r} has no result "
                f"for it in batch {batch.batch!r}; check the labels' item_ids against the manifest",
            })
            continue
        answer = _normalise(batch.labels[item_id], f"{where}, item {item_id!r}: label")
        if answer is None:
            raise IngestError(f"{where}, item {item_id!r}: label is None; give a bool or str")
        labels.append({"stream": batch.stream, "batch": batch.batch, "item_id": item_id,
                       "answer": answer})
    summary = IngestSummary(
        items=len(results),
        failed=sum(r["status"] == "failed" for r in results),
        labelled=len(labels),
        decisions=len(decisions),
        unknown_labels=[e["item_id"] for e in errors],
    )
    return IngestRows(results, decisions, labels, errors, summary)


def _check_row(row: ResultRow, where: str, seen: set[str]) -> None:
    if row.item_id in seen:
        raise IngestError(f"{where}: item {row.item_id!r} appears twice; keep one result per item")


def _decision_rows(
    row: ResultRow, key: dict[str, str], version: int, where: str
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    sites: set[str] = set()
    for d in row.decisions:
        if d.call_site in sites:
            raise IngestError(f"{where}, item {row.item_id!r}, call site {d.call_site!r}: listed "
                              "twice; aggregate repeated calls into `calls`")
        sites.add(d.call_site)
        out.append({
            **key, "item_id": row.item_id, "call_site": d.call_site, "function": d.function,
            "backend": d.backend, "propensity": float(d.propensity), "calls": int(d.calls),
            **{k: float(getattr(d, k)) for k in _COSTS}, "policy_version": version,
        })
    return out


def _normalise(value: bool | str | None, where: str) -> str | None:
    try:
        return normalise_answer(value)
    except AnswerError as exc:
        raise IngestError(f"{where}: {exc}") from exc
