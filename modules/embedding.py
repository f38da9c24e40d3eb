"""A small image embedding, computed once per item and shared by every call site's policy.

It is deliberately cheap (a few hundred thousand operations on a 32×32 thumbnail) so
the policy's own compute stays a rounding error next to the cheapest backend, and it
captures what makes an image hard for cheap backends: how much foreground there is,
how it is spread, how small its parts are, noise, blur and colour saturation.
"""

from __future__ import annotations

import numpy as np

DIM = 24
#: Operations per embedding, counted by hand from the steps below (for the cost ledger).
FLOPS = 32 * 32 * 3 * 12


def embed(image: np.ndarray) -> np.ndarray:
    """Return a float32 vector of length ``DIM`` with values roughly in [0, 1]."""
    thumb = _thumbnail(image.astype(np.float32) / 255.0, 32)
    gray = thumb.mean(axis=2)
    background = np.median(gray)
    saturation = thumb.max(axis=2) - thumb.min(axis=2)
    fg = (saturation > 0.25) | (np.abs(gray - background) > 0.2)
    grid = fg.reshape(4, 8, 4, 8).mean(axis=(1, 3)).ravel()  # 16 cells
    lap = np.abs(4 * gray[1:-1, 1:-1] - gray[:-2, 1:-1] - gray[2:, 1:-1] - gray[1:-1, :-2] - gray[1:-1, 2:])
    edges_x = np.abs(np.diff(fg.astype(np.float32), axis=1)).mean()
    edges_y = np.abs(np.diff(fg.astype(np.float32), axis=0)).mean()
    fg_frac = fg.mean()
    # perimeter/area is high when the foreground is many small parts (hard for low-res backends)
    fragmentation = (edges_x + edges_y) / (fg_frac + 1e-3) / 4
    glob = np.array([
        fg_frac,
        min(fragmentation, 1.0),
        min(lap.mean() * 4, 1.0),
        saturation[fg].mean() if fg.any() else 0.0,
        float(gray.std()),
        min(float(np.abs(np.diff(gray, axis=1)).mean()) * 4, 1.0),
        float(background),
        1.0,
    ], dtype=np.float32)
    return np.concatenate([grid.astype(np.float32), glob])


def _thumbnail(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape[:2]
    if h < size or w < size:
        ys = np.linspace(0, h - 1, size).astype(int)
        xs = np.linspace(0, w - 1, size).astype(int)
        sampled: np.ndarray = image[ys][:, xs]
        return sampled
    ys = np.arange(size + 1) * h // size
    xs = np.arange(size + 1) * w // size
    rows = np.add.reduceat(image, ys[:-1], axis=0) / np.diff(ys)[:, None, None]
    means: np.ndarray = np.add.reduceat(rows, xs[:-1], axis=1) / np.diff(xs)[None, :, None]
    return means
