"""Confidences backends report with their answers (``Usage.confidence``), which call-site
cascades calibrate: detectors from their per-pixel class probabilities, fact tables from
how well the question matched."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.scenes import generate_scene
from modules.backends.base import Call
from modules.registry import Registry

REGISTRY = Registry.from_catalog()


@pytest.mark.parametrize("name", ["det-s", "det-m", "det-l"])
def test_detectors_report_a_confidence_for_every_function(name: str) -> None:
    detector = REGISTRY.get(name)
    scenes = [generate_scene(seed, difficulty=d).image for seed, d in ((0, "easy"), (1, "hard"), (2, "medium"))]
    calls = [Call(f, image, (shape,)) for image in scenes for f in ("exists", "find", "count")
             for shape in ("circle", "triangle")]
    outputs = detector.infer(calls)
    confidences = [o.usage.confidence for o in outputs]
    assert all(c is not None and 0.0 <= c <= 1.0 for c in confidences)
    # the answers are those of the arg-max map: find, exists and count agree with each other
    for k in range(0, len(calls), 6):
        for j in range(2):
            exists, found, count = (outputs[k + j + 2 * i].value for i in range(3))
            assert exists == bool(found) and count == len(found)


def test_a_detector_is_surer_of_an_easy_scene_than_of_a_blank_hard_call() -> None:
    detector = REGISTRY.get("det-l")
    easy = generate_scene(0, difficulty="easy")  # green circle, yellow square, orange circle
    (circle,) = detector.infer([Call("exists", easy.image, ("circle",))])
    assert circle.value is True and circle.usage.confidence is not None and circle.usage.confidence > 0.5
    (empty,) = detector.infer([Call("exists", np.zeros((0, 0, 3), np.uint8), ("circle",))])
    assert empty.usage.confidence is None  # nothing was looked at


def test_fact_tables_report_how_well_the_question_matched() -> None:
    exact, overlap = REGISTRY.get("facts-exact"), REGISTRY.get("facts-overlap")
    calls = [Call("llm_query", None, (q,)) for q in
             ("How many sides does a triangle have?", "how many sides has a big triangle", "What is the capital of France?")]
    assert [o.usage.confidence for o in exact.infer(calls)] == [1.0, None, None]
    got = [o.usage.confidence for o in overlap.infer(calls)]
    assert got == [1.0, 0.75, None]  # Jaccard overlap of content words: 3 of 4
