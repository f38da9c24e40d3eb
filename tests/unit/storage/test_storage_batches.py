from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from storage import batches, layout
from storage.errors import ObjectNotFound, RecordError, StorageError
from storage.local import LocalStore
from storage.records import BatchResultsMarker, Label, ManifestItem, ResultRow, StreamInfo

WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


class RecordingStore(LocalStore):
    """A LocalStore that logs every write and delete, to check write order."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.log: list[str] = []

    def _put(self, key: str, data: bytes) -> None:
        self.log.append(f"put {key}")
        super()._put(key, data)

    def _delete(self, key: str) -> None:
        self.log.append(f"delete {key}")
        super()._delete(key)


@pytest.fixture
def store(tmp_path: Path) -> RecordingStore:
    return RecordingStore(tmp_path)


def item(item_id: str) -> tuple[ManifestItem, bytes]:
    return ManifestItem(
        item_id=item_id, image=layout.image_relative(item_id)
    ), f"png-{item_id}".encode()


def result(item_id: str) -> ResultRow:
    return ResultRow(
        item_id=item_id, status="ok", answer=True, error=None, features=[1.0], decisions=[]
    )


def test_stream_info_round_trip_and_missing_hint(store: RecordingStore) -> None:
    info = StreamInfo(
        stream="s1",
        query_id="q1",
        question="any cube?",
        answer_type="bool",
        program="p",
        monolithic_program="m",
    )
    assert batches.write_stream_info(store, info) == "streams/s1/stream.json"
    assert batches.read_stream_info(store, "s1") == info
    with pytest.raises(ObjectNotFound) as missing:
        batches.read_stream_info(store, "s2")
    assert str(missing.value) == (
        f"no object 'streams/s2/stream.json' in store {store.url}; publish the stream 's2' first"
    )


def test_invalid_stream_info_is_a_record_error_on_line_1(store: RecordingStore) -> None:
    store.put("streams/s1/stream.json", b'{"stream": "s1"}')
    with pytest.raises(RecordError) as info:
        batches.read_stream_info(store, "s1")
    assert (info.value.key, info.value.line) == ("streams/s1/stream.json", 1)
    assert "query_id: Field required" in info.value.problem


def test_write_batch_writes_images_then_manifest_last(store: RecordingStore) -> None:
    items = [item("a"), item("b")]
    assert batches.write_batch(store, "s1", "b1", items) == "streams/s1/batches/b1/manifest.jsonl"
    assert store.log == [
        "put streams/s1/batches/b1/images/a.png",
        "put streams/s1/batches/b1/images/b.png",
        "put streams/s1/batches/b1/manifest.jsonl",
    ]
    parsed = batches.read_manifest(store, "s1", "b1")
    assert (parsed.records, parsed.errors) == ([items[0][0], items[1][0]], [])
    assert batches.read_image(store, "s1", "b1", parsed.records[1]) == b"png-b"


def test_write_batch_refuses_duplicates_before_writing(store: RecordingStore) -> None:
    with pytest.raises(
        RecordError, match=r"manifest.jsonl line 3: duplicate item_id 'a' \(first on line 1\)"
    ):
        batches.write_batch(store, "s1", "b1", [item("a"), item("b"), item("a")])
    shared = ManifestItem(item_id="c", image="images/a.png")
    with pytest.raises(
        RecordError, match="line 2: image 'streams/s1/batches/b1/images/a.png' already used"
    ):
        batches.write_batch(store, "s1", "b1", [item("a"), (shared, b"")])
    assert store.log == []


def test_corrupt_manifest_lines_are_reported_and_the_rest_kept(store: RecordingStore) -> None:
    good = [item(i)[0].model_dump_json() for i in ("a", "b")]
    lines = [
        good[0],
        "{not json",
        '{"item_id": "bad id", "image": "images/x.png"}',
        good[0],
        "",
        good[1],
    ]
    store.put(layout.manifest_key("s1", "b1"), "\n".join(lines).encode() + b"\n")
    parsed = batches.read_manifest(store, "s1", "b1")
    assert [r.item_id for r in parsed.records] == ["a", "b"]
    assert [(e.key, e.line) for e in parsed.errors] == [
        ("streams/s1/batches/b1/manifest.jsonl", n) for n in (2, 3, 4)
    ]
    assert parsed.errors[0].problem.startswith("not valid JSON (")
    assert parsed.errors[1].problem.startswith("item_id: String should match pattern")
    assert parsed.errors[2].problem == "duplicate item_id 'a' (first on line 1)"
    with pytest.raises(RecordError, match=r"line 2: not valid JSON .* \(and 2 more bad lines\)$"):
        parsed.strict()


def test_read_image_missing_names_the_manifest_item(store: RecordingStore) -> None:
    with pytest.raises(
        ObjectNotFound, match=r"images/z.png' in store .*; item 'z' of manifest streams/s1/"
    ):
        batches.read_image(store, "s1", "b1", item("z")[0])


def test_labels_round_trip_and_missing(store: RecordingStore) -> None:
    labels = [Label(item_id="a", answer=True), Label(item_id="b", answer="red")]
    assert batches.write_labels(store, "s1", "b1", labels) == "streams/s1/feedback/b1/labels.jsonl"
    parsed = batches.read_labels(store, "s1", "b1")
    assert (parsed.records, parsed.errors) == (labels, [])
    with pytest.raises(ObjectNotFound):
        batches.read_labels(store, "s1", "b2")


def test_results_round_trip_with_marker_last(store: RecordingStore) -> None:
    assert batches.read_results(store, "s1", "p1", "b1") is None
    rows = [result("a"), result("b")]
    marker = batches.write_results(
        store, "s1", "p1", "b1", rows, policy_version=3, program_id="g", created_at=WHEN
    )
    data = store.get("streams/s1/results/p1/b1/results.jsonl")
    assert marker == BatchResultsMarker(
        stream="s1",
        batch="b1",
        policy="p1",
        policy_version=3,
        program_id="g",
        rows=2,
        sha256=hashlib.sha256(data).hexdigest(),
        created_at=WHEN,
    )
    assert store.log == [
        f"{verb} streams/s1/results/p1/b1/{name}"
        for verb, name in [("delete", "_SUCCESS"), ("put", "results.jsonl"), ("put", "_SUCCESS")]
    ]
    assert batches.read_results(store, "s1", "p1", "b1") == (marker, rows)


def test_torn_results_are_detected(store: RecordingStore) -> None:
    batches.write_results(store, "s1", "p1", "b1", [result("a")], policy_version=1, program_id="g")
    data_key = "streams/s1/results/p1/b1/results.jsonl"
    store.put(data_key, store.get(data_key) + result("b").model_dump_json().encode() + b"\n")
    with pytest.raises(StorageError, match="torn write: sha256 of .*results.jsonl differs"):
        batches.read_results(store, "s1", "p1", "b1")
    store.delete(data_key)
    with pytest.raises(
        StorageError, match="torn write: .*_SUCCESS exists but .*results.jsonl does not"
    ):
        batches.read_results(store, "s1", "p1", "b1")


def test_marker_row_count_must_match(store: RecordingStore) -> None:
    marker = batches.write_results(
        store, "s1", "p1", "b1", [result("a")], policy_version=1, program_id="g"
    )
    wrong = marker.model_copy(update={"rows": 5})
    store.put(layout.success_key("s1", "p1", "b1"), wrong.model_dump_json().encode())
    with pytest.raises(StorageError, match="has 1 rows, .* says 5"):
        batches.read_results(store, "s1", "p1", "b1")


def test_list_verbs_return_sorted_complete_ids_only(store: RecordingStore) -> None:
    for batch in ("b2", "b10", "b1"):
        batches.write_batch(store, "s1", batch, [item("a")])
        batches.write_labels(store, "s1", batch, [Label(item_id="a", answer=True)])
    store.put("streams/s1/batches/b3/images/a.png", b"no manifest yet")
    store.put("streams/s1/batches/b4/nested/manifest.jsonl", b"")
    batches.write_results(store, "s1", "p1", "b2", [], policy_version=0, program_id="g")
    batches.write_results(store, "s1", "p1", "b1", [], policy_version=0, program_id="g")
    store.put("streams/s1/results/p1/b3/results.jsonl", b"")  # data without marker
    assert batches.list_batches(store, "s1") == ["b1", "b10", "b2"]
    assert batches.list_feedback(store, "s1") == ["b1", "b10", "b2"]
    assert batches.list_results(store, "s1", "p1") == ["b1", "b2"]
    assert batches.list_results(store, "s1", "p2") == []
    assert batches.list_batches(store, "s9") == []
