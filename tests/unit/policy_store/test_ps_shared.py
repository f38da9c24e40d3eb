"""Thompson sampling shared across call sites of one function, and the budget controller."""

from __future__ import annotations

import numpy as np
import pytest

from policy_store.errors import LearnerError
from policy_store.learners import make_learner
from policy_store.learners.base import Example
from policy_store.learners.config import LearnerConfig
from policy_store.learners.shared import BudgetController, SharedThompsonLearner

COSTS = {"det-s": 0.001, "det-l": 0.05, "attr-s": 0.0001, "attr-l": 0.002}
CONFIG = LearnerConfig(lam=1.0, escalation_prior=0.5, prior_var=0.05, explore=0.5)


def share(rng: np.random.Generator, learner, site: str, x: np.ndarray, n: int = 200) -> float:
    return float(np.mean([learner.choose(site, x, rng).backend == "det-s" for _ in range(n)]))


def test_a_new_call_site_of_a_known_function_starts_from_what_others_learned():
    rng = np.random.default_rng(0)
    x = np.array([0.2, 0.7])
    learner = SharedThompsonLearner(CONFIG, {"exists@2:11": ["det-s", "det-l"]}, COSTS)
    cold = share(rng, learner, "exists@2:11", x)
    assert cold < 0.2  # the escalation prior starts on the largest backend
    learner.update([Example("exists@2:11", "det-s", x, 0.0, 1.0, COSTS["det-s"]) for _ in range(60)]
                   + [Example("exists@2:11", "det-l", x, 0.0, 1.0, COSTS["det-l"]) for _ in range(5)])
    # another program's exists site, never seen before, is warm
    learner.extend({"exists@7:3": ["det-s", "det-l"], "verify_property@8:9": ["attr-s", "attr-l"]}, COSTS)
    assert share(rng, learner, "exists@7:3", x) > 0.8
    # the per-site learner given the same examples stays cold on the new site
    per_site = make_learner("thompson", CONFIG, {"exists@2:11": ["det-s", "det-l"],
                                                 "exists@7:3": ["det-s", "det-l"]}, COSTS)
    per_site.update([Example("exists@2:11", "det-s", x, 0.0, 1.0, COSTS["det-s"]) for _ in range(60)])
    assert share(rng, per_site, "exists@7:3", x) < 0.2


def test_sites_of_one_function_must_share_candidates_and_unknown_sites_fail():
    learner = SharedThompsonLearner(CONFIG, {"exists@2:11": ["det-s", "det-l"]}, COSTS)
    with pytest.raises(LearnerError, match="must share"):
        learner.extend({"exists@9:1": ["det-l"]}, COSTS)
    with pytest.raises(LearnerError, match="unknown call site"):
        learner.choose("count@1:1", np.zeros(2), np.random.default_rng(0))


def test_shared_state_round_trips():
    x = np.array([0.5, 0.5])
    learner = SharedThompsonLearner(CONFIG, {"exists@2:11": ["det-s", "det-l"]}, COSTS)
    learner.update([Example("exists@2:11", "det-s", x, -1.0, 1.0, 0.001) for _ in range(5)])
    again = SharedThompsonLearner.from_bytes(learner.to_bytes(), CONFIG, {"exists@2:11": ["det-s", "det-l"]},
                                             COSTS)
    picks = [learner.choose("exists@2:11", x, np.random.default_rng(i)).backend for i in range(20)]
    assert picks == [again.choose("exists@2:11", x, np.random.default_rng(i)).backend for i in range(20)]


def test_budget_controller_raises_lambda_over_budget_and_lowers_it_under():
    b = BudgetController(budget=0.02, lam=1.0)
    up = b.observe(0.08)
    assert up > 1.0
    down = b.observe(0.0)
    assert down < up
    for _ in range(200):
        b.observe(0.0)
    assert b.lam == pytest.approx(b.lam_min)
    with pytest.raises(LearnerError):
        b.observe(float("nan"))
    with pytest.raises(LearnerError):
        BudgetController(budget=0.0, lam=1.0)
