"""Commands that only read the ledger read the DuckLake store when FMP_STORE_URL names one."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.cli import main
from policy_store import PolicyStore, PolicyStoreError
from policy_store.lake import extension_path


def test_ledger_and_policy_show_read_the_lake_not_the_local_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        extension_path("ducklake")
    except PolicyStoreError as exc:
        pytest.skip(f"DuckLake store: {exc}")
    url = f"ducklake:sqlite:{tmp_path / 'catalog.sqlite'}?data_path={tmp_path / 'lake'}/"
    lake = PolicyStore(url)
    lake.init()
    lake.save_version("s1", "fmp", "confirmed", "{}", b"v1", None, note="in the lake")
    monkeypatch.setenv("FMP_HOME", str(tmp_path / "home"))  # no local ledger file there
    monkeypatch.setenv("FMP_STORE_URL", url)
    assert main(["ledger", "SELECT stream, policy, version FROM policy_history"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2].split() == ["s1", "fmp", "1"] and out[3] == "(1 row)"
    assert main(["policy", "show", "s1"]) == 0
    assert "in the lake" in capsys.readouterr().out
    assert not (tmp_path / "home" / "fmp.duckdb").exists()


def test_without_a_lake_a_missing_ledger_file_is_one_clear_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FMP_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FMP_STORE_URL", raising=False)
    assert main(["ledger", "SELECT 1"]) == 1
    assert "no ledger at" in capsys.readouterr().err
