"""A DuckLake store whose data files live on S3 (moto on loopback): written, read back, and
its Parquet files in the bucket."""

from __future__ import annotations

from pathlib import Path

import pytest

from policy_store import PolicyStore, PolicyStoreError
from policy_store.lake import ALIAS, extension_path


def test_a_lake_with_its_data_on_s3_keeps_its_files_in_the_bucket(
        tmp_path: Path, s3_store, s3_client, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ducklake", "httpfs"):
        try:
            extension_path(name)
        except PolicyStoreError as exc:
            pytest.skip(f"DuckLake store on S3: {exc}")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    url = f"ducklake:sqlite:{tmp_path / 'catalog.sqlite'}?data_path=s3://{s3_store.bucket}/lake/"
    lake = PolicyStore(url)
    lake.init()
    lake.save_version("s1", "confirmed", "confirmed", "{}", b"v1", None, note="first")
    lake.save_version("s1", "confirmed", "confirmed", "{}", b"v2", 1, note="second")
    # a second store on the same lake (another process would open it the same way) reads it back
    again = PolicyStore(url, read_only=True)
    latest = again.latest_version("s1", "confirmed")
    assert latest is not None and latest.params == b"v2"
    assert again.query("SELECT version, parent FROM policy_history ORDER BY version")[1] == [(1, None), (2, 1)]
    # small writes are inlined into the catalog until flushed to Parquet files at data_path
    lake.query(f"CALL ducklake_flush_inlined_data('{ALIAS}')")
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_store.bucket, Prefix="lake/").get("Contents", [])]
    assert keys and all(k.endswith(".parquet") for k in keys), keys
    assert not list(tmp_path.glob("**/*.parquet"))  # nothing written beside the catalog
