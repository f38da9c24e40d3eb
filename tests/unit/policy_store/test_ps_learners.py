"""The Learner contract, checked for every registered learner."""

from __future__ import annotations

import numpy as np
import pytest

from policy_store.errors import LearnerError
from policy_store.learners import (
    LEARNERS,
    Example,
    Learner,
    LearnerConfig,
    item_features,
    learner_class,
    load_learner,
    make_learner,
)

ARMS = {"find@2:4": ["small", "mid", "large"], "verify@3:8": ["small", "large"]}
COSTS = {"small": 0.1, "mid": 0.4, "large": 1.0}
CFG = LearnerConfig(
    seed=3, pins={"*": "large", "find@2:4": "mid"}, paper_width=8, paper_input=32
)



def _feat(learner: Learner, x: np.ndarray) -> np.ndarray:
    """x as the learner wants it: pixel learners (the paper's) get an image coloured by x."""
    if learner.feature_kind != "pixels":
        return x
    image = np.full((40, 40, 3), (x + 1.0) * 127.5, dtype=np.uint8)
    image[::4] = 255 - image[::4]  # some structure, not a flat colour
    return item_features(learner, image)


def _examples(rng: np.random.Generator, learner: Learner) -> list[Example]:
    out = []
    for _ in range(40):
        raw = rng.uniform(-1, 1, size=3)
        x = _feat(learner, raw)
        for site, backends in ARMS.items():
            backend = backends[int(rng.integers(len(backends)))]
            reward = -2.5 if (backend == "small" and raw[0] > 0) else 0.0
            out.append(Example(site, backend, x, reward, 0.5, COSTS[backend]))
    return out


def _choices(learner: Learner, seed: int) -> list[tuple[str, float]]:
    rng = np.random.default_rng(seed)
    xs = np.random.default_rng(99).uniform(-1, 1, size=(30, 3))
    return [
        (c.backend, c.propensity)
        for x in xs
        for c in (
            learner.choose(site, _feat(learner, x), rng)
            for site in ARMS
        )
    ]


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_learner_contract(name: str) -> None:
    learner = make_learner(name, CFG, ARMS, COSTS)
    assert learner.name == name
    learner.update(_examples(np.random.default_rng(1), learner))
    rng = np.random.default_rng(5)
    for x in np.random.default_rng(6).uniform(-1, 1, size=(25, 3)):
        for site, candidates in ARMS.items():
            choice = learner.choose(site, _feat(learner, x), rng)
            assert choice.backend in candidates
            assert 0.0 < choice.propensity <= 1.0
    restored = load_learner(name, learner.to_bytes(), CFG, ARMS, COSTS)
    assert type(restored) is type(learner)
    assert _choices(restored, seed=11) == _choices(learner, seed=11)


def test_fixed_baselines_choose_exactly() -> None:
    x = np.zeros(3)
    rng = np.random.default_rng(0)
    pick = {n: make_learner(n, CFG, ARMS, COSTS) for n in ("cheapest", "largest", "fixed")}
    assert [pick["cheapest"].choose(s, x, rng).backend for s in ARMS] == ["small", "small"]
    assert [pick["largest"].choose(s, x, rng).backend for s in ARMS] == ["large", "large"]
    assert [pick["fixed"].choose(s, x, rng).backend for s in ARMS] == ["mid", "large"]
    random = make_learner("random", CFG, ARMS, COSTS)
    assert random.choose("find@2:4", x, rng).propensity == pytest.approx(1 / 3)
    assert random.choose("verify@3:8", x, rng).propensity == 0.5


def test_unknown_learner_lists_valid_names() -> None:
    with pytest.raises(LearnerError, match="cheapest, confirmed, fixed, largest, paper, random, thompson"):
        make_learner("ucb", CFG, ARMS, COSTS)


def test_bad_arms_and_pins_are_reported() -> None:
    with pytest.raises(LearnerError, match="no cost for backend"):
        make_learner("thompson", CFG, {"a": ["tiny"]}, COSTS)
    with pytest.raises(LearnerError, match="not one of its candidates"):
        make_learner("fixed", LearnerConfig(pins={"*": "mid"}), ARMS, COSTS)
    with pytest.raises(LearnerError, match="unknown call site"):
        make_learner("fixed", LearnerConfig(pins={"nope": "small", "*": "small"}), ARMS, COSTS)
    with pytest.raises(LearnerError, match="unknown call site 'x@1:1'"):
        make_learner("cheapest", CFG, ARMS, COSTS).choose(
            "x@1:1", np.zeros(3), np.random.default_rng(0)
        )


def test_thompson_rejects_bad_features_and_blobs() -> None:
    learner = make_learner("thompson", CFG, ARMS, COSTS)
    rng = np.random.default_rng(0)
    learner.choose("find@2:4", np.zeros(3), rng)
    with pytest.raises(LearnerError, match="length 2 but this learner was trained on length 3"):
        learner.choose("find@2:4", np.zeros(2), rng)
    with pytest.raises(LearnerError, match="finite 1-D"):
        learner.choose("find@2:4", np.array([np.nan, 0.0, 0.0]), rng)
    with pytest.raises(LearnerError, match="cannot read learner blob"):
        load_learner("thompson", b"not an npz", CFG, ARMS, COSTS)
    with pytest.raises(LearnerError, match="has no state"):
        load_learner("cheapest", learner.to_bytes(), CFG, ARMS, COSTS)


def test_config_is_strict() -> None:
    with pytest.raises(ValueError, match="extra"):
        LearnerConfig(lamda=1.0)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="greater than 0"):
        LearnerConfig(noise_var=0.0)


def test_registry_resolves_lazily_to_classes_with_a_feature_kind() -> None:
    for name in LEARNERS:
        cls = learner_class(name)
        assert cls.name == name
        assert cls.feature_kind == ("pixels" if name == "paper" else "embedding")


def test_item_features_of_embedding_learners_are_the_image_embedding() -> None:
    from modules.embedding import DIM, embed

    image = np.random.default_rng(4).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    for name in ("thompson", "thompson-shared", "cheapest", "fixed"):
        x = item_features(make_learner(name, CFG, ARMS, COSTS), image)
        assert x.dtype == np.float64 and x.shape == (DIM,)
        assert np.array_equal(x, embed(image))


def test_importing_the_learners_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = ("import sys, policy_store.learners, policy_store.rewards; "
            "policy_store.learners.learner_class('thompson'); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
