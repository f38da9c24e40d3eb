"""bulk_insert: the same rows as SQLAlchemy's executemany, without DuckDB's per-value imports."""

from __future__ import annotations

import importlib.util
import math
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from policy_store.bulk import _json_column, bulk_insert

META = sa.MetaData()
TABLE = sa.Table(
    "t", META,
    sa.Column("s", sa.String), sa.Column("txt", sa.Text), sa.Column("i", sa.Integer),
    sa.Column("d", sa.Double), sa.Column("ts", sa.DateTime), sa.Column("b", sa.LargeBinary),
    sa.Column("empty", sa.String),
)

ROWS: list[dict[str, Any]] = [
    {"s": "a", "txt": '{"looks": ["like", "json"]}', "i": 1, "d": 0.1,
     "ts": datetime(2026, 1, 1, 12, 0, 0, 123456), "b": b"\x00\xff"},
    {"s": 'é"\\\n\u2028😀', "txt": "null", "i": -2**31, "d": 1e-310,
     "ts": datetime(2026, 11, 30, 20, 1, 2, tzinfo=timezone(timedelta(hours=5)))},
    {"s": None, "txt": "", "i": None, "d": None, "ts": None, "b": None},
    {"s": "", "txt": "[1, 2]", "i": 2**31 - 1, "d": math.nan, "ts": datetime(1970, 1, 1)},
    {"s": "\x00x", "txt": "true", "i": True, "d": -math.inf, "ts": datetime.now(UTC)},
    {"s": "z", "txt": "x" * 10_000, "i": 0, "d": 2 / 3, "ts": datetime(2026, 2, 28, 23, 59, 59)},
]


def _engine(path: Path) -> sa.Engine:
    engine = sa.create_engine(f"duckdb:///{path}")
    with engine.begin() as conn:
        conn.exec_driver_sql("SET TimeZone = 'UTC'")
    META.create_all(engine)
    return engine


def _read(engine: sa.Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(TABLE).order_by(TABLE.c.s.nulls_first(),
                                                                         TABLE.c.txt))]


def _same(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> bool:
    """Equal row by row, NaN equal to NaN."""
    def key(v: Any) -> Any:
        return "nan" if isinstance(v, float) and math.isnan(v) else v
    return [tuple(map(key, r)) for r in a] == [tuple(map(key, r)) for r in b]


def test_bulk_insert_writes_what_executemany_writes(tmp_path: Path) -> None:
    fast, slow = _engine(tmp_path / "fast.duckdb"), _engine(tmp_path / "slow.duckdb")
    with fast.begin() as conn:
        bulk_insert(conn, TABLE, ROWS)
    with slow.begin() as conn:
        for row in ROWS:  # one plain INSERT per row: DuckDB's own conversion of each value
            conn.execute(sa.insert(TABLE), row)
    got, want = _read(fast), _read(slow)
    assert len(got) == len(ROWS)
    assert _same(got, want)
    by_s = {r[0]: r for r in got}
    assert by_s['é"\\\n\u2028😀'][4] == datetime(2026, 11, 30, 15, 1, 2)  # +05:00 taken to UTC
    assert by_s["a"][5] == b"\x00\xff"


def test_floats_keep_every_bit(tmp_path: Path) -> None:
    import random
    import struct

    rng = random.Random(7)
    values = [struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0] for _ in range(5000)]
    values = [v for v in values if math.isfinite(v)] + [5e-324, 1.7976931348623157e308, -0.0]
    engine = _engine(tmp_path / "f.duckdb")
    with engine.begin() as conn:
        bulk_insert(conn, TABLE, [{"s": f"{k:05d}", "d": v} for k, v in enumerate(values)])
    got = [r[3] for r in _read(engine)]
    assert [struct.pack("d", v) for v in got] == [struct.pack("d", v) for v in values]


def test_columns_json_cannot_carry_go_as_lists() -> None:
    assert _json_column([b"x", None]) is None
    assert _json_column([[1, 2]]) is None
    assert _json_column([None, 1, "a", 0.5, datetime(2026, 1, 1)]) == '[null, 1, "a", 0.5, "2026-01-01T00:00:00"]'


@pytest.mark.skipif(importlib.util.find_spec("pandas") is not None,
                    reason="pandas is installed: DuckDB's import of it succeeds once and is cached")
def test_no_import_per_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sent as Python lists, every value made DuckDB try to import pandas (2 failed imports a
    value, each a search of sys.path): 2,000 rows of text, numbers and times tried 16,000."""
    engine = _engine(tmp_path / "i.duckdb")
    tries: list[str] = []

    class Probe:
        @staticmethod
        def find_spec(name: str, *_: Any) -> None:
            if name == "pandas":
                tries.append(name)

    monkeypatch.setattr(sys, "meta_path", [Probe(), *sys.meta_path])
    rows = [{"s": f"item-{k}", "txt": "x", "i": k, "d": k / 7, "ts": datetime(2026, 1, 1)}
            for k in range(2000)]
    with engine.begin() as conn:
        bulk_insert(conn, TABLE, rows)
    assert len(_read(engine)) == 2000
    assert len(tries) < 20


@pytest.mark.parametrize("dialect", ["duckdb", "sqlite"])
def test_bulk_update_sets_the_matching_rows_only(tmp_path: Path, dialect: str) -> None:
    from policy_store.bulk import bulk_update

    engine = _engine(tmp_path / "u.duckdb") if dialect == "duckdb" else sa.create_engine(
        f"sqlite:///{tmp_path / 'u.sqlite'}")
    META.create_all(engine)
    with engine.begin() as conn:
        bulk_insert(conn, TABLE, [{"s": s, "txt": t, "i": 0, "d": 0.0} for s in "ab" for t in "xy"])
        bulk_update(conn, TABLE, ["s", "txt"], [
            {"s": "a", "txt": "y", "i": 5, "d": 0.25},
            {"s": "b", "txt": "x", "i": -1, "d": math.inf},
            {"s": "c", "txt": "x", "i": 9, "d": 9.0},  # matches no row
        ])
        bulk_update(conn, TABLE, ["s"], [])
    assert [(r[0], r[1], r[2], r[3]) for r in _read(engine)] == [
        ("a", "x", 0, 0.0), ("a", "y", 5, 0.25), ("b", "x", -1, math.inf), ("b", "y", 0, 0.0)]
