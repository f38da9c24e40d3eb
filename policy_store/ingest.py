"""Validate an IngestBatch and turn it into table rows (pure; no database access).

Each row and decision already passed its record's own checks (``storage.records``: status
and answer agree, propensity in (0, 1], at least one call, finite non-negative costs); what
is checked here spans records: one result per item, one decision per call site.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from policy_store.answers import normalise_answer, normalise_label
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
    labels, errors, rejected, normalised = _label_rows(batch, seen, where, now)
    summary = IngestSummary(
        items=len(results),
        failed=sum(r["status"] == "failed" for r in results),
        labelled=len(labels),
        decisions=len(decisions),
        unknown_labels=[e["item_id"] for e in errors if e["item_id"] not in rejected],
        normalised=normalised,
        rejected={item: rejected[item] for item in sorted(rejected, key=lambda i: _line_order(batch, i))},
    )
    return IngestRows(results, decisions, labels, errors, summary)


def _label_rows(
    batch: IngestBatch, seen: set[str], where: str, now: datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, str], int]:
    """Label rows, label_error rows (unknown items and rejected values), the rejection reasons
    by item, and how many accepted labels were normalised."""
    labels: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    rejected: dict[str, str] = {}
    normalised = 0
    key = {"stream": batch.stream, "batch": batch.batch}
    for item_id in sorted(batch.labels):
        line = batch.label_lines.get(item_id)
        at = f"line {line}: " if line is not None else ""
        if item_id not in seen:
            errors.append({**key, "item_id": item_id, "seen_at": now,
                           "reason": f"{at}label for item {item_id!r} but policy {batch.policy!r} has no "
                           f"result for it in batch {batch.batch!r}; check the labels' item_ids against "
                           "the manifest"})
            continue
        raw = batch.labels[item_id]
        if raw is None:
            raise IngestError(f"{where}, item {item_id!r}: label is None; give a bool or str")
        try:
            if batch.answer_type is None:
                text, changed = normalise_answer(raw), False
            else:
                label = normalise_label(raw, batch.answer_type)
                text, changed = label.text, label.changed
        except AnswerError as exc:
            reason = f"{at}item {item_id!r}: {exc}"
            rejected[item_id] = reason
            errors.append({**key, "item_id": item_id, "seen_at": now, "reason": reason})
            continue
        normalised += changed
        labels.append({**key, "item_id": item_id, "answer": text})
    return labels, errors, rejected, normalised


def _line_order(batch: IngestBatch, item_id: str) -> tuple[int, str]:
    return batch.label_lines.get(item_id, 0), item_id


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
