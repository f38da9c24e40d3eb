from __future__ import annotations

from pathlib import Path

import pytest

from storage.errors import StoreConfigError
from storage.local import LocalStore
from storage.s3 import S3Store
from storage.url import ENDPOINT_ENV, open_store


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENDPOINT_ENV, raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)


def test_plain_path_and_file_url_open_a_local_store(tmp_path: Path) -> None:
    plain = open_store(str(tmp_path / "data"))
    via_url = open_store((tmp_path / "data").as_uri())
    assert isinstance(plain, LocalStore) and isinstance(via_url, LocalStore)
    assert plain.root == via_url.root == tmp_path / "data"


def test_s3_url_gives_bucket_prefix_and_default_endpoint() -> None:
    store = open_store("s3://my-bucket/a/b/")
    assert isinstance(store, S3Store)
    assert (store.bucket, store.prefix, store.endpoint_url, store.region) == (
        "my-bucket",
        "a/b",
        None,
        "us-east-1",
    )
    assert store.url == "s3://my-bucket/a/b"


def test_s3_endpoint_from_env_then_query(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENDPOINT_ENV, "http://127.0.0.1:9000")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    env = open_store("s3://bkt")
    assert (env.endpoint_url, env.prefix, env.region) == ("http://127.0.0.1:9000", "", "eu-west-1")  # type: ignore[attr-defined]
    query = open_store("s3://bkt/p?endpoint_url=http://localhost:1234&region=us-west-2")
    assert (query.endpoint_url, query.region) == ("http://localhost:1234", "us-west-2")  # type: ignore[attr-defined]
    assert open_store(query.url).url == query.url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "empty store URL"),
        ("ftp://host/x", "unsupported store URL scheme 'ftp'.*s3://bucket"),
        ("file://host/x", "bad file URL"),
        ("s3:///prefix", "has no bucket"),
        ("s3://Bad_Bucket/x", "bad S3 bucket name 'Bad_Bucket'"),
        ("s3://bkt/a/../b", "S3 prefix 'a/../b'"),
        ("s3://bkt/x?token=1", r"unknown S3 URL parameter\(s\) \['token'\]"),
        ("s3://bkt/x?region=", "'region' must be given once, non-empty"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(StoreConfigError, match=message):
        open_store(url)
