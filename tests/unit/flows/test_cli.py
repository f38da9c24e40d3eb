"""The fmp CLI: output formats, one-line errors, the DuckDB lock, publishing, policies."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.cli import format_rows, main, one_line
from policy_store.store import PolicyStore
from storage import batches
from storage.url import open_store


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "fmp.duckdb"
    store = PolicyStore(path)
    store.init()
    store.save_version("s1", "learned", "thompson", "{}", b"v1", None, "learned from b0000",
                       learned_batch="b0000")
    store.save_version("s1", "learned", "thompson", "{}", b"v2", 1, "learned from b0001",
                       learned_batch="b0001")
    return path


def _lines(text: str) -> list[str]:
    return text.rstrip("\n").split("\n")


def test_format_rows_aligns_text_left_numbers_right_and_counts_rows() -> None:
    out = format_rows(["name", "n", "x"], [("a", 1, 0.5), ("bbb", 12, None)])
    assert _lines(out) == ["name   n     x",
                           "----  --  ----",
                           "a      1   0.5",
                           "bbb   12  NULL",
                           "(2 rows)"]


def test_ledger_runs_sql_read_only(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--db", str(db), "ledger", "SELECT 1 AS one, 'x' AS letter"]) == 0
    assert _lines(capsys.readouterr().out) == ["one  letter", "---  ------", "  1  x", "(1 row)"]


def test_bad_sql_is_one_line_on_stderr(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--db", str(db), "ledger", "SELECT * FROM no_such_view"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("fmp ledger: error: query failed: Catalog Error: Table with "
                                   "name no_such_view does not exist!")


def test_missing_ledger_says_how_to_make_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--db", str(tmp_path / "none.duckdb"), "ledger", "SELECT 1"]) == 1
    assert capsys.readouterr().err == (f"fmp ledger: error: no ledger at {tmp_path / 'none.duckdb'}; "
                                       "run `fmp feedback STREAM` (or `fmp demo`) first, or pass --db\n")


def test_debug_shows_the_exception(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no ledger at"):
        main(["--debug", "--db", str(tmp_path / "none.duckdb"), "ledger", "SELECT 1"])


_HOLD = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("SELECT 1")
print("holding", flush=True)
time.sleep(60)
"""


def test_ledger_while_a_writer_holds_the_file_is_one_line_after_the_timeout(
        db: Path, capfd: pytest.CaptureFixture[str]) -> None:
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None  # stdout=PIPE
        assert holder.stdout.readline() == "holding\n"
        start = time.monotonic()
        code = main(["--db", str(db), "ledger", "--lock-timeout", "1", "SELECT 1"])
        waited = time.monotonic() - start
    finally:
        holder.kill()
        holder.communicate()  # waits, and closes the stdout pipe
    err = capfd.readouterr().err
    assert code == 1 and 1.0 <= waited < 15
    assert err.count("\n") == 1, err
    assert err.startswith(f"fmp ledger: error: {db}: another process holds the DuckDB lock on this "
                          "file (waited 1s); wait for the feedback flow to finish")


def test_stream_publish_writes_batches_and_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = str(tmp_path / "objects")
    assert main(["--storage", url, "stream", "publish", "two_triangles_one_green", "--stream", "tri",
                 "--batches", "2", "--batch-size", "3"]) == 0
    store = open_store(url)
    assert batches.list_batches(store, "tri") == ["b0000", "b0001"]
    assert batches.list_feedback(store, "tri") == ["b0000", "b0001"]
    assert len(batches.read_manifest(store, "tri", "b0001").strict()) == 3
    assert batches.read_stream_info(store, "tri").query_id == "two_triangles_one_green"
    assert capsys.readouterr().out == (f"published tri to {store.url}: batches b0000..b0001 "
                                       "(2 × 3 items, labels included)\n")


def test_unknown_query_and_bucket_flag_on_a_folder_are_one_line_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--storage", str(tmp_path), "stream", "publish", "nope"]) == 1
    assert capsys.readouterr().err == (
        "fmp stream: error: unknown query 'nope'; valid: red_circle_left_of_blue_square, "
        "two_triangles_one_green, yellow_above_purple_circle\n")
    assert main(["--storage", str(tmp_path), "stream", "publish", "two_triangles_one_green",
                 "--create-bucket"]) == 1
    assert "--create-bucket needs an s3:// store" in capsys.readouterr().err


def test_policy_show_lists_versions_and_rollback_adds_one(
        db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--db", str(db), "policy", "show", "s1", "--policy", "learned"]) == 0
    out = _lines(capsys.readouterr().out)
    assert out[0].split() == ["version", "parent", "learner", "created_at", "learned_batch", "note"]
    assert [line.split()[:3] for line in out[2:4]] == [["1", "NULL", "thompson"], ["2", "1", "thompson"]]
    assert out[2].endswith("b0000          learned from b0000") and out[4] == "(2 rows)"
    assert main(["--db", str(db), "policy", "rollback", "1", "s1", "--policy", "learned"]) == 0
    assert capsys.readouterr().out == ("s1/learned: saved v3 as a copy of v1; the next batch runs "
                                       "with it\n")
    assert PolicyStore(db).get_version("s1", "learned", 3).params == b"v1"
    assert main(["--db", str(db), "policy", "rollback", "9", "s1", "--policy", "learned"]) == 1
    assert capsys.readouterr().err == ("fmp policy: error: stream 's1', policy 'learned' has no "
                                       "version 9; known versions: v1, v2, v3\n")


def test_policy_show_without_versions(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--db", str(db), "policy", "show", "other"]) == 0  # the default policy
    assert capsys.readouterr().out == ("other/fmp: no policy version yet (the prior routes "
                                       "until the first feedback)\n")


def test_one_line_joins_lines_and_drops_carets() -> None:
    assert one_line(ValueError("first\n\n  second  \n      ^\nthird")) == "first second third"
    assert one_line(KeyError()) == "KeyError"
    assert one_line(RuntimeError("x" * 1000)) == "x" * 400 + " … (--debug shows the rest)"
