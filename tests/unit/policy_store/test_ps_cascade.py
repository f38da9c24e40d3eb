"""The cascade learner: per call site and rung, when an answer can be kept (threshold
learning on a synthetic stream), conservative start, rung skipping, save/load, speed."""

from __future__ import annotations

import time

import numpy as np
import pytest

from policy_store.errors import LearnerError
from policy_store.learners import LearnerConfig, load_learner, make_learner
from policy_store.learners.base import Choice, Example
from policy_store.learners.cascade import CascadeLearner
from storage.records import RungRecord

SITE = "exists@2:11"
ARMS = {SITE: ["small", "large"]}
COSTS = {"small": 0.001, "mid": 0.01, "large": 0.1}
X = np.zeros(3)


def _cascade(lam: float = 1.0, **options: float) -> CascadeLearner:
    learner = make_learner("cascade", LearnerConfig(lam=lam, cascade_audit=0.0, **options), ARMS, COSTS)
    assert isinstance(learner, CascadeLearner)
    return learner


def _stream(learner: CascadeLearner, n: int, seed: int = 0, batch: int = 50,
            confidence: bool = True, agree_rate: float | None = None) -> None:
    """Items with a yes/no label (half positive); the small rung answers right with
    probability equal to its confidence (uniform in [0.5, 1]); the large rung is always right.
    The learner decides each answer as the router would and learns from each batch."""
    rng = np.random.default_rng(seed)
    for start in range(0, n, batch):
        examples = []
        for i in range(start, min(start + batch, n)):
            label = bool(rng.random() < 0.5)
            c = float(rng.uniform(0.5, 1.0))
            p_right = c if agree_rate is None else agree_rate
            small = label if rng.random() < p_right else not label
            conf = c if confidence else None
            rungs: tuple[RungRecord, ...]
            if learner.escalate(SITE, "small", conf, small, X, rng) is None:
                rungs = (RungRecord(backend="small", confidence=conf, positive=small),)
                answer = small
            else:
                rungs = (RungRecord(backend="small", confidence=conf, positive=small, agreed=small == label),
                         RungRecord(backend="large", confidence=None, positive=label))
                answer = label
            loss = 0.0 if answer == label else (5.0 if label else 1.0)
            examples.append(Example(SITE, rungs[-1].backend, X, -loss, 1.0, 0.0, f"i{i}", rungs, label))
        learner.update(examples)


def test_it_starts_conservative_and_escalates_every_cheap_answer() -> None:
    learner = _cascade()
    assert learner.start_rung(SITE) == "small"
    for conf in (0.5, 0.9, 0.999, None):
        for positive in (True, False):
            assert not learner.trusts(SITE, "small", conf, positive)
            assert learner.escalate(SITE, "small", conf, positive, X, np.random.default_rng(0)) is not None
    assert learner.escalate(SITE, "large", 0.1, False, X, np.random.default_rng(0)) is None  # the top keeps


def test_it_learns_a_threshold_per_polarity_from_agreement() -> None:
    learner = _cascade(lam=2.0)
    _stream(learner, 3000)
    # escalating costs λ·0.1; a wrong "no" costs fn_weight 5 × P(label yes | site says yes) ≈ 5,
    # a wrong "yes" fp_weight 1 × that: keep "no" only when nearly sure, "yes" sooner
    assert learner.trusts(SITE, "small", 0.996, False)
    assert not learner.trusts(SITE, "small", 0.93, False)
    assert learner.trusts(SITE, "small", 0.96, True)
    assert not learner.trusts(SITE, "small", 0.75, True)
    assert not learner.trusts(SITE, "small", 0.55, True)


def test_a_dearer_escalation_lowers_the_threshold() -> None:
    cheap, dear = _cascade(lam=1.0), _cascade(lam=20.0)
    _stream(cheap, 2000)
    _stream(dear, 2000)
    kept = {name: [c for c in np.linspace(0.5, 0.999, 60) if learner.trusts(SITE, "small", c, False)]
            for name, learner in (("cheap", cheap), ("dear", dear))}
    assert kept["dear"] and min(kept["dear"]) < min(kept["cheap"] or [1.0])
    assert learner_thresholds_fall_with_confidence(dear)


def learner_thresholds_fall_with_confidence(learner: CascadeLearner) -> bool:
    kept = [learner.trusts(SITE, "small", c, positive) for positive in (False, True)
            for c in np.linspace(0.5, 0.999, 40)]
    halves = [kept[:40], kept[40:]]
    return all(row == sorted(row) for row in halves)  # once kept, kept at every higher confidence


@pytest.mark.parametrize(("agree_rate", "kept"), [(0.999, True), (0.6, False)])
def test_answers_without_confidence_are_kept_by_their_agreement_rate(agree_rate: float, kept: bool) -> None:
    learner = _cascade(lam=5.0)
    _stream(learner, 2000, confidence=False, agree_rate=agree_rate)
    assert learner.trusts(SITE, "small", None, False) is kept  # a wrong "no" costs fn_weight


def test_a_rung_that_never_agrees_is_skipped_once_it_has_shown_it() -> None:
    arms = {SITE: ["small", "mid", "large"]}
    learner = CascadeLearner(LearnerConfig(lam=1.0, cascade_audit=0.0, cascade_min_evidence=20), arms, COSTS)
    rng = np.random.default_rng(0)
    assert learner.start_rung(SITE) == "small"
    for batch in range(4):
        examples = []
        for i in range(20):
            rungs = (RungRecord(backend="small", confidence=0.9, positive=True, agreed=False),
                     RungRecord(backend="mid", confidence=0.9, positive=False, agreed=False),
                     RungRecord(backend="large", positive=True))
            examples.append(Example(SITE, "large", X, 0.0, 1.0, 0.0, f"b{batch}i{i}", rungs, bool(rng.random() < 0.5)))
        learner.update(examples)
    assert learner.start_rung(SITE) == "large"
    assert learner.choose(SITE, X, rng).backend == "large"


def test_calibration_is_shared_by_the_sites_of_a_function_and_carries_to_a_new_program() -> None:
    learner, fresh = _cascade(lam=10.0), _cascade(lam=10.0)
    _stream(learner, 3000)
    other = "exists@7:4"
    for cascade in (learner, fresh):
        cascade.start_program({other: ["small", "large"]}, COSTS)
    assert learner.trusts(other, "small", 0.999, True)  # calibrated from exists@2:11's evidence
    assert not fresh.trusts(other, "small", 0.999, True)
    learner.start_program(ARMS, COSTS)  # a new program: the site forgets what its errors cost
    assert learner.trusts(SITE, "small", 0.999, True)
    with pytest.raises(LearnerError, match="must share them"):
        learner.start_program({"exists@9:1": ["small", "mid"]}, COSTS)


def test_save_and_load_round_trip() -> None:
    learner = _cascade()
    _stream(learner, 1500)
    config = LearnerConfig(lam=1.0, cascade_audit=0.0)
    restored = load_learner("cascade", learner.to_bytes(), config, ARMS, COSTS)
    assert isinstance(restored, CascadeLearner)
    grid = [(c, p) for c in [*np.linspace(0.3, 1.0, 30), None] for p in (False, True)]
    assert [restored.trusts(SITE, "small", c, p) for c, p in grid] == [learner.trusts(SITE, "small", c, p)
                                                                      for c, p in grid]
    assert restored.to_bytes() == learner.to_bytes()
    fresh = load_learner("cascade", make_learner("cascade", config, ARMS, COSTS).to_bytes(), config, ARMS, COSTS)
    assert not fresh.escalates or not fresh.trusts(SITE, "small", 0.999, True)  # type: ignore[attr-defined]
    # a changed ladder forgets what was learned for it; a bad blob is a clear error
    changed = load_learner("cascade", learner.to_bytes(), config, {SITE: ["small", "mid", "large"]}, COSTS)
    assert not changed.trusts(SITE, "small", 0.999, True)  # type: ignore[attr-defined]
    with pytest.raises(LearnerError, match="cannot read learner blob"):
        load_learner("cascade", b"not an npz", config, ARMS, COSTS)


def test_a_decision_costs_far_less_than_a_millisecond() -> None:
    learner = _cascade()
    _stream(learner, 500)
    rng = np.random.default_rng(0)
    confs = rng.uniform(0.4, 1.0, 5000)
    start = time.perf_counter()
    for c in confs:
        learner.escalate(SITE, "small", float(c), bool(c > 0.7), X, rng)
        learner.choose(SITE, X, rng)
    per_decision_ms = (time.perf_counter() - start) * 1000 / (2 * len(confs))
    assert per_decision_ms < 1.0


def test_failed_answers_always_escalate_and_audits_sample_kept_ones() -> None:
    learner = make_learner("cascade", LearnerConfig(lam=1.0, cascade_audit=0.5, cascade_audit_cost=1.0),
                           ARMS, COSTS)
    assert isinstance(learner, CascadeLearner)
    _stream(learner, 3000)
    rng = np.random.default_rng(1)
    assert learner.escalate(SITE, "small", 0.999, True, X, rng, failed=True) is not None
    assert learner.trusts(SITE, "small", 0.999, True)
    audits = sum(learner.escalate(SITE, "small", 0.999, True, X, rng) is not None for _ in range(400))
    assert 120 < audits < 280  # about half


def test_the_flows_router_escalates_and_feedback_carries_the_rungs() -> None:
    """policy_router gives a cascade learner a CascadeRouter; results rows feed examples with
    rung answers and labels back (the ingest_feedback path), and the learner moves down."""
    from modules.catalog import parse_catalog
    from modules.executor import BatchExecutor, ItemInput
    from modules.program import parse_program
    from modules.registry import Registry
    from modules.tasks import local_round_runner
    from policies.learning import examples_from
    from policies.routing import CascadeRouter, PolicyRouter, policy_router
    from storage.records import ResultRow

    program = parse_program('def f(image):\n    return exists(image, "circle")\n')
    site = program.call_sites[0].id
    registry = Registry(parse_catalog([
        {"name": n, "kind": "fake", "functions": ["exists"], "answers": {"exists|circle": True},
         "flops_per_call": f, "n_params": 1} for n, f in (("small", 1.0), ("large", 100.0))]))
    config = LearnerConfig(lam=1.0, cascade_audit=0.0)
    learner = make_learner("cascade", config, {site: ["small", "large"]}, COSTS)
    assert type(policy_router(make_learner("thompson", config, {site: ["small"]}, COSTS), "k", 0)) is PolicyRouter
    router = policy_router(learner, "k", 0)
    assert isinstance(router, CascadeRouter)
    items = [ItemInput(f"i{k}", np.full((8, 8, 3), k, np.uint8), X) for k in range(40)]
    first = None
    for _ in range(3):
        outcomes = BatchExecutor(program, router, local_round_runner(registry)).run(items)
        first = first or outcomes[0].decisions[0]
        rows = [ResultRow(item_id=o.item_id, status=o.status, answer=o.answer, error=None,
                          features=list(X), decisions=o.decisions) for o in outcomes]
        examples = examples_from(rows, {o.item_id: True for o in outcomes}, "bool", config, 100.0)
        assert all(e.rungs and e.label is True and e.item_id for e in examples)
        learner.update(examples)
    last = BatchExecutor(program, router, local_round_runner(registry)).run(items)[0].decisions[0]
    assert first is not None and (first.backend, first.tried) == ("large", ["small"])  # escalated at first
    assert last.backend == "small"  # kept once the small rung has proved to agree
    assert last.tried == [] and last.flops == 1.0


def test_an_answer_goes_straight_to_the_top_when_the_middle_rung_passes_such_answers_on() -> None:
    arms = {SITE: ["small", "mid", "large"]}
    learner = CascadeLearner(LearnerConfig(lam=1.0, cascade_audit=0.0), arms, COSTS)
    rng = np.random.default_rng(0)
    assert learner.escalate(SITE, "small", 0.6, True, X, rng) == Choice("mid", 1.0)  # no evidence yet
    chain = (RungRecord(backend="small", confidence=0.6, positive=True, agreed=False),
             RungRecord(backend="mid", confidence=0.6, positive=False, agreed=False),
             RungRecord(backend="large", positive=True))
    learner.update([Example(SITE, "large", X, 0.0, 1.0, 0.0, f"i{i}", chain, False) for i in range(60)])
    assert learner.escalate(SITE, "small", 0.6, True, X, rng) == Choice("large", 1.0)


def test_a_nearly_free_next_rung_is_tried_at_a_high_lambda_under_a_costly_top() -> None:
    """Before any escalation, what escalating from the cheapest rung costs is the next rung
    plus what that rung would pass on: under a top rung too dear for λ, the middle one keeps
    its answers, so escalating to it costs almost nothing and an unsure cheap answer goes up.
    (Priced as every rung above, the top's cost blocked every escalation, and with none made
    the cascade never learned what one costs.)"""
    arms = {SITE: ["small", "mid", "top"]}
    costs = {"small": 1e-9, "mid": 1e-7, "top": 0.05}
    learner = CascadeLearner(LearnerConfig(lam=1024.0, cascade_audit=0.0), arms, costs)
    rng = np.random.default_rng(0)
    assert learner.escalate(SITE, "small", None, False, X, rng) == Choice("mid", 1.0)
    assert learner.escalate(SITE, "mid", None, False, X, rng) is None  # the top costs 51 loss units here
    # at a low λ the middle rung passes unsure answers on, so the prior is every rung above again
    low = CascadeLearner(LearnerConfig(lam=0.01, cascade_audit=0.0), arms, costs)
    assert low.escalate(SITE, "mid", None, False, X, rng) == Choice("top", 1.0)
    assert low.escalate(SITE, "small", None, False, X, rng) is not None


def _escalated(site: str, n: int, agreed: bool, first: int = 0) -> list[Example]:
    """``n`` calls at ``site`` whose cheap answer (negative, no confidence) was escalated and
    the large rung agreed or not; labels follow the large rung."""
    rungs = (RungRecord(backend="small", confidence=None, positive=False, agreed=agreed),
             RungRecord(backend="large", confidence=None, positive=not agreed))
    return [Example(site, "large", X, 0.0, 1.0, 0.0, f"i{first + i}", rungs, not agreed) for i in range(n)]


def test_a_sites_own_disagreement_overrules_the_functions_pooled_agreement() -> None:
    """Elsewhere the cheap rung's unsure "no" always matched the large rung, so a new site of
    the same function starts trusting it; where it does not hold there, the site's own answers
    overrule the pooled evidence (which stands as a prior of ``cascade_pooled_weight`` answers)."""
    other = "exists@4:11"
    learner = CascadeLearner(LearnerConfig(lam=5.0, cascade_audit=0.0), {SITE: ["small", "large"]}, COSTS)
    for start in range(0, 400, 50):
        learner.update(_escalated(SITE, 50, agreed=True, first=start))
    assert learner.trusts(SITE, "small", None, False)
    learner.start_program({other: ["small", "large"]}, COSTS)
    assert learner.trusts(other, "small", None, False)  # calibrated by the pooled evidence
    learner.update(_escalated(other, 40, agreed=False))
    assert not learner.trusts(other, "small", None, False)
    assert learner.trusts(SITE, "small", None, False)  # the first site keeps its own record


def test_no_audits_where_the_next_rung_costs_more_than_a_kept_answer_can() -> None:
    """An audit escalates a kept answer to learn whether keeping it is safe; where one call of
    the next rung costs more at λ than a kept answer can cost the item, no finding could make
    escalating pay, so there are none. At a low λ the same kept answers are audited."""
    rng = np.random.default_rng(0)
    for lam, audited in ((1e5, False), (1.0, True)):
        learner = CascadeLearner(LearnerConfig(lam=lam, cascade_audit=1.0, cascade_audit_cost=1.0),
                                 {SITE: ["small", "large"]}, COSTS)
        for start in range(0, 400, 50):
            learner.update(_escalated(SITE, 50, agreed=True, first=start))
        assert learner.trusts(SITE, "small", None, False)
        got = learner.escalate(SITE, "small", None, False, X, rng)
        assert (got is not None) == audited, (lam, got)


def test_a_version_saved_before_sites_kept_their_own_evidence_still_loads() -> None:
    """A blob without the sites' own agreement arrays (saved before they existed) loads, the
    sites' own evidence starting empty and the rest as saved."""
    import io

    learner = _cascade()
    _stream(learner, 600)
    with np.load(io.BytesIO(learner.to_bytes()), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files if not k.startswith(("site_agree", "site_disagree"))}
    assert len(arrays) < len(np.load(io.BytesIO(learner.to_bytes())).files)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    config = LearnerConfig(lam=1.0, cascade_audit=0.0)
    old = load_learner("cascade", buf.getvalue(), config, ARMS, COSTS)
    assert isinstance(old, CascadeLearner)
    assert old._sites[SITE].agree.sum() == 0 and old._sites[SITE].labels.sum() == learner._sites[SITE].labels.sum()
