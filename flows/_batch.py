"""Run one batch of a stream under one policy: plain Python, wrapped by the stream_batch flow."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from flows.settings import Settings
from modules.errors import ProgramError
from modules.executor import BatchExecutor, ItemInput, ItemOutcome, RoundRunner
from modules.images import ImageDecodeError, decode_image
from modules.program import Program, parse_program
from modules.registry import Registry
from policies.pinned import pin
from policies.specs import policy_spec
from policy_store.learners.features import item_features
from policy_store.records import PolicyVersion
from policy_store.store import PolicyStore
from storage import batches
from storage.base import ObjectStore
from storage.errors import StorageError
from storage.records import ResultRow, StreamInfo


@dataclass(frozen=True)
class BatchSummary:
    stream: str
    batch: str
    policy: str
    policy_version: int
    items: int
    failed: int
    errors: list[str]


def load_program(info: StreamInfo, policy: str) -> Program:
    """The program a policy runs: the stream's own, or the one-call monolithic baseline."""
    spec = policy_spec(policy)
    return parse_program(info.program if spec.program == "program" else info.monolithic_program)


def next_batch(store: ObjectStore, stream: str, policy: str) -> str | None:
    """The oldest published batch that this policy has no results for yet."""
    done = set(batches.list_results(store, stream, policy))
    return next((b for b in batches.list_batches(store, stream) if b not in done), None)


def process_batch(settings: Settings, store: ObjectStore, registry: Registry, stream: str,
                  batch: str, policy: str, run_round: RoundRunner) -> BatchSummary:
    """Read a batch, run its program on every item with the pinned policy, write results.

    Bad items (unparseable manifest lines, corrupt images, program failures) become
    ``failed`` rows naming the batch, item and problem; the rest of the batch runs.
    """
    info = batches.read_stream_info(store, stream)
    try:
        program = load_program(info, policy)
    except ProgramError as exc:
        # nothing is written, so the batch stays unprocessed until the program is fixed
        raise ProgramError(f"{stream}/{batch}: the {policy!r} policy's program is invalid, "
                           f"no item was run: {exc}") from None
    pinned = pin(registry, program, policy, _pinned_version(settings, stream, policy),
                 settings.lam, settings.seed)
    learner, version, router = pinned.learner, pinned.version, pinned.router(stream, batch)

    manifest = batches.read_manifest(store, stream, batch)
    errors = [f"{stream}/{batch}: {e}" for e in manifest.errors]
    failed_rows = [_failed(f"manifest-line-{e.line}", str(e)) for e in manifest.errors]
    inputs = []
    for item in manifest.records:
        try:
            image = decode_image(batches.read_image(store, stream, batch, item))
        except (ImageDecodeError, StorageError) as exc:
            message = f"{stream}/{batch} item {item.item_id}: {exc}"
            errors.append(message)
            failed_rows.append(_failed(item.item_id, message))
            continue
        inputs.append(ItemInput(item.item_id, image, item_features(learner, image)))

    outcomes = BatchExecutor(program, router, run_round, info.answer_type).run(inputs)
    rows = [_row(o, i.features, stream, batch) for o, i in zip(outcomes, inputs, strict=True)]
    errors += [r.error for r in rows if r.error]
    batches.write_results(store, stream, policy, batch, rows + failed_rows,
                          policy_version=version, program_id=program.program_id,
                          created_at=datetime.now(UTC))
    return BatchSummary(stream, batch, policy, version, len(rows) + len(failed_rows),
                        sum(r.status == "failed" for r in rows) + len(failed_rows), errors)


def _pinned_version(settings: Settings, stream: str, policy: str) -> PolicyVersion | None:
    """Read (never write) the latest policy version; none before the first feedback."""
    if not settings.database.exists():
        return None
    db = PolicyStore(settings.database, lock_timeout_s=settings.lock_timeout_s, read_only=True)
    with db.connection():  # one read-only connection for both questions
        return db.latest_version(stream, policy) if db.initialised() else None


def _row(outcome: ItemOutcome, features: np.ndarray, stream: str, batch: str) -> ResultRow:
    error = None if outcome.error is None else f"{stream}/{batch} item {outcome.item_id}: {outcome.error}"
    return ResultRow(item_id=outcome.item_id, status=outcome.status, answer=outcome.answer,
                     error=error, features=[float(x) for x in features], decisions=outcome.decisions)


def _failed(item_id: str, message: str) -> ResultRow:
    return ResultRow(item_id=item_id, status="failed", answer=None, error=message, features=[],
                     decisions=[])
