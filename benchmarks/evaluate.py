"""Every policy on a Track S benchmark, side by side: ``python -m benchmarks.evaluate``.

Streams every query of a benchmark (``--benchmark binary|openform``, ``--queries FILE``,
``--seed N``) through the fmp runtime — the program interpreter, the lockstep batch
executor, the trained backends and the learners of ``policy_store.learners`` — batch by
batch, with labels fed back after each batch (optionally ``--label-delay`` batches later,
for a ``--label-rate`` sample of items), exactly as the ``stream_batch`` and
``ingest_feedback`` flows do, but in one process without Prefect and without the object
store and DuckDB ledger, so that a λ sweep over ten policies fits on a laptop. (The flows
themselves are exercised by ``make demo`` and the integration tests.)

Every backend call is computed once and shared by all policies (``counterfactual``): a
policy is charged what its calls cost when computed (FLOPs, parameters, wall ms, price),
plus its own compute (the image embedding and the posterior sampling of the fmp learners;
the ResNet forward, gradient and REINFORCE passes of the paper's learner).

Policies (``--policies``): ``monolithic`` (one image+question model), ``cheapest``,
``largest``, ``random``, ``static`` (the best single configuration per query in
hindsight, by coordinate descent on the objective), ``routing`` (per item, the whole
program on its cheapest or its largest configuration, chosen by a contextual bandit: the
paper's "LLM routing" baseline), ``paper`` (the paper's learner: a ResNet-18 per call site,
gradient Thompson sampling, REINFORCE), ``learned`` (fmp's per-call-site Thompson
sampling), ``fmp`` (fmp's shared-model Thompson sampling, warm-started across queries),
``fmp-budget`` (the same, holding a cost budget per item by adjusting λ online) and
``oracle`` (per item, the cheapest run that answers right: the physical limit).

Objective: loss + λ·cost per item, cost in monolithic calls (FLOPs ÷ one monolithic call);
loss 0 when right, 5 for a missed positive and 1 for a false positive (binary), 1 when wrong
(open-form). Writes ``.fmp/eval-<benchmark>.json`` and ``.fmp/eval-<benchmark>-pareto.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.counterfactual import CallCache, cached_round_runner, call_key, oracle_runs, shadow_run
from benchmarks.queryset import BenchQuery, QuerySet, default_queryset, load_queryset
from benchmarks.sampling import Plan, draw_stream
from benchmarks.truth import load_facts
from benchmarks.truth import normalise_answer as normalise_open
from flows.policies import arms_for, policy_spec
from flows.policies import unit_costs as flow_unit_costs
from modules import embedding
from modules.executor import BatchExecutor, ItemInput, ItemOutcome, Route
from modules.program import CallSite, Program, parse_program
from modules.registry import Registry
from policy_store.learners import make_learner
from policy_store.learners.base import Example, Learner
from policy_store.learners.config import LearnerConfig
from policy_store.learners.shared import BudgetController, SharedThompsonLearner
from policy_store.rewards import item_loss, split_reward

ALL_POLICIES = ("monolithic", "cheapest", "largest", "random", "static", "routing", "paper",
                "learned", "fmp", "fmp-budget", "oracle")
#: Policies whose behaviour depends on λ (run once per λ of the sweep).
LAMBDA_POLICIES = ("static", "routing", "paper", "learned", "fmp", "fmp-budget")
#: fmp's learners: start on the largest backends, move down as cheaper ones prove right.
FMP_OPTIONS = {"escalation_prior": 0.5, "prior_var": 0.05, "explore": 0.5}
#: Embedding, plus one posterior draw per candidate (d² multiply-adds, d = 25).
FMP_DECISION_FLOPS = 3 * 2 * 25 * 25


@dataclass
class ItemResult:
    """One item under one policy."""

    query: str
    difficulty: str
    label: Any
    answer: Any
    right: bool
    loss: float
    flops: float  # backend calls
    policy_flops: float  # the policy's own compute
    params: float
    wall_ms: float
    price: float
    decisions: int


@dataclass
class Stream:
    query: BenchQuery
    program: Program
    ids: list[str]
    images: list[np.ndarray]
    features: list[np.ndarray]
    labels: list[Any]
    difficulties: list[str]


@dataclass
class Context:
    qs: QuerySet
    registry: Registry
    mono: str
    mono_flops: float
    args: argparse.Namespace
    cache: CallCache
    shared: dict[str, Any] = field(default_factory=dict)  # learners carried across queries
    decision_us: dict[str, list[float]] = field(default_factory=dict)


# -- items ---------------------------------------------------------------------------------
def load_stream(qs: QuerySet, query: BenchQuery, scenes: int, seed: int, facts: dict[str, str]) -> Stream:
    plan = Plan(scenes=scenes, seed=seed, batch_size=scenes)
    drawn = [d for batch in draw_stream(qs, query, plan, facts) for d in batch]
    images = [d.item.image for d in drawn]
    return Stream(query, parse_program(query.program), [f"{query.id}/{d.index:05d}" for d in drawn],
                  images, [embedding.embed(im).astype(np.float64) for im in images],
                  [d.answer for d in drawn], [d.item.difficulty for d in drawn])


def is_right(answer: Any, label: Any, answer_type: str) -> bool:
    if answer is None:
        return False
    if answer_type == "bool":
        return answer is label or answer == label
    return normalise_open(str(answer)) == normalise_open(str(label))


# -- costs ---------------------------------------------------------------------------------
def arms_of(program: Program, ctx: Context) -> dict[str, list[str]]:
    """Candidate backends per call site, cheapest first: what the flows' learners get."""
    return arms_for(program, ctx.registry, policy_spec("learned"))


def unit_costs(program: Program, arms: dict[str, list[str]], ctx: Context) -> dict[str, float]:
    """Arm costs in monolithic calls of the evaluation's monolithic model."""
    return flow_unit_costs(ctx.registry, arms, program, unit=ctx.mono_flops)


def learner_config(ctx: Context, lam: float, **extra: Any) -> LearnerConfig:
    return LearnerConfig(lam=lam, seed=ctx.args.seed, **extra)


# -- running a policy over a stream ----------------------------------------------------------
class TimedRouter:
    """Routes call sites with a learner (seeded per item and site, like the flows' router)."""

    def __init__(self, learner: Learner, key: str, seed: int, times: list[float]) -> None:
        self.learner, self.key, self.seed, self.times = learner, key, seed, times

    def choose(self, item_id: str, site: CallSite, features: np.ndarray) -> Route:
        rng = np.random.default_rng([self.seed, zlib.crc32(f"{self.key}/{item_id}/{site.id}".encode())])
        start = time.perf_counter()
        choice = self.learner.choose(site.id, features, rng)
        self.times.append((time.perf_counter() - start) * 1e6)
        return Route(choice.backend, choice.propensity)


def _result(stream: Stream, k: int, outcome: ItemOutcome, ctx: Context, config: LearnerConfig,
            policy_flops: float) -> ItemResult:
    t = list(outcome.tallies.values())
    answer = outcome.answer if outcome.status == "ok" else None
    label = stream.labels[k]
    return ItemResult(stream.query.id, stream.difficulties[k], label, answer,
                      is_right(answer, label, ctx.qs.answer_type),
                      item_loss(answer, label, ctx.qs.answer_type, config),
                      sum(x.flops for x in t), policy_flops, sum(x.params for x in t),
                      sum(x.wall_ms for x in t), sum(x.price for x in t),
                      sum(1 for x in t if x.calls))


def run_learner(name: str, learner: Learner, stream: Stream, ctx: Context, config: LearnerConfig,
                program: Program | None = None,
                on_batch: Callable[[list[ItemResult]], None] | None = None,
                shadow: float = 0.0) -> list[ItemResult]:
    """Stream the items batch by batch; feed labels back (delayed, sampled) after each batch.

    ``shadow``: share of items on which, for every call site that ran on a backend other
    than its cheapest, the program is run again with that site on each cheaper backend
    (the other sites as chosen); what those shadow runs would have answered becomes extra
    labelled examples for the cheaper arms, and their calls (those the item's own run did
    not already make) are charged to the policy.
    """
    program = program or stream.program
    free: set[tuple] = set()
    inner = cached_round_runner(ctx.cache)

    def logged(requests):
        for req in requests:
            free.update(call_key(req.backend, c) for c in req.calls)
        return inner(requests)

    shadow_rng = np.random.default_rng([ctx.args.seed, zlib.crc32(f"shadow/{name}/{stream.query.id}".encode())])
    pixels = getattr(learner, "feature_kind", "embedding") == "pixels"
    times = ctx.decision_us.setdefault(name, [])
    router = TimedRouter(learner, f"{name}/{stream.query.id}", ctx.args.seed, times)
    runner = logged
    rng = np.random.default_rng([ctx.args.seed, zlib.crc32(f"labels/{name}".encode())])
    out: list[ItemResult] = []
    waiting: list[list[Example]] = []
    size = getattr(config, "paper_input", 0)
    for start in range(0, len(stream.ids), ctx.args.batch_size):
        ks = range(start, min(start + ctx.args.batch_size, len(stream.ids)))
        feats = {k: (learner.featurize(stream.images[k], size) if pixels else stream.features[k]) for k in ks}
        outcomes = BatchExecutor(program, router, runner, ctx.qs.answer_type).run(
            [ItemInput(stream.ids[k], stream.images[k], feats[k]) for k in ks])
        batch = []
        for k, o in zip(ks, outcomes):
            sites = [t.call_site for t in o.tallies.values()]
            if pixels:  # the paper's learner: a forward and a gradient pass per arm per decision
                own = sum(learner.decision_flops(s) for s in sites)
            elif learner.name.startswith("thompson"):
                own = embedding.FLOPS + len(sites) * FMP_DECISION_FLOPS
            else:
                own = 0.0
            batch.append(_result(stream, k, o, ctx, config, own))
        out += batch
        shadows = _shadow(learner, stream, ks, outcomes, batch, ctx, program, free, shadow_rng, shadow)
        free.clear()
        examples = []
        for k, o, r in zip(ks, outcomes, batch):
            if rng.random() >= ctx.args.label_rate:
                continue  # this item's label never arrives
            decisions = [(t.call_site, t.backend, t.flops / ctx.mono_flops, feats[k], t.propensity)
                         for t in o.tallies.values() if t.calls]
            examples += [replace(e, item_id=stream.ids[k]) for e in split_reward(decisions, r.loss)]
            for site, backend, calls, answer in shadows.get(k, []):
                loss = item_loss(answer, stream.labels[k], ctx.qs.answer_type, config)
                cost = learner.costs[backend] * calls
                examples.append(Example(site, backend, feats[k], -loss / len(decisions), 1.0, cost,
                                        stream.ids[k]))
        waiting.append(examples)
        if len(waiting) > ctx.args.label_delay:
            before = _training_flops(learner)
            learner.update(waiting.pop(0))
            train = _training_flops(learner) - before
            if train:  # training compute is the policy's cost too, spread over the batch
                for r in batch:
                    r.policy_flops += train / len(batch)
        if on_batch:
            on_batch(batch)
    return out


def _shadow(learner: Learner, stream: Stream, ks: range, outcomes: list[ItemOutcome],
            batch: list[ItemResult], ctx: Context, program: Program, free: set[tuple],
            rng: np.random.Generator, rate: float) -> dict[int, list[tuple[str, str, int, Any]]]:
    """Shadow runs of a sample of the batch: per item, (site, cheaper backend, calls, answer)."""
    out: dict[int, list[tuple[str, str, int, Any]]] = {}
    if rate <= 0:
        return out
    for k, o, r in zip(ks, outcomes, batch):
        if rng.random() >= rate or o.status != "ok":
            continue
        chosen = {t.call_site: t.backend for t in o.tallies.values() if t.calls}
        fallback = {site: names[-1] for site, names in learner.arms.items()}
        for t in o.tallies.values():
            names = learner.arms[t.call_site]
            if not t.calls or t.backend == names[0]:
                continue
            for cheaper in names[: names.index(t.backend)]:
                answer, flops = shadow_run(program, stream.images[k], {**chosen, t.call_site: cheaper},
                                           fallback, ctx.cache, free)
                r.policy_flops += flops
                out.setdefault(k, []).append((t.call_site, cheaper, t.calls, answer))
    return out


def _training_flops(learner: Learner) -> float:
    """Cumulative FLOPs a learner spent training itself (the paper's learner counts them)."""
    return float(learner.training_flops()) if hasattr(learner, "training_flops") else 0.0


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
                lam: float, start: dict[str, list[ItemResult]]) -> tuple[dict[str, str], list[ItemResult]]:
    """The best single configuration in hindsight: coordinate descent from the better of
    all-cheapest and all-largest, one call site at a time, until no change improves."""
    config = learner_config(ctx, lam)
    seen: dict[tuple, list[ItemResult]] = {}

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
    options = ("cheapest", "largest")
    mean_cost = {o: float(np.mean([r.flops for r in start[o]])) / ctx.mono_flops for o in options}
    config = learner_config(ctx, lam, **FMP_OPTIONS)
    learner = make_learner("thompson", config, {"route": list(options)}, mean_cost)
    times = ctx.decision_us.setdefault("routing", [])
    out: list[ItemResult] = []
    waiting: list[list[Example]] = []
    rng = np.random.default_rng([ctx.args.seed, zlib.crc32(b"labels/routing")])
    for s in range(0, len(stream.ids), ctx.args.batch_size):
        batch, examples = [], []
        for k in range(s, min(s + ctx.args.batch_size, len(stream.ids))):
            pick = np.random.default_rng([ctx.args.seed, zlib.crc32(f"route/{stream.ids[k]}".encode())])
            t0 = time.perf_counter()
            choice = learner.choose("route", stream.features[k], pick)
            times.append((time.perf_counter() - t0) * 1e6)
            r = start[choice.backend][k]
            r = ItemResult(**{**asdict(r), "policy_flops": embedding.FLOPS + FMP_DECISION_FLOPS})
            batch.append(r)
            if rng.random() < ctx.args.label_rate:
                examples.append(Example("route", choice.backend, stream.features[k], -r.loss,
                                        choice.propensity, r.flops / ctx.mono_flops))
        out += batch
        waiting.append(examples)
        if len(waiting) > ctx.args.label_delay:
            learner.update(waiting.pop(0))
    return out


def oracle(stream: Stream, ctx: Context, arms: dict[str, list[str]], lam: float) -> list[ItemResult]:
    config = learner_config(ctx, lam)
    checks = [lambda a, lab=label: is_right(a, lab, ctx.qs.answer_type) for label in stream.labels]
    runs = oracle_runs(stream.program, stream.images, arms, ctx.cache, checks)
    return [ItemResult(stream.query.id, stream.difficulties[k], stream.labels[k], run.answer,
                       is_right(run.answer, stream.labels[k], ctx.qs.answer_type),
                       item_loss(run.answer, stream.labels[k], ctx.qs.answer_type, config),
                       run.flops, 0.0, run.params, run.wall_ms, run.price, len(run.assignment))
            for k, run in enumerate(runs)]


def run_query(stream: Stream, ctx: Context, policies: list[str], lams: list[float]
              ) -> dict[str, dict[float, list[ItemResult]]]:
    """Every policy (and every λ of the λ-dependent ones) on one query's stream."""
    arms = arms_of(stream.program, ctx)
    costs = unit_costs(stream.program, arms, ctx)
    res: dict[str, dict[float, list[ItemResult]]] = {}
    base = lams[0]
    need_fixed = {"cheapest", "largest"} if {"static", "routing"} & set(policies) else set()
    for name in ("monolithic", "cheapest", "largest", "random"):
        if name in policies or name in need_fixed:
            res[name] = {base: monolithic(stream, ctx, base) if name == "monolithic"
                         else fixed(name, stream, ctx, arms, costs, base)}
    if "oracle" in policies:
        res["oracle"] = {base: oracle(stream, ctx, arms, base)}
    start = {n: res[n][base] for n in ("cheapest", "largest") if n in res}
    for lam in lams:
        if "static" in policies:
            pins, got = static_best(stream, ctx, arms, costs, lam, start)
            res.setdefault("static", {})[lam] = got
            ctx.shared.setdefault("static_pins", {})[(stream.query.id, lam)] = pins
        if "routing" in policies:
            res.setdefault("routing", {})[lam] = routing(stream, ctx, lam, start)
        if "learned" in policies:
            config = learner_config(ctx, lam, **FMP_OPTIONS)
            learner = make_learner("thompson", config, arms, costs)
            res.setdefault("learned", {})[lam] = run_learner("learned", learner, stream, ctx, config)
        if "paper" in policies:
            config = learner_config(ctx, lam, paper_width=ctx.args.paper_width, paper_input=ctx.args.paper_input)
            learner = make_learner("paper", config, arms, costs)
            res.setdefault("paper", {})[lam] = run_learner("paper", learner, stream, ctx, config)
        for name in ("fmp", "fmp-budget"):
            if name in policies:
                res.setdefault(name, {})[lam] = _run_shared(name, stream, ctx, arms, costs, lam)
    return {n: v for n, v in res.items() if n in policies}


def _run_shared(name: str, stream: Stream, ctx: Context, arms: dict[str, list[str]],
                costs: dict[str, float], lam: float) -> list[ItemResult]:
    """fmp's shared learner: one instance per λ for the whole benchmark (warm start)."""
    key = (name, lam)
    if key not in ctx.shared:
        config = learner_config(ctx, lam, **FMP_OPTIONS)
        budget = BudgetController(ctx.args.budget, lam) if name == "fmp-budget" else None
        ctx.shared[key] = (SharedThompsonLearner(config, arms, costs), budget)
    learner, budget = ctx.shared[key]
    learner.extend(arms, costs)
    hook = None
    if budget is not None:
        def hook(batch: list[ItemResult]) -> None:
            lam_now = budget.observe(float(np.mean([r.flops + r.policy_flops for r in batch])) / ctx.mono_flops)
            learner.config = learner.config.model_copy(update={"lam": lam_now})
            learner._sites.clear()
    return run_learner(name, learner, stream, ctx, learner.config, on_batch=hook, shadow=ctx.args.shadow)


# -- summaries -----------------------------------------------------------------------------
def f1(results: list[ItemResult]) -> float:
    tp = sum(r.answer is True and r.label is True for r in results)
    fp = sum(r.answer is True and r.label is False for r in results)
    fn = sum(r.answer is not True and r.label is True for r in results)
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0


def quality(per_query: dict[str, list[ItemResult]], answer_type: str) -> float:
    """Binary: F1 per query, averaged over queries; open-form: exact match over all items."""
    if answer_type == "bool":
        return float(np.mean([f1(rs) for rs in per_query.values()]))
    return float(np.mean([r.right for rs in per_query.values() for r in rs]))


def summarise(per_query: dict[str, list[ItemResult]], answer_type: str, lam: float, mono_flops: float,
              oracle_q: dict[str, list[ItemResult]] | None) -> dict[str, Any]:
    items = [r for rs in per_query.values() for r in rs]
    total = np.array([r.flops + r.policy_flops for r in items])
    row = {"items": len(items), "quality": quality(per_query, answer_type),
           "accuracy": float(np.mean([r.right for r in items])),
           "gflops_per_item": float(total.mean()) / 1e9,
           "policy_gflops_per_item": float(np.mean([r.policy_flops for r in items])) / 1e9,
           "mparams_calls_per_item": float(np.mean([r.params for r in items])) / 1e6,
           "wall_ms_per_item": float(np.mean([r.wall_ms for r in items])),
           "price_per_item": float(np.mean([r.price for r in items]))}
    if answer_type == "bool":
        row["f1_by_query"] = {q: f1(rs) for q, rs in per_query.items()}
    if oracle_q is not None:
        orc = [r for q in per_query for r in oracle_q[q]]
        mine = total / mono_flops
        theirs = np.array([r.flops for r in orc]) / mono_flops
        regret = np.array([r.loss for r in items]) + lam * mine - np.array([r.loss for r in orc]) - lam * theirs
        row["cumulative_regret"] = float(regret.sum())
        row["regret_curve"] = [float(v) for v in np.cumsum(regret)[:: max(1, len(regret) // 50)]]
    for d in ("easy", "medium", "hard"):
        sub = {q: [r for r in rs if r.difficulty == d] for q, rs in per_query.items()}
        sub = {q: rs for q, rs in sub.items() if rs}
        if sub:
            row[f"accuracy_{d}"] = float(np.mean([r.right for rs in sub.values() for r in rs]))
    return row


def table(rows: dict[str, dict[str, Any]], metric: str, decision_us: dict[str, float]) -> str:
    lines = [f"{'policy':12} {'λ':>6} {metric:>6} {'GFLOPs/item':>11} {'Mparams·calls':>13} "
             f"{'ms/item':>8} {'savings':>8} {'÷oracle':>8} {'regret':>9} {'µs/decision':>11}"]
    for name, r in rows.items():
        us = decision_us.get(name)
        lines.append(
            f"{name:12} {r['lam']:6.3g} {r['quality']:6.3f} {r['gflops_per_item']:11.4f} "
            f"{r['mparams_calls_per_item']:13.3f} {r['wall_ms_per_item']:8.2f} "
            f"{100 * r['savings_vs_monolithic']:7.1f}% {r['cost_vs_oracle']:8.2f} "
            f"{r.get('cumulative_regret', float('nan')):9.1f} {'-' if us is None else f'{us:11.1f}'}")
    return "\n".join(lines)


def pareto_png(path: Path, sweep: dict[str, list[dict[str, Any]]], metric: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5.5))
    for name, pts in sweep.items():
        pts = sorted(pts, key=lambda p: p["gflops_per_item"])
        xs, ys = [p["gflops_per_item"] for p in pts], [p["quality"] for p in pts]
        style = "o-" if len(pts) > 1 else "s"
        ax.plot(xs, ys, style, label=name, markersize=6)
        for p in pts if len(pts) > 1 else []:
            ax.annotate(f"λ={p['lam']:g}", (p["gflops_per_item"], p["quality"]), fontsize=6,
                        textcoords="offset points", xytext=(3, 3))
    ax.set_xscale("log")
    ax.set_xlabel("cost: GFLOPs per item (backends + the policy's own compute, log scale)")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- main ----------------------------------------------------------------------------------
QUICK = {"binary": (5, 150), "openform": (5, 50)}  # (queries: one per reasoning type, scenes)


def pick_queries(qs: QuerySet, args: argparse.Namespace) -> list[BenchQuery]:
    queries = list(qs.queries)
    if args.query:
        missing = sorted(set(args.query) - {q.id for q in queries})
        if missing:
            raise SystemExit(f"unknown query id(s) {missing}; valid: {[q.id for q in queries]}")
        return [q for q in queries if q.id in args.query]
    if args.quick:
        by_type: dict[str, BenchQuery] = {}
        for q in queries:
            by_type.setdefault(q.reasoning, q)
        queries = list(by_type.values())
    return queries[: args.max_queries] if args.max_queries else queries


def monolithic_backend(registry: Registry, name: str | None = None) -> tuple[str, float]:
    """The monolithic model (``name``, or the flows' choice: the costliest baseline-only
    ``query`` backend) and its FLOPs per call."""
    from flows.policies import monolithic_backend as costliest, unit_flops

    monos = [n for n, s in registry.specs.items() if s.baseline_only and "query" in s.functions]
    if name is not None and name not in monos:
        raise SystemExit(f"--mono {name!r} is not a baseline-only query backend; valid: {monos}")
    try:
        name = name or costliest(registry)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    return name, unit_flops(registry, name, "query")


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.backends import bench_specs

    import torch

    # One thread: the harness's models run small batches and the policies' networks are tiny;
    # extra threads only spin (and on a busy machine make every small op many times slower).
    torch.set_num_threads(1)
    args.paper_width = args.paper_width or (8 if args.quick else 16)
    args.paper_input = args.paper_input or (32 if args.quick else 64)
    qs = load_queryset(args.queries or default_queryset(args.benchmark))
    if qs.benchmark != args.benchmark:
        raise SystemExit(f"{args.queries}: a {qs.benchmark} query set, but --benchmark {args.benchmark}")
    facts = load_facts()
    registry = Registry(bench_specs())
    mono, mono_flops = monolithic_backend(registry, args.mono)
    ctx = Context(qs, registry, mono, mono_flops, args, CallCache(registry))
    policies = [p for p in ALL_POLICIES if p in args.policies]
    scenes = args.scenes or (QUICK[qs.benchmark][1] if args.quick else qs.scenes)
    queries = pick_queries(qs, args)
    lams = args.lam
    by_policy: dict[str, dict[float, dict[str, list[ItemResult]]]] = {}
    started = time.time()
    for i, query in enumerate(queries):
        t0 = time.time()
        stream = load_stream(qs, query, scenes, args.seed, facts)
        ctx.cache.clear()
        for name, per_lam in run_query(stream, ctx, policies, lams).items():
            for lam, results in per_lam.items():
                by_policy.setdefault(name, {}).setdefault(lam, {})[query.id] = results
        print(f"[{i + 1}/{len(queries)}] {query.id} ({query.reasoning}): {len(stream.ids)} items, "
              f"{time.time() - t0:.0f}s (model calls computed {ctx.cache.computed}, reused {ctx.cache.reused})",
              file=sys.stderr, flush=True)
    metric = "F1" if qs.answer_type == "bool" else "EM"
    oracle_q = by_policy.get("oracle", {}).get(lams[0])
    mono_row = None
    sweep: dict[str, list[dict[str, Any]]] = {}
    for name, per_lam in by_policy.items():
        for lam, per_query in per_lam.items():
            row = summarise(per_query, qs.answer_type, lam, mono_flops, oracle_q)
            row["lam"] = lam
            sweep.setdefault(name, []).append(row)
            if name == "monolithic":
                mono_row = row
    decision_us = {n: float(np.mean(v)) for n, v in ctx.decision_us.items() if v}
    ref = mono_row["gflops_per_item"] if mono_row else mono_flops / 1e9
    orc = sweep["oracle"][0]["gflops_per_item"] if "oracle" in sweep else None
    for rows in sweep.values():
        for r in rows:
            r["savings_vs_monolithic"] = 1 - r["gflops_per_item"] / ref
            r["cost_vs_oracle"] = r["gflops_per_item"] / orc if orc else float("nan")
    main_lam = lams[0]
    main = {n: next(r for r in rows if r["lam"] == main_lam) if len(rows) > 1 else rows[0]
            for n, rows in sweep.items()}
    report = {"benchmark": qs.benchmark, "queries_file": str(args.queries or default_queryset(args.benchmark)),
              "seed": args.seed, "queries": [q.id for q in queries], "scenes_per_query": scenes,
              "lams": lams, "batch_size": args.batch_size, "label_delay": args.label_delay,
              "label_rate": args.label_rate, "budget": args.budget, "metric": metric,
              "monolithic_backend": mono, "monolithic_gflops_per_call": mono_flops / 1e9,
              "paper_learner": {"width": args.paper_width, "input": args.paper_input},
              "decision_us_per_call_site": decision_us, "seconds": time.time() - started,
              "table": main, "sweep": sweep,
              "static_configurations": {f"{q}@{lam:g}": pins for (q, lam), pins in
                                        ctx.shared.get("static_pins", {}).items()}}
    out = Path(args.out or f".fmp/eval-{qs.benchmark}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    png = out.with_name(out.stem + "-pareto.png")
    report["pareto_png"] = str(png)
    out.write_text(json.dumps(report, indent=1))
    pareto_png(png, sweep, metric, f"{qs.benchmark}: {len(queries)} queries × {scenes} scenes, seed {args.seed}")
    print(f"{qs.benchmark}: {len(queries)} queries × {scenes} scenes (seed {args.seed}), "
          f"λ = {main_lam:g}; monolithic = {mono} ({mono_flops / 1e9:.2f} GFLOPs/call)")
    print(table(main, metric, decision_us))
    print(f"λ sweep ({', '.join(f'{v:g}' for v in lams)}): {png}\nwritten {out} in {time.time() - started:.0f}s")
    return report


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--benchmark", choices=("binary", "openform"), default="binary")
    p.add_argument("--queries", type=Path, help="a query set file (default: the benchmark's own)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lam", type=float, nargs="+", default=[1.0],
                   help="λ values; the first is the table's, all are swept for the Pareto plot")
    p.add_argument("--policies", nargs="+", default=list(ALL_POLICIES), choices=ALL_POLICIES, metavar="POLICY")
    p.add_argument("--quick", action="store_true",
                   help="one query per reasoning type, fewer scenes (CI: under 5 minutes on 2 cores)")
    p.add_argument("--scenes", type=int, help="scenes per query (default: the query set's)")
    p.add_argument("--query", action="append", help="only this query id (repeatable)")
    p.add_argument("--max-queries", type=int, help="only the first N queries")
    p.add_argument("--batch-size", type=int, default=64, help="items per batch (labels return per batch)")
    p.add_argument("--label-delay", type=int, default=0, help="labels arrive this many batches late")
    p.add_argument("--label-rate", type=float, default=1.0, help="share of items whose label arrives")
    p.add_argument("--budget", type=float, default=0.02,
                   help="fmp-budget: cost per item to hold, in monolithic calls (0.02 = 98%% savings)")
    p.add_argument("--shadow", type=float, default=0.25,
                   help="fmp learners: share of items with shadow runs of cheaper backends")
    p.add_argument("--paper-width", type=int, help="paper learner: ResNet-18 base width (64 = full; "
                                                    "default 16, 8 with --quick)")
    p.add_argument("--paper-input", type=int, help="paper learner: input side in pixels (default 64, 32 with --quick)")
    p.add_argument("--mono", help="the monolithic backend (default: the costliest baseline-only one)")
    p.add_argument("--out", type=Path, help="report path (default .fmp/eval-<benchmark>.json)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not 0 < args.label_rate <= 1:
        raise SystemExit(f"--label-rate must be in (0, 1], got {args.label_rate}")
    evaluate(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
