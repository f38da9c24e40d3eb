"""Rendered sign text on generated scenes, as a post-process with exact ground truth.

A *sign* is a light panel with one dark word on it (``STOP``, ``BANANA``, ``3``...), drawn
on top of a finished scene of ``benchmarks.scenes`` in free space: it never covers an
object, so the scene's object ground truth stays exact. The scene's difficulty drives the
sign's: font size, contrast, blur and noise, so small OCR models read easy signs and
misread hard ones. Every item is a pure function of ``(seed, force, sign)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from benchmarks.scenes import SIZE, Scene, SceneObject, generate_scene

#: Words a sign may show; colour words, things with a known colour, digits and plain words.
COLOUR_WORDS = ("RED", "ORANGE", "YELLOW", "GREEN", "BLUE", "PURPLE")
THING_WORDS = ("BANANA", "LEMON", "CHERRY", "TOMATO", "PLUM", "FROG", "CARROT", "LIME")
DIGIT_WORDS = ("1", "2", "3", "4", "5", "6")
PLAIN_WORDS = ("STOP", "EXIT", "OPEN", "SALE", "TAXI", "CAFE", "HOTEL", "PARK")
SIGN_WORDS: tuple[str, ...] = COLOUR_WORDS + THING_WORDS + DIGIT_WORDS + PLAIN_WORDS
#: A random (unforced) scene carries a sign with this probability.
P_SIGN = 0.3
MARGIN = 2  # free pixels kept between a sign and any object box
#: Signal-to-noise ratio a sign's strokes need (their mean contrast against the panel over the
#: noise's deviation) for its word to be legible: Rose's criterion (a signal under about 5 noise
#: deviations is not told apart from the noise), taken per pixel, since reading a word resolves
#: its strokes rather than detecting a blob
LEGIBLE_SNR = 5.0
PLACE_TRIES = 60


@dataclass(frozen=True)
class _SignKnobs:
    font: tuple[int, int]  # font size range in pixels
    panel: tuple[int, int]  # panel grey level range
    ink: tuple[int, int]  # text grey level range
    p_blur: float
    noise: float  # per-channel sensor noise (sigma, grey levels)
    cast: float  # max per-channel colour cast, as the scene's camera has


SIGN_KNOBS: dict[str, _SignKnobs] = {
    "easy": _SignKnobs((13, 15), (228, 245), (10, 35), 0.0, 2.0, 0.0),
    "medium": _SignKnobs((10, 12), (205, 228), (45, 80), 0.25, 6.0, 8.0),
    "hard": _SignKnobs((8, 9), (180, 205), (80, 115), 0.6, 11.0, 20.0),
}


@dataclass(frozen=True)
class Sign:
    """A drawn sign: its word and its panel's box (x0, y0, x1, y1), x1/y1 exclusive."""

    text: str
    box: tuple[int, int, int, int]
    font_size: int
    #: the text strokes' mean contrast against the panel, grey levels, as drawn (after any
    #: blur, before noise and colour cast)
    stroke_contrast: float = 255.0
    #: that contrast over the sensor noise: each stroke pixel's signal-to-noise ratio
    stroke_snr: float = float("inf")

    @property
    def legible(self) -> bool:
        """Whether the word can be read from the pixels at all: its strokes, on average, at
        least ``LEGIBLE_SNR`` noise deviations from the panel. An illegible sign's word is not
        in the image, so a truth that depends on it is *maybe* (``benchmarks.truth``)."""
        return self.stroke_snr >= LEGIBLE_SNR


@dataclass(frozen=True, eq=False)
class SignedScene:
    """A scene, perhaps with a sign; ``image`` has the sign drawn in."""

    scene: Scene
    sign: Sign | None
    image: np.ndarray

    @property
    def seed(self) -> int:
        return self.scene.seed

    @property
    def difficulty(self) -> str:
        return self.scene.difficulty

    @property
    def objects(self) -> tuple[SceneObject, ...]:
        return self.scene.objects

    @property
    def sign_text(self) -> str:
        """The sign's word, or "" when the scene has no sign."""
        return self.sign.text if self.sign else ""


def _font(size: int) -> ImageFont.FreeTypeFont:
    # Pillow's bundled FreeType font: the same glyphs on every machine with this Pillow.
    return ImageFont.load_default(size=size)  # type: ignore[return-value]


def _free_spot(rng: np.random.Generator, w: int, h: int,
               boxes: Sequence[tuple[int, int, int, int]]) -> tuple[int, int] | None:
    if w > SIZE or h > SIZE:
        return None
    for _ in range(PLACE_TRIES):
        x, y = int(rng.integers(0, SIZE - w + 1)), int(rng.integers(0, SIZE - h + 1))
        if all(x + w + MARGIN <= bx0 or bx1 + MARGIN <= x or y + h + MARGIN <= by0 or by1 + MARGIN <= y
               for bx0, by0, bx1, by1 in boxes):
            return x, y
    return None


def draw_sign(scene: Scene, text: str, seed: int) -> SignedScene:
    """Draw ``text`` on a sign in free space of ``scene``; no sign if no space is free.

    Raises:
        ValueError: ``text`` is not one of ``SIGN_WORDS``.
    """
    if text not in SIGN_WORDS:
        raise ValueError(f"sign text {text!r} is not a sign word; valid: {list(SIGN_WORDS)}")
    k = SIGN_KNOBS[scene.difficulty]
    rng = np.random.default_rng([seed, 0x5167])
    size = int(rng.integers(k.font[0], k.font[1] + 1))
    font = _font(size)
    x0, y0, x1, y1 = map(int, font.getbbox(text))  # whole pixels already; Pillow annotates floats
    pad = max(2, size // 4)
    w, h = x1 - x0 + 2 * pad, y1 - y0 + 2 * pad
    spot = _free_spot(rng, w, h, [o.box for o in scene.objects])
    if spot is None:
        return SignedScene(scene, None, scene.image)
    x, y = spot
    panel = int(rng.integers(k.panel[0], k.panel[1] + 1))
    ink = int(rng.integers(k.ink[0], k.ink[1] + 1))
    tile = Image.new("L", (w, h), panel)
    draw = ImageDraw.Draw(tile)
    draw.rectangle([0, 0, w - 1, h - 1], outline=max(0, panel - 90))
    draw.text((pad - x0, pad - y0), text, font=font, fill=ink)
    pixels: np.ndarray = np.asarray(tile, dtype=np.float32)
    strokes = np.zeros_like(pixels, dtype=bool)  # the glyphs' own pixels (the outline is not text)
    strokes[1:-1, 1:-1] = pixels[1:-1, 1:-1] <= (panel + ink) / 2
    if rng.random() < k.p_blur:
        padded = np.pad(pixels, 1, mode="edge")
        blurred = sum(padded[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3))
        assert isinstance(blurred, np.ndarray)  # nine windows: never sum()'s empty 0
        pixels = blurred / 9.0
    contrast = float(panel - pixels[strokes].mean()) if strokes.any() else 0.0
    rgb = pixels[:, :, None] + rng.uniform(-k.cast, k.cast, size=3).astype(np.float32)
    rgb = rgb + rng.normal(0.0, k.noise, size=(h, w, 3)).astype(np.float32)
    image = scene.image.copy()
    image[y:y + h, x:x + w] = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    snr = contrast / k.noise if k.noise > 0 else float("inf")
    return SignedScene(scene, Sign(text, (x, y, x + w, y + h), size, round(contrast, 3), round(snr, 3)),
                       image)


def random_sign_text(seed: int) -> str | None:
    """The sign an unforced scene of ``seed`` carries (None: no sign)."""
    rng = np.random.default_rng([seed, 0x51])
    if rng.random() >= P_SIGN:
        return None
    return SIGN_WORDS[int(rng.integers(len(SIGN_WORDS)))]


def render_item(seed: int, force: Sequence[tuple[str, str]] = (), sign: str | None = "random",
                difficulty: str | None = None) -> SignedScene:
    """A benchmark item: the scene of ``(seed, force)`` and its sign.

    Args:
        seed: scene seed (difficulty is drawn from it unless given).
        force: (shape, colour) objects the scene must contain.
        sign: a sign word, ``None`` for no sign, or ``"random"`` for the seed's own draw.
        difficulty: override the seed's difficulty.
    """
    scene = generate_scene(seed, difficulty=difficulty, force=force)
    text = random_sign_text(seed) if sign == "random" else sign
    if text is None:
        return SignedScene(scene, None, scene.image)
    return draw_sign(scene, text, seed)
