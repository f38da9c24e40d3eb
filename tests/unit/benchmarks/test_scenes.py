"""The procedural scene generator: determinism, forced objects, ground truth, codecs."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from benchmarks.scenes import (
    COLOURS,
    SHAPES,
    SIZE,
    SceneObject,
    decode_image,
    encode_png,
    generate_scene,
    shape_mask,
)


def test_same_seed_same_scene() -> None:
    a, b = generate_scene(1234), generate_scene(1234)
    assert encode_png(a.image) == encode_png(b.image)
    assert a.objects == b.objects
    assert np.array_equal(a.mask, b.mask)
    assert a.image.shape == (SIZE, SIZE, 3) and a.image.dtype == np.uint8
    assert a.mask.shape == (SIZE, SIZE) and a.mask.dtype == np.int8


def test_difficulty_drawn_from_seed_matches_explicit() -> None:
    a = generate_scene(77)
    b = generate_scene(77, difficulty=a.difficulty)
    assert np.array_equal(a.image, b.image) and a.objects == b.objects


def test_different_seeds_differ() -> None:
    assert not np.array_equal(generate_scene(1).image, generate_scene(2).image)


def test_difficulty_distribution() -> None:
    counts = Counter(generate_scene(s).difficulty for s in range(1000))
    assert counts == {"easy": 390, "medium": 347, "hard": 263}


def test_difficulty_shrinks_objects() -> None:
    sizes = {d: [o.size for s in range(60) for o in generate_scene(s, difficulty=d).objects]
             for d in ("easy", "hard")}
    assert min(sizes["easy"]) >= 18 and max(sizes["easy"]) <= 36
    assert min(sizes["hard"]) >= 6 and max(sizes["hard"]) <= 22
    assert np.mean(sizes["hard"]) < np.mean(sizes["easy"]) - 10


@pytest.mark.parametrize("difficulty", ["easy", "medium", "hard"])
def test_forced_objects_present(difficulty: str) -> None:
    force = (("circle", "red"), ("square", "blue"), ("circle", "red"))
    for seed in range(20):
        scene = generate_scene(seed, difficulty=difficulty, force=force)
        have = Counter((o.shape, o.colour) for o in scene.objects)
        assert have[("circle", "red")] >= 2 and have[("square", "blue")] >= 1
        assert 3 <= len(scene.objects) <= 6


def test_mask_matches_objects() -> None:
    for seed in range(30):
        scene = generate_scene(seed)
        shown = {1 + SHAPES.index(o.shape) for o in scene.objects if o.occlusion < 1.0}
        assert set(np.unique(scene.mask).tolist()) - {0} == shown
        for o in scene.objects:
            x0, y0, x1, y1 = o.box
            assert 0 <= x0 < x1 <= SIZE and 0 <= y0 < y1 <= SIZE
            assert o.shape in SHAPES and o.colour in COLOURS and 0.0 <= o.occlusion <= 1.0
            if o.occlusion == 0.0 and o.shape == "square":
                assert np.all(scene.mask[y0:y1, x0:x1] == 1 + SHAPES.index("square"))


def test_easy_scene_exact_ground_truth() -> None:
    scene = generate_scene(0, difficulty="easy")
    assert [(o.shape, o.colour) for o in scene.objects] == [
        ("circle", "green"), ("square", "yellow"), ("circle", "orange")]
    assert scene.objects[0].box == (29, 20, 63, 54)
    assert scene.objects[0].center == (46.0, 37.0)
    assert scene.visible_objects == scene.objects


def test_visible_threshold() -> None:
    half = SceneObject("circle", "red", (0, 0, 4, 4), 4, 0.5, 0)
    more = SceneObject("circle", "red", (0, 0, 4, 4), 4, 0.51, 1)
    assert half.visible and not more.visible


def test_shape_masks() -> None:
    assert shape_mask("square", 5).sum() == 25
    tri = shape_mask("triangle", 10)
    assert tri[-1].sum() == 10 and tri[0].sum() <= 2
    assert shape_mask("circle", 10).sum() < 100
    with pytest.raises(ValueError, match="unknown shape 'star'"):
        shape_mask("star", 5)


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="unknown difficulty 'extreme'"):
        generate_scene(0, difficulty="extreme")
    with pytest.raises(ValueError, match="unknown object"):
        generate_scene(0, force=(("circle", "pink"),))
    with pytest.raises(ValueError, match="at most 6"):
        generate_scene(0, force=(("circle", "red"),) * 7)


def test_png_round_trip() -> None:
    image = generate_scene(5).image
    assert np.array_equal(decode_image(encode_png(image)), image)


@pytest.mark.parametrize("data", [b"", b"not an image", None])
def test_decode_corrupt_raises(data: bytes | None) -> None:
    blob = encode_png(generate_scene(5).image)[:60] if data is None else data
    with pytest.raises(ValueError, match="cannot decode image"):
        decode_image(blob)


def test_the_scene_vocabulary_has_one_definition() -> None:
    from modules import vocab
    from modules.synthesis import grammar

    assert SHAPES is vocab.SHAPES and COLOURS is vocab.COLOURS
    # the names grammar imports (not re-exported, so read from its namespace)
    assert vars(grammar)["SHAPES"] is vocab.SHAPES and vars(grammar)["COLOURS"] is vocab.COLOURS
    assert SHAPES == ("circle", "square", "triangle")  # the detectors' class order: 1 + index
    assert COLOURS == ("red", "orange", "yellow", "green", "blue", "purple")  # classifier order
