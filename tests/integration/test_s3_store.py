"""The ObjectStore contract, run against LocalStore and S3Store (moto), plus S3 specifics."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path
from typing import Any

import pytest

from storage import batches, moto
from storage.base import ObjectStore
from storage.errors import ObjectNotFound, StorageError, StoreConfigError
from storage.local import LocalStore
from storage.moto import MotoServer
from storage.records import Label, ManifestItem, ResultRow
from storage.s3 import S3Store
from storage.url import open_store


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalStore(tmp_path)
    s3: S3Store = request.getfixturevalue("s3_store")
    return s3


# --- contract: every ObjectStore behaves the same -------------------------------------------------


def test_put_get_overwrite(store: ObjectStore) -> None:
    store.put("a/b.bin", b"\x00\x01")
    store.put("empty", b"")
    assert (store.get("a/b.bin"), store.get("empty")) == (b"\x00\x01", b"")
    store.put("a/b.bin", b"new")
    assert store.get("a/b.bin") == b"new"


def test_missing_key_is_object_not_found_naming_store_and_key(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound) as info:
        store.get("no/such")
    assert str(info.value) == f"no object 'no/such' in store {store.url}"
    assert isinstance(info.value, KeyError)


def test_exists_and_delete(store: ObjectStore) -> None:
    store.put("k", b"x")
    assert (store.exists("k"), store.exists("other")) == (True, False)
    store.delete("k")
    store.delete("k")
    assert store.exists("k") is False


def test_list_is_sorted_recursive_and_string_prefixed(store: ObjectStore) -> None:
    for key in ["b/2", "ab/1", "abc/x/2", "a/3"]:
        store.put(key, b"x")
    assert store.list() == ["a/3", "ab/1", "abc/x/2", "b/2"]
    assert store.list("ab") == ["ab/1", "abc/x/2"]
    assert store.list("ab/") == ["ab/1"]
    assert store.list("zz/") == []


@pytest.mark.parametrize("key", ["/a", "a//b", "a/../b", ""])
def test_bad_keys_are_rejected(store: ObjectStore, key: str) -> None:
    with pytest.raises(StoreConfigError):
        store.put(key, b"x")
    with pytest.raises(StoreConfigError):
        store.list(key + "/")
    assert store.list() == []


def test_batch_verbs_end_to_end(store: ObjectStore) -> None:
    item = ManifestItem(item_id="a", image="images/a.png")
    batches.write_batch(store, "s1", "b1", [(item, b"png")])
    batches.write_labels(store, "s1", "b1", [Label(item_id="a", answer="red")])
    row = ResultRow(
        item_id="a", status="failed", answer=None, error="boom", features=[], decisions=[]
    )
    marker = batches.write_results(store, "s1", "p1", "b1", [row], policy_version=2, program_id="g")
    assert batches.read_manifest(store, "s1", "b1").strict() == [item]
    assert batches.read_image(store, "s1", "b1", item) == b"png"
    assert batches.read_labels(store, "s1", "b1").strict() == [Label(item_id="a", answer="red")]
    assert batches.read_results(store, "s1", "p1", "b1") == (marker, [row])
    assert (batches.list_batches(store, "s1"), batches.list_results(store, "s1", "p1")) == (
        ["b1"],
        ["b1"],
    )


# --- S3 specifics ---------------------------------------------------------------------------------


def test_prefixes_isolate_stores_in_one_bucket(s3_store: S3Store, s3_client: Any) -> None:
    a = S3Store(s3_store.bucket, "a", endpoint_url=s3_store.endpoint_url, client=s3_client)
    ab = S3Store(s3_store.bucket, "ab/", endpoint_url=s3_store.endpoint_url, client=s3_client)
    a.put("k", b"1")
    ab.put("k", b"2")
    assert (a.list(), ab.list(), s3_store.list()) == (["k"], ["k"], ["a/k", "ab/k"])
    assert (a.get("k"), ab.get("k")) == (b"1", b"2")


def test_open_store_url_round_trips_and_pickles(s3_store: S3Store) -> None:
    s3_store.put("k", b"v")
    reopened = open_store(s3_store.url)
    assert isinstance(reopened, S3Store) and reopened.get("k") == b"v"
    assert pickle.loads(pickle.dumps(reopened)).get("k") == b"v"


def test_ensure_bucket_is_idempotent_and_missing_bucket_is_explained(s3_store: S3Store) -> None:
    s3_store.ensure_bucket()
    s3_store.put("k", b"v")
    s3_store.ensure_bucket()
    assert s3_store.get("k") == b"v"
    other = S3Store("fmp-never-created", endpoint_url=s3_store.endpoint_url)
    with pytest.raises(
        StorageError, match=r"cannot write s3://fmp-never-created/k: .*NoSuchBucket.*ensure_bucket"
    ):
        other.put("k", b"v")


def test_moto_server_refuses_a_taken_port(s3_endpoint: str) -> None:
    port = int(s3_endpoint.rsplit(":", 1)[1])
    server = MotoServer(port=port)  # the session's server holds it
    with pytest.raises(
        StorageError, match=f"cannot start moto on 127.0.0.1:{port}: .*pick another --port"
    ):
        server.start()
    assert server.running is False


def test_moto_server_that_exits_reports_its_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    crash = [sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"]
    monkeypatch.setattr(moto, "_command", lambda host, port: crash)
    with pytest.raises(StorageError, match="^moto server exited with code 3: boom$"):
        MotoServer().start()
