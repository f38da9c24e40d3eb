"""Objects a flow run builds once per process: settings, the object store, the registry."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, TypedDict

from flows.settings import Settings, apply_settings_file
from modules.registry import Registry
from policy_store.store import PolicyStore
from storage.base import ObjectStore
from storage.url import open_store


class _Overrides(TypedDict, total=False):
    """The settings a flow's parameters may override."""

    storage_url: str
    db_path: Path


def settings_for(storage_url: str | None = None, db_path: str | None = None) -> Settings:
    """Settings from the environment and ``$FMP_HOME/settings.env`` (the environment first),
    with flow parameters taking precedence."""
    apply_settings_file()
    overrides: _Overrides = {}
    if storage_url:
        overrides["storage_url"] = storage_url
    if db_path:
        overrides["db_path"] = Path(db_path)
    return Settings(**overrides)


def limit_model_threads(threads: int) -> None:
    """Run each model call's torch ops on ``threads`` CPU threads (``FMP_MODEL_THREADS``).

    The catalog's models are small, so a call's ops are too short to share out: on a 2-core
    machine that also runs the Prefect server, torch's default (one thread per core) spent
    3-4x the CPU of one thread on the same calls and took 2-10x as long, varying run to run.
    Before torch is imported the limit goes into ``OMP_NUM_THREADS`` (every thread, the
    task runner's included, starts with it); afterwards into ``torch.set_num_threads``.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    elif torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@lru_cache(maxsize=8)
def registry_for(catalog: Path) -> Registry:
    return Registry.from_catalog(catalog)


def store_for(settings: Settings) -> ObjectStore:
    return open_store(settings.store_url)


def policy_store_at(settings: Settings) -> PolicyStore:
    """The settings' policy store, not opened yet (``store_writer`` asks it whether it takes
    concurrent writers)."""
    return PolicyStore(settings.policy_store, lock_timeout_s=settings.lock_timeout_s)


def ledger_reader(settings: Settings, lock_timeout_s: float | None = None) -> PolicyStore:
    """A read-only store on the ledger for commands that only read it (``fmp ledger``, ``fmp
    policy show``, ``fmp report``, ``fmp evaluate``): the DuckLake store when ``FMP_STORE_URL``
    names one, else the DuckDB file (a clear error when there is none yet). Read only: any
    number of readers may share the file while no writer holds it."""
    timeout = lock_timeout_s or settings.lock_timeout_s
    if settings.policy_store_url:
        return PolicyStore(settings.policy_store_url, lock_timeout_s=timeout, read_only=True)
    if not settings.database.exists():
        raise FileNotFoundError(f"no ledger at {settings.database}; run `fmp feedback STREAM` "
                                "(or `fmp demo`) first, or pass --db")
    return PolicyStore(settings.database, lock_timeout_s=timeout, read_only=True)


def policy_store_for(settings: Settings) -> PolicyStore:
    settings.database.parent.mkdir(parents=True, exist_ok=True)
    db = PolicyStore(settings.policy_store, lock_timeout_s=settings.lock_timeout_s)
    db.init()
    return db


#: Task run events the temporary server's recorder writes per transaction (Prefect's default: 1).
RECORDER_BATCH = 100


@contextmanager
def in_process_runs() -> Iterator[None]:
    """For flow runs started in the block, in this process and awaited by it: one API client
    for all of them; with ``PREFECT_API_URL``, a heartbeat every ``HEARTBEAT_S``; without it,
    no heartbeats and a temporary server that records task runs in batches.

    Heartbeats let a long-lived server mark a run whose process died Crashed
    (``flows.zombies``), so runs reported to one send them at the interval its automation
    expects. The temporary server dies with this process, and no one watches its runs, so
    there they are off: Prefect's heartbeat thread sleeps in whole seconds and every flow run
    joins it on exit, so each run (a subflow too) took up to a second longer (an empty flow
    1.1 s instead of 0.16 s). Without a client in context every run (and every API call made
    outside one, like ``tag_flow_run``'s) builds its own, TLS context included: 0.16 s became
    0.09 s. The temporary server wrote each task run event in its own SQLite transaction,
    ~25 ms of CPU per task run on the 2 cores the models use; in batches of
    ``RECORDER_BATCH`` (or every 5 s, and when it stops) it spends a third of that.
    """
    from prefect.context import SyncClientContext
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from flows.zombies import HEARTBEAT_S

    heartbeat = HEARTBEAT_S if PREFECT_API_URL.value() else None
    updates: dict[Any, Any] = {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: heartbeat}
    if "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE" not in os.environ:
        # passed on to the temporary server this process starts (if it starts one)
        updates["server.services.task_run_recorder.batch_size"] = RECORDER_BATCH
    if heartbeat is None:
        # The temporary server keeps no event feed and runs no automations: no UI reads its
        # events, it dies with this process, and storing and matching every task run's events
        # took over half its CPU (1.7 s -> 0.75 s per 256-item batch run), on the models' cores.
        # Runs, task runs and their states are recorded as before (the task run recorder).
        for service in ("event_persister", "triggers"):
            if f"PREFECT_SERVER_SERVICES_{service.upper()}_ENABLED" not in os.environ:
                updates[f"server.services.{service}.enabled"] = False
    with temporary_settings(updates=updates), SyncClientContext.get_or_create():
        yield


@contextmanager
def held_policy_store(settings: Settings) -> Iterator[PolicyStore]:
    """The policy store with its schema, on one connection held for the block (one unit of
    work, like a feedback run's ingest; see ``PolicyStore.connection``)."""
    settings.database.parent.mkdir(parents=True, exist_ok=True)
    db = PolicyStore(settings.policy_store, lock_timeout_s=settings.lock_timeout_s)
    with db.connection():
        db.init()
        yield db


def quiet_teardown() -> None:
    """Silence stderr for interpreter shutdown only (the work is done and printed).

    At exit, duckdb's bindings report objects still referenced by Prefect's threads as
    "leaked", and the ephemeral Prefect server logs cancelled tasks; neither is an error.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
