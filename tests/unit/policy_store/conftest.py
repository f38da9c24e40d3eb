"""Shared fixtures of the policy-store tests."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """The paper learner runs torch; one thread keeps it fast on a shared 2-core box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------------
# Store backends: the store tests run on a DuckDB file and on DuckLake (SQLite catalog; and a
# Postgres catalog where Postgres' binaries are installed).
# ---------------------------------------------------------------------------

BACKENDS = ("duckdb", "ducklake-sqlite", "ducklake-postgres")
_PG_BIN = Path(shutil.which("pg_ctl") or "/usr/local/bin/pg_ctl").parent


def lake_missing() -> str | None:
    """Why a DuckLake store cannot open here (its extension packages missing), or None."""
    from policy_store import PolicyStoreError
    from policy_store.lake import extension_path

    try:
        for name in ("ducklake", "sqlite_scanner", "postgres_scanner"):
            extension_path(name)
    except PolicyStoreError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class PgCluster:
    """A throwaway Postgres cluster listening on a Unix socket in ``root``."""

    root: Path
    port: int

    def conninfo(self, db: str) -> str:
        return f"dbname={db} host={self.root} port={self.port} user=fmp"

    def create_database(self, name: str) -> None:
        import asyncpg  # type: ignore[import-untyped]  # Prefect's dependency, untyped

        async def create() -> None:
            conn = await asyncpg.connect(host=str(self.root), port=self.port, user="fmp",
                                         database="postgres")
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()

        asyncio.run(create())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster | str]:
    """A Postgres cluster for the session (initdb + pg_ctl, as ``nobody`` when run as root, on
    a Unix socket only), or why there is none."""
    if not (_PG_BIN / "pg_ctl").exists() or not (_PG_BIN / "initdb").exists():
        yield "no Postgres binaries (pg_ctl, initdb) on PATH or in /usr/local/bin"
        return
    root = Path(tempfile.mkdtemp(prefix="fmp-pg-"))
    as_user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
    if as_user:
        os.chown(root, pwd.getpwnam("nobody").pw_uid, -1)
    data, port = root / "data", _free_port()
    try:
        subprocess.run([*as_user, str(_PG_BIN / "initdb"), "-D", str(data), "-A", "trust",
                        "-U", "fmp"], check=True, capture_output=True, timeout=120)
        subprocess.run([*as_user, str(_PG_BIN / "pg_ctl"), "-D", str(data), "-l",
                        str(root / "log"), "-w", "-o",
                        f"-p {port} -k {root} -c listen_addresses='' -c fsync=off",
                        "start"], check=True, capture_output=True, timeout=120)
    except (subprocess.SubprocessError, OSError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        yield f"could not start Postgres with {_PG_BIN}/pg_ctl: {exc}"
        return
    try:
        yield PgCluster(root, port)
    finally:
        subprocess.run([*as_user, str(_PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a fresh policy store lives, per backend: a DuckDB file path, or a DuckLake URL."""
    backend = str(request.param)
    if backend == "duckdb":
        return str(tmp_path / "db" / "policy.duckdb")
    missing = lake_missing()
    if missing:
        pytest.skip(f"DuckLake store: {missing}")
    if backend == "ducklake-sqlite":
        return str(request.getfixturevalue("lake_url"))
    cluster = request.getfixturevalue("pg_cluster")
    if isinstance(cluster, str):
        pytest.skip(f"DuckLake on Postgres: {cluster}")
    name = f"t_{uuid.uuid4().hex[:12]}"
    cluster.create_database(name)
    return f"ducklake:postgres:{cluster.conninfo(name)}?data_path={tmp_path / 'lake-data'}"


@pytest.fixture
def lake_url(tmp_path: Path) -> str:
    """A fresh DuckLake store's URL (SQLite catalog in ``tmp_path``); skips, saying why, where
    the DuckLake extension packages are missing."""
    missing = lake_missing()
    if missing:
        pytest.skip(f"DuckLake store: {missing}")
    return f"ducklake:sqlite:{tmp_path / 'lake' / 'catalog.sqlite'}"
