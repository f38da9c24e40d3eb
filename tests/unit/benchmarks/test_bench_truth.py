"""The truth-spec language on hand-made scenes: answers, N/A and ambiguity."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.scenes import Scene, SceneObject
from benchmarks.signs import Sign, SignedScene
from benchmarks.truth import NA, Ambiguous, evaluate, load_facts, normalise_answer

FACTS = load_facts()


def _obj(shape: str, colour: str, x: int, y: int, size: int = 20, occ: float = 0.0) -> SceneObject:
    return SceneObject(shape, colour, (x, y, x + size, y + size), size, occ, 0)


def _item(*objs: SceneObject, sign: str | None = None) -> SignedScene:
    img = np.zeros((128, 128, 3), np.uint8)
    scene = Scene(0, "easy", tuple(objs), img, np.zeros((128, 128), np.int8))
    return SignedScene(scene, Sign(sign, (0, 0, 10, 10), 12) if sign else None, img)


def ev(spec: object, item: SignedScene, answer_type: str = "str") -> object:
    return evaluate(spec, item, FACTS, answer_type)


LEFT = {"exists": {"shape": "circle", "colour": "red", "left_of": {"shape": "square", "colour": "blue"}}}


def test_relations_with_margin() -> None:
    assert ev(LEFT, _item(_obj("circle", "red", 10, 10), _obj("square", "blue", 60, 10)), "bool") is True
    assert ev(LEFT, _item(_obj("circle", "red", 60, 10), _obj("square", "blue", 10, 10)), "bool") is False
    with pytest.raises(Ambiguous):  # centres 3 px apart: within the margin
        ev(LEFT, _item(_obj("circle", "red", 10, 10), _obj("square", "blue", 13, 60)), "bool")


def test_half_hidden_objects_are_maybe() -> None:
    with pytest.raises(Ambiguous):
        ev({"count": {"shape": "circle"}}, _item(_obj("circle", "red", 0, 0, occ=0.5)))
    assert ev({"str": {"count": {"shape": "circle"}}}, _item(_obj("circle", "red", 0, 0, occ=0.8))) == "0"


def test_the_is_na_when_missing_and_ambiguous_when_several() -> None:
    spec = {"the": {"shape": "circle"}, "attr": "colour"}
    assert ev(spec, _item(_obj("circle", "Green".lower(), 0, 0))) == "green"
    assert ev(spec, _item(_obj("square", "red", 0, 0))) == NA
    with pytest.raises(Ambiguous):
        ev(spec, _item(_obj("circle", "red", 0, 0), _obj("circle", "blue", 50, 50)))


def test_every_facts_signs_and_pick() -> None:
    two = _item(_obj("circle", "red", 0, 0), _obj("circle", "red", 50, 50), sign="BANANA")
    assert ev({"yesno": {"every": {"shape": "circle"}, "is": {"colour": "red"}}}, two) == "yes"
    assert ev({"yesno": {"every": {"shape": "square"}, "is": {"colour": "red"}}}, two) == NA
    assert ev({"fact": "What colour is a {}?", "args": [{"lower": {"sign": {}}}]}, two) == "yellow"
    assert ev({"fact": "Is {} a warm colour?", "args": [{"lower": {"sign": {}}}]}, two) == NA
    assert ev({"argmax_count": {"circles": {"shape": "circle"}, "squares": {"shape": "square"}}}, two) == "circles"
    assert ev({"pick": [[{"cmp": ["==", {"sign": {}}, "STOP"]}, "stop"]], "else": "go"}, two) == "go"
    where = {"exists": {"shape": "circle", "where": {"cmp": ["==", {"fact": "Is {} a primary colour?",
                                                                  "args": [{"own": "colour"}]}, "yes"]}}}
    assert ev(where, two, "bool") is True


def test_an_illegible_signs_word_is_maybe() -> None:
    """A sign drawn too faint to read: any answer that needs its word is ambiguous (the scene
    is never sampled); answers that do not read the sign are unaffected."""
    scene = _item(_obj("circle", "red", 0, 0)).scene
    faint = SignedScene(scene, Sign("STOP", (0, 0, 10, 10), 8, stroke_contrast=20.0, stroke_snr=1.8),
                        scene.image)
    says_stop = {"cmp": ["==", {"sign": {}}, "STOP"]}
    with pytest.raises(Ambiguous):
        ev(says_stop, faint, "bool")
    with pytest.raises(Ambiguous):
        ev({"and": [{"exists": {"shape": "circle"}}, says_stop]}, faint, "bool")
    assert ev({"exists": {"shape": "circle", "colour": "red"}}, faint, "bool") is True
    readable = SignedScene(scene, Sign("STOP", (0, 0, 10, 10), 8, stroke_contrast=60.0, stroke_snr=5.5),
                           scene.image)
    assert ev(says_stop, readable, "bool") is True


def test_larger_uses_a_ratio_margin_and_na_is_false_for_yes_no() -> None:
    spec = {"yesno": {"rel": ["larger", {"shape": "circle"}, {"shape": "square"}]}}
    assert ev(spec, _item(_obj("circle", "red", 0, 0, 30), _obj("square", "blue", 60, 60, 20))) == "yes"
    with pytest.raises(Ambiguous):
        ev(spec, _item(_obj("circle", "red", 0, 0, 21), _obj("square", "blue", 60, 60, 20)))
    assert ev({"require": {"exists": {"shape": "square"}}, "then": True}, _item(), "bool") is False


def test_normalise_answer_and_bad_specs() -> None:
    # one rule with the ledger's (modules.answers): "Yes!" == "yes", True == "yes"
    assert [normalise_answer(a) for a in (" Red. ", "n/a", "N/A", "3", "Yes!", True, "false")] == \
        ["red", NA, NA, "3", "yes", "yes", "no"]
    with pytest.raises(ValueError, match="exactly one operator"):
        ev({"exists": {}, "count": {}}, _item())
    with pytest.raises(ValueError, match="unknown selector key 'hue'"):
        ev({"exists": {"hue": "red"}}, _item(_obj("circle", "red", 0, 0)))
