"""Gather a FeedbackReport for one ingested batch from the ledger views and the new version."""

from __future__ import annotations

from flows._batch import load_program
from flows._feedback import FeedbackSummary
from flows.artifacts import FeedbackReport
from modules.registry import Registry
from policies.choices import Shares, made_choices, replayed_choices
from policy_store.store import PolicyStore
from storage import batches
from storage.base import ObjectStore

_SO_FAR = """SELECT items_run, accuracy, flops, price, savings, saved_flops, saved_price
FROM ledger_savings WHERE stream = :stream AND policy = :policy"""
_BATCH = """SELECT accuracy FROM ledger_by_batch
WHERE stream = :stream AND policy = :policy AND batch = :batch"""


def feedback_report(store: ObjectStore, registry: Registry, db: PolicyStore,
                    summary: FeedbackSummary) -> FeedbackReport:
    """Quality and savings so far, and the new version's choices replayed on the batch."""
    stream, policy, batch = summary.stream, summary.policy, summary.batch
    loaded = batches.read_results(store, stream, policy, batch)
    if loaded is None:
        raise FileNotFoundError(f"{stream}/{batch}: results for policy {policy!r} vanished")
    marker, rows = loaded
    keys = {"stream": stream, "policy": policy}
    _, so_far = db.query(_SO_FAR, keys)
    items_run, accuracy, flops, price, savings, saved_flops, saved_price = (
        so_far[0] if so_far else (0, None, None, None, None, None, None))
    _, this = db.query(_BATCH, {**keys, "batch": batch})
    note, parent, after = "", None, Shares()
    if summary.new_version is not None:
        version = db.get_version(stream, policy, summary.new_version)
        note, parent = version.note, version.parent
        info = batches.read_stream_info(store, stream)
        program = load_program(info, policy)
        after = replayed_choices(registry, program, policy, version, stream, batch, rows, info.answer_type)

    def per_item(total: float | None) -> float | None:
        return total / items_run if items_run and total is not None else None

    return FeedbackReport(
        stream=stream, policy=policy, batch=batch, labelled=summary.labelled,
        batch_accuracy=this[0][0] if this else None, accuracy=accuracy, items=int(items_run or 0),
        flops_per_item=per_item(flops), price_per_item=per_item(price), savings=savings,
        saved_flops=saved_flops, saved_price=saved_price, old_version=marker.policy_version,
        parent=parent, new_version=summary.new_version, note=note, before=made_choices(rows), after=after,
        learned=summary.learned, new_labels=summary.new_labels, corrected=summary.corrected,
        normalised=summary.normalised, rejected_lines=tuple(summary.rejected_lines),
        results=summary.results)
