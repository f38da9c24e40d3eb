"""Signs drawn on scenes: deterministic, in free space, exact ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.scenes import generate_scene
from benchmarks.signs import (
    LEGIBLE_SNR,
    SIGN_KNOBS,
    SIGN_WORDS,
    Sign,
    draw_sign,
    random_sign_text,
    render_item,
)


def test_render_item_is_deterministic_and_records_the_sign() -> None:
    a, b = render_item(5, sign="STOP"), render_item(5, sign="STOP")
    assert np.array_equal(a.image, b.image)
    assert a.sign is not None
    assert (a.difficulty, a.sign_text, a.sign.box, a.sign.font_size) == ("medium", "STOP", (74, 90, 110, 105), 12)


def test_sign_changes_only_its_box_and_never_covers_an_object() -> None:
    for seed in range(40):
        item = render_item(seed, sign=SIGN_WORDS[seed % len(SIGN_WORDS)])
        if item.sign is None:
            continue
        x0, y0, x1, y1 = item.sign.box
        changed = np.argwhere((item.image != item.scene.image).any(2))
        assert changed[:, 0].min() >= y0 and changed[:, 0].max() < y1
        assert changed[:, 1].min() >= x0 and changed[:, 1].max() < x1
        for o in item.objects:
            bx0, by0, bx1, by1 = o.box
            assert x1 <= bx0 or bx1 <= x0 or y1 <= by0 or by1 <= y0


def test_no_sign_and_random_sign() -> None:
    assert render_item(3, sign=None).sign is None
    assert np.array_equal(render_item(3, sign=None).image, generate_scene(3).image)
    assert sum(random_sign_text(s) is not None for s in range(1000)) == 312
    assert render_item(3).sign_text == (random_sign_text(3) or "")


def test_unknown_sign_word_is_rejected() -> None:
    with pytest.raises(ValueError, match="'HELLO' is not a sign word"):
        draw_sign(generate_scene(1), "HELLO", 1)


def test_stroke_contrast_measures_what_was_drawn() -> None:
    """Easy signs are drawn sharp and dark (strokes 190+ grey levels under the panel); a 3x3
    blur spreads a one-pixel stroke over nine pixels, so blurred hard signs keep a third or
    less of their ink contrast, and most of them sink under the noise."""
    easy = [render_item(s, sign="STOP", difficulty="easy").sign for s in range(20)]
    hard = [render_item(s, sign="STOP", difficulty="hard").sign for s in range(60)]
    assert all(s is not None and s.stroke_contrast > 150 and s.legible for s in easy)
    hard_signs = [s for s in hard if s is not None]
    faint = [s for s in hard_signs if not s.legible]
    assert faint and len(faint) < len(hard_signs)  # some hard signs stay legible
    knobs = SIGN_KNOBS["hard"]
    assert all(s.stroke_snr < LEGIBLE_SNR and s.stroke_contrast < LEGIBLE_SNR * knobs.noise for s in faint)
    least_ink = knobs.panel[0] - knobs.ink[1]  # the faintest ink a hard sign is drawn with
    assert all(s.stroke_contrast >= least_ink / 2 for s in hard_signs if s.legible)


def test_a_sign_made_without_a_contrast_is_legible() -> None:
    assert Sign("STOP", (0, 0, 10, 10), 12).legible
    assert not Sign("STOP", (0, 0, 10, 10), 8, stroke_contrast=20.0, stroke_snr=1.8).legible
