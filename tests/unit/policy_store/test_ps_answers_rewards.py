"""normalise_answer, item_loss and split_reward: exact values."""

from __future__ import annotations

import numpy as np
import pytest

from policy_store.answers import normalise_answer
from policy_store.errors import AnswerError, RewardError
from policy_store.learners import LearnerConfig
from policy_store.rewards import item_loss, split_reward

CFG = LearnerConfig(fn_weight=5.0, fp_weight=1.0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, "yes"), (False, "no"), (np.bool_(True), "yes"), (None, None),
        ("  Yes. ", "yes"), ("TRUE", "yes"), ("false!", "no"), ("Red car?", "red car"),
        ("", ""), ("Yes!", "yes"), ("Maybe?! ", "maybe"), (" n/a. ", "N/A"), ("N/A", "N/A"),
    ],
)
def test_normalise_answer(value: str | bool | np.bool_ | None, expected: str | None) -> None:
    assert normalise_answer(value) == expected


def test_normalise_answer_rejects_numbers() -> None:
    with pytest.raises(AnswerError, match="has type int"):
        normalise_answer(3)  # type: ignore[call-overload]  # the wrong type on purpose


@pytest.mark.parametrize(
    ("answer", "label", "loss"),
    [
        (True, True, 0.0), (False, False, 0.0), ("Yes.", "true", 0.0),
        (False, True, 5.0), (None, True, 5.0),   # missed positive (failed counts as wrong)
        (True, False, 1.0), (None, "no", 1.0),   # false positive
    ],
)
def test_item_loss_bool(answer: bool | str | None, label: bool | str, loss: float) -> None:
    assert item_loss(answer, label, "bool", CFG) == loss


@pytest.mark.parametrize(
    ("answer", "label", "loss"),
    [("Red ", "red", 0.0), ("blue", "red", 1.0), (None, "red", 1.0)],
)
def test_item_loss_str(answer: str | None, label: str, loss: float) -> None:
    assert item_loss(answer, label, "str", CFG) == loss


def test_item_loss_bool_with_non_yes_no_label() -> None:
    with pytest.raises(RewardError, match="expected yes/no"):
        item_loss(True, "maybe", "bool", CFG)


def test_split_reward_divides_loss_by_executed_call_sites() -> None:
    x = np.array([0.5, -1.0])
    examples = split_reward(
        [("find@1:4", "small", 0.1, x, 0.5), ("verify@2:8", "large", 1.0, x, 0.25),
         ("find@1:4", "small", 0.1, x, 0.5)],  # repeated entry of the same decision counts once
        loss=5.0,
    )
    assert [(e.call_site, e.backend, e.reward, e.cost, e.propensity) for e in examples] == [
        ("find@1:4", "small", -2.5, 0.1, 0.5),
        ("verify@2:8", "large", -2.5, 1.0, 0.25),
    ]
    assert examples[0].features.tolist() == [0.5, -1.0]


def test_split_reward_no_decisions_and_conflicts() -> None:
    assert split_reward([], 5.0) == []
    x = np.zeros(1)
    with pytest.raises(RewardError, match="find@1:4"):
        split_reward([("find@1:4", "small", 0.1, x, 1.0), ("find@1:4", "large", 1.0, x, 1.0)], 1.0)
