"""Run one batch of a stream under one policy: plain Python, wrapped by the stream_batch flow."""

from __future__ import annotations

import contextvars
import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import numpy as np

from flows.settings import Settings
from modules.errors import ProgramError
from modules.executor import BatchExecutor, ItemInput, ItemOutcome, RoundRunner, Router
from modules.images import ImageDecodeError, decode_image
from modules.program import Program, parse_program
from modules.registry import Registry
from policies.audits import confirm, confirms
from policies.pinned import PinnedPolicy, pin
from policies.specs import policy_spec
from policy_store.learners.features import item_features, items_features
from policy_store.records import PolicyVersion
from policy_store.store import PolicyStore
from storage import batches, layout
from storage.base import ObjectStore
from storage.errors import RecordError, StorageError, StoreConfigError, StoreUnavailable
from storage.local import LocalStore
from storage.records import ManifestItem, ResultRow, StreamInfo

T = TypeVar("T")

#: A batch is split into shards of at least this many items (fewer items: one shard).
MIN_SHARD_ITEMS = 32

#: Pauses between tries to write a batch's results (each try is itself a few calls deep: an
#: S3 call retries on its own, see ``storage.s3``). After the last try the results are kept
#: locally (``kept_results``) and the next run of the batch writes them without recomputing.
WRITE_PAUSES_S = (2.0, 8.0)

log = logging.getLogger("fmp.batch")


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
                  batch: str, policy: str, run_round: RoundRunner,
                  written: Callable[[BatchSummary, list[ResultRow]], None] | None = None) -> BatchSummary:
    """Read a batch, run its program on every item with the pinned policy, write results.

    Bad items (unparseable manifest lines, corrupt images, program failures) become
    ``failed`` rows naming the batch, item and problem; the rest of the batch runs. Results
    kept locally by an earlier run whose write failed are written instead of recomputed.
    ``written`` is called with the summary and the rows once they are in the store (the
    flow's batch artifact is built from them without reading them back).
    """
    # Reading the pinned policy version (a DuckDB open) is the longest wait before the first
    # model call: it starts first, on its own thread, and the batch's reads go on meanwhile.
    with ThreadPoolExecutor(settings.batch_shards + 1, thread_name_prefix=f"{stream}/{batch}") as pool:
        latest = pool.submit(_pinned_version, settings, stream, policy)
        kept = _deliver_kept(settings, store, stream, batch, policy, written)
        if kept is not None:
            return kept
        info = batches.read_stream_info(store, stream)
        try:
            program = load_program(info, policy)
        except ProgramError as exc:
            # nothing is written, so the batch stays unprocessed until the program is fixed
            raise ProgramError(f"{stream}/{batch}: the {policy!r} policy's program is invalid, "
                               f"no item was run: {exc}") from None
        manifest = batches.read_manifest(store, stream, batch)
        errors = [f"{stream}/{batch}: {e}" for e in manifest.errors]
        failed_rows = [_failed(f"manifest-line-{e.line}", str(e)) for e in manifest.errors]

        # The shards start reading their images at once, one shard after the other (the first
        # shard's models start while the next shard's images are read); each waits for the
        # pinned policy before its first routing decision.
        parts = shards(manifest.records, settings.batch_shards)
        pinned_policy: Future[tuple[PinnedPolicy, Router]] = Future()
        decoded = [threading.Event() for _ in parts]

        def run_shard(k: int) -> _Shard:
            try:
                if k:
                    decoded[k - 1].wait()
                read = _read_shard(store, stream, batch, parts[k])
            finally:
                decoded[k].set()
            pinned, router = pinned_policy.result()
            return _run_shard(read, stream, batch, program, pinned, router, run_round,
                              info.answer_type)

        # each shard in a copy of this thread's context: its task runs belong to the flow run
        futures = [pool.submit(contextvars.copy_context().run, run_shard, k) for k in range(len(parts))]
        try:
            pinned = pin(registry, program, policy, latest.result(), settings.lam, settings.seed,
                         info.answer_type)
            pinned_policy.set_result((pinned, pinned.router(stream, batch)))
        except BaseException as exc:
            pinned_policy.set_exception(exc)
            raise
        done = [f.result() for f in futures]
    version = pinned.version
    rows = [row for part in done for row in part.rows]
    errors += [e for part in done for e in part.errors]
    failed_rows += [row for part in done for row in part.failed_rows]
    errors += [r.error for r in rows if r.error]
    write_or_keep(settings, store, stream, policy, batch, rows + failed_rows,
                  policy_version=version, program_id=program.program_id, created_at=datetime.now(UTC))
    summary = BatchSummary(stream, batch, policy, version, len(rows) + len(failed_rows),
                           sum(r.status == "failed" for r in rows) + len(failed_rows), errors)
    if written is not None:
        written(summary, rows + failed_rows)
    return summary


def shards(records: Sequence[T], count: int) -> list[list[T]]:
    """Split a batch's items into up to ``count`` contiguous shards of at least
    ``MIN_SHARD_ITEMS`` items on average, the first half the size of each of the others.

    The shards run at once, each in lockstep on its own: while one shard's module calls
    compute, the others read and decode their images and advance their programs (Python
    work that holds the interpreter, and the Prefect task runs' bookkeeping), so the models
    wait less. The first shard is small so that the models start soon (its images are read
    first, the next shard's while its models compute). Answers and decisions do not depend
    on it: routing is seeded per item and call site, and every call is answered on its own.
    """
    count = max(1, min(count, len(records) // MIN_SHARD_ITEMS))
    weights = [1] + [2] * (count - 1)
    bounds = [len(records) * sum(weights[:k]) // sum(weights) for k in range(count + 1)]
    return [list(records[a:b]) for a, b in itertools.pairwise(bounds) if b > a]


@dataclass
class _Shard:
    """A shard's result rows, and the failed rows and errors of the items that never ran."""

    rows: list[ResultRow]
    failed_rows: list[ResultRow]
    errors: list[str]


@dataclass
class _Read:
    """A shard's items read and decoded, and the failed rows of those that could not be."""

    images: list[tuple[str, np.ndarray]]
    failed_rows: list[ResultRow]
    errors: list[str]


def _read_shard(store: ObjectStore, stream: str, batch: str, records: list[ManifestItem]) -> _Read:
    """Read and decode a shard's images; each item that fails becomes a failed row naming it."""
    images, failed_rows, errors = [], [], []
    for item in records:
        # Everything that touches one item (read, decode, size limits) fails that item alone:
        # its row names stream, batch, item and what was wrong.
        try:
            images.append((item.item_id, decode_image(batches.read_image(store, stream, batch, item))))
        except StoreUnavailable:
            raise  # the store's fault, not the item's: the batch fails and is run again
        except (ImageDecodeError, StorageError) as exc:
            message = f"{stream}/{batch} item {item.item_id}: {exc}"
        except Exception as exc:  # any other fault of one item is still its own
            message = f"{stream}/{batch} item {item.item_id}: {type(exc).__name__}: {exc}"
        else:
            continue
        errors.append(message)
        failed_rows.append(_failed(item.item_id, message))
    return _Read(images, failed_rows, errors)


def _run_shard(read: _Read, stream: str, batch: str, program: Program, pinned: PinnedPolicy,
               router: Router, run_round: RoundRunner, answer_type: str) -> _Shard:
    """Run one shard's decoded items through the program; an item whose features cannot be
    computed fails alone."""
    learner = pinned.learner
    inputs, failed_rows, errors = [], list(read.failed_rows), list(read.errors)
    features: list[np.ndarray | None]
    try:
        features = list(items_features(learner, [image for _, image in read.images]))
    except Exception:  # some item's image: found below, one by one, and failed alone
        features = [None] * len(read.images)
    for (item_id, image), x in zip(read.images, features, strict=True):
        try:
            inputs.append(ItemInput(item_id, image, item_features(learner, image) if x is None else x))
        except Exception as exc:  # a fault of one item is its own
            message = f"{stream}/{batch} item {item_id}: {type(exc).__name__}: {exc}"
            errors.append(message)
            failed_rows.append(_failed(item_id, message))
    outcomes = BatchExecutor(program, router, run_round, answer_type).run(inputs)
    if confirms(learner, answer_type):  # "yes" answers run again on the largest backends
        outcomes = confirm(program, pinned.arms, run_round, answer_type, inputs, outcomes)
    rows = [_row(o, i.features, stream, batch) for o, i in zip(outcomes, inputs, strict=True)]
    return _Shard(rows, failed_rows, errors)


def kept_results(settings: Settings) -> LocalStore:
    """Results computed but not yet in the object store: the same layout under ``<home>/kept``."""
    return LocalStore(settings.home / "kept")


def write_or_keep(settings: Settings, store: ObjectStore, stream: str, policy: str, batch: str,
                  rows: list[ResultRow], *, policy_version: int, program_id: str,
                  created_at: datetime) -> None:
    """Write a batch's results, trying again after ``WRITE_PAUSES_S``; keep them locally when
    every try failed.

    Raises:
        StorageError: the results are not in ``store`` (the message says where they are kept).
    """
    for pause in (*WRITE_PAUSES_S, None):
        try:
            batches.write_results(store, stream, policy, batch, rows, policy_version=policy_version,
                                  program_id=program_id, created_at=created_at)
            return
        except (StoreConfigError, RecordError):
            raise  # the same write would fail the same way
        except StorageError as exc:
            if pause is None:
                failure = exc
                break
            log.warning("%s/%s: writing results failed, trying again in %gs: %s",
                        stream, batch, pause, exc)
            time.sleep(pause)
    kept = kept_results(settings)
    where = f"{stream}/{batch}: results of {len(rows)} items not written to {store.url} ({failure})"
    try:
        batches.write_results(kept, stream, policy, batch, rows, policy_version=policy_version,
                              program_id=program_id, created_at=created_at)
    except StorageError as exc:
        raise StorageError(f"{where}; keeping them locally failed too: {exc}") from failure
    raise StorageError(f"{where}; kept in {kept.url}, the next run of the batch writes them "
                       "without recomputing") from failure


def _deliver_kept(settings: Settings, store: ObjectStore, stream: str, batch: str, policy: str,
                  written: Callable[[BatchSummary, list[ResultRow]], None] | None) -> BatchSummary | None:
    """Write results an earlier run kept locally; None when there are none to write.

    Kept results that the store already has newer results for are dropped.
    """
    kept_store = kept_results(settings)
    kept = batches.read_results(kept_store, stream, policy, batch)
    if kept is None:
        return None
    marker, rows = kept
    summary: BatchSummary | None
    if batches.read_results(store, stream, policy, batch) is None:
        write_or_keep(settings, store, stream, policy, batch, rows,
                      policy_version=marker.policy_version, program_id=marker.program_id,
                      created_at=marker.created_at)
        log.warning("%s/%s: wrote the %d results kept in %s", stream, batch, len(rows), kept_store.url)
        summary = BatchSummary(
            stream, batch, policy, marker.policy_version, len(rows),
            sum(r.status == "failed" for r in rows), [r.error for r in rows if r.error])
        if written is not None:
            written(summary, rows)
    else:
        log.warning("%s/%s: %s already has results; dropped the copy kept in %s",
                    stream, batch, store.url, kept_store.url)
        summary = None
    kept_store.delete(layout.success_key(stream, policy, batch))  # the marker first
    kept_store.delete(layout.results_key(stream, policy, batch))
    return summary


def _pinned_version(settings: Settings, stream: str, policy: str) -> PolicyVersion | None:
    """Read (never write) the latest policy version; none before the first feedback. A DuckLake
    store (``FMP_STORE_URL``) is read there, attached read-write: a read-only attach fails on a
    catalog no store has opened yet."""
    if settings.policy_store_url:
        db = PolicyStore(settings.policy_store_url, lock_timeout_s=settings.lock_timeout_s)
        return db.latest_version(stream, policy) if db.initialised() else None
    if not settings.database.exists():
        return None
    db = PolicyStore(settings.database, lock_timeout_s=settings.lock_timeout_s, read_only=True)
    return db.read_latest_version(stream, policy)


def _row(outcome: ItemOutcome, features: np.ndarray, stream: str, batch: str) -> ResultRow:
    error = None if outcome.error is None else f"{stream}/{batch} item {outcome.item_id}: {outcome.error}"
    return ResultRow(item_id=outcome.item_id, status=outcome.status, answer=outcome.answer,
                     error=error, features=[float(x) for x in features], decisions=outcome.decisions)


def _failed(item_id: str, message: str) -> ResultRow:
    return ResultRow(item_id=item_id, status="failed", answer=None, error=message, features=[],
                     decisions=[])
