"""The command line: ``python -m benchmarks.evaluate`` (and ``fmp evaluate --benchmark ...``)
parses its options, runs every asked policy on every query (``evaluate``), writes the JSON
report and the Pareto PNG and prints the table.

Per query, the policies that learn only from that query run first (``--jobs N``: in N worker
processes, several queries at once), then, in this process and in query order, the policies
that carry what they learned from one query to the next (``Runner.across_queries``); with
workers, a query whose stream an earlier run kept runs them here without waiting for its
worker, its calls read from the table. Backend
calls come from the call table on disk (``--call-table``, default ``.fmp/calls``) when an
earlier run computed them; what a run computes is added to it. ``--baseline`` runs today's
path instead (one process, every policy of a query in turn, no call table), which
``benchmarks.speed`` times against this one.

Worker processes are started with ``spawn``: a script that calls ``evaluate`` with
``--jobs`` above 1 must guard its entry point (``if __name__ == "__main__":``)."""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

import benchmarks.evaluate as package
from benchmarks.calltable import DEFAULT_DIR, CallTable, load_unit_flops, save_unit_flops
from benchmarks.counterfactual import Answered, CallCache, CallKey
from benchmarks.evaluate.harness import Context, ItemResult, Settings, Stream, is_kept, load_stream
from benchmarks.evaluate.intervals import (
    Bootstrap,
    add_intervals,
    dominance,
    dominance_table,
    per_query,
    per_query_table,
)
from benchmarks.evaluate.plot import pareto_png
from benchmarks.evaluate.runners import (
    ALL_POLICIES,
    DEFAULT_POLICIES,
    FMP,
    RUNNERS,
    Runner,
    recommended,
    resolve,
    run_query,
)
from benchmarks.evaluate.streams import StreamFiles
from benchmarks.evaluate.summary import Results, at_lambda, sweep, table
from benchmarks.queryset import BenchQuery, QuerySet, default_queryset, load_queryset
from benchmarks.truth import load_facts
from modules.program import parse_program
from modules.registry import Registry
from policies.costs import known_unit_flops, monolithic_backend, monolithic_flops, remember_unit_flops

QUICK = {"binary": (5, 150), "openform": (5, 50)}  # (queries: one per reasoning type, scenes)

#: Called after each query with its id and its results (policy → λ → items).
OnQuery = Callable[[str, dict[str, dict[float, list[ItemResult]]]], None]
#: One query's results: policy → λ → items.
QueryResults = dict[str, dict[float, list[ItemResult]]]


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
                    paper_input=args.paper_input or (32 if args.quick else 64),
                    baseline=args.baseline, path_memo=not args.no_path_memo)


def table_dir(args: argparse.Namespace) -> Path | None:
    """The call table's folder, or None when it is off (``--no-call-table``, ``--baseline``)."""
    if args.no_call_table or args.baseline:
        return None
    return Path(args.call_table) if args.call_table else DEFAULT_DIR


# -- one process's state ---------------------------------------------------------------------
def keep_freed_memory() -> None:
    """Have glibc keep freed memory for reuse rather than unmapping it: the models' activations
    are tens of MB per batch, and mapping them afresh for every batch costs the kernel about a
    quarter of a vqa-xl forward pass in page faults. The arithmetic is unchanged; the process
    keeps its peak memory. (No glibc: nothing happens.)"""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(-4, 0)  # M_MMAP_MAX: no separate mapping for large blocks
    libc.mallopt(-1, 2**31 - 1)  # M_TRIM_THRESHOLD: never return the top of the heap


#: The cycle collector's thresholds in an evaluation's processes (Python's own: 700, 10, 10).
GC_THRESHOLDS = (50_000, 20, 100)


@contextmanager
def collecting_rarely() -> Iterator[None]:
    """Run Python's cycle collector rarely for the block (its thresholds back afterwards).

    An evaluation holds millions of long-lived objects (the call answers, the path memos'
    tries, each policy's records), and the policies allocate small objects by the million;
    with Python's thresholds the collector scanned the long-lived ones over and over, a third
    of a warm run's CPU (one full-size query, ``static``: 31.8 → 20.5 s). What is garbage here
    is freed by reference counts; cycles are few, and peak memory did not change measurably
    (four full-size queries, every policy: 1.12 GB either way)."""
    before = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)


@dataclass
class _Setup:
    """What each process of an evaluation builds once: the query set, the context (backends,
    monolithic model, settings, call cache), the facts the truth specs read and the table."""

    qs: QuerySet
    ctx: Context
    facts: dict[str, str]
    table: CallTable | None
    scenes: int
    #: the drawn streams kept beside the call table (None with it off)
    streams: StreamFiles | None = None


def _setup(args: argparse.Namespace, unit_flops: dict[tuple[str, str], float] | None = None) -> _Setup:
    from benchmarks.backends import bench_specs

    settings = settings_of(args)
    qs = load_queryset(args.queries or default_queryset(args.benchmark))
    if qs.benchmark != args.benchmark:
        raise SystemExit(f"{args.queries}: a {qs.benchmark} query set, but --benchmark {args.benchmark}")
    registry = Registry(bench_specs())
    folder = table_dir(args)
    if unit_flops is None and folder is not None:
        unit_flops = load_unit_flops(folder, registry)
    if unit_flops:
        remember_unit_flops(registry, unit_flops)
    try:
        mono = monolithic_backend(registry, args.mono)
    except ValueError as exc:
        raise SystemExit(f"--mono: {exc}" if args.mono is not None else str(exc)) from None
    cache = CallCache(registry, remember_digests=not settings.baseline)
    ctx = Context(qs, registry, mono, monolithic_flops(registry, mono), settings, cache)
    scenes = args.scenes or (QUICK[qs.benchmark][1] if args.quick else qs.scenes)
    table = CallTable(folder, registry, qs.benchmark) if folder is not None else None
    streams = StreamFiles(folder / "streams" / qs.benchmark) if folder is not None else None
    return _Setup(qs, ctx, load_facts(), table, scenes, streams)


@dataclass
class _Part:
    """One query's results from one phase (policy → λ → items) and what the phase adds to the
    report: decision times, static configurations, model calls computed / loaded from the
    table / reused, calls stored, seconds."""

    results: QueryResults = field(default_factory=dict)
    decision_us: dict[str, list[float]] = field(default_factory=dict)
    static_pins: dict[tuple[str, float], dict[str, str]] = field(default_factory=dict)
    computed: int = 0
    loaded: int = 0
    reused: int = 0
    stored: int = 0
    seconds: float = 0.0
    stream: Stream | None = None  # handed on to the next phase (in another process)
    answers: dict[CallKey, Answered] | None = None
    niceness: int | None = None  # of the worker process that ran the phase (``os.nice(0)``)

    def add(self, other: _Part) -> None:
        self.results.update(other.results)
        for name, times in other.decision_us.items():
            self.decision_us.setdefault(name, []).extend(times)
        self.static_pins.update(other.static_pins)
        self.computed += other.computed
        self.loaded += other.loaded
        self.reused += other.reused
        self.stored += other.stored
        self.seconds += other.seconds


def _open_query(setup: _Setup, query: BenchQuery) -> tuple[Stream, int]:
    """The query's stream, and the cache cleared and loaded with the query's stored calls."""
    stream = load_stream(setup.qs, query, setup.scenes, setup.ctx.settings.seed, setup.facts,
                         setup.streams)
    setup.ctx.cache.clear()
    return stream, setup.ctx.cache.preload(setup.table.load(query.id)) if setup.table is not None else 0


def _phase(setup: _Setup, stream: Stream, policies: list[str], lams: list[float],
           runners: Mapping[str, Runner], keep: bool = False) -> _Part:
    """Run ``policies`` on ``stream`` with the context's cache (holding the query's calls so
    far) and store the calls they computed; with ``keep``, hand on the stream and the
    cache's answers to the next phase."""
    ctx, cache, t0 = setup.ctx, setup.ctx.cache, time.time()
    computed, reused, fresh = cache.computed, cache.reused, len(cache.fresh)
    before = {n: len(v) for n, v in ctx.decision_us.items()}
    got = run_query(stream, ctx, policies, lams, runners) if policies else {}
    stored = 0
    if setup.table is not None:
        stored = setup.table.append(stream.query.id, ((k, cache.answers[k]) for k in cache.fresh[fresh:]))
    pins = {k: v for k, v in ctx.shared.get("static_pins", {}).items() if k[0] == stream.query.id}
    return _Part(got, {n: v[before.get(n, 0):] for n, v in ctx.decision_us.items()}, pins,
                 cache.computed - computed, 0, cache.reused - reused, stored, time.time() - t0,
                 stream if keep else None, dict(cache.answers) if keep else None)


# -- worker processes (--jobs N) ---------------------------------------------------------------
_WORKER: dict[str, Any] = {}


#: How much lower the worker processes' CPU priority is than the main process's while the main
#: process runs the policies that learn across queries (``os.nice``): those run one query
#: after another, so they are the run's critical path, and the workers fill what CPU is left.
WORKER_NICENESS = 10


def _worker_init(args: argparse.Namespace, unit_flops: dict[tuple[str, str], float],
                 names: list[str], niceness: int) -> None:
    import torch

    if niceness:
        os.nice(niceness)
    torch.set_num_threads(1)
    keep_freed_memory()
    gc.set_threshold(*GC_THRESHOLDS)  # the process is the evaluation's (see collecting_rarely)
    setup = _setup(args, unit_flops)
    _WORKER.update(setup=setup, args=args, queries=pick_queries(setup.qs, args),
                   runners={n: RUNNERS[n] for n in names})


def _worker_query(job: tuple[int, list[str], bool]) -> _Part:
    """The first phase of query ``index`` in a worker process."""
    index, policies, keep = job
    setup: _Setup = _WORKER["setup"]
    stream, loaded = _open_query(setup, _WORKER["queries"][index])
    part = _phase(setup, stream, policies, list(_WORKER["args"].lam), _WORKER["runners"], keep)
    if setup.streams is not None:  # kept on disk: the next phase reads it there, not pickled
        part.stream = None
    part.loaded = loaded
    part.niceness = os.nice(0)
    return part


def _handed_on(setup: _Setup, query: BenchQuery, stream: Stream | None) -> Stream:
    """The stream of ``query`` a worker's phase ran on, in this process: read from the kept
    streams (the worker read or wrote it there), or as the worker pickled it (made again, so
    its items are read-only as every stream's are: unpickled arrays are writable)."""
    if stream is None:
        return load_stream(setup.qs, query, setup.scenes, setup.ctx.settings.seed, setup.facts,
                           setup.streams)
    # a Program maps call sites by node identity: parse it again in this process
    return replace(stream, program=parse_program(query.program))


def _parts(setup: _Setup, args: argparse.Namespace, queries: list[BenchQuery], policies: list[str],
           runners: Mapping[str, Runner]) -> Iterator[tuple[BenchQuery, _Part]]:
    """Each query's results, in query order."""
    lams = list(args.lam)
    if setup.ctx.settings.baseline:  # today's path: every policy of a query in turn
        for query in queries:
            stream, _ = _open_query(setup, query)
            yield query, _phase(setup, stream, policies, lams, runners)
        return
    first = [p for p in policies if not runners[p].across_queries]
    then = [p for p in policies if runners[p].across_queries]
    jobs = min(max(1, args.jobs), len(queries))
    if jobs == 1:
        for query in queries:
            stream, loaded = _open_query(setup, query)
            part = _phase(setup, stream, first, lams, runners)
            part.loaded = loaded
            part.add(_phase(setup, stream, then, lams, runners))
            yield query, part
        return
    foreign = sorted(n for n, r in runners.items() if RUNNERS.get(n) is not r)
    if foreign:
        raise SystemExit(f"--jobs {args.jobs}: worker processes run the harness's own policies; "
                         f"{foreign} are not among them (run them with --jobs 1)")
    unit_flops = known_unit_flops(setup.ctx.registry)
    spawn = multiprocessing.get_context("spawn")  # no fork of a process holding model threads
    niceness = WORKER_NICENESS if then else 0
    # A query whose stream an earlier run kept (so its calls are in the table) runs its second
    # phase here at once, from the table, while the workers run first phases: the second
    # phase does not read the first's results, only the calls it computed, which the table
    # holds already (a call it lacks is computed here). Other queries wait for their
    # worker's phase and get its calls handed on (no call is computed twice in a cold run).
    ahead = [bool(then) and setup.table is not None and setup.streams is not None
             and is_kept(setup.qs, q, setup.scenes, setup.ctx.settings.seed, setup.facts, setup.streams)
             for q in queries]
    with spawn.Pool(jobs, _worker_init, (args, unit_flops, list(runners), niceness)) as pool:
        work = [(i, first, bool(then) and not ahead[i]) for i in range(len(queries))]
        parts = pool.imap(_worker_query, work)
        for query, early in zip(queries, ahead, strict=True):
            if early:
                stream, _ = _open_query(setup, query)  # the worker counts what it loads
                mine = _phase(setup, stream, then, lams, runners)
                part = next(parts)
                part.add(mine)
            else:
                part = next(parts)
                if then:
                    assert part.answers is not None
                    stream = _handed_on(setup, query, part.stream)
                    setup.ctx.cache.clear()
                    setup.ctx.cache.preload(part.answers)
                    part.add(_phase(setup, stream, then, lams, runners))
            part.stream = part.answers = None
            yield query, part


def _ordered(results: QueryResults, runners: Mapping[str, Runner]) -> QueryResults:
    """Results in ``run_query``'s order: λ-independent policies, then the λ-dependent ones."""
    order = sorted(runners, key=lambda n: runners[n].per_lambda)  # stable: table order within each
    return {n: results[n] for n in order if n in results}


def evaluate(args: argparse.Namespace, runners: Mapping[str, Runner] = RUNNERS,
             on_query: OnQuery | None = None) -> dict[str, Any]:
    """Run the asked policies (those of ``runners``) on every query; write and return the report.

    ``on_query(query_id, results)`` sees each query's per-item results as they come.
    """
    import torch

    # One thread: the harness's models run small batches and the policies' networks are tiny;
    # extra threads only spin (and on a busy machine make every small op many times slower).
    torch.set_num_threads(1)
    if not args.baseline:
        keep_freed_memory()
    with nullcontext() if args.baseline else collecting_rarely():
        return _evaluate(args, runners, on_query)


def _evaluate(args: argparse.Namespace, runners: Mapping[str, Runner], on_query: OnQuery | None,
              ) -> dict[str, Any]:
    started = time.time()
    setup = _setup(args)
    qs, ctx, settings = setup.qs, setup.ctx, setup.ctx.settings
    queries = pick_queries(qs, args)
    # ``fmp`` names the recommended learner: it runs once, under its own name, and is
    # reported as ``fmp`` (and under its own name too when that was asked for as well)
    rec = recommended(qs.answer_type)  # per answer type: confirmed (bool), cascade (text)
    alias = FMP in args.policies and rec in runners and FMP not in runners
    asked = {resolve(p, qs.answer_type) if alias else p for p in args.policies}
    unknown = sorted(asked - set(runners))
    if unknown:
        raise SystemExit(f"unknown policy(ies) {unknown}; valid: {[*runners, *([FMP] if alias else [])]}")
    if args.jobs < 1:
        raise SystemExit(f"--jobs must be at least 1, got {args.jobs}")
    policies = [p for p in runners if p in asked]
    mono, mono_flops, scenes, lams = ctx.mono, ctx.mono_flops, setup.scenes, args.lam
    by_policy: Results = {}
    decision: dict[str, list[float]] = {}
    pins: dict[tuple[str, float], dict[str, str]] = {}
    calls = _Part()
    # how much lower the workers' CPU priority was than this process's (WORKER_NICENESS while
    # across-query policies ran here, less where this process is niced already; 0: no workers)
    niceness, own = 0, os.nice(0)
    for i, (query, part) in enumerate(_parts(setup, args, queries, policies, runners)):
        if part.niceness is not None:
            niceness = max(niceness, part.niceness - own)
        got = _ordered(part.results, runners)
        if on_query is not None:
            on_query(query.id, got)
        for name, per_lam in got.items():
            for lam, results in per_lam.items():
                by_policy.setdefault(name, {}).setdefault(lam, {})[query.id] = results
        for name, times in part.decision_us.items():
            decision.setdefault(name, []).extend(times)
        pins.update(part.static_pins)
        calls.add(_Part(computed=part.computed, loaded=part.loaded, reused=part.reused, stored=part.stored))
        n_items = len(next(iter(next(iter(got.values())).values()))) if got else 0
        print(f"[{i + 1}/{len(queries)}] {query.id} ({query.reasoning}): {n_items} items, "
              f"{part.seconds:.0f}s (model calls computed {part.computed}, loaded {part.loaded}, "
              f"reused {part.reused})", file=sys.stderr, flush=True)
    if setup.table is not None:
        save_unit_flops(setup.table.root, ctx.registry, known_unit_flops(ctx.registry))
    metric = "F1" if qs.answer_type == "bool" else "EM"
    if alias:
        keep = rec in args.policies
        if rec in by_policy:
            by_policy[FMP] = by_policy[rec] if keep else by_policy.pop(rec)
        if rec in decision:
            decision[FMP] = decision[rec] if keep else decision.pop(rec)
    rows = sweep(by_policy, qs.answer_type, lams, mono_flops)
    boot = Bootstrap([q.id for q in queries], qs.answer_type, seed=settings.seed)
    add_intervals(rows, by_policy, qs.answer_type, boot)
    learner = FMP if FMP in rows else None
    versus = dominance(rows, by_policy, learner, boot) if learner else []
    decision_us = {n: float(np.mean(v)) for n, v in decision.items() if v}
    main_lam = lams[0]
    main = at_lambda(rows, main_lam)
    queries_rows = per_query(by_policy, qs.answer_type, main_lam, learner or rec)
    queries_file = args.queries or default_queryset(args.benchmark)
    report = {"benchmark": qs.benchmark, "queries_file": str(queries_file),
              "seed": settings.seed, "queries": [q.id for q in queries], "scenes_per_query": scenes,
              "lams": lams, "batch_size": settings.batch_size, "label_delay": settings.label_delay,
              "label_rate": settings.label_rate, "budget": settings.budget, "metric": metric,
              "monolithic_backend": mono, "monolithic_gflops_per_call": mono_flops / 1e9,
              "paper_learner": {"width": settings.paper_width, "input": settings.paper_input},
              "decision_us_per_call_site": decision_us, "seconds": time.time() - started,
              "jobs": 1 if settings.baseline else args.jobs, "worker_niceness": niceness,
              "baseline_path": settings.baseline,
              "call_table": None if setup.table is None else str(setup.table.root),
              "model_calls": {"computed": calls.computed, "loaded": calls.loaded,
                              "reused": calls.reused, "stored": calls.stored},
              "fmp": rec if learner else None, "table": main, "sweep": rows,
              "per_query": queries_rows, "fmp_vs_baselines": versus,
              "static_configurations": {f"{q}@{lam:g}": p for (q, lam), p in pins.items()}}
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
    print(per_query_table(queries_rows, learner or rec, metric, main_lam))
    if learner:
        print(f"{FMP} = {rec}, the recommended learner on {metric} ({qs.answer_type}) streams")
        print(dominance_table(versus, FMP, metric))
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
    p.add_argument("--policies", nargs="+", default=list(DEFAULT_POLICIES), choices=ALL_POLICIES,
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
                   help="shared-budget: cost per item to hold, in monolithic calls (0.02 = 98%% savings)")
    p.add_argument("--shadow", type=float, default=0.25,
                   help="shared, shared-budget, cascade: share of items with shadow runs of cheaper backends")
    p.add_argument("--paper-width", type=int, help="paper learner: ResNet-18 base width (64 = full; "
                                                    "default 16, 8 with --quick)")
    p.add_argument("--paper-input", type=int,
                   help="paper learner: input side in pixels (default 64, 32 with --quick)")
    p.add_argument("--mono", help="the monolithic backend (default: the costliest baseline-only one)")
    p.add_argument("--out", type=Path, help="report path (default .fmp/eval-<benchmark>.json)")
    p.add_argument("--call-table", type=Path, metavar="DIR",
                   help=f"where backend calls, and the streams drawn (DIR/streams), are kept between "
                        f"runs (default {DEFAULT_DIR})")
    p.add_argument("--no-call-table", action="store_true",
                   help="compute every backend call and draw every stream again, and store none")
    p.add_argument("--jobs", type=int, default=1,
                   help="worker processes running queries side by side (each one torch thread)")
    p.add_argument("--no-path-memo", action="store_true",
                   help="interpret every item's program on every run, instead of walking the paths "
                        "earlier runs of the query took (benchmarks/evaluate/paths.py)")
    p.add_argument("--baseline", action="store_true",
                   help="today's harness path (one process, every policy of a query in turn, no call "
                        "table, nothing reused across λ), for speed comparisons")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not 0 < args.label_rate <= 1:
        raise SystemExit(f"--label-rate must be in (0, 1], got {args.label_rate}")
    evaluate(args)
    return 0
