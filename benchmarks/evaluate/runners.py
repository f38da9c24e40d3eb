"""The policies: how each one runs over a query's stream, and ``RUNNERS``, the table of
policy names → runners that ``run_query`` works through."""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from benchmarks.counterfactual import oracle_runs
from benchmarks.evaluate.audit import AuditOptions, audited
from benchmarks.evaluate.harness import (
    FMP_DECISION_FLOPS,
    Context,
    ItemResult,
    Stream,
    is_right,
    learner_config,
    run_learner,
)
from modules import embedding
from modules.program import Program, parse_program
from policies.arms import arms_for
from policies.costs import unit_costs
from policies.routing import seeded_rng
from policies.specs import POLICIES
from policy_store.learners import make_learner
from policy_store.learners.base import Example
from policy_store.learners.cascade import CascadeLearner
from policy_store.learners.confirmed import STAKE
from policy_store.learners.shared import BudgetController, SharedThompsonLearner
from policy_store.rewards import item_loss

#: fmp's learners: the flows' ``learned`` policy options (start on the largest backends,
#: move down as cheaper ones prove right).
FMP_OPTIONS = dict(POLICIES["learned"].options)


@dataclass
class QueryRun:
    """One query's stream under every policy: the learners' arms (cheapest first) and arm
    costs (in monolithic calls), and the results of the policies already run at the base λ
    (``static`` and ``routing`` start from ``cheapest`` and ``largest``)."""

    stream: Stream
    ctx: Context
    arms: dict[str, list[str]]
    costs: dict[str, float]
    done: dict[str, list[ItemResult]] = field(default_factory=dict)
    #: static configurations already run on this stream (their results do not depend on λ)
    static_runs: dict[tuple[tuple[str, str], ...], list[ItemResult]] = field(default_factory=dict)

    @classmethod
    def of(cls, stream: Stream, ctx: Context) -> QueryRun:
        """The flows' arms (what the ``learned`` policy's learners get) and their unit costs."""
        arms = arms_for(stream.program, ctx.registry, POLICIES["learned"])
        return cls(stream, ctx, arms, unit_costs(ctx.registry, arms, stream.program, unit=ctx.mono_flops))


# -- the policies --------------------------------------------------------------------------
def fixed(name: str, stream: Stream, ctx: Context, arms: dict[str, list[str]],
          costs: dict[str, float], lam: float, pins: dict[str, str] | None = None,
          program: Program | None = None) -> list[ItemResult]:
    config = learner_config(ctx, lam, pins=pins or {})
    learner = make_learner(name if pins is None else "fixed", config, arms, costs)
    return run_learner(name, learner, stream, ctx, config, program)


def monolithic(stream: Stream, ctx: Context, lam: float) -> list[ItemResult]:
    program = parse_program(stream.query.monolithic_program(ctx.qs.answer_type))
    arms = {s.id: [ctx.mono] for s in program.call_sites}
    return fixed("monolithic", stream, ctx, arms, {ctx.mono: 1.0}, lam, {"*": ctx.mono}, program)


def objective(results: list[ItemResult], lam: float, mono_flops: float) -> float:
    return float(np.mean([r.loss + lam * (r.flops + r.policy_flops) / mono_flops for r in results]))


def static_best(stream: Stream, ctx: Context, arms: dict[str, list[str]], costs: dict[str, float],
                lam: float, start: dict[str, list[ItemResult]],
                seen: dict[tuple[tuple[str, str], ...], list[ItemResult]] | None = None,
                ) -> tuple[dict[str, str], list[ItemResult]]:
    """The best single configuration in hindsight: coordinate descent from the better of
    all-cheapest and all-largest, one call site at a time, until no change improves.

    ``seen``: configurations already run on this stream, shared across λ (a fixed
    configuration's results do not depend on λ; only the objective that ranks them does)."""
    config = learner_config(ctx, lam)
    seen = {} if seen is None else seen

    def evaluate(pins: dict[str, str]) -> list[ItemResult]:
        key = tuple(sorted(pins.items()))
        if key not in seen:
            learner = make_learner("fixed", learner_config(ctx, lam, pins=pins), arms, costs)
            seen[key] = run_learner("static", learner, stream, ctx, config)
        return seen[key]

    cheap = {s: names[0] for s, names in arms.items()}
    large = {s: names[-1] for s, names in arms.items()}
    seen[tuple(sorted(cheap.items()))] = start["cheapest"]
    seen[tuple(sorted(large.items()))] = start["largest"]
    best = min((cheap, large), key=lambda p: objective(evaluate(p), lam, ctx.mono_flops))
    best_j = objective(evaluate(best), lam, ctx.mono_flops)
    for _ in range(3):
        improved = False
        for site, names in arms.items():
            for name in names:
                if name == best[site]:
                    continue
                trial = {**best, site: name}
                j = objective(evaluate(trial), lam, ctx.mono_flops)
                if j < best_j - 1e-12:
                    best, best_j, improved = trial, j, True
        if not improved:
            break
    return best, evaluate(best)


def routing(stream: Stream, ctx: Context, lam: float, start: dict[str, list[ItemResult]]) -> list[ItemResult]:
    """Per item, route the whole program to its cheapest or its largest configuration."""
    settings = ctx.settings
    options = ("cheapest", "largest")
    mean_cost = {o: float(np.mean([r.flops for r in start[o]])) / ctx.mono_flops for o in options}
    config = learner_config(ctx, lam, **FMP_OPTIONS)
    learner = make_learner("thompson", config, {"route": list(options)}, mean_cost)
    times = ctx.decision_us.setdefault("routing", [])
    out: list[ItemResult] = []
    waiting: list[list[Example]] = []
    rng = np.random.default_rng([settings.seed, zlib.crc32(b"labels/routing")])
    for s in range(0, len(stream.ids), settings.batch_size):
        batch, examples = [], []
        if not settings.baseline:  # decide for the batch at once (as ``run_learner`` does)
            learner.prefetch(stream.features[s: s + settings.batch_size])  # type: ignore[attr-defined]
        for k in range(s, min(s + settings.batch_size, len(stream.ids))):
            pick = seeded_rng(settings.seed, zlib.crc32(f"route/{stream.ids[k]}".encode()))
            t0 = time.perf_counter()
            choice = learner.choose("route", stream.features[k], pick)
            times.append((time.perf_counter() - t0) * 1e6)
            r = replace(start[choice.backend][k], policy_flops=embedding.FLOPS + FMP_DECISION_FLOPS)
            batch.append(r)
            if rng.random() < settings.label_rate:
                examples.append(Example("route", choice.backend, stream.features[k], -r.loss,
                                        choice.propensity, r.flops / ctx.mono_flops))
        out += batch
        waiting.append(examples)
        if len(waiting) > settings.label_delay:
            learner.update(waiting.pop(0))
    return out


def _checker(label: Any, answer_type: str) -> Callable[[Any], bool]:
    return lambda answer: is_right(answer, label, answer_type)


def oracle(stream: Stream, ctx: Context, arms: dict[str, list[str]], lam: float) -> list[ItemResult]:
    config = learner_config(ctx, lam)
    checks = [_checker(label, ctx.qs.answer_type) for label in stream.labels]
    runs = oracle_runs(stream.program, stream.images, arms, ctx.cache, checks)
    return [ItemResult(stream.query.id, stream.difficulties[k], stream.labels[k], run.answer,
                       is_right(run.answer, stream.labels[k], ctx.qs.answer_type),
                       item_loss(run.answer, stream.labels[k], ctx.qs.answer_type, config),
                       run.flops, 0.0, run.params, run.wall_ms, run.price, len(run.assignment))
            for k, run in enumerate(runs)]


def shared(name: str, stream: Stream, ctx: Context, arms: dict[str, list[str]],
           costs: dict[str, float], lam: float) -> list[ItemResult]:
    """The shared-model Thompson learner: one instance per λ for the whole benchmark (warm
    start across queries)."""
    key = (name, lam)
    if key not in ctx.shared:
        config = learner_config(ctx, lam, **FMP_OPTIONS)
        budget = BudgetController(ctx.settings.budget, lam) if name == "shared-budget" else None
        ctx.shared[key] = (SharedThompsonLearner(config, arms, costs), budget)
    learner, budget = ctx.shared[key]
    learner.extend(arms, costs)
    hook = None
    if budget is not None:
        def hook(batch: list[ItemResult]) -> None:
            spent = float(np.mean([r.flops + r.policy_flops for r in batch])) / ctx.mono_flops
            lam_now = budget.observe(spent)
            learner.config = learner.config.model_copy(update={"lam": lam_now})
            learner._sites.clear()
    return run_learner(name, learner, stream, ctx, learner.config, on_batch=hook, shadow=ctx.settings.shadow)


# -- the table -----------------------------------------------------------------------------
def _static(q: QueryRun, lam: float) -> list[ItemResult]:
    pins, got = static_best(q.stream, q.ctx, q.arms, q.costs, lam, q.done,
                            None if q.ctx.settings.baseline else q.static_runs)
    q.ctx.shared.setdefault("static_pins", {})[(q.stream.query.id, lam)] = pins
    return got


def _learned(q: QueryRun, lam: float) -> list[ItemResult]:
    config = learner_config(q.ctx, lam, **FMP_OPTIONS)
    learner = make_learner("thompson", config, q.arms, q.costs)
    return run_learner("learned", learner, q.stream, q.ctx, config)


def _cascade(q: QueryRun, lam: float) -> list[ItemResult]:
    """Call-site cascades (``policy_store/learners/cascade.py``): each call runs on a cheap
    rung and is re-issued one rung up while the learner does not trust the answer; every
    rung that ran is charged. One learner per λ for the whole benchmark, like ``shared``: how
    far each function's rungs agree carries over to the next query; what an error costs
    is learned afresh per query, measured by shadow runs (``--shadow``, charged) where a
    cheap rung's answer was replaced."""
    key = ("cascade", lam)
    learner: CascadeLearner | None = q.ctx.shared.get(key)
    if learner is None:
        learner = q.ctx.shared[key] = CascadeLearner(learner_config(q.ctx, lam), q.arms, q.costs)
    else:
        learner.start_program(q.arms, q.costs)
    return run_learner("cascade", learner, q.stream, q.ctx, learner.config, shadow=q.ctx.settings.shadow)


def _paper(q: QueryRun, lam: float) -> list[ItemResult]:
    s = q.ctx.settings
    config = learner_config(q.ctx, lam, paper_width=s.paper_width, paper_input=s.paper_input)
    learner = make_learner("paper", config, q.arms, q.costs)
    return run_learner("paper", learner, q.stream, q.ctx, config)


@dataclass(frozen=True)
class Runner:
    """How one policy runs on a query: ``run(query_run, λ)`` gives its per-item results.

    ``per_lambda``: run once per λ of the sweep (else once, at the first λ, before any
    λ-dependent policy); ``needs``: policies whose base-λ results it starts from (run
    first even when not asked for, and left out of the results then); ``across_queries``:
    it carries what it learned from one query to the next (``ctx.shared``), so its queries
    run in query order, in one process, after the other policies of each query."""

    run: Callable[[QueryRun, float], list[ItemResult]]
    per_lambda: bool = False
    needs: tuple[str, ...] = ()
    across_queries: bool = False


#: Policy name → runner, in the order they run (and are reported).
RUNNERS: dict[str, Runner] = {
    "monolithic": Runner(lambda q, lam: monolithic(q.stream, q.ctx, lam)),
    "cheapest": Runner(lambda q, lam: fixed("cheapest", q.stream, q.ctx, q.arms, q.costs, lam)),
    "largest": Runner(lambda q, lam: fixed("largest", q.stream, q.ctx, q.arms, q.costs, lam)),
    "random": Runner(lambda q, lam: fixed("random", q.stream, q.ctx, q.arms, q.costs, lam)),
    "oracle": Runner(lambda q, lam: oracle(q.stream, q.ctx, q.arms, lam)),
    "static": Runner(_static, per_lambda=True, needs=("cheapest", "largest")),
    "routing": Runner(lambda q, lam: routing(q.stream, q.ctx, lam, q.done), per_lambda=True,
                      needs=("cheapest", "largest")),
    "learned": Runner(_learned, per_lambda=True),
    "paper": Runner(_paper, per_lambda=True),
    "cascade": Runner(_cascade, per_lambda=True, across_queries=True),
    "shared": Runner(lambda q, lam: shared("shared", q.stream, q.ctx, q.arms, q.costs, lam),
                     per_lambda=True, across_queries=True),
    "audited": Runner(lambda q, lam: audited(q.stream, q.ctx, q.arms, q.costs, lam), per_lambda=True,
                      across_queries=True),
    "confirmed": Runner(lambda q, lam: audited(q.stream, q.ctx, q.arms, q.costs, lam,
                                               AuditOptions(confirm=True, start=0.5, stake=STAKE),
                                               "confirmed"),
                        per_lambda=True, across_queries=True),
    "shared-budget": Runner(lambda q, lam: shared("shared-budget", q.stream, q.ctx, q.arms, q.costs, lam),
                            per_lambda=True, across_queries=True),
}
#: The name of the recommended learner: the flows' default policy, whose learner per answer
#: type (``policies/specs.py``: ``confirmed`` on yes/no streams, the call-site cascade on text
#: streams) is what ``fmp`` stands for here (in ``--policies``, in the report's ``sweep`` and
#: ``table``, and as the report's ``fmp`` key).
FMP = "fmp"
#: The recommended learner on yes/no benchmarks.
RECOMMENDED = POLICIES[FMP].learner_for("bool")
#: Every policy, in the order the CLI lists them.
ALL_POLICIES = ("monolithic", "cheapest", "largest", "random", "static", "routing", "paper",
                "learned", "shared", "shared-budget", "cascade", "audited", "confirmed",
                FMP, "oracle")
#: What ``--policies`` runs when not given: every policy, the recommended learner once (as ``fmp``).
DEFAULT_POLICIES = tuple(n for n in ALL_POLICIES if n != RECOMMENDED)


def recommended(answer_type: str) -> str:
    """The recommended learner on streams of ``answer_type`` ("bool" or "str"): the one the
    flows' ``fmp`` policy runs there."""
    return POLICIES[FMP].learner_for(answer_type)


def resolve(name: str, answer_type: str = "bool") -> str:
    """The runner name a policy name stands for (``fmp`` → the recommended learner's)."""
    return recommended(answer_type) if name == FMP else name


#: Policies whose behaviour depends on λ (run once per λ of the sweep).
LAMBDA_POLICIES = tuple(n for n in ALL_POLICIES if RUNNERS[resolve(n)].per_lambda)


def run_query(stream: Stream, ctx: Context, policies: list[str], lams: list[float],
              runners: Mapping[str, Runner] = RUNNERS) -> dict[str, dict[float, list[ItemResult]]]:
    """Every policy of ``policies`` (every λ of the λ-dependent ones) on one query's stream."""
    q = QueryRun.of(stream, ctx)
    ctx.paths.clear()  # paths are remembered for one query's phase (benchmarks/evaluate/paths.py)
    wanted = set(policies)
    needed = wanted | {n for p in wanted for n in runners[p].needs}
    res: dict[str, dict[float, list[ItemResult]]] = {}
    base = lams[0]
    for name, runner in runners.items():
        if name in needed and not runner.per_lambda:
            res[name] = {base: runner.run(q, base)}
            q.done[name] = res[name][base]
    for lam in lams:
        for name, runner in runners.items():
            if name in wanted and runner.per_lambda:
                res.setdefault(name, {})[lam] = runner.run(q, lam)
    return {n: v for n, v in res.items() if n in wanted}
