from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from storage.base import TEMP_PREFIX
from storage.errors import ObjectNotFound, StorageError, StoreConfigError
from storage.local import LocalStore

BAD_KEYS = ["", "/abs", "a//b", "a/../b", "..", "a/./b", "a/", "a\\b", f"a/{TEMP_PREFIX}x"]


def test_put_get_list_delete_round_trip(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "root")
    store.put("b/2.txt", b"two")
    store.put("a.txt", b"one")
    store.put("b/c/3.txt", b"")
    assert store.get("b/2.txt") == b"two"
    assert store.get("b/c/3.txt") == b""
    assert store.list() == ["a.txt", "b/2.txt", "b/c/3.txt"]
    assert store.list("b/") == ["b/2.txt", "b/c/3.txt"]
    store.delete("b/2.txt")
    store.delete("b/2.txt")  # missing: no error
    assert store.list("b") == ["b/c/3.txt"]


def test_list_prefix_is_a_string_prefix_like_s3(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    for key in ["ab/1", "abc/2", "a/3", "b/4"]:
        store.put(key, b"x")
    assert store.list("ab") == ["ab/1", "abc/2"]
    assert store.list("ab/") == ["ab/1"]
    assert store.list("zz/") == []


def test_url_is_the_resolved_file_uri_and_root_is_created_lazily(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "x" / ".." / "data")
    assert store.url == (tmp_path / "data").as_uri()
    assert store.list() == [] and not (tmp_path / "data").exists()


def test_missing_key_message_names_store_and_key(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    with pytest.raises(ObjectNotFound) as info:
        store.get("streams/s1/stream.json")
    assert str(info.value) == f"no object 'streams/s1/stream.json' in store {tmp_path.as_uri()}"


def test_a_folder_is_not_an_object(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("dir/file", b"x")
    assert store.exists("dir") is False
    with pytest.raises(ObjectNotFound):
        store.get("dir")
    store.delete("dir")
    assert store.list() == ["dir/file"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_rejected_by_every_method(tmp_path: Path, key: str) -> None:
    store = LocalStore(tmp_path)
    for call in (
        lambda: store.put(key, b"x"),
        lambda: store.get(key),
        lambda: store.exists(key),
        lambda: store.delete(key),
    ):
        with pytest.raises(StoreConfigError):
            call()
    assert list(tmp_path.iterdir()) == []


def test_failed_put_keeps_the_old_object_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(tmp_path)
    store.put("k", b"old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(StorageError, match="cannot write 'k' in store .*: disk full"):
        store.put("k", b"new")
    assert store.get("k") == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k"]


def test_list_skips_in_flight_temp_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("a/real", b"x")
    (tmp_path / "a" / f"{TEMP_PREFIX}abc123").write_bytes(b"partial")
    assert store.list() == ["a/real"]


def test_objects_are_readable_by_others(tmp_path: Path) -> None:
    LocalStore(tmp_path).put("k", b"x")
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o644
