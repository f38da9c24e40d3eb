"""The command line: ``python -m benchmarks.evaluate`` (and ``fmp evaluate --benchmark ...``)
parses its options, runs every asked policy on every query (``evaluate``), writes the JSON
report and the Pareto PNG and prints the table."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

import benchmarks.evaluate as package
from benchmarks.counterfactual import CallCache
from benchmarks.evaluate.harness import Context, ItemResult, Settings, load_stream
from benchmarks.evaluate.plot import pareto_png
from benchmarks.evaluate.runners import ALL_POLICIES, RUNNERS, Runner, run_query
from benchmarks.evaluate.summary import Results, at_lambda, sweep, table
from benchmarks.queryset import BenchQuery, QuerySet, default_queryset, load_queryset
from benchmarks.truth import load_facts
from modules.registry import Registry
from policies.costs import monolithic_backend, monolithic_flops

QUICK = {"binary": (5, 150), "openform": (5, 50)}  # (queries: one per reasoning type, scenes)

#: Called after each query with its id and its results (policy → λ → items).
OnQuery = Callable[[str, dict[str, dict[float, list[ItemResult]]]], None]


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


def settings_of(args: argparse.Namespace) -> Settings:
    """The harness settings of the parsed options (paper learner sizes smaller with --quick)."""
    return Settings(seed=args.seed, batch_size=args.batch_size, label_delay=args.label_delay,
                    label_rate=args.label_rate, budget=args.budget, shadow=args.shadow,
                    paper_width=args.paper_width or (8 if args.quick else 16),
                    paper_input=args.paper_input or (32 if args.quick else 64))


def evaluate(args: argparse.Namespace, runners: Mapping[str, Runner] = RUNNERS,
             on_query: OnQuery | None = None) -> dict[str, Any]:
    """Run the asked policies (those of ``runners``) on every query; write and return the report.

    ``on_query(query_id, results)`` sees each query's per-item results as they come.
    """
    import torch

    from benchmarks.backends import bench_specs

    # One thread: the harness's models run small batches and the policies' networks are tiny;
    # extra threads only spin (and on a busy machine make every small op many times slower).
    torch.set_num_threads(1)
    settings = settings_of(args)
    qs = load_queryset(args.queries or default_queryset(args.benchmark))
    if qs.benchmark != args.benchmark:
        raise SystemExit(f"{args.queries}: a {qs.benchmark} query set, but --benchmark {args.benchmark}")
    queries = pick_queries(qs, args)
    unknown = sorted(set(args.policies) - set(runners))
    if unknown:
        raise SystemExit(f"unknown policy(ies) {unknown}; valid: {list(runners)}")
    policies = [p for p in runners if p in args.policies]
    facts = load_facts()
    registry = Registry(bench_specs())
    try:
        mono = monolithic_backend(registry, args.mono)
    except ValueError as exc:
        raise SystemExit(f"--mono: {exc}" if args.mono is not None else str(exc)) from None
    mono_flops = monolithic_flops(registry, mono)
    ctx = Context(qs, registry, mono, mono_flops, settings, CallCache(registry))
    scenes = args.scenes or (QUICK[qs.benchmark][1] if args.quick else qs.scenes)
    lams = args.lam
    by_policy: Results = {}
    started = time.time()
    for i, query in enumerate(queries):
        t0 = time.time()
        stream = load_stream(qs, query, scenes, settings.seed, facts)
        ctx.cache.clear()
        got = run_query(stream, ctx, policies, lams, runners)
        if on_query is not None:
            on_query(query.id, got)
        for name, per_lam in got.items():
            for lam, results in per_lam.items():
                by_policy.setdefault(name, {}).setdefault(lam, {})[query.id] = results
        print(f"[{i + 1}/{len(queries)}] {query.id} ({query.reasoning}): {len(stream.ids)} items, "
              f"{time.time() - t0:.0f}s (model calls computed {ctx.cache.computed}, "
              f"reused {ctx.cache.reused})", file=sys.stderr, flush=True)
    metric = "F1" if qs.answer_type == "bool" else "EM"
    rows = sweep(by_policy, qs.answer_type, lams, mono_flops)
    decision_us = {n: float(np.mean(v)) for n, v in ctx.decision_us.items() if v}
    main_lam = lams[0]
    main = at_lambda(rows, main_lam)
    queries_file = args.queries or default_queryset(args.benchmark)
    report = {"benchmark": qs.benchmark, "queries_file": str(queries_file),
              "seed": settings.seed, "queries": [q.id for q in queries], "scenes_per_query": scenes,
              "lams": lams, "batch_size": settings.batch_size, "label_delay": settings.label_delay,
              "label_rate": settings.label_rate, "budget": settings.budget, "metric": metric,
              "monolithic_backend": mono, "monolithic_gflops_per_call": mono_flops / 1e9,
              "paper_learner": {"width": settings.paper_width, "input": settings.paper_input},
              "decision_us_per_call_site": decision_us, "seconds": time.time() - started,
              "table": main, "sweep": rows,
              "static_configurations": {f"{q}@{lam:g}": pins for (q, lam), pins in
                                        ctx.shared.get("static_pins", {}).items()}}
    out = Path(args.out or f".fmp/eval-{qs.benchmark}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    png = out.with_name(out.stem + "-pareto.png")
    report["pareto_png"] = str(png)
    out.write_text(json.dumps(report, indent=1))
    title = f"{qs.benchmark}: {len(queries)} queries × {scenes} scenes, seed {settings.seed}"
    pareto_png(png, rows, metric, title)
    print(f"{qs.benchmark}: {len(queries)} queries × {scenes} scenes (seed {settings.seed}), "
          f"λ = {main_lam:g}; monolithic = {mono} ({mono_flops / 1e9:.2f} GFLOPs/call)")
    print(table(main, metric, decision_us))
    print(f"λ sweep ({', '.join(f'{v:g}' for v in lams)}): {png}\n"
          f"written {out} in {time.time() - started:.0f}s")
    return report


def parser() -> argparse.ArgumentParser:
    description = (package.__doc__ or "").split("\n")[0]
    p = argparse.ArgumentParser(prog="python -m benchmarks.evaluate", description=description)
    p.add_argument("--benchmark", choices=("binary", "openform"), default="binary")
    p.add_argument("--queries", type=Path, help="a query set file (default: the benchmark's own)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lam", type=float, nargs="+", default=[1.0],
                   help="λ values; the first is the table's, all are swept for the Pareto plot")
    p.add_argument("--policies", nargs="+", default=list(ALL_POLICIES), choices=ALL_POLICIES,
                   metavar="POLICY")
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
    p.add_argument("--paper-input", type=int,
                   help="paper learner: input side in pixels (default 64, 32 with --quick)")
    p.add_argument("--mono", help="the monolithic backend (default: the costliest baseline-only one)")
    p.add_argument("--out", type=Path, help="report path (default .fmp/eval-<benchmark>.json)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not 0 < args.label_rate <= 1:
        raise SystemExit(f"--label-rate must be in (0, 1], got {args.label_rate}")
    evaluate(args)
    return 0
