"""A small image embedding, computed once per item and shared by every call site's policy.

It is deliberately cheap (a few hundred thousand operations on a 32×32 thumbnail) so
the policy's own compute stays a rounding error next to the cheapest backend, and it
captures what makes an image hard for cheap backends: how much foreground there is,
how it is spread, how small its parts are, noise, blur and colour saturation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DIM = 24
#: Operations per embedding, counted by hand from the steps below (for the cost ledger).
FLOPS = 32 * 32 * 3 * 12


def embed(image: np.ndarray) -> np.ndarray:
    """Return a float32 vector of length ``DIM`` with values roughly in [0, 1]."""
    out: np.ndarray = embed_many([image])[0]
    return out


def embed_many(images: Sequence[np.ndarray]) -> np.ndarray:
    """``embed`` of every image, as an (N, ``DIM``) float32 array, computed for all images of one
    shape at once (a batch's items usually share one), a few numpy calls per shape instead of
    a few dozen per image.

    An image's vector does not depend on what it is computed with: every sum is exact
    (integers) or runs along one contiguous row of that image's own values.
    """
    out = np.empty((len(images), DIM), dtype=np.float32)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for k, image in enumerate(images):
        by_shape.setdefault(image.shape, []).append(k)
    for rows in by_shape.values():
        out[rows] = _embed_stack(np.stack([images[k] for k in rows]))
    return out


def _embed_stack(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 images of one shape -> (N, DIM) float32."""
    n = images.shape[0]
    thumb = _thumbnails(images, 32)  # (N, 32, 32, 3) in [0, 1]
    red, green, blue = thumb[..., 0], thumb[..., 1], thumb[..., 2]  # whole planes: no tiny reductions
    gray = (red + green + blue) / np.float32(3)
    flat_gray = gray.reshape(n, -1)
    background = np.median(flat_gray, axis=1)
    saturation = np.maximum(np.maximum(red, green), blue) - np.minimum(np.minimum(red, green), blue)
    fg = (saturation > 0.25) | (np.abs(gray - background[:, None, None]) > 0.2)
    counts = fg.reshape(n, 4, 8, 4, 8).sum(axis=(2, 4), dtype=np.int64).reshape(n, 16)
    grid = (counts / 64.0).astype(np.float32)  # 16 cells: the share of foreground in each
    lap = np.abs(4 * gray[:, 1:-1, 1:-1] - gray[:, :-2, 1:-1] - gray[:, 2:, 1:-1]
                 - gray[:, 1:-1, :-2] - gray[:, 1:-1, 2:])
    fgf = fg.astype(np.float32)
    edges_x = np.abs(np.diff(fgf, axis=2)).reshape(n, -1).mean(axis=1)
    edges_y = np.abs(np.diff(fgf, axis=1)).reshape(n, -1).mean(axis=1)
    fg_count = counts.sum(axis=1)
    fg_frac = fg_count / fg[0].size
    # perimeter/area is high when the foreground is many small parts (hard for low-res backends)
    fragmentation = (edges_x + edges_y) / (fg_frac + 1e-3) / 4
    fg_saturation = np.where(fg, saturation, 0.0).reshape(n, -1).sum(axis=1, dtype=np.float64)
    glob = np.stack([
        fg_frac,
        np.minimum(fragmentation, 1.0),
        np.minimum(lap.reshape(n, -1).mean(axis=1) * 4, 1.0),
        fg_saturation / np.maximum(fg_count, 1),
        flat_gray.std(axis=1),
        np.minimum(np.abs(np.diff(gray, axis=2)).reshape(n, -1).mean(axis=1) * 4, 1.0),
        background,
        np.ones(n),
    ], axis=1).astype(np.float32)
    return np.concatenate([grid, glob], axis=1)


def _thumbnails(images: np.ndarray, size: int) -> np.ndarray:
    """(N, size, size, 3) float32 block means in [0, 1] of (N, H, W, 3) uint8 images; an image
    smaller than ``size`` on a side is sampled instead."""
    n, h, w = images.shape[:3]
    if h < size or w < size:
        ys = np.linspace(0, h - 1, size).astype(int)
        xs = np.linspace(0, w - 1, size).astype(int)
        sampled: np.ndarray = images[:, ys][:, :, xs].astype(np.float32) / 255.0
        return sampled
    if h % size == 0 and w % size == 0:  # equal blocks: exact integer sums, rows then columns
        hb, wb = h // size, w // size
        rows = images.reshape(n, size, hb, w * 3).sum(axis=2, dtype=np.uint32)
        cols = rows.reshape(n, size, size, wb, 3)
        sums = cols[:, :, :, 0, :].copy()
        for j in range(1, wb):  # wb adds of whole arrays: far faster than a strided reduction
            sums += cols[:, :, :, j, :]
        means: np.ndarray = (sums / (255.0 * hb * wb)).astype(np.float32)
        return means
    ys = np.arange(size + 1) * h // size
    xs = np.arange(size + 1) * w // size
    rows = np.add.reduceat(images, ys[:-1], axis=1, dtype=np.uint32)
    sums = np.add.reduceat(rows, xs[:-1], axis=2, dtype=np.uint32)
    area = np.diff(ys)[:, None, None] * np.diff(xs)[None, :, None]
    uneven: np.ndarray = (sums / (255.0 * area)).astype(np.float32)
    return uneven
