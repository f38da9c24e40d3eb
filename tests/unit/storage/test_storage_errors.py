from __future__ import annotations

import pickle

from storage.errors import ObjectNotFound, RecordError, StorageError, StoreConfigError


def test_object_not_found_reads_as_a_sentence_not_a_quoted_key() -> None:
    err = ObjectNotFound("file:///data", "streams/s1/stream.json")
    assert str(err) == "no object 'streams/s1/stream.json' in store file:///data"
    assert isinstance(err, StorageError) and isinstance(err, KeyError)


def test_object_not_found_appends_its_hint() -> None:
    err = ObjectNotFound("s3://b/", "k", "publish the stream 's1' first")
    assert str(err) == "no object 'k' in store s3://b/; publish the stream 's1' first"


def test_record_error_names_key_and_line() -> None:
    err = RecordError("streams/s1/batches/b1/manifest.jsonl", 3, "item_id: bad")
    assert str(err) == "streams/s1/batches/b1/manifest.jsonl line 3: item_id: bad"
    assert (err.key, err.line, err.problem) == (
        "streams/s1/batches/b1/manifest.jsonl",
        3,
        "item_id: bad",
    )
    assert isinstance(err, ValueError) and isinstance(err, StorageError)


def test_store_config_error_is_a_value_error() -> None:
    assert issubclass(StoreConfigError, ValueError) and issubclass(StoreConfigError, StorageError)


def test_errors_survive_pickling_with_their_fields() -> None:
    missing = pickle.loads(pickle.dumps(ObjectNotFound("u", "k", "h")))
    record = pickle.loads(pickle.dumps(RecordError("k", 2, "p")))
    assert (missing.store_url, missing.key, missing.hint, str(missing)) == (
        "u",
        "k",
        "h",
        "no object 'k' in store u; h",
    )
    assert (record.key, record.line, str(record)) == ("k", 2, "k line 2: p")
