"""One writer for the policy store: a lock file next to the DuckDB file, and the one slot of a
Prefect global concurrency limit.

DuckDB lets one process at a time hold its file. The store already retries while the
lock is taken, but two feedback runs racing would still interleave "what is pending?"
and "learn from it" decisions. Every run that writes takes, in this order:

1. an exclusive ``flock`` on ``<database>.writer.lock``. The kernel drops it the moment its
   process dies (``kill -9`` included), so a dead writer never blocks the next one. While it
   waits, a writer logs once which process holds it.
2. the slot of ``fmp-store-writer`` (visible in the UI under Concurrency), on a lease of
   ``LEASE_S``. A writer that holds the lock file knows that no live writer of its file holds
   the slot (holders take the file first and give the slot back first), so a slot still taken
   after ``SLOT_WAIT_S`` was left by a writer that died inside the block: it is reclaimed
   (``active_slots`` set to 0, one warning line) instead of waiting for a lease that may never
   expire (a temporary server keeps its leases in memory, so after a restart nothing frees the
   slot; a standalone server frees it only after the lease, 60 s at the least).
"""

from __future__ import annotations

import contextvars
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

if TYPE_CHECKING:
    from policy_store.store import PolicyStore

WRITER_LIMIT = "fmp-store-writer"
#: Lease of the slot, renewed while it is held (the server's minimum is 60 s).
LEASE_S = 60.0
#: The lease is renewed each time this share of it has passed (Prefect's own renewal: 0.75).
RENEW_AT = 0.75
#: How long a writer that holds the lock file waits for a taken slot before reclaiming it.
SLOT_WAIT_S = 3.0
#: How often a waiting writer tries the lock file again.
POLL_S = 0.2


def lock_path(database: Path) -> Path:
    """The lock file of the writers of ``database``."""
    return database.with_name(database.name + ".writer.lock")


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("fmp.locks")


def _holder(fd: int) -> str:
    """What the lock file says about its holder ("pid N"), for messages."""
    text = os.pread(fd, 64, 0).decode(errors="replace").strip()
    return f"pid {text}" if text.isdigit() else "another process"


@contextmanager
def file_lock(path: Path, timeout_s: float | None = None, what: str = "the store writer lock",
              on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the block.

    The lock belongs to this process: the kernel releases it when the process exits or is
    killed. The holder's pid is written into the file for the messages of those waiting.

    Args:
        path: the lock file.
        timeout_s: how long to wait for another holder; ``None`` waits as long as it takes.
        what: how the messages name the lock.
        on_wait: called once with the "waiting for ..." line when another process holds the
            lock; by default the line is logged (the run's logger inside a flow run).

    Raises:
        TimeoutError: another process held it for ``timeout_s`` seconds (the message names
            the file and the holder's pid).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"{path}: {what} is held by {_holder(fd)} "
                                       f"(waited {timeout_s:g}s)") from None
                if not waited:
                    line = f"waiting for {what} {path}, held by {_holder(fd)}"
                    if on_wait is None:
                        _logger().info("%s", line)
                    else:
                        on_wait(line)
                    waited = True
                time.sleep(POLL_S)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def held_slot(name: str, wait_s: float) -> Iterator[None]:
    """Hold one slot of the limit ``name`` (which must exist) for the block, on a lease of
    ``LEASE_S`` renewed every ``RENEW_AT`` of it while the block runs.

    Prefect's ``concurrency()`` takes the slot the same way (the same request, its waiting and
    errors), then renews the lease at once from a thread with an API client of its own and
    gives the slot back through another new client, which a feedback run waited for. Here the
    first renewal comes after 45 s, so a block shorter than that makes no renewal request,
    and the slot is given back through the run's own client (``get_client`` inside a flow run
    returns the engine's). The acquired and released events are emitted, and the lease is
    recorded for the run's clean-up until it is given back, as Prefect does.
    A failed renewal logs a warning and the block goes on: the lock file keeps other writers
    of the file out (see the module's docstring).

    Raises:
        AcquireConcurrencySlotTimeoutError: the slot stayed taken for ``wait_s`` seconds.
        ConcurrencySlotAcquisitionError: the limit is missing, or the server refused.
    """
    from prefect.client.orchestration import get_client
    from prefect.concurrency._asyncio import _discard_cleanup_lease
    from prefect.concurrency._events import (
        emit_concurrency_acquisition_events,
        emit_concurrency_release_events,
    )
    from prefect.concurrency._sync import acquire_concurrency_slots_with_lease

    lease = acquire_concurrency_slots_with_lease([name], 1, timeout_seconds=wait_s,
                                                 lease_duration=LEASE_S, strict=True)
    events = emit_concurrency_acquisition_events(lease.limits, 1)
    stop = threading.Event()
    renewer = threading.Thread(target=contextvars.copy_context().run,
                               args=(_renew, name, lease.lease_id, stop), name=f"{name}-lease-renewal",
                               daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join(timeout=2)
        with get_client(sync_client=True) as client:
            client.release_concurrency_slots_with_lease(lease_id=lease.lease_id)
        _discard_cleanup_lease(lease.lease_id)  # given back: the run's context need not release it
        emit_concurrency_release_events(lease.limits, 1, events)


def _renew(name: str, lease_id: UUID, stop: threading.Event) -> None:
    from prefect.client.orchestration import get_client

    while not stop.wait(LEASE_S * RENEW_AT):
        try:
            with get_client(sync_client=True) as client:
                client.renew_concurrency_lease(lease_id=lease_id, lease_duration=LEASE_S)
        except Exception as exc:  # the next try comes after another RENEW_AT of the lease
            _logger().warning("could not renew the lease of the %s slot (%s: %s); the writer lock "
                              "file still keeps other writers of this store out", name,
                              type(exc).__name__, exc)


def _take_slot(held: ExitStack, name: str, wait_s: float, limit: int = 1) -> None:
    """Take a slot of the limit ``name`` for as long as ``held`` is open: created with
    ``limit`` slots when missing; a slot still taken after ``wait_s`` is reclaimed (its
    ``active_slots`` set to 0, one warning line) and the slot taken again.

    An existing limit is left as it is, so an operator may raise or disable it in the UI (a
    disabled one is passed at once). Called only while holding the lock file, when no live
    writer of the file holds a slot. When the slot is free this is one request, the one that
    takes it; the limit is read only when it is missing or taken.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
    from prefect.concurrency.asyncio import (
        AcquireConcurrencySlotTimeoutError,
        ConcurrencySlotAcquisitionError,
    )
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    created = reclaimed = False
    while True:
        try:
            held.enter_context(held_slot(name, wait_s))
            return
        except AcquireConcurrencySlotTimeoutError:
            if reclaimed:
                raise
            reclaimed = True
            with get_client(sync_client=True) as client:
                taken = client.read_global_concurrency_limit_by_name(name).active_slots
                client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(active_slots=0))
            _logger().warning("reclaimed %d %s slot(s) left by a writer that died inside its block "
                              "(no live process held the writer lock)", taken, name)
        except ConcurrencySlotAcquisitionError:
            with get_client(sync_client=True) as client:
                try:
                    client.read_global_concurrency_limit_by_name(name)
                except ObjectNotFound:
                    if created:
                        raise
                    created = True
                    try:
                        client.create_global_concurrency_limit(
                            GlobalConcurrencyLimitCreate(name=name, limit=limit))
                    except ObjectAlreadyExists:
                        pass  # another run created it a moment ago
                    continue
            raise  # the limit exists: the server refused for another reason


@contextmanager
def store_writer(timeout_s: float | None = None, database: Path | None = None,
                 store: PolicyStore | None = None) -> Iterator[None]:
    """Be the one writer of the policy store for the duration of the block.

    Args:
        timeout_s: how long to wait for a live writer to finish; ``None`` waits as long as it
            takes. A writer that died is never waited for (see the module's docstring).
        database: the DuckDB file written; default the settings' (``FMP_HOME``/``FMP_DB_PATH``).
        store: the store written. One that takes concurrent writers
            (``PolicyStore.concurrent_writers``: a DuckLake store, whose writes are transactions
            retried on conflict, each key written once by the store itself) needs no writer:
            the block runs at once, neither lock file nor slot taken.

    Raises:
        TimeoutError: another live writer held the store for ``timeout_s`` seconds.
    """
    if store is not None and store.concurrent_writers:
        _logger().debug("no store writer lock: %s takes concurrent writers", store.url)
        yield
        return
    if database is None:
        from flows._runtime import settings_for

        database = settings_for().database
    with file_lock(lock_path(database), timeout_s), ExitStack() as held:
        _take_slot(held, WRITER_LIMIT, SLOT_WAIT_S)
        yield
