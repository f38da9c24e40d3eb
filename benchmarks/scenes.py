"""Seeded procedural scenes of coloured shapes with exact ground truth.

Every scene is a pure function of ``(seed, difficulty, force)``. Difficulty drives object
size, clutter, occlusion, texture, noise, blur, brightness/cast and colour jitter towards the
confusable neighbour (red/orange, blue/purple), so small and cheap models fail on hard scenes
while large ones stay accurate.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from modules.vocab import COLOURS as COLOURS  # the benchmark code imports them from here
from modules.vocab import SHAPES as SHAPES

SIZE = 128
DIFFICULTIES = ("easy", "medium", "hard")
MAX_OBJECTS = 6

#: Saturated palette; red/orange and blue/purple are deliberately close.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (200, 45, 45),
    "orange": (220, 105, 40),
    "yellow": (225, 205, 50),
    "green": (45, 160, 70),
    "blue": (45, 75, 205),
    "purple": (115, 60, 190),
}
#: The colour each one drifts towards under colour jitter.
NEIGHBOUR = {"red": "orange", "orange": "red", "blue": "purple", "purple": "blue",
             "yellow": "orange", "green": "blue"}


@dataclass(frozen=True)
class _Knobs:
    """Rendering parameters of one difficulty level."""

    sizes: tuple[int, int]
    small_sizes: tuple[int, int]  # drawn instead of ``sizes`` with probability ``p_small``
    p_small: float
    n_objects: tuple[int, int]
    max_overlap: float  # of the smaller box; rejection-sampled placement
    texture: float
    noise: float
    p_blur: float
    brightness: float
    cast: float
    jitter: float  # max fraction of the way towards the neighbour colour
    clutter: tuple[int, int]


KNOBS: dict[str, _Knobs] = {
    "easy": _Knobs((18, 36), (18, 36), 0.0, (1, 3), 0.0, 5.0, 3.0, 0.0, 0.05, 0.0, 0.12, (0, 0)),
    "medium": _Knobs((12, 28), (10, 14), 0.3, (2, 5), 0.25, 10.0, 8.0, 0.2, 0.12, 10.0, 0.28,
                     (0, 2)),
    "hard": _Knobs((10, 22), (6, 10), 0.5, (3, 6), 1.0, 16.0, 14.0, 0.5, 0.22, 24.0, 0.42,
                   (2, 5)),
}


@dataclass(frozen=True)
class SceneObject:
    """One drawn object; ``box`` is its full (unoccluded) extent, x1/y1 exclusive."""

    shape: str
    colour: str
    box: tuple[int, int, int, int]
    size: int
    occlusion: float  # fraction of its pixels hidden by objects drawn later
    z: int

    @property
    def visible(self) -> bool:
        return self.occlusion <= 0.5

    @property
    def center(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return ((x0 + x1) / 2.0, (y0 + y1) / 2.0)


@dataclass(frozen=True, eq=False)
class Scene:
    """A rendered scene: pixels, per-pixel top-most shape class and its objects."""

    seed: int
    difficulty: str
    objects: tuple[SceneObject, ...]
    image: np.ndarray  # (SIZE, SIZE, 3) uint8
    mask: np.ndarray  # (SIZE, SIZE) int8: 0 background, 1 + SHAPES.index(shape)

    @property
    def visible_objects(self) -> tuple[SceneObject, ...]:
        return tuple(o for o in self.objects if o.visible)


def shape_mask(shape: str, size: int) -> np.ndarray:
    """Boolean ``size``x``size`` raster of a shape (pixel centres inside the outline)."""
    c = np.arange(size, dtype=np.float32) + 0.5
    yy: np.ndarray = c[:, None]
    xx: np.ndarray = c[None, :]
    half = size / 2.0
    if shape == "circle":
        return (xx - half) ** 2 + (yy - half) ** 2 <= half * half
    if shape == "square":
        return np.ones((size, size), dtype=bool)
    if shape == "triangle":  # apex up, base at the bottom row
        return np.abs(xx - half) <= yy * 0.5 + 0.5
    raise ValueError(f"unknown shape {shape!r}; valid: {list(SHAPES)}")


def _difficulty_of(seed: int) -> str:
    u = np.random.default_rng([seed, 7]).random()
    return "easy" if u < 0.40 else "medium" if u < 0.75 else "hard"


def _smooth_noise(rng: np.random.Generator, cells: int, amp: float) -> np.ndarray:
    """Low-frequency texture: a coarse random grid, bilinearly upsampled (separable)."""
    grid = rng.normal(0.0, amp, size=(cells, cells, 3)).astype(np.float32)
    pos = np.linspace(0, cells - 1, SIZE, dtype=np.float32)
    lo = np.minimum(pos.astype(int), cells - 2)
    frac = pos - lo
    w = np.zeros((SIZE, cells), dtype=np.float32)
    w[np.arange(SIZE), lo] = 1 - frac
    w[np.arange(SIZE), lo + 1] = frac
    rows = np.tensordot(w, grid, axes=(1, 0))  # (SIZE, cells, 3)
    return np.tensordot(w, rows, axes=(1, 1)).transpose(1, 0, 2)  # (SIZE, SIZE, 3)


def _background(rng: np.random.Generator, k: _Knobs) -> np.ndarray:
    grey = rng.uniform(165, 215)
    tint = rng.uniform(-6, 6, size=3)  # low saturation: never a palette colour
    img = np.full((SIZE, SIZE, 3), grey, dtype=np.float32) + tint.astype(np.float32)
    img += _smooth_noise(rng, int(rng.integers(4, 12)), k.texture)
    for _ in range(int(rng.integers(k.clutter[0], k.clutter[1] + 1))):
        # Dark grey strokes: clutter that is not an object.
        x0, y0 = rng.integers(0, SIZE, size=2)
        horizontal, length, thick = rng.random() < 0.5, int(rng.integers(10, 50)), 1 + int(rng.integers(0, 2))
        shade = rng.uniform(70, 130)
        if horizontal:
            img[y0:y0 + thick, x0:x0 + length] = shade
        else:
            img[y0:y0 + length, x0:x0 + thick] = shade
    return img


def _place(rng: np.random.Generator, size: int, boxes: list[tuple[int, int, int, int]],
           max_overlap: float) -> tuple[int, int]:
    """Top-left corner; rejection-sampled so overlap with earlier boxes stays bounded."""
    best: tuple[float, tuple[int, int]] | None = None
    for _ in range(30):
        x, y = (int(v) for v in rng.integers(0, SIZE - size + 1, size=2))
        worst = 0.0
        for bx0, by0, bx1, by1 in boxes:
            iw = min(x + size, bx1 + 2) - max(x, bx0 - 2)
            ih = min(y + size, by1 + 2) - max(y, by0 - 2)
            if iw > 0 and ih > 0:
                worst = max(worst, iw * ih / min(size * size, (bx1 - bx0) * (by1 - by0)))
        if worst <= max_overlap:
            return x, y
        if best is None or worst < best[0]:
            best = (worst, (x, y))
    assert best is not None
    return best[1]


def _object_specs(rng: np.random.Generator, k: _Knobs,
                  force: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    for shape, colour in force:
        if shape not in SHAPES or colour not in COLOURS:
            raise ValueError(f"force: unknown object ({shape!r}, {colour!r}); "
                             f"shapes {list(SHAPES)}, colours {list(COLOURS)}")
    if len(force) > MAX_OBJECTS:
        raise ValueError(f"force: at most {MAX_OBJECTS} objects, got {len(force)}")
    n = max(int(rng.integers(k.n_objects[0], k.n_objects[1] + 1)), len(force))
    specs = list(force) + [(SHAPES[int(rng.integers(3))], COLOURS[int(rng.integers(6))])
                           for _ in range(n - len(force))]
    order = rng.permutation(len(specs))  # forced objects get random depth like any other
    return [specs[i] for i in order]


def generate_scene(seed: int, *, difficulty: str | None = None,
                   force: Sequence[tuple[str, str]] = ()) -> Scene:
    """Render the scene of ``seed``; deterministic per ``(seed, difficulty, force)``."""
    if difficulty is None:
        difficulty = _difficulty_of(seed)
    if difficulty not in KNOBS:
        raise ValueError(f"unknown difficulty {difficulty!r}; valid: {list(DIFFICULTIES)}")
    k = KNOBS[difficulty]
    force = tuple((str(s), str(c)) for s, c in force)
    rng = np.random.default_rng([seed, DIFFICULTIES.index(difficulty), zlib.crc32(repr(force).encode())])
    img = _background(rng, k)
    owner = np.full((SIZE, SIZE), -1, dtype=np.int8)
    drawn: list[tuple[str, str, tuple[int, int, int, int], int, np.ndarray]] = []
    for z, (shape, colour) in enumerate(_object_specs(rng, k, force)):
        lo, hi = k.small_sizes if rng.random() < k.p_small else k.sizes
        size = int(rng.integers(lo, hi + 1))
        x, y = _place(rng, size, [d[2] for d in drawn], k.max_overlap)
        m = shape_mask(shape, size)
        ys, xs = np.nonzero(m)
        box = (x + int(xs.min()), y + int(ys.min()), x + int(xs.max()) + 1, y + int(ys.max()) + 1)
        rgb = np.array(PALETTE[colour], dtype=np.float32)
        rgb += rng.uniform(0, k.jitter) * (np.array(PALETTE[NEIGHBOUR[colour]], np.float32) - rgb)
        shade = 1.0 + rng.uniform(-0.1, 0.1) * np.linspace(-1, 1, size, dtype=np.float32)[:, None]
        region = img[y:y + size, x:x + size]
        region[m] = (rgb[None, None, :] * shade[:, :, None] * np.ones((1, size, 1), np.float32))[m]
        owner[y:y + size, x:x + size][m] = z
        drawn.append((shape, colour, box, size, np.zeros((SIZE, SIZE), bool)))
        drawn[-1][4][y:y + size, x:x + size] = m
    objects, mask = [], np.zeros((SIZE, SIZE), dtype=np.int8)
    for z, (shape, colour, box, size, full) in enumerate(drawn):
        shown = full & (owner == z)
        mask[shown] = 1 + SHAPES.index(shape)
        occ = 1.0 - float(shown.sum()) / float(full.sum())
        objects.append(SceneObject(shape, colour, box, size, round(occ, 4), z))
    image = _finish(rng, img, k)
    return Scene(seed, difficulty, tuple(objects), image, mask)


def _finish(rng: np.random.Generator, img: np.ndarray, k: _Knobs) -> np.ndarray:
    """Camera effects: blur, brightness, colour cast, sensor noise."""
    if rng.random() < k.p_blur:
        pad = np.pad(img, ((1, 1), (1, 1), (0, 0)), mode="edge")
        blurred = sum(pad[dy:dy + SIZE, dx:dx + SIZE] for dy in range(3) for dx in range(3))
        assert isinstance(blurred, np.ndarray)  # nine windows: never sum()'s empty 0
        img = blurred / 9.0
    img = img * rng.uniform(1 - k.brightness, 1 + k.brightness)
    img = img + rng.uniform(-k.cast, k.cast, size=3).astype(np.float32)
    img = img + rng.normal(0.0, k.noise, size=img.shape).astype(np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of an HxWx3 uint8 image."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"encode_png: expected HxWx3 uint8, got {image.shape} {image.dtype}")
    buf = io.BytesIO()
    Image.fromarray(image, "RGB").save(buf, format="PNG")
    return buf.getvalue()


def decode_image(data: bytes) -> np.ndarray:
    """HxWx3 uint8 pixels of encoded image bytes; ValueError if they are not an image."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"cannot decode image ({len(data)} bytes): {exc}; "
                         "expected PNG/JPEG bytes as written by encode_png") from exc
