"""Fast multi-row inserts.

DuckDB's executemany binds one row at a time (~3 ms a row), so 10k ledger rows took
seconds. On DuckDB we send each column as one value and UNNEST them in a single
INSERT ... SELECT; other databases use SQLAlchemy's executemany.

Each column goes as one JSON text (``CAST(json($i) AS <type>[])``), not as a Python list:
DuckDB converts a list's values one by one, and for each value it tries to import pandas;
where pandas is not installed (fmp does not need it) every try is a failed import that
searches the whole ``sys.path`` again, 55 µs a value, 0.12 s per 1,000 values and over 2 s
per 256-item feedback batch. The JSON text is one value, parsed inside DuckDB. Columns holding
values JSON cannot carry (bytes, nested values) still go as lists.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

#: Values a column may hold to travel as JSON text (bool is an int).
_JSON_SCALARS = (str, int, float)


def bulk_insert(conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts keyed by column name; missing keys become NULL) into ``table``."""
    if not rows:
        return
    if conn.dialect.name != "duckdb":
        conn.execute(sa.insert(table), rows)
        return
    names = [c.name for c in table.columns]
    selects, values = _unnested(conn, table, names, rows)
    conn.exec_driver_sql(f"INSERT INTO {table.name} ({', '.join(names)}) SELECT {selects}", values)


def bulk_update(conn: Connection, table: sa.Table, keys: list[str],
                rows: list[dict[str, Any]]) -> None:
    """Set, in each row of ``table`` matching a dict of ``rows`` on every column named in
    ``keys``, the dict's other columns (every dict has the same columns; rows matching no dict
    are left as they are, and a dict matching no row changes nothing).

    On DuckDB: one ``UPDATE ... FROM`` over the dicts sent column by column as in
    ``bulk_insert`` (an UPDATE per row took 1-3 ms each, plus DuckDB's conversion of each
    value); other databases update row by row.
    """
    if not rows:
        return
    names = list(rows[0])
    sets = [n for n in names if n not in keys]
    if conn.dialect.name != "duckdb":
        stmt = table.update().where(*(table.c[k] == sa.bindparam(f"k_{k}") for k in keys)).values(
            {n: sa.bindparam(f"v_{n}") for n in sets})
        conn.execute(stmt, [{**{f"k_{k}": r[k] for k in keys}, **{f"v_{n}": r[n] for n in sets}}
                            for r in rows])
        return
    selects, values = _unnested(conn, table, names, rows)
    where = " AND ".join(f"{table.name}.{k} = v.{k}" for k in keys)
    conn.exec_driver_sql(
        f"UPDATE {table.name} SET {', '.join(f'{n} = v.{n}' for n in sets)} "
        f"FROM (SELECT {selects}) AS v WHERE {where}", values)


def _unnested(conn: Connection, table: sa.Table, names: list[str],
              rows: list[dict[str, Any]]) -> tuple[str, tuple[Any, ...]]:
    """The select list that unnests the columns ``names`` of ``rows`` (missing keys: NULL), one
    ``$i`` parameter per column, each named as its column; and the parameters."""
    values: list[Any] = []
    selects: list[str] = []
    for i, name in enumerate(names, start=1):
        # Explicit casts: a column of all-NULL values would otherwise have no list type.
        column_type = f"{table.c[name].type.compile(dialect=conn.dialect)}[]"
        column = [row.get(name) for row in rows]
        text = _json_column(column)
        values.append(column if text is None else text)
        param = f"${i}" if text is None else f"json(${i})"
        selects.append(f"UNNEST(CAST({param} AS {column_type})) AS {name}")
    return ", ".join(selects), tuple(values)


def _json_column(column: list[Any]) -> str | None:
    """The column as a JSON array DuckDB casts back to the same values, or None when some
    value has no such form.

    Floats keep every bit (Python writes the shortest text that reads back the same; NaN and
    infinities as ``NaN``/``Infinity``, which DuckDB's JSON reader accepts). Datetimes go as ISO
    text; one with a time zone is first taken to naive UTC, the store's convention, which is
    also what DuckDB made of it as a Python value on a UTC session.
    """
    encoded: list[Any] = []
    for value in column:
        if value is None or isinstance(value, _JSON_SCALARS):
            encoded.append(value)
        elif isinstance(value, datetime):
            if value.tzinfo is not None:
                value = value.astimezone(UTC).replace(tzinfo=None)
            encoded.append(value.isoformat())
        else:
            return None
    return json.dumps(encoded, ensure_ascii=False)
