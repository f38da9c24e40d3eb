"""Adding images from a folder (manifests, batches, re-adds) and parsing label files."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from storage import batches
from storage.labels import LabelFileError, LabelLine, UnknownItems, parse_label_file, write_stream_labels
from storage.local import LocalStore
from storage.records import StreamInfo
from storage.registry import UnknownStream, registered_streams, require_stream
from storage.sources import NoImages, add_images, list_source, next_batch_ids
from storage.url import open_store

PROGRAM = "def execute_command(image):\n    return exists(image, 'cat')\n"


def _png(seed: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((4, 4, 3), seed, dtype=np.uint8)).save(out, format="PNG")
    return out.getvalue()


def _stream(store: LocalStore, name: str = "s") -> None:
    batches.write_stream_info(store, StreamInfo(
        stream=name, query_id="q", question="Is there a cat?", answer_type="bool",
        program=PROGRAM, monolithic_program=PROGRAM))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "a" / "b").mkdir(parents=True)
    (src / "x.png").write_bytes(_png(1))
    (src / "a" / "y.JPG").write_bytes(b"\xff\xd8\xff\xe0 a jpeg header")
    (src / "a" / "b" / "z.jpeg").write_bytes(b"not really an image")
    (src / "bad name.png").write_bytes(_png(2))
    (src / "readme.txt").write_text("hello")
    (src / ".hidden.png").write_bytes(_png(3))
    return src


def test_list_source_keeps_jpeg_and_png_by_name_and_reports_the_rest(folder: Path) -> None:
    listing = list_source(open_store(str(folder)))
    assert listing.images == ["a/b/z.jpeg", "a/y.JPG", "x.png"]
    assert listing.bad_names == ["bad name.png"]
    assert listing.other_files == 2  # readme.txt, .hidden.png


def test_add_images_writes_manifests_in_batches_and_readding_adds_nothing(folder: Path, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    _stream(store)
    first = add_images(store, "s", str(folder), batch_size=1)
    assert first.batches == ["b0000", "b0001"]  # z.jpeg is no JPEG inside: left out
    assert (first.added, first.already, first.not_images) == (2, 0, ["a/b/z.jpeg"])
    (item,) = batches.read_manifest(store, "s", "b0000").strict()
    assert (item.item_id, item.image) == ("a/y.JPG", "images/a/y.JPG")
    data = (folder / "a" / "y.JPG").read_bytes()
    assert item.meta["sha256"] == hashlib.sha256(data).hexdigest()
    assert item.meta["source"].endswith("/src/a/y.JPG")
    assert batches.read_image(store, "s", "b0000", item) == data
    assert batches.read_manifest(store, "s", "b0001").strict()[0].item_id == "x.png"

    again = add_images(store, "s", str(folder), batch_size=1)
    assert (again.batches, again.added, again.already, again.not_images) == ([], 0, 2, ["a/b/z.jpeg"])
    (folder / "new.png").write_bytes(_png(4))
    more = add_images(store, "s", str(folder), batch_size=5)
    assert (more.batches, more.added) == (["b0002"], 1)
    assert batches.list_batches(store, "s") == ["b0000", "b0001", "b0002"]


def test_add_images_needs_a_folder_with_images(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    _stream(store)
    with pytest.raises(ValueError, match="no folder"):
        add_images(store, "s", str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoImages, match="no .jpg, .jpeg or .png file under"):
        add_images(store, "s", str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="batch size"):
        add_images(store, "s", str(tmp_path / "empty"), batch_size=0)


def test_new_batch_ids_continue_after_the_highest() -> None:
    new = next_batch_ids(["b0000", "b0007", "other"])
    assert [new(), new()] == ["b0008", "b0009"]
    assert next_batch_ids([])() == "b0000"


def test_registry_lists_described_streams_and_names_them_for_unknown_ones(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    with pytest.raises(UnknownStream, match="known streams: none yet"):
        require_stream(store, "s")
    _stream(store, "s")
    _stream(store, "t")
    assert registered_streams(store) == ["s", "t"]
    require_stream(store, "t")
    with pytest.raises(UnknownStream, match=r"unknown stream 'u' in .*; known streams: s, t"):
        require_stream(store, "u")
    store.delete("streams/t/stream.json")  # a registered stream that no longer exists
    assert registered_streams(store) == ["s"]


# --- label files -----------------------------------------------------------------------------------

def test_csv_labels_with_or_without_a_header() -> None:
    parsed = parse_label_file(b"item,label\na/x.png,yes\nb.png, No \n\nc.png,1\n", "l.csv", "bool")
    assert parsed == [LabelLine(2, "a/x.png", True), LabelLine(3, "b.png", False), LabelLine(5, "c.png", True)]
    assert parse_label_file(b"x.png,a cat\n", "l.txt", "str") == [LabelLine(1, "x.png", "a cat")]


def test_jsonl_labels_by_name_or_first_line() -> None:
    data = b'{"item": "x.png", "label": true}\n\n{"item": "y.png", "label": "no"}\n'
    expected = [LabelLine(1, "x.png", True), LabelLine(3, "y.png", False)]
    assert parse_label_file(data, "labels.jsonl", "bool") == expected
    assert parse_label_file(data, "labels", "bool") == expected


@pytest.mark.parametrize(("name", "data", "answer_type", "problems"), [
    ("l.jsonl", b'{"item": "x.png", "label": true}\n{"item": "y.png"\n', "bool",
     [(2, "not valid JSON")]),
    ("l.jsonl", b'{"item": "x.png", "label": true, "extra": 1}\n[1]\n', "bool",
     [(1, 'keys "item" and "label"'), (2, 'keys "item" and "label"')]),
    ("l.jsonl", b'{"item": "x.png", "label": "maybe"}\n{"item": "../y.png", "label": "no"}\n', "bool",
     [(1, "is not yes/no"), (2, "is not an item id")]),
    ("l.jsonl", b'{"item": "x.png", "label": true}\n', "str", [(1, "is not a non-empty text")]),
    ("l.csv", b"item,label\nx.png,yes\nx.png,no\ny.png\nz.png,yes,extra\n", "bool",
     [(3, "labelled again (first on line 2)"), (4, "expected 2 fields"), (5, "expected 2 fields")]),
    ("l.csv", b"\n\n", "bool", [(1, "no labels")]),
    ("l.csv", b"x.png,yes\n\xff\xfe,no\n", "bool", [(2, "not UTF-8")]),
])
def test_malformed_label_lines_are_rejected_with_their_line_numbers(
        name: str, data: bytes, answer_type: str, problems: list[tuple[int, str]]) -> None:
    with pytest.raises(LabelFileError) as caught:
        parse_label_file(data, name, answer_type)  # type: ignore[arg-type]
    assert [n for n, _ in caught.value.lines] == [n for n, _ in problems]
    for (_, got), (_, want) in zip(caught.value.lines, problems, strict=True):
        assert want in got
    assert str(caught.value).startswith(f"{name}: {len(problems)} malformed line")
    assert f"line {problems[0][0]}:" in str(caught.value)


def test_labels_land_in_their_batches_merged_with_earlier_ones(folder: Path, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    _stream(store)
    add_images(store, "s", str(folder), batch_size=1)  # b0000: a/y.JPG, b0001: x.png
    first = write_stream_labels(store, "s", [LabelLine(1, "a/y.JPG", True)])
    assert (first.new, first.changed, first.batches) == ({"b0000": 1}, {}, ["b0000"])
    assert batches.list_feedback(store, "s") == ["b0000"]
    late = write_stream_labels(store, "s", [LabelLine(1, "a/y.JPG", False), LabelLine(2, "x.png", True)])
    assert (late.new, late.changed, late.unchanged) == ({"b0001": 1}, {"b0000": 1}, 0)
    labels = {lab.item_id: lab.answer for b in ("b0000", "b0001")
              for lab in batches.read_labels(store, "s", b).strict()}
    assert labels == {"a/y.JPG": False, "x.png": True}
    same = write_stream_labels(store, "s", [LabelLine(1, "x.png", True)])
    assert (same.new, same.changed, same.unchanged) == ({}, {}, 1)
    with pytest.raises(UnknownItems, match=r"1 label for items not in stream 's': 'ghost.png'"):
        write_stream_labels(store, "s", [LabelLine(1, "ghost.png", True), LabelLine(2, "x.png", False)])
    assert batches.read_labels(store, "s", "b0001").strict()[0].answer is True  # nothing written
