"""Catalog backends: torch vision models (trained weights) and fact tables."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.scenes import SHAPES, generate_scene
from modules.backends.base import Call
from modules.registry import Registry

REGISTRY = Registry.from_catalog()
SCENE = generate_scene(0, difficulty="easy")  # green circle, yellow square, orange circle
EXPECTED_TYPES = {"find": list, "exists": bool, "count": int, "verify_property": bool,
                  "query": str, "llm_query": str}


def _values(backend, calls: list[Call]) -> list:
    return [o.value for o in backend.infer(calls)]


def _call(function: str, image: np.ndarray | None, mono: bool = False) -> Call:
    args = {"find": ("circle",), "exists": ("square",), "count": ("object",),
            "verify_property": ("circle", "green"),
            "query": ("Is there a red circle to the left of a blue square?",) if mono
            else ("what colour is this?",),
            "llm_query": ("How many sides does a triangle have?",)}[function]
    return Call(function, None if function == "llm_query" else image, args)


@pytest.mark.parametrize("name", sorted(REGISTRY.specs))
def test_every_backend_answers_its_functions(name: str) -> None:
    backend = REGISTRY.get(name)
    calls = [_call(f, SCENE.image, mono=name == "vqa-mono") for f in REGISTRY.spec(name).functions]
    outputs = backend.infer(calls)
    assert len(outputs) == len(calls)
    for call, output in zip(calls, outputs, strict=True):
        assert type(output.value) is EXPECTED_TYPES[call.function], (name, call.function, output.value)
        assert output.usage.flops == backend.flops(call) > 0  # measured as estimated: same forward pass
        assert output.usage.params == backend.params() > 0
        assert output.usage.price == backend.spec.price
        confidence = output.usage.confidence
        assert confidence is None or 0.0 < confidence <= 1.0
    if backend.spec.kind == "torch_vision" and "query" in backend.spec.functions:
        assert outputs[-1].usage.confidence is not None  # classifiers report their probability


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_large_detector_counts_easy_scenes(seed: int) -> None:
    scene = generate_scene(seed, difficulty="easy")
    det = REGISTRY.get("det-l")
    counts = _values(det, [Call("count", scene.image, (s,)) for s in SHAPES])
    truth = [sum(o.shape == s for o in scene.visible_objects) for s in SHAPES]
    assert counts == truth
    assert _values(det, [Call("count", scene.image, ("object",))]) == [len(scene.visible_objects)]


def test_large_detector_boxes_are_tight() -> None:
    boxes = _values(REGISTRY.get("det-l"), [Call("find", SCENE.image, ("circle",))])[0]
    truth = sorted(o.box for o in SCENE.objects if o.shape == "circle")
    assert truth == [(29, 20, 63, 54), (76, 25, 98, 47)]
    assert len(boxes) == 2
    for got, want in zip(sorted(boxes), truth, strict=True):  # pixel-accurate up to one pixel of edge blur
        assert max(abs(g - w) for g, w in zip(got, want, strict=True)) <= 1, (got, want)


def test_find_on_a_crop_uses_crop_coordinates() -> None:
    crop = SCENE.image[10:70, 20:74]  # holds the green circle at (29, 20, 63, 54) only
    boxes = _values(REGISTRY.get("det-l"), [Call("find", crop, ("circle",))])[0]
    assert len(boxes) == 1
    x0, y0, x1, y1 = boxes[0]
    assert abs(x0 - 9) <= 1 and abs(y0 - 10) <= 1 and abs(x1 - 43) <= 1 and abs(y1 - 44) <= 1


@pytest.mark.parametrize("name", ["attr-m", "attr-l"])
def test_attribute_models_name_easy_objects(name: str) -> None:
    attr = REGISTRY.get(name)
    calls = []
    for o in SCENE.objects:
        x0, y0, x1, y1 = o.box
        crop = SCENE.image[y0:y1, x0:x1]
        calls += [Call("query", crop, ("What colour is it?",)), Call("query", crop, ("what shape?",)),
                  Call("verify_property", crop, ("object", o.colour))]
    outputs = attr.infer(calls)
    assert [o.value for o in outputs] == ["green", "circle", True, "yellow", "square", True,
                                          "orange", "circle", True]
    assert all((o.usage.confidence or 0.0) > 0.5 for o in outputs)  # easy objects: the model is sure


@pytest.mark.parametrize("function", ["find", "exists", "count", "verify_property", "query"])
def test_flops_rise_along_each_ladder(function: str) -> None:
    ladder = REGISTRY.candidates(function)
    assert len(ladder) >= 2
    flops = [REGISTRY.get(n).flops(_call(function, SCENE.image)) for n in ladder]
    assert flops == sorted(flops) and len(set(flops)) == len(flops)
    params = [REGISTRY.get(n).params() for n in ladder]
    assert params == sorted(params)


def test_detector_ladder_spans_30x_and_mono_is_the_most_expensive() -> None:
    flops = {n: REGISTRY.get(n).flops(_call("find", SCENE.image)) for n in ("det-s", "det-l")}
    assert flops["det-l"] >= 30 * flops["det-s"]
    mono = REGISTRY.get("vqa-mono").flops(_call("query", SCENE.image, mono=True))
    assert mono >= 5 * flops["det-l"]


def test_unknown_names_raise() -> None:
    det, attr = REGISTRY.get("det-m"), REGISTRY.get("attr-s")
    with pytest.raises(ValueError, match="find: unknown object name 'star'"):
        det.infer([Call("find", SCENE.image, ("star",))])
    with pytest.raises(ValueError, match="unknown property"):
        attr.infer([Call("verify_property", SCENE.image, ("circle", "sparkly"))])
    with pytest.raises(ValueError, match="what colour/shape"):
        attr.infer([Call("query", SCENE.image, ("how big is it?",))])
    with pytest.raises(ValueError, match="does not serve 'find'"):
        attr.infer([Call("find", SCENE.image, ("circle",))])


def test_empty_crops_get_negative_answers() -> None:
    empty = SCENE.image[5:5, 0:10]
    assert _values(REGISTRY.get("det-s"), [Call("find", empty, ("circle",)),
                                           Call("count", empty, ("object",)),
                                           Call("exists", empty, ("square",))]) == [[], 0, False]
    assert _values(REGISTRY.get("attr-l"), [Call("verify_property", empty, ("x", "red"))]) == [False]
    assert _values(REGISTRY.get("vqa-mono"), [Call("query", empty, ("is it?",))]) == ["no"]


def test_monolithic_answers_yes_or_no() -> None:
    from benchmarks.queries import DEMO_QUERIES

    mono = REGISTRY.get("vqa-mono")
    calls = [Call("query", generate_scene(s).image, (q.question,)) for s in range(4) for q in DEMO_QUERIES]
    assert set(_values(mono, calls)) <= {"yes", "no"}


def test_fact_tables() -> None:
    exact, overlap = REGISTRY.get("facts-exact"), REGISTRY.get("facts-overlap")
    questions = ["How many sides does a triangle have?", "how many sides has a triangle",
                 "What color do you get by mixing red and yellow", "What is the capital of France?"]
    calls = [Call("llm_query", None, (q,)) for q in questions]
    assert _values(exact, calls) == ["3", "unknown", "orange", "unknown"]
    outputs = overlap.infer(calls)
    assert [o.value for o in outputs] == ["3", "3", "orange", "unknown"]
    assert [o.usage.flops for o in outputs] == [overlap.flops(c) for c in calls]
    assert exact.flops(calls[0]) < overlap.flops(calls[0])
    with pytest.raises(ValueError, match="serves only llm_query"):
        exact.infer([Call("query", None, ("x",))])
