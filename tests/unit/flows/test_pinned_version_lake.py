"""A batch run pins the latest policy version of the store it is configured with: a DuckLake
store's (``FMP_STORE_URL``), not the DuckDB file's, which a scale-out never writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows._batch import _pinned_version
from flows.settings import Settings
from policy_store import PolicyStore, PolicyStoreError
from policy_store.lake import extension_path


def test_a_batch_pins_the_lakes_latest_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        for name in ("ducklake", "sqlite_scanner"):
            extension_path(name)
    except PolicyStoreError as exc:
        pytest.skip(f"DuckLake store: {exc}")
    url = f"ducklake:sqlite:{tmp_path / 'lake' / 'catalog.sqlite'}"
    monkeypatch.setenv("FMP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FMP_STORE_URL", url)
    settings = Settings()
    assert not settings.database.exists()  # no DuckDB file: only the lake has versions
    assert _pinned_version(settings, "s1", "largest") is None  # a lake no store has opened yet
    lake = PolicyStore(url)
    lake.init()
    assert _pinned_version(settings, "s1", "largest") is None  # no version yet
    lake.save_version("s1", "largest", "largest", "{}", b"v1", None)
    lake.save_version("s1", "largest", "largest", "{}", b"v2", 1)
    pinned = _pinned_version(settings, "s1", "largest")
    assert pinned is not None and (pinned.version, pinned.parent) == (2, 1)
