"""PolicyStore: programs, backends, policy versions and the cost ledger in DuckDB.

DuckDB locks the whole file per process, so the store never keeps a connection: every
method opens one short transaction (NullPool) and retries with exponential backoff
while another process holds the lock, up to ``lock_timeout_s``; inside
``with store.connection():`` the methods share one connection (one unit of work). Readers that must not
wait can query a ``snapshot()`` copy instead. A SQLAlchemy URL (e.g. Postgres) works too.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from modules.program import program_id_of
from policy_store import schema
from policy_store.bulk import bulk_insert
from policy_store.errors import IngestError, PolicyStoreError, QueryError, StoreLockedError
from policy_store.ingest import build_rows
from policy_store.records import BackendCost, CallSiteInfo, IngestBatch, IngestSummary
from policy_store.versions import VersionsMixin, utcnow

T = TypeVar("T")
_LOCK_MARKERS = ("could not set lock", "conflicting lock")


@dataclass(frozen=True)
class SynthesizedProgram:
    """A program written from task text, with what wrote it; ``revision`` counts from 1."""

    task_hash: str
    task_text: str
    answer_type: str
    synthesizer: str
    model: str
    version: str
    source: str
    attempts: int
    program_id: str = ""
    revision: int = 0
    created_at: datetime | None = None


class PolicyStore(VersionsMixin):
    """The policy database. ``path``: a DuckDB file path, or any SQLAlchemy URL."""

    def __init__(
        self, path: Path | str, *, lock_timeout_s: float = 30.0, read_only: bool = False
    ) -> None:
        self.lock_timeout_s = lock_timeout_s
        connect_args: dict[str, Any] = {}
        if isinstance(path, str) and "://" in path:
            self.path: Path | None = None
            self.url = path
        else:
            self.path = Path(path).expanduser().absolute()
            if not read_only:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self.url = f"duckdb:///{self.path}"
            # files stay readable by the duckdb 1.5 shell (the newest CLI on PyPI)
            config = {"storage_compatibility_version": "v1.5.0"}
            connect_args = {"read_only": True, "config": config} if read_only else {"config": config}
        self.engine = sa.create_engine(self.url, poolclass=NullPool, connect_args=connect_args)
        self._held: Connection | None = None

    @contextmanager
    def connection(self) -> Iterator[None]:
        """Run every method called in the block on one connection, opened here.

        Each method still commits its own transaction. Opening a DuckDB connection and
        closing it (a checkpoint) cost ~25 ms, and a feedback run used to open ten. This
        process holds the file's lock for the whole block, so make it one unit of work.
        Not for sharing between threads; a nested block uses the outer one's connection.
        """
        if self._held is not None:
            yield
            return
        conn = self._retry(self.engine.connect)
        self._held = conn
        try:
            yield
        finally:
            self._held = None
            conn.close()

    def _run(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` in one transaction, retrying while another process holds the file lock."""
        held = self._held
        if held is not None:
            with held.begin():
                return fn(held)

        def once() -> T:
            with self.engine.begin() as conn:
                return fn(conn)

        return self._retry(once)

    def _retry(self, attempt: Callable[[], T]) -> T:
        """``attempt()``, retried with backoff while another process holds the file lock."""
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.02
        while True:
            try:
                return attempt()
            except DBAPIError as exc:
                if not any(m in str(exc).lower() for m in _LOCK_MARKERS):
                    raise
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StoreLockedError(
                        f"{self.path}: another process holds the DuckDB lock on this file "
                        f"(waited {self.lock_timeout_s:g}s); wait for the feedback flow to "
                        "finish, raise lock_timeout_s, or read a snapshot (PolicyStore.snapshot)."
                        f" DuckDB said: {exc.orig}"
                    ) from exc
                time.sleep(min(delay, left))
                delay = min(delay * 2, 1.0)

    def initialised(self) -> bool:
        """True when the schema exists (``init()`` has run on this database)."""
        return self._run(lambda conn: sa.inspect(conn).has_table(schema.policy_versions.name))

    def init(self) -> None:
        """Create tables and (re)create views; safe to call any number of times."""

        def create(conn: Connection) -> None:
            schema.metadata.create_all(conn, checkfirst=True)
            for name in reversed(schema.VIEWS):
                conn.exec_driver_sql(f"DROP VIEW IF EXISTS {name}")
            for name, sql in schema.VIEWS.items():
                conn.exec_driver_sql(f"CREATE VIEW {name} AS {sql}")

        self._run(create)

    def register_program(self, query_id: str, source: str, call_sites: list[CallSiteInfo]) -> str:
        """Record a program and its call sites once; returns its program_id."""
        program_id = program_id_of(source)
        names = [c.call_site for c in call_sites]
        if len(set(names)) != len(names):
            raise IngestError(f"program {program_id} ({query_id}): duplicate call site ids {names}")

        def register(conn: Connection) -> str:
            t = schema.programs
            if conn.execute(sa.select(t.c.program_id).where(t.c.program_id == program_id)).first():
                return program_id
            conn.execute(sa.insert(t), [{"program_id": program_id, "query_id": query_id,
                                         "source": source, "created_at": utcnow()}])
            if call_sites:
                conn.execute(sa.insert(schema.call_sites), [
                    {"program_id": program_id, "call_site": c.call_site, "function": c.function,
                     "line": c.line, "col": c.col} for c in call_sites])
            return program_id

        return self._run(register)

    def call_sites(self, program_id: str) -> list[CallSiteInfo]:
        """A registered program's call sites, ordered by source position."""
        t = schema.call_sites
        stmt = sa.select(t).where(t.c.program_id == program_id).order_by(t.c.line, t.c.col)
        rows = self._run(lambda conn: conn.execute(stmt).all())
        return [CallSiteInfo(r.call_site, r.function, r.line, r.col) for r in rows]

    def save_synthesized(self, record: SynthesizedProgram,
                         call_sites: list[CallSiteInfo]) -> SynthesizedProgram:
        """Store a synthesized program as the task's next revision; registers the program too."""
        program_id = self.register_program(f"synth-{record.task_hash[:12]}", record.source, call_sites)
        t = schema.synthesized_programs

        def save(conn: Connection) -> SynthesizedProgram:
            last = conn.execute(sa.select(sa.func.max(t.c.revision))
                                .where(t.c.task_hash == record.task_hash)).scalar()
            saved = replace(record, program_id=program_id, revision=(last or 0) + 1, created_at=utcnow())
            conn.execute(sa.insert(t), [asdict(saved)])
            return saved

        return self._run(save)

    def lookup_synthesized(self, task_hash: str, synthesizer: str | None = None,
                           model: str | None = None) -> SynthesizedProgram | None:
        """The latest revision for a task (optionally from one synthesizer and model), or None."""
        t = schema.synthesized_programs
        stmt = sa.select(t).where(t.c.task_hash == task_hash)
        if synthesizer is not None:
            stmt = stmt.where(t.c.synthesizer == synthesizer)
        if model is not None:
            stmt = stmt.where(t.c.model == model)
        row = self._run(lambda conn: conn.execute(stmt.order_by(t.c.revision.desc()).limit(1)).first())
        return None if row is None else SynthesizedProgram(**row._asdict())

    def register_backends(self, costs: list[BackendCost]) -> None:
        """Insert or replace backends' cost profiles."""
        t = schema.backends
        now = utcnow()
        rows = [{"name": c.name, "kind": c.kind, "functions": ",".join(c.functions),
                 "flops": float(c.flops), "params": float(c.params), "wall_ms": float(c.wall_ms),
                 "price": float(c.price), "updated_at": now} for c in costs]

        def upsert(conn: Connection) -> None:
            conn.execute(sa.delete(t).where(t.c.name.in_([r["name"] for r in rows])))
            conn.execute(sa.insert(t), rows)

        if rows:
            self._run(upsert)

    def backends(self) -> list[BackendCost]:
        """All registered backends by name."""
        t = schema.backends
        rows = self._run(lambda conn: conn.execute(sa.select(t).order_by(t.c.name)).all())
        return [BackendCost(r.name, r.kind, tuple(f for f in r.functions.split(",") if f),
                            r.flops, r.params, r.wall_ms, r.price) for r in rows]

    def ingest_batch(self, batch: IngestBatch) -> IngestSummary:
        """Replace (stream, policy, batch)'s results/decisions and (stream, batch)'s labels."""
        built = build_rows(batch, utcnow())

        def replace(conn: Connection) -> None:
            for t in (schema.results, schema.decisions):
                conn.execute(sa.delete(t).where(
                    t.c.stream == batch.stream, t.c.policy == batch.policy,
                    t.c.batch == batch.batch))
            for t in (schema.labels, schema.label_errors):
                conn.execute(sa.delete(t).where(t.c.stream == batch.stream,
                                                t.c.batch == batch.batch))
            bulk_insert(conn, schema.results, built.results)
            bulk_insert(conn, schema.decisions, built.decisions)
            bulk_insert(conn, schema.labels, built.labels)
            bulk_insert(conn, schema.label_errors, built.label_errors)

        self._run(replace)
        return built.summary

    def query(
        self, sql: str, params: dict[str, Any] | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run a user's SQL; returns (column names, rows). ``:name`` binds come from params."""

        def run(conn: Connection) -> tuple[list[str], list[tuple[Any, ...]]]:
            result = conn.execute(sa.text(sql), params) if params else conn.exec_driver_sql(sql)
            if not result.returns_rows:
                return [], []
            return list(result.keys()), [tuple(r) for r in result.all()]

        try:
            return self._run(run)
        except DBAPIError as exc:
            raise QueryError(f"query failed: {exc.orig}\nSQL: {sql[:500]}") from exc

    def snapshot(self, dest: Path | str) -> Path:
        """Copy the database to ``dest`` (checkpointed, under the lock) and return its path."""
        source = self.path
        if source is None:
            raise PolicyStoreError(
                f"snapshot copies a DuckDB file; {self.url} is not one (use pg_dump)"
            )
        dest = Path(dest).expanduser().absolute()
        if dest == source:
            raise PolicyStoreError(f"snapshot destination {dest} is the database itself")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")

        def copy(conn: Connection) -> None:
            # CHECKPOINT folds the WAL into the file; holding the connection keeps writers out.
            conn.exec_driver_sql("CHECKPOINT")
            shutil.copyfile(source, tmp)

        try:
            self._run(copy)
            # An old WAL next to dest would be replayed onto the new copy.
            dest.with_name(dest.name + ".wal").unlink(missing_ok=True)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest
