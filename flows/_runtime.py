"""Objects a flow run builds once per process: settings, the object store, the registry."""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path

from flows.settings import Settings
from modules.registry import Registry
from policy_store.store import PolicyStore
from storage.base import ObjectStore
from storage.url import open_store


def settings_for(storage_url: str | None = None, db_path: str | None = None) -> Settings:
    """Settings from the environment, with flow parameters taking precedence."""
    overrides = {}
    if storage_url:
        overrides["storage_url"] = storage_url
    if db_path:
        overrides["db_path"] = Path(db_path)
    return Settings(**overrides)


@lru_cache(maxsize=8)
def registry_for(catalog: Path) -> Registry:
    return Registry.from_catalog(catalog)


def store_for(settings: Settings) -> ObjectStore:
    return open_store(settings.store_url)


def policy_store_for(settings: Settings) -> PolicyStore:
    settings.database.parent.mkdir(parents=True, exist_ok=True)
    db = PolicyStore(settings.database, lock_timeout_s=settings.lock_timeout_s)
    db.init()
    return db


def quiet_teardown() -> None:
    """Silence stderr for interpreter shutdown only (the work is done and printed).

    At exit, duckdb's bindings report objects still referenced by Prefect's threads as
    "leaked", and the ephemeral Prefect server logs cancelled tasks; neither is an error.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
