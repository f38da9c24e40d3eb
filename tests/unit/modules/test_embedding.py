"""The item embedding: one image or many, the same vector."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.scenes import generate_scene
from modules.embedding import DIM, embed, embed_many


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    scenes = [generate_scene(seed).image for seed in range(6)]
    odd = [rng.integers(0, 256, size=shape, dtype=np.uint8)
           for shape in [(100, 75, 3), (20, 300, 3), (16, 16, 3), (257, 129, 3), (100, 75, 3)]]
    return [scenes[0], odd[0], *scenes[1:4], odd[1], odd[2], scenes[4], odd[3], odd[4], scenes[5]]


def test_many_images_embed_as_each_alone_whatever_their_shapes_and_order() -> None:
    images = _images()
    alone = np.stack([embed(im) for im in images])
    together = embed_many(images)
    assert together.shape == (len(images), DIM) and together.dtype == np.float32
    assert np.array_equal(together, alone)
    assert np.array_equal(embed_many(images[::-1]), alone[::-1])
    assert embed_many([]).shape == (0, DIM)


def test_embedding_reads_the_image() -> None:
    black = np.zeros((64, 64, 3), np.uint8)
    square = black.copy()
    square[:16, :16] = (255, 0, 0)  # red: the whole first grid cell (rows and columns 0-15)
    a, b = embed(black), embed(square)
    assert a[:16].sum() == 0 and b[0] == 1.0 and b[1:16].sum() == 0  # the foreground grid
    assert b[16] == pytest.approx(1 / 16)  # foreground share
    assert b[19] == pytest.approx(1.0)  # the foreground's saturation
    assert np.all((b >= 0) & (b <= 1))
