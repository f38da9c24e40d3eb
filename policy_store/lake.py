"""The DuckLake backend of the policy store: many processes, on many machines, write at once.

``PolicyStore("ducklake:<catalog>[?data_path=<folder or s3://bucket/prefix/>]")`` runs the same
store code against a DuckLake: the catalog is a SQLite file (one machine:
``ducklake:sqlite:/srv/fmp/lake.sqlite``) or a Postgres database
(``ducklake:postgres:dbname=fmp host=db.internal user=fmp``), the rows live in Parquet files
under the data path (default for a SQLite catalog: ``<catalog file>.files/`` beside it; a
Postgres catalog needs one the first time, then remembers it).

What DuckLake gives and what the store adds:

* Every write is one transaction, committed as one DuckLake snapshot. Two transactions that
  overlap and touch the same table in conflicting ways (both delete from it; one inserts where
  the other deleted) make the later one fail at commit; a SQLite catalog also fails a commit
  whose read snapshot another commit overtook. ``PolicyStore`` retries such a transaction from
  the start (bounded, with jitter) and raises ``StoreConflictError`` after the last attempt.
* DuckLake enforces no PRIMARY KEY or UNIQUE constraint, and two transactions that only
  insert never conflict: two writers that both found key K absent would both insert it. So
  every write that checks-then-writes a key first *claims* it (``claim``): it bumps the one
  row of a claim table picked by the key's hash. Two transactions claiming the same key
  update the same row, DuckLake aborts the later one, and its retry sees the first one's
  rows. That is what makes an ingest exactly-once per (stream, policy, batch) and a policy
  version number unique per (stream, policy), whatever the number of writers; keys that hash
  to different claim tables do not conflict.

Nothing is downloaded at run time: the extensions are loaded from the ``duckdb-extension-*``
packages (``pip install 'fmp[lake]'``), with autoinstall and autoload off.
"""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from policy_store.errors import PolicyStoreError

PREFIX = "ducklake:"
#: The name the lake is attached under (and made the default database) on every connection.
ALIAS = "lake"
#: Claim tables: ``<CLAIM_SCHEMA>.shard_00`` … one row each (see ``claim``).
CLAIM_SCHEMA = "store_claims"
CLAIM_SHARDS = 16
#: ``Connection.info`` key set on the lake's connections: claims run only there.
_CLAIMS_INFO = "fmp_lake_claims"
#: Connection settings: never fetch or autoload an extension; LOAD names each file.
CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}

#: What a failed DuckLake commit says when another writer got there first (lower case).
_CONFLICT_MARKERS = (
    "transaction conflict",             # DuckLake's logical conflicts
    "failed to commit ducklake transaction",
    "database is locked",               # SQLite catalog: another commit overtook this one
    "could not serialize access",       # Postgres catalog
    "deadlock detected",
)


@dataclass(frozen=True)
class LakeTarget:
    """Where a DuckLake store lives: ``catalog`` (``sqlite:<file>`` or ``postgres:<conninfo>``)
    and ``data_path`` (a folder or ``s3://`` prefix; ``None``: the catalog's own)."""

    catalog: str
    data_path: str | None = None
    read_only: bool = False

    @classmethod
    def parse(cls, url: str, *, read_only: bool = False) -> LakeTarget:
        """Read ``ducklake:<catalog>[?data_path=<path>]``.

        Raises:
            PolicyStoreError: not a ``ducklake:sqlite:`` or ``ducklake:postgres:`` URL.
        """
        if not url.startswith(PREFIX):
            raise PolicyStoreError(f"{url!r} is not a DuckLake URL (ducklake:sqlite:<file> or "
                                   "ducklake:postgres:<conninfo>)")
        catalog, _, data_path = url[len(PREFIX):].partition("?data_path=")
        kind, sep, rest = catalog.partition(":")
        if not sep or kind not in ("sqlite", "postgres") or not rest.strip():
            raise PolicyStoreError(
                f"{url!r}: the catalog must be ducklake:sqlite:<file> (one machine) or "
                "ducklake:postgres:<conninfo> (many); a DuckDB-file catalog takes one process")
        if kind == "sqlite":
            catalog = f"sqlite:{Path(rest).expanduser().absolute()}"
            data_path = data_path or f"{catalog.removeprefix('sqlite:')}.files/"
        if data_path and "://" not in data_path:
            data_path = str(Path(data_path).expanduser().absolute()) + "/"
        return cls(catalog, data_path or None, read_only)

    @property
    def kind(self) -> str:
        return self.catalog.partition(":")[0]

    @property
    def url(self) -> str:
        """The URL this target was read from (data path included)."""
        suffix = f"?data_path={self.data_path}" if self.data_path else ""
        return f"{PREFIX}{self.catalog}{suffix}"

    def describe(self) -> str:
        """The catalog for messages, without a password."""
        words = [w if not w.lower().startswith("password=") else "password=…"
                 for w in self.catalog.split()]
        return PREFIX + " ".join(words)

    def prepare(self) -> None:
        """Make what a new lake needs on this machine: the SQLite catalog file (in WAL mode, so
        readers never block a commit) and a local data folder."""
        if self.read_only:
            return
        if self.kind == "sqlite":
            path = Path(self.catalog.removeprefix("sqlite:"))
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                with sqlite3.connect(path) as db:
                    db.execute("PRAGMA journal_mode=WAL")
                db.close()
        if self.data_path and "://" not in self.data_path:
            Path(self.data_path).mkdir(parents=True, exist_ok=True)

    def setup_sql(self) -> list[str]:
        """The statements that make a fresh DuckDB connection (or the ``duckdb`` shell) see the
        lake as its default database: LOAD the extensions by path, ATTACH, USE."""
        needed = ["ducklake", "sqlite_scanner" if self.kind == "sqlite" else "postgres_scanner"]
        if self.data_path and self.data_path.startswith("s3://"):
            needed.append("httpfs")
        statements = [f"LOAD '{_quote(str(extension_path(name)))}'" for name in needed]
        if "httpfs" in needed:
            statements.append(_s3_secret_sql())
        options = []
        if self.data_path:
            options.append(f"DATA_PATH '{_quote(self.data_path)}'")
        if self.read_only:
            options.append("READ_ONLY")
        opts = f" ({', '.join(options)})" if options else ""
        statements += [f"ATTACH '{_quote(PREFIX + self.catalog)}' AS {ALIAS}{opts}", f"USE {ALIAS}"]
        return statements


def extension_path(name: str) -> Path:
    """The ``.duckdb_extension`` file of ``name`` in its ``duckdb-extension-<name>`` package,
    built for the installed duckdb.

    Raises:
        PolicyStoreError: the package is missing, or built for another duckdb.
    """
    import duckdb

    package = f"duckdb_extension_{name}"
    spec = importlib.util.find_spec(package)
    version = duckdb.__version__
    if spec is None or not spec.submodule_search_locations:
        raise PolicyStoreError(
            f"the DuckLake store needs the {name} extension: pip install "
            f"duckdb-extension-{name.replace('_', '-')}=={version} (or fmp[lake])")
    root = Path(next(iter(spec.submodule_search_locations))) / "extensions"
    path = root / f"v{version}" / f"{name}.duckdb_extension"
    if not path.exists():
        built = sorted(p.name for p in root.glob("v*")) or ["none"]
        raise PolicyStoreError(
            f"{package} has no build for duckdb {version} (it has {', '.join(built)}); "
            f"install duckdb-extension-{name.replace('_', '-')}=={version}")
    return path


def _quote(text: str) -> str:
    return text.replace("'", "''")


def _s3_secret_sql() -> str:
    """An S3 secret from the usual AWS variables (and ``AWS_ENDPOINT_URL`` for a local S3)."""
    env = os.environ
    parts = ["TYPE s3"]
    for key, var in (("KEY_ID", "AWS_ACCESS_KEY_ID"), ("SECRET", "AWS_SECRET_ACCESS_KEY"),
                     ("SESSION_TOKEN", "AWS_SESSION_TOKEN")):
        if env.get(var):
            parts.append(f"{key} '{_quote(env[var])}'")
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        parts.append(f"REGION '{_quote(region)}'")
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        parts += [f"ENDPOINT '{_quote(host.rstrip('/'))}'", "URL_STYLE 'path'",
                  f"USE_SSL {'true' if scheme == 'https' else 'false'}"]
    return f"CREATE OR REPLACE SECRET fmp_lake_s3 ({', '.join(parts)})"


def on_connect(target: LakeTarget) -> Any:
    """A pool ``connect`` listener that attaches the lake to each new connection."""
    statements = target.setup_sql()

    def attach(dbapi_connection: Any, record: Any) -> None:
        for sql in statements:
            dbapi_connection.execute(sql)
        record.info[_CLAIMS_INFO] = CLAIM_SHARDS

    return attach


def is_conflict(exc: BaseException) -> bool:
    """Whether ``exc`` is a commit that lost to another writer (worth retrying from the start)."""
    text = str(exc).lower()
    return any(marker in text for marker in _CONFLICT_MARKERS)


def claim_tables() -> list[str]:
    return [f"{CLAIM_SCHEMA}.shard_{i:02d}" for i in range(CLAIM_SHARDS)]


def create_claims(conn: Connection) -> None:
    """Create the claim tables with their one row (in ``init``'s transaction)."""
    conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {CLAIM_SCHEMA}")
    for table in claim_tables():
        conn.exec_driver_sql(f"CREATE TABLE IF NOT EXISTS {table} (n BIGINT NOT NULL)")
        if conn.exec_driver_sql(f"SELECT COUNT(*) FROM {table}").scalar() == 0:
            conn.exec_driver_sql(f"INSERT INTO {table} VALUES (0)")


def claim(conn: Connection, *key: str) -> None:
    """Claim ``key`` for this transaction: a racing transaction that claims the same key is
    aborted at commit (see the module's docstring). A no-op outside a DuckLake store, whose
    primary keys and single writer already keep keys unique."""
    shards = conn.info.get(_CLAIMS_INFO)
    if not shards:
        return
    shard = zlib.crc32("\x1f".join(key).encode()) % int(shards)
    conn.exec_driver_sql(f"UPDATE {CLAIM_SCHEMA}.shard_{shard:02d} SET n = n + 1")


def lake_tables(metadata: sa.MetaData) -> sa.MetaData:
    """``metadata``'s tables as DuckLake takes them: no PRIMARY KEY (unsupported there; keys
    are held by ``claim``), key columns NOT NULL."""
    out = sa.MetaData()
    for table in metadata.sorted_tables:
        sa.Table(table.name, out, *[
            sa.Column(c.name, c.type, nullable=bool(c.nullable) and not c.primary_key,
                      autoincrement=False)
            for c in table.columns])
    return out


def view_sql(conn: Connection, name: str, sql: str) -> str:
    """What ``duckdb_views()`` would show for view ``name`` created ``AS sql`` (DuckDB keeps
    its own rendering of the SQL): a temporary view, outside the lake, tells."""
    conn.exec_driver_sql(f"CREATE OR REPLACE TEMP VIEW {name} AS {sql}")
    shown = conn.exec_driver_sql(
        "SELECT sql FROM duckdb_views() WHERE database_name = 'temp' AND view_name = ?",
        (name,)).scalar()
    conn.exec_driver_sql(f"DROP VIEW temp.main.{name}")
    return str(shown).replace("CREATE TEMP VIEW", "CREATE VIEW", 1)


def view_definitions(conn: Connection) -> dict[str, str]:
    """The lake's views: name -> the SQL they were created with."""
    rows = conn.exec_driver_sql(
        "SELECT view_name, sql FROM duckdb_views() WHERE database_name = current_database() "
        "AND NOT internal").all()
    return {name: sql for name, sql in rows}


def main(argv: list[str] | None = None) -> int:
    """``python -m policy_store.lake URL [--write]``: print the statements that attach the lake
    in a ``duckdb`` shell (read-only unless ``--write``), for ``duckdb -cmd "$(…)"``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m policy_store.lake", description=main.__doc__)
    parser.add_argument("url", help="ducklake:sqlite:<file> or ducklake:postgres:<conninfo>")
    parser.add_argument("--write", action="store_true", help="attach read-write")
    args = parser.parse_args(argv)
    target = LakeTarget.parse(args.url, read_only=not args.write)
    print(";\n".join(target.setup_sql()) + ";")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
