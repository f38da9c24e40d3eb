"""PolicyStore: programs, backends, policy versions and the cost ledger in DuckDB.

DuckDB locks the whole file per process, so the store never keeps a connection: every
method opens one short transaction (NullPool) and retries with exponential backoff
while another process holds the lock, up to ``lock_timeout_s``; inside
``with store.connection():`` the methods share one connection (one unit of work). Readers that must not
wait can query a ``snapshot()`` copy instead. A SQLAlchemy URL (e.g. Postgres) works too.
A DuckLake URL (``ducklake:…``, ``policy_store/lake.py``) runs the same methods with many
writers at once: each write a transaction retried on conflict, each key claimed.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal, TypeVar

import duckdb
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool, QueuePool

from modules.program import program_id_of
from policy_store import lake, schema
from policy_store.bulk import bulk_insert
from policy_store.errors import (
    IngestError,
    PolicyStoreError,
    QueryError,
    StoreConflictError,
    StoreLockedError,
)
from policy_store.ingest import IngestRows, build_rows
from policy_store.migrations import label_hash, migrate
from policy_store.records import (
    AUDIT_SUFFIX,
    BackendCost,
    CallSiteInfo,
    IngestBatch,
    IngestSummary,
    PolicyVersion,
)
from policy_store.versions import VersionsMixin, utcnow, version_from_row

T = TypeVar("T")
_LOCK_MARKERS = ("could not set lock", "conflicting lock")
_VERSION_COLUMNS = [c.name for c in schema.policy_versions.columns]
#: The latest version of (stream, policy): ``PolicyStore.read_latest_version``.
_LATEST_SQL = (f"SELECT {', '.join(_VERSION_COLUMNS)} FROM {schema.policy_versions.name} "
               "WHERE stream = ? AND policy = ? ORDER BY version DESC LIMIT 1")
#: A DuckLake write that lost to other writers is tried this many times in all, the waits
#: between tries drawn at random up to a cap that doubles from ``_CONFLICT_WAIT_S``.
CONFLICT_ATTEMPTS = 30
_CONFLICT_WAIT_S = (0.01, 0.5)


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
    """The policy database. ``path``: a DuckDB file path, a DuckLake URL (``ducklake:…``, see
    ``policy_store.lake``), or any SQLAlchemy URL."""

    def __init__(
        self, path: Path | str, *, lock_timeout_s: float = 30.0, read_only: bool = False
    ) -> None:
        self.lock_timeout_s = lock_timeout_s
        self.lake: lake.LakeTarget | None = None
        #: DuckLake writes retried because another writer's commit came first (this process).
        self.conflicts_retried = 0
        self.path: Path | None = None
        self._held: Connection | None = None
        connect_args: dict[str, Any] = {}
        if isinstance(path, str) and path.startswith(lake.PREFIX):
            self.lake = lake.LakeTarget.parse(path, read_only=read_only)
            self.lake.prepare()
            self.url = self.lake.url
            # Connections are kept (no file lock to give back); each attaches the lake once.
            self.engine = sa.create_engine(
                "duckdb:///:memory:", poolclass=QueuePool, pool_size=2, max_overflow=8,
                connect_args={"config": dict(lake.CONFIG)})
            sa.event.listen(self.engine, "connect", lake.on_connect(self.lake))
            return
        if isinstance(path, str) and "://" in path:
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

    @property
    def concurrent_writers(self) -> bool:
        """Whether many processes may write at once, each write a transaction retried on
        conflict and keys held by the store itself (a DuckLake store). A DuckDB file takes one
        writer at a time: writers that decide from what they read queue (``flows.locks``)."""
        return self.lake is not None

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
        """Run ``fn`` in one transaction, retrying while another process holds the file lock
        (a DuckLake store: from the start while its commit loses to another writer's)."""
        held = self._held

        def once() -> T:
            if held is not None:
                with held.begin():
                    return fn(held)
            with self.engine.begin() as conn:
                return fn(conn)

        if self.lake is not None:
            return self._retry_conflicts(once)
        if held is not None:
            return once()
        return self._retry(once)

    def _retry_conflicts(self, attempt: Callable[[], T]) -> T:
        """``attempt()`` again, after a random wait, each time its commit conflicted with
        another writer's; ``StoreConflictError`` after ``CONFLICT_ATTEMPTS`` tries."""
        first, cap = _CONFLICT_WAIT_S
        for tries in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                return attempt()
            except (DBAPIError, duckdb.Error) as exc:
                if not lake.is_conflict(exc):
                    raise
                if tries == CONFLICT_ATTEMPTS:
                    assert self.lake is not None
                    raise StoreConflictError(
                        f"{self.lake.describe()}: this write conflicted with other writers' "
                        f"commits {tries} times in a row (random waits of up to {cap:g} s "
                        "between tries), so nothing of it was written; run it again. "
                        f"Last error: {getattr(exc, 'orig', exc)}") from exc
                self.conflicts_retried += 1
                time.sleep(random.uniform(0, min(cap, first * 2 ** tries)))
        raise AssertionError("unreachable")

    def _retry(self, attempt: Callable[[], T]) -> T:
        """``attempt()``, retried with backoff while another process holds the file lock."""
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.02
        while True:
            try:
                return attempt()
            except (DBAPIError, duckdb.IOException) as exc:
                if not any(m in str(exc).lower() for m in _LOCK_MARKERS):
                    raise
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StoreLockedError(
                        f"{self.path}: another process holds the DuckDB lock on this file "
                        f"(waited {self.lock_timeout_s:g}s); wait for the feedback flow to "
                        "finish, raise lock_timeout_s, or read a snapshot (PolicyStore.snapshot)."
                        f" DuckDB said: {getattr(exc, 'orig', exc)}"
                    ) from exc
                time.sleep(min(delay, left))
                delay = min(delay * 2, 1.0)

    def read_latest_version(self, stream: str, policy: str) -> PolicyVersion | None:
        """``latest_version`` of a DuckDB file store opened read-only, on one plain DuckDB
        connection: None when the file has no schema yet or no version of (stream, policy).

        What a batch run reads before its first routing decision. Through SQLAlchemy the same
        read is some thirty calls into DuckDB, each of which gives up the interpreter and
        waits to get it back while the run's other threads decode images and submit task
        runs; this is four.
        """
        if self.path is None:
            raise TypeError(f"{self.url}: read_latest_version reads a DuckDB file store")
        path = self.path

        def read() -> tuple[Any, ...] | None:
            with duckdb.connect(str(path), read_only=True) as conn:
                try:
                    return conn.execute(_LATEST_SQL, [stream, policy]).fetchone()
                except duckdb.CatalogException:  # no policy_versions table: not initialised
                    return None

        row = self._retry(read)
        return None if row is None else version_from_row(
            SimpleNamespace(**dict(zip(_VERSION_COLUMNS, row, strict=True))))

    def initialised(self) -> bool:
        """True when the schema exists (``init()`` has run on this database)."""
        return self._run(lambda conn: sa.inspect(conn).has_table(schema.policy_versions.name))

    def init(self) -> None:
        """Create tables, migrate an older file (``migrations.py``) and (re)create views;
        safe to call any number of times."""

        def create(conn: Connection) -> None:
            had_tables = sa.inspect(conn).has_table(schema.policy_versions.name)
            if self.lake is not None:
                lake.lake_tables(schema.metadata).create_all(conn, checkfirst=True)
                lake.create_claims(conn)
                migrate(conn, had_tables)
                # Only views whose SQL changed: every DDL statement is a snapshot that
                # conflicts with other writers' DDL, and every worker calls init.
                have = lake.view_definitions(conn)
                for name, sql in schema.VIEWS.items():
                    if have.get(name) != lake.view_sql(conn, name, sql):
                        conn.exec_driver_sql(f"CREATE OR REPLACE VIEW {name} AS {sql}")
                return
            schema.metadata.create_all(conn, checkfirst=True)
            migrate(conn, had_tables)
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
            lake.claim(conn, "program", program_id)
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
            lake.claim(conn, "synthesized", record.task_hash)
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
            for c in costs:
                lake.claim(conn, "backend", c.name)
            conn.execute(sa.delete(t).where(t.c.name.in_([r["name"] for r in rows])))
            bulk_insert(conn, t, rows)  # DuckDB's executemany binds a row at a time

        if rows:
            self._run(upsert)

    def backends(self) -> list[BackendCost]:
        """All registered backends by name."""
        t = schema.backends
        rows = self._run(lambda conn: conn.execute(sa.select(t).order_by(t.c.name)).all())
        return [BackendCost(r.name, r.kind, tuple(f for f in r.functions.split(",") if f),
                            r.flops, r.params, r.wall_ms, r.price) for r in rows]

    def ingest_batch(self, batch: IngestBatch) -> IngestSummary:
        """Bring the ledger rows of (stream, policy, batch) in line with ``batch``, in one
        transaction.

        Results and decisions are rewritten only when they differ from the rows already there
        (a rerun batch: ``replaced``; the same results: ``unchanged``, rows and ingested_at
        kept). (stream, batch)'s labels and label_errors are replaced by the batch's; a label
        whose text differs from its item's latest label version adds the next version (see
        ``schema.label_versions``). The files' hashes go to ``feedback_state``.
        """
        built = build_rows(batch, utcnow())

        def ingest(conn: Connection) -> IngestSummary:
            # exactly once per (stream, policy, batch) and per (stream, batch) for its labels
            lake.claim(conn, "ledger", batch.stream, batch.policy, batch.batch)
            lake.claim(conn, "labels", batch.stream, batch.batch)
            before = _ledger_rows(conn, batch.stream, batch.policy, batch.batch)
            results: Literal["new", "unchanged", "replaced"] = "new"
            replaced_rows = None
            if before == _built_rows(built):
                results = "unchanged"
            else:
                if before[0]:
                    results, replaced_rows = "replaced", (len(before[0]), len(before[1]))
                for t in (schema.results, schema.decisions):
                    conn.execute(sa.delete(t).where(
                        t.c.stream == batch.stream, t.c.policy == batch.policy,
                        t.c.batch == batch.batch, *_not_audit(t)))
                bulk_insert(conn, schema.results, built.results)
                bulk_insert(conn, schema.decisions, built.decisions)
            for t in (schema.labels, schema.label_errors):
                conn.execute(sa.delete(t).where(t.c.stream == batch.stream,
                                                t.c.batch == batch.batch))
            bulk_insert(conn, schema.labels, built.labels)
            bulk_insert(conn, schema.label_errors, built.label_errors)
            new, corrected = _add_label_versions(conn, batch.stream, batch.batch, built.labels)
            st = schema.feedback_state
            conn.execute(sa.delete(st).where(st.c.stream == batch.stream,
                                             st.c.policy == batch.policy, st.c.batch == batch.batch))
            conn.execute(sa.insert(st), [{
                "stream": batch.stream, "policy": batch.policy, "batch": batch.batch,
                "results_sha256": batch.results_sha256, "labels_sha256": batch.labels_sha256,
                "ingested_at": utcnow()}])
            return replace(built.summary, new_labels=new, corrected=corrected, results=results,
                           replaced_rows=replaced_rows)

        return self._run(ingest)

    def feedback_state(self, stream: str, policy: str) -> dict[str, tuple[str, str]]:
        """batch -> (results sha256, labels sha256) of what (stream, policy)'s ledger rows were
        last built from."""
        st = schema.feedback_state
        stmt = sa.select(st.c.batch, st.c.results_sha256, st.c.labels_sha256).where(
            st.c.stream == stream, st.c.policy == policy)
        rows = self._run(lambda conn: conn.execute(stmt).all())
        return {r.batch: (r.results_sha256, r.labels_sha256) for r in rows}

    def unlearned_labels(self, stream: str, policy: str, batch: str | None = None
                         ) -> dict[str, dict[str, tuple[int, str]]]:
        """Current labels of items with results for (stream, policy) whose label version
        (item, seq) this policy's learner has not been trained on: batch -> item_id ->
        (seq, normalised text). With ``batch``, that batch only."""
        sql = _UNLEARNED + (" AND r.batch = :batch" if batch is not None else "")
        params = {"stream": stream, "policy": policy}
        if batch is not None:
            params["batch"] = batch
        rows = self._run(lambda conn: conn.execute(sa.text(sql), params).all())
        out: dict[str, dict[str, tuple[int, str]]] = {}
        for b, item, seq, answer in rows:
            out.setdefault(b, {})[item] = (int(seq), answer)
        return out

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
                f"snapshot copies a DuckDB file; {self.url} is not one ("
                + ("a DuckLake store's readers never wait for writers, and every commit is a "
                   "snapshot to read AT (VERSION => n))" if self.lake else "use pg_dump)"))
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


_UNLEARNED = """
SELECT r.batch, r.item_id, v.seq, l.answer
FROM results r
JOIN labels l ON l.stream = r.stream AND l.batch = r.batch AND l.item_id = r.item_id
JOIN (SELECT stream, batch, item_id, MAX(seq) AS seq FROM label_versions
      GROUP BY stream, batch, item_id) v
  ON v.stream = l.stream AND v.batch = l.batch AND v.item_id = l.item_id
LEFT JOIN learned_labels ll
  ON ll.stream = r.stream AND ll.policy = r.policy AND ll.batch = r.batch
 AND ll.item_id = r.item_id AND ll.seq = v.seq
WHERE r.stream = :stream AND r.policy = :policy AND ll.item_id IS NULL"""

_RESULT_COLUMNS = ("item_id", "status", "answer", "error", "policy_version", "program_id")
_DECISION_COLUMNS = ("item_id", "call_site", "function", "backend", "propensity", "calls", "flops",
                     "params", "wall_ms", "price", "policy_version")

_Rows = tuple[frozenset[tuple[Any, ...]], frozenset[tuple[Any, ...]]]


def _not_audit(table: sa.Table) -> list[sa.ColumnElement[bool]]:
    """Leave out the decisions learning ran itself (``AUDIT_SUFFIX``): results do not carry them."""
    if table is not schema.decisions:
        return []
    return [sa.not_(table.c.call_site.contains(AUDIT_SUFFIX + "[", autoescape=True))]


def _ledger_rows(conn: Connection, stream: str, policy: str, batch: str) -> _Rows:
    """(stream, policy, batch)'s results and decisions rows as sets of tuples (no timestamps)."""
    out = []
    for table, cols in ((schema.results, _RESULT_COLUMNS), (schema.decisions, _DECISION_COLUMNS)):
        stmt = sa.select(*(table.c[c] for c in cols)).where(
            table.c.stream == stream, table.c.policy == policy, table.c.batch == batch,
            *_not_audit(table))
        out.append(frozenset(tuple(r) for r in conn.execute(stmt).all()))
    return out[0], out[1]


def _built_rows(built: IngestRows) -> _Rows:
    return (frozenset(tuple(r[c] for c in _RESULT_COLUMNS) for r in built.results),
            frozenset(tuple(r[c] for c in _DECISION_COLUMNS) for r in built.decisions))


def _add_label_versions(conn: Connection, stream: str, batch: str,
                        labels: list[dict[str, Any]]) -> tuple[int, int]:
    """Add the next label version of every label whose text differs from its item's latest
    (the first one of an item never labelled); returns (new, corrected) counts."""
    lv = schema.label_versions
    latest = conn.execute(sa.text(
        "SELECT v.item_id, v.seq, v.label_hash FROM label_versions v JOIN ("
        "SELECT item_id, MAX(seq) AS seq FROM label_versions WHERE stream = :stream AND batch = :batch "
        "GROUP BY item_id) m ON m.item_id = v.item_id AND m.seq = v.seq "
        "WHERE v.stream = :stream AND v.batch = :batch"), {"stream": stream, "batch": batch}).all()
    current = {item: (int(seq), h) for item, seq, h in latest}
    now = utcnow()
    rows: list[dict[str, Any]] = []
    new = corrected = 0
    for label in labels:
        h = label_hash(label["answer"])
        seq, old = current.get(label["item_id"], (0, None))
        if old == h:
            continue
        new += seq == 0
        corrected += seq > 0
        rows.append({"stream": stream, "batch": batch, "item_id": label["item_id"], "seq": seq + 1,
                     "answer": label["answer"], "label_hash": h, "seen_at": now})
    bulk_insert(conn, lv, rows)
    return new, corrected
