"""Everything that touches one item (read, decode, size limits, embedding) fails that item
alone: a decompression bomb or a failing embedding costs one row, not the batch."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from benchmarks.scenes import encode_png
from flows._batch import process_batch
from flows.settings import Settings
from modules.images import ImageDecodeError, decode_image
from modules.registry import Registry
from modules.tasks import local_round_runner
from storage import batches
from storage.local import LocalStore
from storage.records import ManifestItem, StreamInfo

CATALOG = Path(__file__).parents[2] / "integration" / "fake_catalog.yaml"
PROGRAM = '''def execute_command(image):
    if not exists(image, "circle"):
        return False
    return verify_property(image, "circle", "red")
'''
MONO = 'def execute_command(image):\n    return query(image, "Is there a red circle?") == "yes"\n'


def bomb_png(width: int, height: int) -> bytes:
    """A valid, tiny PNG whose header declares ``width`` × ``height`` one-bit pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [20_000, 10_000, 5_000], ids=["400MP", "100MP", "25MP"])
def test_an_oversized_image_is_a_decode_error(side: int) -> None:
    with pytest.raises(ImageDecodeError, match=r"image (too large|is 5000x5000, over)"):
        decode_image(bomb_png(side, side))


def _publish(store: LocalStore, items: list[tuple[str, bytes]]) -> None:
    batches.write_stream_info(store, StreamInfo(
        stream="s1", query_id="red_circle", question="Is there a red circle?", answer_type="bool",
        program=PROGRAM, monolithic_program=MONO))
    batches.write_batch(store, "s1", "b0001", [(ManifestItem(item_id=i, image=f"images/{i}.png"), data)
                                               for i, data in items])


def test_a_bomb_and_a_failing_embedding_fail_their_items_alone(tmp_path: Path, monkeypatch) -> None:
    rng = np.random.default_rng(0)
    good = [(f"i{k}", encode_png(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))) for k in range(4)]
    odd = encode_png(np.full((17, 17, 3), 7, np.uint8))  # the embedding below fails on this one
    store = LocalStore(tmp_path / "objects")
    _publish(store, [*good[:2], ("bomb", bomb_png(20_000, 20_000)), ("odd", odd), *good[2:]])

    from policy_store.learners.features import item_features as real

    def features(learner, image):
        if image.shape[:2] == (17, 17):
            raise FloatingPointError("embedding overflowed")
        return real(learner, image)

    def many(learner, images):  # the batched embedding fails as a whole when one image does
        return [features(learner, image) for image in images]

    monkeypatch.setattr("flows._batch.item_features", features)
    monkeypatch.setattr("flows._batch.items_features", many)
    registry = Registry.from_catalog(CATALOG)
    summary = process_batch(Settings(home=tmp_path, catalog=CATALOG), store, registry, "s1", "b0001",
                            "learned", local_round_runner(registry))
    assert (summary.items, summary.failed) == (6, 2)
    written = batches.read_results(store, "s1", "learned", "b0001")
    assert written is not None
    by_id = {r.item_id: r for r in written[1]}
    assert [by_id[f"i{k}"].status for k in range(4)] == ["ok"] * 4
    assert by_id["bomb"].status == "failed"
    bomb = by_id["bomb"].error or ""
    assert bomb.startswith("s1/b0001 item bomb: image too large (")
    assert "400000000 pixels" in bomb
    assert by_id["odd"].error == "s1/b0001 item odd: FloatingPointError: embedding overflowed"
