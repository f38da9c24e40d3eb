"""The confirmed learner: its state round trip and the audited search it shares with the
benchmark harness (strata, F1-targeting objective, coordinate descent)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from policy_store.errors import LearnerError
from policy_store.learners import LearnerConfig, load_learner, make_learner
from policy_store.learners.confirmed import (
    F1_FN,
    F1_FP,
    AuditBook,
    AuditOptions,
    AuditStake,
    ConfirmedLearner,
    audit_draw,
    config_key,
    descend,
)

ARMS = {"exists@2:7": ["s", "m", "l"], "verify_property@4:11": ["vs", "vl"]}
COSTS = {"s": 0.01, "m": 0.1, "l": 1.0, "vs": 0.02, "vl": 0.5}
FLOPS = {"s": 1.0, "m": 10.0, "l": 100.0, "vs": 2.0, "vl": 50.0}  # per call, unit = 100
LARGEST = {"exists@2:7": "l", "verify_property@4:11": "vl"}


def _learner(lam: float, pins: dict[str, str] | None = None) -> ConfirmedLearner:
    learner = make_learner("confirmed", LearnerConfig(lam=lam, seed=1, pins=pins or {}), ARMS, COSTS)
    assert isinstance(learner, ConfirmedLearner)
    return learner


class Replays:
    """A program of two call sites whose answers depend on the item's label and the backends."""

    def __init__(self, misses: frozenset[tuple[str, str]] = frozenset(),
                 false_yes: frozenset[str] = frozenset()) -> None:
        self.misses = misses  # (item, exists backend) pairs whose run says "no" on a positive
        self.false_yes = false_yes  # items a cheap verify backend wrongly calls "yes"
        self.labels: dict[str, bool] = {}
        self.calls: list[tuple[str, tuple[tuple[str, str], ...]]] = []

    def __call__(self, item: str, config: dict[str, str]) -> tuple[Any, float]:
        self.calls.append((item, config_key(config)))
        label = self.labels[item]
        total = FLOPS[config["exists@2:7"]] + FLOPS[config["verify_property@4:11"]]
        if label and (item, config["exists@2:7"]) in self.misses:
            return False, total
        if not label and item in self.false_yes and config["verify_property@4:11"] == "vs":
            return True, total
        return label, total


def _arrive(replays: Replays, labels: dict[str, bool], answer: dict[str, bool] | None = None
            ) -> list[tuple[str, Any, Any]]:
    replays.labels.update(labels)
    return [(k, v, (answer or {}).get(k, v)) for k, v in labels.items()]


def test_fresh_learner_starts_halfway_up_and_chooses_its_pins() -> None:
    learner = _learner(1.0)
    # round(0.5 · 2) = 1, round(0.5 · 1) = 0 (half to even, as the harness rounds)
    assert learner.pins == {"exists@2:7": "m", "verify_property@4:11": "vs"}
    rng = np.random.default_rng(0)
    choice = learner.choose("exists@2:7", np.zeros(3), rng)
    assert (choice.backend, choice.propensity) == ("m", 1.0)
    assert learner.fallback == LARGEST


def test_round_trip_keeps_pins_audits_replays_counts_and_warm_shares() -> None:
    learner = _learner(4.0, LARGEST)
    replays = Replays(misses=frozenset({("b0/p1", "s")}), false_yes=frozenset({"b0/n2"}))
    labels = {"b0/p1": True, "b0/n1": False, "b0/n2": False, **{f"b0/x{i}": False for i in range(30)}}
    learner.audit("bool", _arrive(replays, labels, {"b0/n1": True}), replays, 100.0)
    blob = learner.to_bytes()
    cfg = learner.config
    back = load_learner("confirmed", blob, cfg, ARMS, COSTS)
    assert isinstance(back, ConfirmedLearner)
    assert back.pins == learner.pins
    assert back.book.weights == learner.book.weights and back.book.labels == learner.book.labels
    assert back.book.runs == learner.book.runs
    assert (back.book.labelled, back.book.positives, back.book.negatives) == (33, 1, learner.book.negatives)
    assert back.warm == learner.warm
    assert back.to_bytes() == blob
    # p1 (positive), n1 (answered yes, wrong) and n2 are audited by stratum or sampling
    assert {"b0/p1", "b0/n1"} <= set(back.book.weights)
    with pytest.raises(LearnerError, match="cannot read learner blob"):
        load_learner("confirmed", b"{not json", cfg, ARMS, COSTS)
    with pytest.raises(LearnerError, match="not a confirmed"):
        load_learner("confirmed", b'{"format": 1, "learner": "fixed"}', cfg, ARMS, COSTS)


def test_descent_leaves_the_largest_rungs_when_cheaper_ones_answer_alike() -> None:
    learner = _learner(8.0, LARGEST)
    replays = Replays()
    labels = {"b0/p1": True, "b0/p2": True, "b0/n1": False, "b0/n2": False}
    new = learner.audit("bool", _arrive(replays, labels), replays, 100.0)
    assert new == {"exists@2:7": "s", "verify_property@4:11": "vs"}
    assert learner.choose("exists@2:7", np.zeros(3), np.random.default_rng(0)).backend == "s"
    assert learner.warm == {"exists": [0.0], "verify_property": [0.0]}
    assert learner.config.pins == new  # the saved config carries the pins too


def test_a_positive_missed_by_a_cheap_rung_keeps_that_site_up() -> None:
    learner = _learner(1.0, LARGEST)
    # on the cheapest exists backend the positive p1 is missed; every other run is right
    replays = Replays(misses=frozenset({("b0/p1", "s")}))
    labels = {"b0/p1": True, "b0/n1": False, "b0/n2": False}
    # n1 was answered "yes" (audited by stratum); the largest run costs 0.015 monolithic calls
    new = learner.audit("bool", _arrive(replays, labels, {"b0/n1": True}), replays, 10_000.0)
    assert new["exists@2:7"] == "m"  # "s" misses p1: F1_FN / p̂ outweighs what it saves
    assert new["verify_property@4:11"] == "vs"  # nothing is missed there: the cheap rung wins
    assert set(learner.book.weights) == {"b0/p1", "b0/n1"}
    # p1 answers "yes" under every configuration but "s": each was confirmed on the largest
    assert ("b0/p1", config_key(LARGEST)) in learner.book.runs
    # the same stream with no miss goes all the way down
    cheap = _learner(1.0, LARGEST)
    plain = Replays()
    assert cheap.audit("bool", _arrive(plain, labels, {"b0/n1": True}), plain, 10_000.0)["exists@2:7"] == "s"


def test_strata_and_objective() -> None:
    opts = AuditOptions(confirm=True)
    book: AuditBook[str] = AuditBook("bool")
    never = lambda: 1.0  # noqa: E731 - a draw that never samples
    assert book.admit("p", True, False, never, opts)  # positive (and wrong)
    assert book.admit("y", False, True, never, opts)  # answered yes
    assert not book.admit("n", False, False, never, opts)  # a right "no", not sampled
    assert book.admit("s", False, False, lambda: 0.0, opts)  # a right "no", sampled
    assert book.weights == {"p": 1.0, "y": 1.0, "s": 1.0 / opts.negatives}
    assert (book.labelled, book.positives, book.negatives) == (4, 1, 1)
    p_hat = book.p_hat()
    assert p_hat == pytest.approx(2 / 6)
    assert book.loss("p", False, p_hat) == pytest.approx(F1_FN / p_hat)
    assert book.loss("p", True, p_hat) == 0.0

    def replay(k: str, config: dict[str, str]) -> tuple[Any, float]:  # "x" calls y "yes" wrongly
        return k == "p" or (k == "y" and config["a"] == "x"), 10.0

    # weights 1 + 1 + 20; every run costs 10 FLOPs, a tenth of the unit
    j = book.objective({"a": "x"}, replay, lam=1.0, unit=100.0)
    assert j == pytest.approx((F1_FP / p_hat + 22 * 0.1) / 22)
    # with the confirmation the false "yes" is gone, and p and y pay for a second run
    jc = book.objective({"a": "x"}, replay, lam=1.0, unit=100.0, fallback={"a": "big"})
    assert jc == pytest.approx((24 * 0.1) / 22)
    assert audit_draw(1, "b0/i1") == audit_draw(1, "b0/i1") != audit_draw(2, "b0/i1")


def test_descend_keeps_a_change_only_past_the_margin() -> None:
    arms = {"a": ["x", "y"], "b": ["u", "v"]}
    values = {("x", "u"): 1.0, ("y", "u"): 0.999, ("x", "v"): 0.5, ("y", "v"): 0.2}

    def objective(c: dict[str, str]) -> float:
        return values[(c["a"], c["b"])]

    assert descend({"a": "x", "b": "u"}, arms, objective, rounds=2, margin=0.002) == {"a": "y", "b": "v"}
    assert descend({"a": "x", "b": "u"}, arms, objective, rounds=1, margin=0.002) == {"a": "x", "b": "v"}


def test_the_stake_lets_cheaper_trials_run_and_stops_costlier_ones_past_it() -> None:
    ladders = {"a": ["s", "m", "l"]}
    stake = AuditStake(0.5, loss=2.0, spent=0.1)
    now = [0.0]
    check = stake.affordable(8.0, ladders, lambda: now[0])
    assert check is not None
    assert check("a", "m", "l")  # λ · spent = 0.8 ≤ 0.5 · 2
    now[0] = 0.05  # 8 · 0.15 = 1.2 > 1
    assert not check("a", "m", "l")
    assert check("a", "m", "s")  # a cheaper rung always runs
    assert AuditStake(None).affordable(8.0, ladders, lambda: 1e9) is None  # no stake: no check
    trials: list[dict[str, str]] = []

    def objective(config: dict[str, str]) -> float:
        trials.append(dict(config))
        return {"s": 1.0, "m": 2.0, "l": 0.0}[config["a"]]

    assert descend({"a": "m"}, ladders, objective, 2, 0.0, check) == {"a": "s"}
    assert {"a": "l"} not in trials  # past the stake: the costlier trial was never replayed


def test_at_a_high_lambda_the_audits_stop_where_they_would_cost_more_than_the_loss_at_stake() -> None:
    labels = {"b0/p1": True, **{f"b0/n{i}": False for i in range(40)}}
    answers = {"b0/n1": True, "b0/n2": True}
    spent: dict[float, float] = {}
    for lam in (0.01, 1e6):
        learner = _learner(lam)
        replays = Replays(misses=frozenset({("b0/p1", "s"), ("b0/p1", "m")}))
        charged = [0.0]

        def replay(item: str, config: dict[str, str], replays: Replays = replays,
                   charged: list[float] = charged
                   ) -> tuple[Any, float]:
            answer, total = replays(item, config)
            charged[0] += total
            return answer, total

        def so_far(charged: list[float] = charged) -> float:
            return charged[0]

        learner.audit("bool", _arrive(replays, labels, answers), replay, 100.0, charged=so_far)
        spent[lam] = learner.stake.spent
        assert learner.stake.loss > 0 and learner.stake.spent == pytest.approx(charged[0] / 100.0)
        back = load_learner("confirmed", learner.to_bytes(), learner.config, ARMS, COSTS)
        assert isinstance(back, ConfirmedLearner)
        assert (back.stake.loss, back.stake.spent) == (learner.stake.loss, learner.stake.spent)
        state = json.loads(learner.to_bytes())
        del state["stake"]  # a version saved before the audits had a stake
        old = load_learner("confirmed", json.dumps(state).encode(), learner.config, ARMS, COSTS)
        assert isinstance(old, ConfirmedLearner) and (old.stake.loss, old.stake.spent) == (0.0, 0.0)
    # at λ = 1e6 no costlier rung is tried once the first replays are charged; at 0.01 all are
    assert spent[1e6] < spent[0.01]
