"""The monolithic model's calibration: thresholds chosen on a validation split held apart from
the streams, decoding with them, and savings against all-largest in the evaluation summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.calibrate import (
    NEVER,
    STREAM_POSITIVE_RATE,
    VALIDATION_SEED,
    choose_threshold,
    draw_split,
    validation_rng,
    write_calibration,
)
from benchmarks.evaluate.harness import ItemResult
from benchmarks.evaluate.summary import sweep, table
from benchmarks.queryset import default_queryset, load_queryset
from benchmarks.sampling import Plan, draw_stream, query_rng
from benchmarks.train import TRAIN_SEED
from benchmarks.truth import load_facts
from modules.backends.vision import AnswerVocabulary, file_sha256
from modules.catalog import WEIGHTS_DIR

Q = "Is there a red circle to the left of a blue square?"


# -- choosing a threshold ----------------------------------------------------------------------
def test_separable_scores_get_a_threshold_between_them() -> None:
    pos = np.linspace(0.8, 0.9, 20)
    c = choose_threshold(pos, np.linspace(0.1, 0.5, 200), np.linspace(0.0, 0.6, 2000))
    assert 0.6 < c.threshold < 0.8 and c.tpr == 1.0
    assert c.accuracy >= 1 - STREAM_POSITIVE_RATE and c.f1 > 0.9


def test_uninformative_scores_say_no() -> None:
    rng = np.random.default_rng(0)
    c = choose_threshold(rng.uniform(0.6, 0.8, 20), rng.uniform(0.6, 0.8, 200), rng.uniform(0.6, 0.8, 2000))
    assert c.threshold == NEVER and c.tpr == 0.0 and c.f1 == 0.0


def test_a_threshold_below_the_majority_accuracy_is_refused() -> None:
    """Catching every positive at 5 % false positives has a better F1 than saying no, but on a
    1:100 stream it is less accurate than the majority answer: refused."""
    neg = np.where(np.arange(4000) % 20 == 0, 0.95, 0.1)  # 5 % of negatives score above the positives
    c = choose_threshold(np.full(20, 0.9), np.array([]), neg)
    assert c.threshold == NEVER
    loose = choose_threshold(np.full(20, 0.9), np.array([]), neg, prevalence=0.2)  # a balanced-ish stream
    assert loose.threshold < 0.9 and loose.tpr == 1.0


def test_few_negatives_are_not_trusted() -> None:
    """Ten clean negatives do not show a false-positive rate below 1 %: the estimate is conservative."""
    assert choose_threshold(np.full(20, 0.9), np.array([]), np.full(10, 0.1)).threshold == NEVER
    assert choose_threshold(np.full(20, 0.9), np.array([]), np.full(1000, 0.1)).threshold < 0.9


def test_near_misses_weigh_as_in_the_stream() -> None:
    """Near misses are 30 % of a stream's negatives however many the validation split has."""
    pos, neg = np.full(20, 0.9), np.full(2000, 0.1)
    nm = np.where(np.arange(200) % 10 == 0, 0.95, 0.1)  # 10 % of near misses beat the positives
    assert choose_threshold(pos, nm, neg).threshold == NEVER  # 3 % false positives overall
    assert choose_threshold(pos, nm, neg, near_miss_rate=0.01).threshold < 0.9


def test_choose_threshold_needs_negatives() -> None:
    with pytest.raises(ValueError, match="negatives"):
        choose_threshold(np.full(3, 0.9), np.array([]), np.array([]))


# -- decoding with thresholds --------------------------------------------------------------------
def test_thresholds_decide_calibrated_questions_only() -> None:
    vocab = AnswerVocabulary(["N/A", "no", "red", "yes"], {Q: ["yes", "no"], "What colour?": ["N/A", "red"]},
                             {Q: 0.8})
    logits = torch.tensor([[0.0, 1.0, 5.0, 2.0]] * 3)  # P(yes | yes or no) = sigmoid(1) = 0.731
    answers = vocab.decode(logits, [Q, Q.lower().rstrip("?"), "What colour?"])
    assert [a for a, _ in answers] == ["no", "no", "red"]
    assert answers[0][1] == pytest.approx(1 - 1 / (1 + np.exp(-1.0)))
    loose = AnswerVocabulary(vocab.answers, {Q: ["yes", "no"]}, {Q: 0.7})
    answer, p_yes = loose.decode(logits[:1], [Q])[0]
    assert answer == "yes" and p_yes == pytest.approx(1 / (1 + np.exp(-1.0)))
    assert AnswerVocabulary(vocab.answers, {Q: ["yes", "no"]}, {Q: NEVER}).decode(
        torch.tensor([[0.0, -50.0, 0.0, 50.0]]), [Q])[0][0] == "no"


def test_calibration_for_other_weights_is_ignored(tmp_path: Path) -> None:
    weights, other = tmp_path / "m.pt", tmp_path / "other.pt"
    weights.write_bytes(b"weights")
    other.write_bytes(b"other weights")
    vocab_path = tmp_path / "m.json"
    vocab_path.write_text(json.dumps({"answers": ["no", "yes"], "answer_sets": {Q: ["yes", "no"]}}))
    write_calibration(vocab_path, weights, {Q: {"query": "q", "threshold": 0.9}}, VALIDATION_SEED, ["b.yaml"])
    assert AnswerVocabulary.load(vocab_path, weights=weights).thresholds == {Q.lower().rstrip("?"): 0.9}
    assert AnswerVocabulary.load(vocab_path, weights=other).thresholds == {}
    data = json.loads(vocab_path.read_text())
    assert data["calibration"]["weights_sha256"] == file_sha256(weights)
    assert data["calibration"]["validation_seed"] == VALIDATION_SEED


def test_committed_calibration_covers_every_binary_question_for_the_committed_weights() -> None:
    data = json.loads((WEIGHTS_DIR / "vqa-xl.json").read_text())
    cal = data["calibration"]
    assert cal["weights_sha256"] == file_sha256(WEIGHTS_DIR / "vqa-xl.pt")
    assert cal["validation_seed"] == VALIDATION_SEED
    binary = load_queryset(default_queryset("binary"))
    assert {q.question for q in binary.queries} <= set(cal["thresholds"])
    assert all(0.0 <= t <= NEVER for t in cal["thresholds"].values())


# -- the validation split is held apart ------------------------------------------------------------
def test_validation_generator_is_no_streams_or_trainings() -> None:
    for query_id in ("red_circle_left_of_blue_square", "sign_says_stop"):
        mine = set(validation_rng(query_id).integers(0, 2**31 - 1, 200).tolist())
        for seed in (0, 1, 3, VALIDATION_SEED, TRAIN_SEED + 3_000_000):
            stream = set(query_rng(Plan(scenes=1, seed=seed), query_id).integers(0, 2**31 - 1, 200).tolist())
            train = set(np.random.default_rng([seed, 0]).integers(0, 2**31 - 1, 200).tolist())
            assert not mine & stream and not mine & train, seed


def test_validation_scenes_are_not_the_streams_scenes() -> None:
    qs, facts = load_queryset(default_queryset("binary")), load_facts()
    query = qs.queries[0]
    split = draw_split(qs, query, positives=3, near_misses=3, negatives=20, facts=facts)
    seeds = {it.seed for it in split.positives + split.near_misses + split.negatives}
    assert len(seeds) == 26
    for seed in (0, 1, VALIDATION_SEED):
        stream = {d.item.seed for batch in draw_stream(qs, query, Plan(scenes=150, seed=seed), facts)
                  for d in batch}
        assert not seeds & stream, seed


# -- savings against all-largest in the summary ------------------------------------------------------
def _items(flops: float, right: bool = True) -> list[ItemResult]:
    return [ItemResult("q", "easy", False, False if right else True, right, 0.0 if right else 1.0,
                       flops, 0.0, 1.0, 1.0, 0.0, 1) for _ in range(4)]


def test_summary_reports_savings_against_all_largest() -> None:
    by_policy = {"monolithic": {1.0: {"q": _items(4e9)}}, "largest": {1.0: {"q": _items(2e9)}},
                 "cheapest": {1.0: {"q": _items(0.5e9, right=False)}}}
    rows = sweep(by_policy, "bool", [1.0], 4e9)
    assert rows["largest"][0]["savings_vs_largest"] == pytest.approx(0.0)
    assert rows["cheapest"][0]["savings_vs_largest"] == pytest.approx(0.75)
    assert rows["monolithic"][0]["savings_vs_largest"] == pytest.approx(-1.0)
    assert rows["cheapest"][0]["savings_vs_monolithic"] == pytest.approx(0.875)
    printed = table({n: r[0] for n, r in rows.items()}, "F1", {})
    assert "vs largest" in printed.splitlines()[0]
    assert "75.0%" in next(line for line in printed.splitlines() if line.startswith("cheapest"))
    alone = sweep({"cheapest": by_policy["cheapest"]}, "bool", [1.0], 4e9)
    assert alone["cheapest"][0]["savings_vs_largest"] is None
    assert table({"cheapest": alone["cheapest"][0]}, "F1", {}).splitlines()[1].split()[7] == "-"
