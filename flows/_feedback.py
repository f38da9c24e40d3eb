"""Ingest one batch's labels: ledger rows, rewards, a learner update, a new policy version.

Plain Python, wrapped by the ingest_feedback flow. This is the only code that writes the
policy store; re-ingesting a batch rewrites its ledger rows and never learns from it twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from flows._batch import load_program
from flows.settings import Settings
from modules.program import Program
from modules.registry import Registry
from policies.learning import learn
from policy_store.records import CallSiteInfo, IngestBatch
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
        program_id=marker.program_id, rows=rows, labels=labels))
    errors += [f"{stream}/{batch}: label for unknown item {item!r} (recorded in label_errors)"
               for item in summary.unknown_labels]
    new_version = None
    if not db.learned(stream, policy, batch):
        new_version = _learn(settings, registry, db, stream, batch, policy, program, info.answer_type,
                             rows, labels)
    return FeedbackSummary(stream, batch, policy, len(rows), summary.labelled, new_version, errors)


def _learn(settings: Settings, registry: Registry, db: PolicyStore, stream: str, batch: str,
           policy: str, program: Program, answer_type: Literal["bool", "str"], rows: list[ResultRow],
           labels: dict[str, bool | str]) -> int:
    latest = db.latest_version(stream, policy)
    pinned, n_examples = learn(registry, program, policy, latest, settings.lam, settings.seed,
                               answer_type, rows, labels)
    return db.save_version(stream, policy, pinned.learner.name, pinned.config.model_dump_json(),
                           pinned.learner.to_bytes(), parent=latest.version if latest else None,
                           note=f"learned from {batch}: {n_examples} examples",
                           learned_batch=batch)

