"""Ingest one batch's labels: ledger rows, rewards, a learner update, a new policy version.

Plain Python, wrapped by the ingest_feedback flow. This is the only code that writes the
policy store; re-ingesting a batch rewrites its ledger rows and never learns from it twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flows._batch import load_program
from flows.policies import pinned_config, arms_for, build_learner, monolithic_flops, policy_spec, unit_costs
from flows.settings import Settings
from modules.registry import Registry
from policy_store.records import CallSiteInfo, IngestBatch, IngestDecision, IngestRow
from policy_store.rewards import item_loss, split_reward
from policy_store.store import PolicyStore
from storage import batches
from storage.base import ObjectStore
from storage.records import ResultRow


@dataclass(frozen=True)
class FeedbackSummary:
    stream: str
    batch: str
    policy: str
    items: int
    labelled: int
    new_version: int | None
    errors: list[str]


def pending_feedback(store: ObjectStore, db: PolicyStore, stream: str, policy: str) -> list[str]:
    """Batches with results and labels whose feedback this policy has not learned from."""
    labelled = set(batches.list_feedback(store, stream))
    return [b for b in batches.list_results(store, stream, policy)
            if b in labelled and not db.learned(stream, policy, b)]


def ingest_batch(settings: Settings, store: ObjectStore, registry: Registry, db: PolicyStore,
                 stream: str, batch: str, policy: str) -> FeedbackSummary:
    """Write a batch's ledger rows and labels, then update the policy once per batch."""
    loaded = batches.read_results(store, stream, policy, batch)
    if loaded is None:
        raise FileNotFoundError(f"{stream}/{batch}: no complete results for policy {policy!r}; "
                                f"run stream_batch first")
    marker, rows = loaded
    parsed = batches.read_labels(store, stream, batch)
    errors = [f"{stream}/{batch}: {e}" for e in parsed.errors]
    labels = {lab.item_id: lab.answer for lab in parsed.records}
    info = batches.read_stream_info(store, stream)
    program = load_program(info, policy)
    db.register_program(info.query_id, program.source,
                        [CallSiteInfo(s.id, s.function, s.line, s.col) for s in program.call_sites])
    summary = db.ingest_batch(IngestBatch(
        stream=stream, policy=policy, batch=batch, policy_version=marker.policy_version,
        program_id=marker.program_id, rows=[_ingest_row(r) for r in rows], labels=labels))
    errors += [f"{stream}/{batch}: label for unknown item {item!r} (recorded in label_errors)"
               for item in summary.unknown_labels]
    new_version = None
    if not db.learned(stream, policy, batch):
        new_version = _learn(settings, registry, db, stream, batch, policy, program, info.answer_type,
                             rows, labels)
    return FeedbackSummary(stream, batch, policy, len(rows), summary.labelled, new_version, errors)


def _learn(settings: Settings, registry: Registry, db: PolicyStore, stream: str, batch: str,
           policy: str, program, answer_type: str, rows: list[ResultRow],
           labels: dict[str, bool | str]) -> int:
    spec = policy_spec(policy)
    latest = db.latest_version(stream, policy)
    config = pinned_config(spec, latest, settings.lam, settings.seed)
    arms = arms_for(program, registry, spec)
    learner = build_learner(spec, config, arms, unit_costs(registry, arms, program), latest)
    unit = monolithic_flops(registry)
    examples = []
    for row in rows:
        if row.item_id not in labels or not row.decisions:
            continue
        loss = item_loss(row.answer, labels[row.item_id], answer_type, config)
        features = np.asarray(row.features, dtype=np.float64)
        examples += split_reward(
            [(d.call_site, d.backend, d.flops / unit, features, d.propensity) for d in row.decisions],
            loss)
    learner.update(examples)
    return db.save_version(stream, policy, learner.name, config.model_dump_json(), learner.to_bytes(),
                           parent=latest.version if latest else None,
                           note=f"learned from {batch}: {len(examples)} examples",
                           learned_batch=batch)


def _ingest_row(row: ResultRow) -> IngestRow:
    return IngestRow(
        item_id=row.item_id, status=row.status, answer=row.answer, error=row.error,
        decisions=[IngestDecision(call_site=d.call_site, function=d.function, backend=d.backend,
                                  propensity=d.propensity, calls=d.calls, flops=d.flops,
                                  params=d.params, wall_ms=d.wall_ms, price=d.price)
                   for d in row.decisions])
