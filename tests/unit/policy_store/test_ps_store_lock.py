"""Cross-process DuckDB lock: retry while another process holds the file, then give up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from policy_store import PolicyStore, StoreLockedError
from policy_store.records import PolicyVersion

# Opens the file read-write (taking DuckDB's exclusive lock), says so, holds it, then
# writes a marker *before* closing, so a later successful open proves the wait happened.
HOLDER = """
import sys, time, pathlib, duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
pathlib.Path(sys.argv[3]).write_text("releasing")
con.close()
"""


@pytest.mark.parametrize("read_only", [False, True], ids=["sqlalchemy", "plain-read-only"])
def test_lock_is_retried_then_reported(tmp_path: Path, read_only: bool) -> None:
    """Both readers of the latest version: through SQLAlchemy (any store) and the batch run's
    plain read-only DuckDB connection (``read_latest_version``)."""
    db = tmp_path / "policy.duckdb"

    def latest(timeout: float) -> object:
        if read_only:
            return PolicyStore(db, lock_timeout_s=timeout, read_only=True).read_latest_version("s1", "p")
        return PolicyStore(db, lock_timeout_s=timeout).latest_version("s1", "p")

    marker = tmp_path / "released"
    store = PolicyStore(db)
    store.init()
    store.save_version("s1", "p", "cheapest", "{}", b"", None)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db), "2.0", str(marker)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StoreLockedError, match="policy.duckdb: another process holds"):
            latest(0.3)
        assert holder.poll() is None  # it failed while the lock really was held
        assert not marker.exists()
        version = latest(10.0)
        assert isinstance(version, PolicyVersion) and version.version == 1
        assert marker.exists()  # succeeded only once the holder let go
        assert holder.wait(timeout=10) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_connection_block_opens_one_connection_and_keeps_the_lock(tmp_path: Path) -> None:
    import sqlalchemy as sa

    db = tmp_path / "policy.duckdb"
    store = PolicyStore(db)
    opened: list[object] = []
    sa.event.listen(store.engine, "connect", lambda conn, record: opened.append(conn))
    with store.connection():
        store.init()
        with store.connection():  # nested: the same connection
            store.save_version("s1", "p", "cheapest", "{}", b"", None)
        assert store.latest_version("s1", "p") is not None
        # the block holds the file's lock against other processes
        probe = subprocess.run([sys.executable, "-c", "import sys, duckdb; duckdb.connect(sys.argv[1])",
                                str(db)], capture_output=True, text=True)
        assert probe.returncode != 0 and "lock" in probe.stderr.lower()
    assert len(opened) == 1
    assert store.latest_version("s1", "p") is not None  # outside the block: its own connection
    assert len(opened) == 2


def test_read_latest_version_is_latest_version(tmp_path: Path) -> None:
    """The plain read-only read gives what ``latest_version`` gives, field by field; None on a
    file with no schema yet and for a (stream, policy) with no version."""
    import duckdb

    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    assert PolicyStore(empty, read_only=True).read_latest_version("s1", "p") is None
    db = tmp_path / "policy.duckdb"
    store = PolicyStore(db)
    store.init()
    store.save_version("s1", "p", "thompson", '{"lam": 2}', bytes(range(256)), None, note="first")
    store.save_version("s1", "p", "thompson", '{"lam": 4}', b"\x00\xff", 1, note="second")
    store.save_version("s2", "p", "cheapest", "{}", b"", None)
    reader = PolicyStore(db, read_only=True)
    for stream in ("s1", "s2"):
        assert reader.read_latest_version(stream, "p") == store.latest_version(stream, "p")
    got = reader.read_latest_version("s1", "p")
    assert got is not None and (got.version, got.parent, got.params, got.note) == (2, 1, b"\x00\xff", "second")
    assert got.created_at.tzinfo is not None
    assert reader.read_latest_version("s1", "other") is None
