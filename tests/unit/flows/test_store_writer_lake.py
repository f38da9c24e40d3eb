"""A store that takes concurrent writers (DuckLake) is written without the writer lock."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from flows.locks import file_lock, lock_path, store_writer
from policy_store import PolicyStore, PolicyStoreError
from policy_store.lake import extension_path


def test_a_ducklake_store_needs_no_writer_lock_and_a_duckdb_file_does(tmp_path: Path) -> None:
    try:
        extension_path("ducklake")
    except PolicyStoreError as exc:
        pytest.skip(f"DuckLake store: {exc}")
    lake = PolicyStore(f"ducklake:sqlite:{tmp_path / 'catalog.sqlite'}")
    file = PolicyStore(tmp_path / "fmp.duckdb")
    assert (lake.concurrent_writers, file.concurrent_writers) == (True, False)
    database = tmp_path / "fmp.duckdb"
    # Another process's writer holds the lock file: the DuckLake writer does not wait for it.
    with file_lock(lock_path(database)):
        started = time.monotonic()
        with store_writer(timeout_s=0.5, database=database, store=lake):
            lake.init()
            lake.save_version("s1", "p", "thompson", "{}", b"v1", None)
        assert time.monotonic() - started < 30
    assert lake.latest_version("s1", "p") is not None
